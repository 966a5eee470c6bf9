"""Text workflows: train a text VAE into a run folder from a corpus, and use it (vary, sample, reconstruct,
interpolate, encode, evaluate). The ``vaekit`` CLI calls exactly these functions."""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, Literal, get_args

import numpy as np
import torch

from .conditions import DenseCondition
from .config import FOLDER_MODE, TrainConfig, from_dict, read_json
from . import distributed
from .data.text import ReadOptions, TextBatches, TextSource, TokenFile, TokenFileWriter, Unit, corpus_units, read_records
from .data.tokenizer import TextTokenizer, TokenizerConfig
from .errors import VaekitError
from .models.text import PRESETS, TextVAE, TextVAEConfig
from .runs import (CONFIG_NAME, ENCODER_TOKENIZER_NAME, TOKENIZER_NAME, TOKENS_DIR, VECTORS_NAME, WORDS_NAME,
                   data_of_resumed_run, update_config)
from .train import Prepared, TrainResult, run_training

log = logging.getLogger(__name__)

# the text backbones a user names: vaekit train text --backbone, vaekit quickstart --text-backbone
Backbone = Literal["rnn", "pretrained"]
BACKBONES = get_args(Backbone)
ENCODE_CHUNK = 2048


@dataclasses.dataclass
class TextRun:
    run_dir: Path
    result: TrainResult
    model: TextVAE
    stats: dict


def _is_val(rng: np.random.Generator, val_fraction: float) -> bool:
    return val_fraction > 0 and rng.random() < val_fraction


def _units(src: TextSource, unit: Unit, max_tokens: int, part: str, val_fraction: float, seed: int) -> Iterator[tuple]:
    """(unit text, label, tags, condition text) of the training ("train") or validation ("val") part; the
    condition text is the --condition-column's, else the unit itself. The split is drawn per record
    (document) with ``seed``, before long documents are split, so no document straddles both parts.
    Whether a document is long is judged by its whitespace word count."""
    rng = np.random.default_rng(seed)
    last_id = None
    in_val = False
    for record, text in corpus_units(src, unit, max_tokens, lambda t: len(t.split())):
        if record.id != last_id:
            in_val, last_id = _is_val(rng, val_fraction), record.id
        if (part == "val") == in_val:
            yield text, record.label, record.tags, (record.condition if record.condition is not None else text)


def _tokenize_to(writer: TokenFileWriter, tokenizer: TextTokenizer, units: Iterator[tuple],
                 max_tokens: int, labels: list[str] | None, tag_names: list[str] | None = None, embedder=None) -> dict:
    """Encode in chunks, truncating to max_tokens; with ``embedder``, each kept text's condition vector too.
    Returns counts."""
    stats = {"items": 0, "tokens": 0, "truncated": 0, "empty": 0}
    chunk: list[tuple] = []
    tag_index = {t: i for i, t in enumerate(tag_names or [])}
    writer.num_tags = len(tag_index)

    def flush():
        conditions = []
        for (_, label, tags, condition), ids in zip(chunk, tokenizer.encode_batch([u[0] for u in chunk])):
            if not ids:
                stats["empty"] += 1
                continue
            if len(ids) > max_tokens:
                stats["truncated"] += 1
                ids = ids[:max_tokens]
            writer.add(ids, labels.index(label) if labels and label in labels else None,
                       [tag_index[t] for t in tags if t in tag_index] if tag_index and tags is not None else None)
            conditions.append(condition)
            stats["items"] += 1
            stats["tokens"] += len(ids)
        if embedder is not None and conditions:
            writer.cond.append(embedder(conditions))
        chunk.clear()

    for item in units:
        chunk.append(item)
        if len(chunk) == ENCODE_CHUNK:
            flush()
    flush()
    writer.close()
    return stats


def prepare_corpus(src: TextSource, work: Path, tokenizer_config: TokenizerConfig, unit: Unit, max_tokens: int,
                   val_fraction: float, seed: int, val_src: TextSource | None,
                   tokenizer: TextTokenizer | None = None, condition: DenseCondition | None = None) -> tuple[TextTokenizer, dict]:
    """Train the tokenizer on the training part (streamed), then stream both parts into token id files
    ``work/train.*`` and ``work/val.*``."""
    split = 0.0 if val_src is not None else val_fraction
    labels, tag_names = None, None
    if src.label_column is not None or src.tags_column is not None:
        label_set, tag_set = set(), set()
        for record in read_records(src):
            if record.label is not None:
                label_set.add(record.label)
            tag_set.update(record.tags or ())
        labels = sorted(label_set) if src.label_column is not None and label_set else None
        tag_names = sorted(tag_set) if src.tags_column is not None and tag_set else None
    if tokenizer is None:
        tokenizer = TextTokenizer.train((u[0] for u in _units(src, unit, max_tokens, "train", split, seed)),
                                        tokenizer_config)
    embedder = _condition_embedder(condition, src, unit, max_tokens, split, seed, work) if condition else None
    stats = {"train": _tokenize_to(TokenFileWriter(work / "train"), tokenizer,
                                   _units(src, unit, max_tokens, "train", split, seed), max_tokens, labels, tag_names,
                                   embedder)}
    val_units = (_units(val_src, unit, max_tokens, "train", 0.0, seed) if val_src is not None
                 else _units(src, unit, max_tokens, "val", split, seed))
    stats["val"] = _tokenize_to(TokenFileWriter(work / "val"), tokenizer, val_units, max_tokens, labels, tag_names,
                                embedder)
    if embedder is not None:
        stats["condition_dim"] = int(embedder.dim)
    stats["label_names"] = labels
    stats["tag_names"] = tag_names
    if stats["train"]["items"] == 0:
        raise VaekitError(f"{src.path}: no text left for training after the validation split")
    for part in ("train", "val"):
        if stats[part]["truncated"]:
            log.warning("%d %s texts were longer than --max-tokens %d and were truncated",
                        stats[part]["truncated"], part, max_tokens)
    return tokenizer, stats


def _condition_embedder(condition: DenseCondition, src: TextSource, unit: Unit, max_tokens: int, split: float, seed: int,
                        work: Path):
    """The embedder of condition texts: a sentence encoder, or word vectors (the bundled GloVe, a file, or fitted
    on the training part's condition texts), which are written to ``work`` to travel with the run."""
    from .conditions import SentenceEmbedder, WordVectors, words

    if condition.kind == "sentence":
        return SentenceEmbedder(condition.encoder)
    texts = (u[3] for u in _units(src, unit, max_tokens, "train", split, seed))
    if condition.train:
        vectors = WordVectors.train(texts, seed=seed)
    else:
        keep = {w for t in texts for w in words(t)}
        vectors = (WordVectors.from_file(condition.word_vectors, keep) if condition.word_vectors
                   else WordVectors.glove(keep))
    vectors.save(work)
    return vectors


def train_text(data: str | Path | None, out: str | Path, *, reading: ReadOptions | None = None, val_data: str | Path | None = None,
               tokenizer_config: TokenizerConfig | None = None, preset: str = "default", model_overrides: dict | None = None,
               training: TrainConfig | None = None, unit: Unit = "sentence", max_tokens: int = 64,
               resume: bool = False, overwrite: bool = False, progress: bool = False, epochs: int | None = None,
               conditional: bool = False, condition: DenseCondition | None = None, backbone: dict | None = None) -> TextRun:
    """Train a TextVAE on a corpus into run folder ``out``.

    ``reading`` says which columns of a CSV/JSONL file hold the text, title, label, tags and condition, and the
    encoding (data.text.ReadOptions; None: the defaults). Everything is
    read and tokenized into a temporary folder beside ``out`` first; ``out`` is touched only once that worked.
    With ``conditional`` the model is a conditional VAE on the label and/or tags columns (every text needs a
    label). ``condition`` (a vaekit.conditions.DenseCondition) adds a dense condition: an embedding of the
    reading's condition_column (or of each text itself). ``backbone`` {"decoder": name, "encoder": name, and
    LMTextVAEConfig fields} trains an LMTextVAE on those pretrained models (None: the bundled defaults) instead
    of the RNN TextVAE of ``preset``; the decoder's tokenizer is used as it is (``tokenizer_config`` is not).
    """
    out = Path(out)
    stats: dict = {}

    def prepare(training: TrainConfig, saved: dict | None, run_setup) -> Prepared:
        return _prepare_texts(data, out, training, saved, run_setup, stats, reading=reading or ReadOptions(),
                              val_data=val_data, tokenizer_config=tokenizer_config, preset=preset,
                              model_overrides=model_overrides, unit=unit, max_tokens=max_tokens,
                              conditional=conditional, condition=condition, backbone=backbone)

    result, best = run_training(out, training, prepare, resume=resume, overwrite=overwrite, epochs=epochs,
                                progress=progress)
    return TextRun(out, result, best, stats)


def _prepare_texts(data, out: Path, training: TrainConfig, saved: dict | None, run_setup, stats_out: dict, *,
                   reading: ReadOptions, val_data, tokenizer_config, preset, model_overrides, unit, max_tokens,
                   conditional, condition, backbone) -> Prepared:
    """The text data step of train.run_training: the corpus read and tokenized once into the run's data folder
    (kept on resume), the model, and its data; the corpus statistics go into ``stats_out``."""
    resume = saved is not None
    if resume:
        data_of_resumed_run(data, saved.get("data", {}).get("path"), out)
        model = load_for_resume(out, saved)
        tokens = out / TOKENS_DIR
        if not (tokens / "train.ids.npy").is_file():
            raise VaekitError(f"{tokens}: the tokenized corpus is missing; retrain with --overwrite")
        stats = saved.get("data", {}).get("stats", {})
    else:
        if preset not in PRESETS:
            raise VaekitError(f"--preset {preset!r}: choose from {', '.join(PRESETS)}")
        if data is None:
            raise VaekitError("--data is required (unless --resume)")
        src = reading.at(data)
        val_src = reading.at(val_data) if val_data is not None else None
        tokenizer_config = tokenizer_config or TokenizerConfig()
        if conditional and src.label_column is None and src.tags_column is None and condition is None:
            raise VaekitError("--conditional needs --label-column, --tags-column or --condition-embedding: "
                              "what to condition on")

        bases, lm_fields = None, {}
        if backbone is not None:
            from .models.lm_text import load_bases

            bases = load_bases(backbone.get("decoder"), backbone.get("encoder"))
            # the LMTextVAEConfig fields: the backbone's own and the constraint loss's
            lm_fields = {**{k: v for k, v in backbone.items() if k not in ("decoder", "encoder")},
                         **{k: v for k, v in (model_overrides or {}).items() if k.startswith("constraint")}}

        def fields_for(stats: dict) -> dict:
            names = stats.get("label_names") or ()
            tags = stats.get("tag_names") or ()
            return {"max_tokens": max_tokens, "unit": unit,
                    "label_names": tuple(names) if conditional and src.label_column else (),
                    "tag_names": tuple(tags) if conditional and src.tags_column else (),
                    "condition_dim": int(stats.get("condition_dim") or 0) if condition else 0,
                    "condition_encoder": condition.encoder_name if condition else ""}

        def model_for(tokenizer: TextTokenizer, stats: dict) -> TextVAE:
            if bases is not None:
                from .models.lm_text import LMTextVAE

                torch.manual_seed(training.seed)
                return LMTextVAE.from_bases(bases, **lm_fields, **fields_for(stats))
            config = TextVAEConfig(**{**PRESETS[preset], **(model_overrides or {}), "vocab_size": tokenizer.vocab_size,
                                      **fields_for(stats)})
            torch.manual_seed(training.seed)
            return TextVAE(config, tokenizer)

        def check_model(tokenizer, stats: dict) -> None:
            """A bad setting fails before the folder is touched (an LMTextVAE is built once: LoRA wraps in place)."""
            if bases is not None:
                bases.config(**lm_fields, **fields_for(stats))
            else:
                model_for(tokenizer, stats)

        def setup() -> None:  # rank 0 alone tokenizes and writes; the other ranks read what it wrote
            parent = out.resolve().parent
            parent.mkdir(parents=True, exist_ok=True)
            work = Path(tempfile.mkdtemp(dir=parent, prefix=f".{out.name}.tokens."))
            with contextlib.suppress(OSError):  # it becomes the run's data folder: mkdtemp's 0700 hides it from others
                os.chmod(work, FOLDER_MODE)
            try:
                tokenizer, stats = prepare_corpus(src, work, tokenizer_config, unit, max_tokens, training.val_fraction,
                                                  training.seed, val_src, condition=condition,
                                                  tokenizer=bases.tokenizer if bases is not None else None)
                if conditional:
                    _check_labels(work, stats, src)
                _check_constraints(model_overrides or {}, stats, src)
                check_model(tokenizer, stats)
                _check_batch(training, stats)
                run_setup.start()  # clears what an earlier run wrote (its data folder too)
                for name in (VECTORS_NAME, WORDS_NAME):  # word vectors travel with the run, beside the model
                    if (work / name).is_file():
                        os.replace(work / name, out / name)
                os.replace(work, out / TOKENS_DIR)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            tokenizer.save(out / TOKENIZER_NAME)
            if bases is not None:  # the encoder's tokenizer travels with the run too
                from .config import atomic_write_text

                atomic_write_text(out / ENCODER_TOKENIZER_NAME, bases.encoder_tokenizer.backend_tokenizer.to_str())
            update_config(out, {"data": {**dataclasses.asdict(src),
                                                    "val_data": str(val_data) if val_data else None, "stats": stats}})

        distributed.on_main(setup)
        tokenizer = bases.tokenizer if bases is not None else TextTokenizer.load(out / TOKENIZER_NAME, tokenizer_config)
        stats = read_json(out / CONFIG_NAME)["data"]["stats"]
        model = model_for(tokenizer, stats)
        model.attach_conditions(out)
    model.data_label_names = tuple(stats.get("label_names") or ())  # for the constraint loss
    tokens = out / TOKENS_DIR
    train_set = TextBatches(TokenFile(tokens / "train"))
    val_file = TokenFile(tokens / "val")
    val_set = TextBatches(val_file) if len(val_file) else None
    if val_set is None and training.val_fraction > 0:
        log.warning("no text fell into the validation split; training without validation")
    stats_out.update(stats)
    return Prepared(model, train_set, val_set)


def _check_labels(work: Path, stats: dict, src: TextSource) -> None:
    if src.label_column is not None:
        names = stats.get("label_names") or []
        if len(names) < 2:
            raise VaekitError(f"{src.path}: column {src.label_column!r} holds {len(names)} distinct label(s); a "
                              "conditional model needs at least two")
        for part in ("train", "val"):
            if stats[part]["items"] and TokenFile(work / part).labels is None:
                raise VaekitError(f"{src.path}: some texts have no value in label column {src.label_column!r}; "
                                  "every text needs a label for --conditional")
    if src.tags_column is not None and not stats.get("tag_names"):
        raise VaekitError(f"{src.path}: column {src.tags_column!r} holds no tags")


def _check_constraints(overrides: dict, stats: dict, src: TextSource) -> None:
    wanted = overrides.get("constraint_labels") or ()
    if not wanted:
        return
    if src.label_column is None:
        raise VaekitError("--constraint LABEL=TEXT needs --label-column: constraints apply to texts by label")
    names = stats.get("label_names") or []
    for label in wanted:
        if label not in names:
            raise VaekitError(f"--constraint {label}=...: no text has label {label!r}; the labels are "
                              f"{', '.join(names[:20])}")


def _check_batch(training: TrainConfig, stats: dict) -> None:
    if training.batch_size > stats["train"]["items"]:
        raise VaekitError(f"--batch-size {training.batch_size} is larger than the {stats['train']['items']} training texts")


def load_for_resume(out: Path, saved: dict) -> TextVAE:
    """The model as the run built it, with its tokenizer; the last epoch's weights come later from resume.pt."""
    from .models import MODEL_TYPES

    cls = MODEL_TYPES.get(saved.get("model_type"), TextVAE)
    model = cls(from_dict(cls.config_class, saved.get("model"), where=f"{out / CONFIG_NAME} \"model\""))
    cls._attach(model, out, saved)
    return model


# --- using a trained model ----------------------------------------------------------------
def read_texts(path: str | Path, reading: ReadOptions | None = None, limit: int | None = None) -> list[str]:
    """Texts of a file or folder (one per record), in order."""
    texts = []
    for record in read_records((reading or ReadOptions()).at(path)):
        texts.append(" ".join(record.text.split()))
        if limit is not None and len(texts) >= limit:
            break
    return texts


def batches_of(model: TextVAE, texts: list[str], batch_size: int = 256):
    for start in range(0, len(texts), batch_size):
        yield model.batch(texts[start:start + batch_size])


def evaluate_texts(model: TextVAE, texts: list[str], iw_samples: int = 100, seed: int = 0, precision: str = "fp32",
                   progress: bool = False) -> dict:
    """Importance-weighted NLL per text and perplexity, negative ELBO, KL, MI and active units (nats per text).
    Perplexity is exp(sum of NLL / number of predicted tokens), each text's tokens and its <eos> counted."""
    from .evaluate import evaluate

    if not texts:
        raise VaekitError("no texts to evaluate")
    report = evaluate(model, batches_of(model, texts, 500), iw_samples=iw_samples, seed=seed, precision=precision,
                      progress=progress, total=len(texts))
    tokens = sum(min(len(ids), model.config.max_tokens) + 1 for ids in model.tokenizer.encode_batch(texts))
    report["tokens"] = tokens
    report["perplexity"] = float(np.exp(report["per_item"]["iw_nll"].sum() / tokens))
    report["neg_elbo_perplexity"] = float(np.exp(report["per_item"]["neg_elbo"].sum() / tokens))
    return report


def _ngrams(words: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]


def distinct_n(texts: list[str], n: int) -> float:
    """Distinct-n (Li et al. 2016): unique n-grams / all n-grams over a set of texts (lowercased words)."""
    grams = [g for t in texts for g in _ngrams(t.lower().split(), n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def self_bleu(texts: list[str]) -> float:
    """Self-BLEU (Zhu et al. 2018): each text's sentence BLEU (sacrebleu, lowercased) against the other texts of
    the same set as references, averaged; in [0, 1]. 1 means the variations are copies of each other."""
    import sacrebleu

    if len(texts) < 2:
        return float("nan")
    scores = [sacrebleu.sentence_bleu(t, texts[:i] + texts[i + 1:], lowercase=True).score / 100 for i, t in enumerate(texts)]
    return float(np.mean(scores))


def variation_metrics(inputs: list[str], outputs: list[list[str]], encoder_name: str | None) -> dict:
    """Similarity to the input (cosine of sentence embeddings), BLEU to the input, distinct-1/2 and self-BLEU
    within each input's set of variations; all averaged over inputs."""
    import sacrebleu

    from .semantic import embed

    flat = [o for group in outputs for o in group]
    owners = [i for i, group in enumerate(outputs) for _ in group]
    if not flat:
        return {"variations_per_input": 0.0}
    input_vecs = embed(inputs, encoder_name)
    output_vecs = embed(flat, encoder_name)
    similarity = (input_vecs[owners] * output_vecs).sum(-1)
    bleu = [sacrebleu.sentence_bleu(o, [inputs[i]], lowercase=True).score / 100 for o, i in zip(flat, owners)]
    groups = [g for g in outputs if g]
    return {
        "similarity_to_input": float(similarity.mean()),
        "bleu_to_input": float(np.mean(bleu)),
        "distinct_1": float(np.mean([distinct_n(g, 1) for g in groups])),
        "distinct_2": float(np.mean([distinct_n(g, 2) for g in groups])),
        "self_bleu": float(np.nanmean([self_bleu(g) for g in groups])) if any(len(g) > 1 for g in groups) else float("nan"),
        "variations_per_input": len(flat) / len(inputs),
    }


def variation_report(model: TextVAE, texts: list[str], n: int = 5, temperature: float = 0.5, strategy: str = "sample",
                     top_p: float = 0.9, seed: int = 0, encoder_name: str | None = None, progress: bool = False,
                     min_similarity: float | None = None, prompted: bool = False, examples: int = 5) -> dict:
    """vaekit's variations of each text beside two baselines: "copy" (the input n times) and "prior" (n samples
    from the prior that ignore the input: the design documents' recipe; a model conditioned on a text embedding
    gets the next input's embedding); with ``prompted`` a third, the bundled instruct LM asked to rewrite each
    text (vaekit.prompted). With ``min_similarity`` the variations go through vary's similarity
    post-filter (``vaekit vary --min-similarity``): candidates drawn in rounds, those at least that similar to the
    input kept, the most similar n returned. It ranks by the same sentence encoder that scores the report. The first
    ``examples`` inputs are returned with their variations."""
    from tqdm.auto import tqdm

    from .semantic import similarity_function

    similarity = similarity_function(encoder_name)

    def variations(i: int, text: str) -> list[str]:
        return model.vary(text, n=n, temperature=temperature, strategy=strategy, top_p=top_p, seed=seed + i,
                          min_similarity=min_similarity, similarity=similarity).texts

    ours = [variations(i, text) for i, text in enumerate(tqdm(texts, desc="varying", unit="text", disable=not progress))]
    generator = torch.Generator().manual_seed(seed)
    if model.config.condition_dim:
        # a model conditioned on a text embedding cannot sample without one: the baseline that ignores the input
        # samples the prior under the next input's condition
        prior = [model.sample(n, generator=generator, strategy=strategy, top_p=top_p,
                              condition_text=texts[(i + 1) % len(texts)]) for i in range(len(texts))]
    else:
        flat = model.sample(n * len(texts), generator=generator, strategy=strategy, top_p=top_p)
        prior = [flat[i * n:(i + 1) * n] for i in range(len(texts))]
    systems = {"vaekit": ours, "copy": [[t] * n for t in texts], "prior": prior}
    if prompted:
        from .prompted import prompted_variations

        systems["prompted"] = prompted_variations(texts, n, seed=seed)
    return {
        "inputs": len(texts), "n": n, "temperature": temperature, "strategy": strategy, "top_p": top_p,
        "min_similarity": min_similarity,
        "similarity_model": encoder_name or "all-MiniLM-L6-v2",
        "self_bleu_definition": "sacrebleu sentence BLEU (lowercased) of each variation against the other n-1 "
                                "variations of the same input, averaged; 0-1",
        "systems": {name: variation_metrics(texts, outputs, encoder_name) for name, outputs in systems.items()},
        "examples": [{"input": t, "variations": v} for t, v in zip(texts[:examples], ours[:examples])],
    }


def write_report_markdown(report: dict, path: Path) -> Path:
    from .config import atomic_write_text

    lines = [f"# Evaluation of {report.get('items', 0)} texts", "",
             "| metric | value |", "| --- | --- |"]
    for key in ("iw_nll", "neg_elbo", "rec", "kl", "perplexity", "mutual_information", "active_units"):
        if key in report:
            value = report[key]
            lines.append(f"| {key} | {value:.3f} |" if isinstance(value, float) else f"| {key} | {value} |")
    var = report.get("variations")
    if var:
        lines += ["", f"## Variations: {var['inputs']} inputs, n = {var['n']}, temperature {var['temperature']}, "
                      f"{var['strategy']} (top-p {var['top_p']})"
                      + (f", similarity post-filter >= {var['min_similarity']} (vaekit's row is ranked by the same "
                         "sentence model that scores it)" if var.get("min_similarity") is not None else ""), "",
                  "| system | similarity to input | BLEU to input | distinct-1 | distinct-2 | self-BLEU | variations/input |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for name, m in var["systems"].items():
            lines.append(f"| {name} | {m.get('similarity_to_input', float('nan')):.3f} | {m.get('bleu_to_input', float('nan')):.3f} | "
                         f"{m.get('distinct_1', float('nan')):.3f} | {m.get('distinct_2', float('nan')):.3f} | "
                         f"{m.get('self_bleu', float('nan')):.3f} | {m['variations_per_input']:.2f} |")
        lines += ["", f"Similarity: cosine of {var['similarity_model']} sentence embeddings. Self-BLEU: "
                      f"{var['self_bleu_definition']}.", "", "Examples:", ""]
        for ex in var["examples"]:
            lines.append(f"- **{ex['input']}**")
            lines += [f"  - {v}" for v in ex["variations"]]
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path
