"""vaekit train image|text, vaekit quickstart."""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import click
from click.core import ParameterSource

from .. import runs
from .. import distributed
from ..config import TrainConfig, choices
from ..conditions import DenseCondition
from ..data.images import BINARIZE
from ..data.tokenizer import TokenizerConfig
from ..errors import VaekitError
from ..models import ImageVAEConfig, LMTextVAEConfig, TextVAEConfig
from ..models.image import PRESETS as IMAGE_PRESETS
from ..models.text import PRESETS as TEXT_PRESETS
from ..quickstart import TEXT_MIN_STEPS, TEXT_MINUTES
from ..texts import BACKBONES

from .base import CONTEXT, Group, cli, data_option, device_option

# --- training ---------------------------------------------------------------------------
@cli.group(cls=Group, context_settings=CONTEXT)
def train():
    """Train a VAE into a run folder."""


RESUMABLE = {"data", "out", "epochs", "resume", "quiet", "early_stop", "max_minutes", "device", "compile_model"}


def run_control_options(f):
    """Options every `train` command shares: precision, stopping rules, learning-rate decay, resume/overwrite."""
    f = click.option("--quiet", is_flag=True, help="No progress bar.")(f)
    f = click.option("--overwrite", is_flag=True, help="Replace an existing run in --out.")(f)
    f = click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint, with its settings.")(f)
    f = click.option("--lr-schedule", type=click.Choice(choices(TrainConfig, "lr_schedule")), default="constant",
                     show_default=True,
                     help="Anneal the learning rate to 0 over the run: linear or cosine in the training's progress, "
                          "steps of --epochs or time of --max-minutes, whichever is further on (linear suits a "
                          "fixed time budget); wsd keeps the full rate and anneals linearly over the last fifth. "
                          "constant keeps it, or lowers it by --lr-decay.")(f)
    f = click.option("--lr-patience", type=click.IntRange(min=0), default=2, show_default=True,
                     help="Epochs without a better validation loss before --lr-decay applies.")(f)
    f = click.option("--lr-decay", type=click.FloatRange(0, 1, min_open=True), default=1.0, show_default=True,
                     help="Multiply the learning rate by this when validation stalls (1: never).")(f)
    f = click.option("--max-minutes", type=click.FloatRange(min=0), default=0.0, show_default=True,
                     help="Stop after this much training time: the epoch in progress ends early, is validated "
                          "and checkpointed (0: no limit).")(f)
    f = click.option("--early-stop", type=click.IntRange(min=0), default=0, show_default=True,
                     help="Stop after N epochs without a better validation loss (0: never).")(f)
    f = click.option("--compile", "compile_model", is_flag=True,
                     help="torch.compile the networks (pays a compile time up front; helps most on GPUs).")(f)
    f = device_option("auto", "Where to train: auto takes a CUDA GPU (this process's LOCAL_RANK under torchrun), "
                              "then Apple MPS, then the CPU.")(f)
    return click.option("--precision", type=click.Choice(choices(TrainConfig, "precision")), default="auto",
                        show_default=True,
                        help="auto: bf16 autocast where the CPU or GPU computes bf16 natively, else fp32; fp16 (GPUs "
                             "only) adds loss scaling. KL, log-softmax sums and the optimizer always stay fp32.")(f)


@train.command("image", context_settings=CONTEXT)
@data_option(required=False, help_extra=" Required unless --resume.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Run folder to write.")
@click.option("--preset", type=click.Choice(list(IMAGE_PRESETS)), default="default", show_default=True,
              help="seed: the design documents' network exactly (Conv 32/64 stride 2, Dense 16, latent 2). "
                   "default: wider, latent 32, for quality.")
@click.option("--latent-dim", type=click.IntRange(min=1), default=None, help="Latent dimensions (overrides the preset).")
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True,
              help="Total epochs; with --resume, the new total.")
@click.option("--batch-size", type=click.IntRange(min=1), default=128, show_default=True, help="Images per step.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True, help="Learning rate.")
@click.option("--optimizer", type=click.Choice(choices(TrainConfig, "optimizer")), default="adam", show_default=True)
@click.option("--val-fraction", type=click.FloatRange(0, 1, max_open=True), default=0.1, show_default=True,
              help="Fraction held out for validation each epoch (0 disables).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for the split, initialisation and sampling.")
@click.option("--loss", type=click.Choice(choices(ImageVAEConfig, "loss")), default="bce", show_default=True,
              help="Reconstruction term: Bernoulli (binary cross-entropy) or Gaussian (squared error).")
@click.option("--binarize", type=click.Choice(BINARIZE), default="none", show_default=True,
              help="none: grey levels as probabilities; threshold: pixel > 0.5; dynamic: a fresh Bernoulli draw "
                   "every time an image is seen.")
@click.option("--resize", metavar="HxW", default=None, help="Resize every image to H x W pixels (needed for mixed sizes).")
@click.option("--beta", type=click.FloatRange(min=0), default=1.0, show_default=True, help="Weight on the KL term.")
@click.option("--conditional", is_flag=True,
              help="Train a conditional VAE (Sohn et al. 2015) on the images' class labels (class sub-folders, "
                   "IDX label files, an .npz's y): sample, reconstruct and traverse then take --label.")
@run_control_options
@click.pass_context
def train_image_command(ctx, data, out, preset, latent_dim, epochs, batch_size, lr, optimizer, val_fraction,
                        seed, loss, binarize, resize, beta, conditional, precision, device, compile_model, early_stop,
                        max_minutes, lr_decay, lr_patience, lr_schedule, resume, overwrite, quiet):
    """Train an image VAE on your images.

    \b
    Examples:
      vaekit train image --data ../shared/data/mnist --out runs/mnist
      vaekit train image --data ../shared/data/mnist --out runs/seed --preset seed --binarize threshold --epochs 3
      vaekit train image --data ../shared/data/mnist --out runs/cvae --conditional
      vaekit train image --out runs/mnist --resume --epochs 20
    """
    from ..images import train_image

    _check_resume(ctx, resume, overwrite, data, RESUMABLE)
    training = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer,
                           val_fraction=val_fraction, seed=seed, precision=precision, beta=beta,
                           early_stop=early_stop, max_minutes=max_minutes, lr_decay=lr_decay, lr_patience=lr_patience,
                           lr_schedule=lr_schedule,
                           device=device, compile=compile_model)
    overrides = {"loss": loss}
    if latent_dim is not None:
        overrides["latent_dim"] = latent_dim
    run = train_image(data, out, preset=preset, model_overrides=overrides, training=training, binarize=binarize,
                      resize=resize, resume=resume, overwrite=overwrite, progress=not quiet, conditional=conditional,
                      epochs=epochs if resume and ctx.get_parameter_source("epochs") == ParameterSource.COMMANDLINE else None)
    _report_run(run, "image")


def _report_run(run, kind: str) -> None:
    """Where a training run went; an interrupted run exits 130 with the command that resumes it."""
    if not distributed.is_main():  # under torchrun, rank 0 speaks for the run
        return
    result = run.result
    best = f"{result.best_val_loss:.2f} nats" if result.best_val_loss is not None else "n/a"
    items = "images" if kind == "image" else "texts"
    click.echo(f"{result.status} after {result.epochs} epochs ({result.step} steps, "
               f"{result.items_per_second:,.0f} {items}/s); best validation negative ELBO {best}")
    click.echo(f"run folder: {run.run_dir}")
    for name in ("plots/curves.png", "plots/samples.png", "plots/reconstructions.png", "plots/latent.png", runs.SAMPLES_NAME):
        if (run.run_dir / name).exists():
            click.echo(f"  {run.run_dir / name}")
    click.echo(f"  TensorBoard: tensorboard --logdir {run.run_dir / 'tensorboard'}")
    if kind == "text":
        click.echo(f'  try: vaekit vary {run.run_dir} "a text like the ones you trained on" -n 5')
    if result.status == "interrupted":
        click.echo(f"interrupted: continue with `vaekit train {kind} --out {run.run_dir} --resume`", err=True)
        sys.exit(130)


TEXT_RESUMABLE = RESUMABLE | {"text_column", "title_column", "label_column", "tags_column", "encoding", "val_data",
                              "conditional", "condition_column"}


@train.command("text", context_settings=CONTEXT)
@click.option("--data", type=click.Path(path_type=Path), default=None,
              help="A .txt file (one text per line), a folder of .txt files (one document each, read recursively), "
                   "a .csv or .jsonl (see --text-column), or a .gz of any of these. Required unless --resume.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Run folder to write.")
@click.option("--text-column", default=None, help="CSV/JSONL column with the text (default: 'text' or 'content').")
@click.option("--title-column", default=None, help="CSV/JSONL column with a title, kept with each record.")
@click.option("--label-column", default=None, help="CSV/JSONL column with a label, stored with each text.")
@click.option("--tags-column", default=None,
              help="CSV/JSONL column with comma-separated tags (or a JSON list), stored with each text.")
@click.option("--conditional", is_flag=True,
              help="Train a conditional VAE (Sohn et al. 2015) on --label-column (one-hot) and/or --tags-column "
                   "(multi-hot): generate with --label / --tags.")
@click.option("--condition-embedding", type=click.Choice(["sentence", "word-vectors"]), default=None,
              help="Also condition on an embedding of --condition-column (or of each text): a sentence encoder, "
                   "or averaged word vectors (the bundled GloVe 6B 50d, --word-vectors FILE or "
                   "--train-word-vectors). Generate with "
                   "--condition-text or --keywords.")
@click.option("--condition-column", default=None, help="CSV/JSONL column whose text is embedded as the condition.")
@click.option("--sentence-encoder", default=None,
              help="sentence-transformers model name or folder for --condition-embedding sentence "
                   "(default: the bundled all-MiniLM-L6-v2).")
@click.option("--word-vectors", "word_vectors_file", type=click.Path(path_type=Path), default=None,
              help="word2vec (.txt/.bin), GloVe or fastText .vec file for --condition-embedding word-vectors "
                   "(default: the bundled GloVe 6B 50d).")
@click.option("--train-word-vectors", is_flag=True,
              help="Fit Word2Vec on the corpus for --condition-embedding word-vectors.")
@click.option("--constraint", "constraints", multiple=True, metavar="LABEL=TEXT",
              help="Constraint loss: pull the codes of texts labelled LABEL toward the code of TEXT (repeatable).")
@click.option("--constraint-weight", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Weight of the constraint loss: weight * max(0, ||mu(x) - mu(TEXT)||^2 - threshold).")
@click.option("--constraint-threshold", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Squared distance allowed before the constraint loss starts pulling.")
@click.option("--encoding", default="utf-8", show_default=True, help="Text encoding of the input files.")
@click.option("--val-data", type=click.Path(path_type=Path), default=None,
              help="A separate validation corpus (then --val-fraction is not used).")
@click.option("--unit", type=click.Choice(choices(TextVAEConfig, "unit")), default="sentence", show_default=True,
              help="Documents longer than --max-tokens are split into these units (document: truncate instead).")
@click.option("--max-tokens", type=click.IntRange(min=1), default=64, show_default=True,
              help="Longest text in tokens; longer ones are truncated (and counted in the log).")
@click.option("--tokenizer", "tokenizer_kind", type=click.Choice(choices(TokenizerConfig, "kind")), default="word", show_default=True,
              help="word: the --vocab-size most frequent words, others become <unk>; bpe: subword units.")
@click.option("--vocab-size", type=click.IntRange(min=8), default=20000, show_default=True, help="Vocabulary size, special tokens included.")
@click.option("--lowercase/--no-lowercase", default=True, show_default=True, help="Lowercase before tokenizing.")
@click.option("--pretokenized", is_flag=True, help="The text is already tokenized (e.g. Penn Treebank): split on whitespace only.")
@click.option("--preset", type=click.Choice(list(TEXT_PRESETS)), default="default", show_default=True,
              help="seed: the design documents' sizes (Embedding 64, BiGRU 32 -> BiGRU 16 -> Dense 16, latent 32); "
                   "default: embedding 256, BiGRU 256, GRU decoder 512, latent 32.")
@click.option("--backbone", type=click.Choice(BACKBONES), default="rnn", show_default=True,
              help="rnn: a GRU/LSTM VAE that learns the language from your corpus alone (--preset sizes it); "
                   "pretrained: a VAE between a pretrained sentence encoder and a pretrained causal LM (Optimus, "
                   "Li et al. 2020), whose English does not depend on the corpus size. Offline on bundled models. "
                   "Its defaults differ: --lr 5e-4, --free-bits 0.5, --ae-warmup-steps 300, --batch-size 16.")
@click.option("--decoder", "decoder_name", default=None,
              help="--backbone pretrained: a Hugging Face causal LM by hub name or local folder "
                   "[default: the bundled SmolLM2-135M-Instruct].")
@click.option("--encoder", "encoder_name", default=None,
              help="--backbone pretrained: a sentence-transformers or BERT-style encoder by name or folder "
                   "[default: the bundled all-MiniLM-L6-v2].")
@click.option("--finetune", type=click.Choice(choices(LMTextVAEConfig, "finetune")), default="lora", show_default=True,
              help="--backbone pretrained: train LoRA adapters on the frozen LM, the whole LM, or only z's injections.")
@click.option("--lora-rank", type=click.IntRange(min=1), default=8, show_default=True,
              help="--backbone pretrained: rank of the LoRA adapters (on the attention's q and v projections).")
@click.option("--encoder-finetune/--encoder-frozen", default=False, show_default=True,
              help="--backbone pretrained: fine-tune the sentence encoder too, or keep it frozen.")
@click.option("--word-hints/--no-word-hints", "hints", default=True, show_default=True,
              help="--backbone pretrained: the decoder also reads a random subset of each text's content words in its "
                   "prompt (none for 30%% of texts, and never when a likelihood is computed); vary then gives it the "
                   "input's words (vaekit vary --keep-words), so that variations keep the input's meaning.")
@click.option("--rnn", type=click.Choice(choices(TextVAEConfig, "rnn")), default=None, help="Recurrent cell for encoder and decoder.")
@click.option("--bidirectional/--unidirectional", default=True, show_default=True,
              help="Encoder reads each text both ways, or forward only (Bowman et al. 2016's encoder; training steps "
                   "about 1.2x faster at Sentence-VAE sizes).")
@click.option("--layers", type=click.IntRange(min=1), default=None, help="Recurrent layers in the encoder and the decoder.")
@click.option("--hidden", type=click.IntRange(min=1), default=None, help="Hidden units of encoder (per direction) and decoder.")
@click.option("--decoder-hidden", type=click.IntRange(min=1), default=None, help="Decoder hidden units (overrides --hidden).")
@click.option("--embedding-dim", type=click.IntRange(min=1), default=None, help="Word embedding size.")
@click.option("--latent-dim", type=click.IntRange(min=1), default=None, help="Latent dimensions.")
@click.option("--tie-embeddings", is_flag=True, help="Score output words with the input embedding matrix.")
@click.option("--output", "output_layer", type=click.Choice(choices(TextVAEConfig, "output")), default="softmax", show_default=True,
              help="Decoder output layer. softmax: score every word at every step; adaptive: the adaptive softmax "
                   "(Grave et al. 2017), frequent words in a small head and rarer ones in clusters behind it, an exact "
                   "distribution that makes a PTB training step about 1.6x faster (word vocabularies; not with --tie-embeddings).")
@click.option("--adaptive-cutoffs", default="", metavar="N,N,...",
              help="Cluster boundaries for --output adaptive, as word ids (frequency ranks) "
                   "[default: 2000,10000,50000, those below the vocabulary size].")
@click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), default=None, help="Dropout on embeddings and decoder outputs.")
@click.option("--word-dropout", type=click.FloatRange(0, 1, max_open=True), default=0.0, show_default=True,
              help="Replace decoder inputs by <unk> with this probability (Bowman et al. 2016), forcing use of z.")
@click.option("--kl-schedule", type=click.Choice(choices(TrainConfig, "kl_schedule")), default="linear",
              show_default=True, help="KL weight over training: annealing (Bowman et al. 2016) or cyclical (Fu et al. 2019).")
@click.option("--kl-warmup-steps", type=click.IntRange(min=0), default=0, show_default=True,
              help="Steps for linear/logistic annealing to reach --beta (0: a third of training).")
@click.option("--kl-cycles", type=click.IntRange(min=1), default=4, show_default=True, help="Cycles for --kl-schedule cyclical.")
@click.option("--ae-warmup-steps", type=click.IntRange(min=0), default=0, show_default=True,
              help="Steps at KL weight 0 before the KL schedule starts: an autoencoder warm start (Li et al. 2019).")
@click.option("--free-bits", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Nats per latent dimension below which KL is not penalised (Kingma et al. 2016).")
@click.option("--beta", type=click.FloatRange(min=0), default=1.0, show_default=True, help="Final weight on the KL term.")
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True, help="Total epochs; with --resume, the new total.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True, help="Texts per step.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True, help="Learning rate.")
@click.option("--optimizer", type=click.Choice(choices(TrainConfig, "optimizer")), default="adam", show_default=True)
@click.option("--grad-clip", type=click.FloatRange(min=0), default=5.0, show_default=True, help="Clip the gradient norm (0: off).")
@click.option("--val-fraction", type=click.FloatRange(0, 1, max_open=True), default=0.1, show_default=True,
              help="Fraction of documents held out for validation.")
@click.option("--seed", type=int, default=0, show_default=True)
@run_control_options
@click.pass_context
def train_text_command(ctx, data, out, text_column, title_column, label_column, tags_column, conditional,
                       condition_embedding, condition_column, sentence_encoder, word_vectors_file, train_word_vectors,
                       constraints,
                       constraint_weight, constraint_threshold, encoding, val_data, unit, max_tokens,
                       tokenizer_kind, vocab_size, lowercase, pretokenized, preset, backbone, decoder_name, encoder_name,
                       finetune, lora_rank, encoder_finetune, hints, rnn, bidirectional, layers, hidden,
                       decoder_hidden,
                       embedding_dim, latent_dim, tie_embeddings, output_layer, adaptive_cutoffs, dropout, word_dropout,
                       kl_schedule, kl_warmup_steps,
                       kl_cycles, ae_warmup_steps, free_bits, beta, epochs, batch_size, lr, optimizer, grad_clip,
                       val_fraction, seed,
                       precision, device, compile_model, early_stop, max_minutes, lr_decay, lr_patience, lr_schedule, resume,
                       overwrite, quiet):
    """Train a text VAE on your texts, to generate variations of a given text.

    \b
    Examples:
      vaekit train text --data headlines.txt --out runs/headlines
      vaekit train text --data posts.csv --text-column content --unit sentence --out runs/blog
      vaekit train text --data ../shared/data/ptb/ptb.train.txt --val-data ../shared/data/ptb/ptb.valid.txt \\
          --pretokenized --out runs/ptb
    """
    from ..data.text import ReadOptions
    from ..texts import train_text

    _check_resume(ctx, resume, overwrite, data, TEXT_RESUMABLE)
    training = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer, grad_clip=grad_clip,
                           val_fraction=val_fraction, seed=seed, precision=precision, early_stop=early_stop, beta=beta,
                           kl_schedule=kl_schedule, kl_warmup_steps=kl_warmup_steps, kl_cycles=kl_cycles,
                           ae_warmup_steps=ae_warmup_steps, free_bits=free_bits, max_minutes=max_minutes,
                           lr_decay=lr_decay, lr_patience=lr_patience, lr_schedule=lr_schedule,
                           device=device, compile=compile_model)
    overrides = {"word_dropout": word_dropout, "tie_embeddings": tie_embeddings, "output": output_layer}
    if adaptive_cutoffs:
        if output_layer != "adaptive":
            raise VaekitError("--adaptive-cutoffs needs --output adaptive")
        try:
            overrides["adaptive_cutoffs"] = tuple(int(c) for c in adaptive_cutoffs.split(","))
        except ValueError:
            raise VaekitError(f"--adaptive-cutoffs {adaptive_cutoffs}: write increasing word ids, e.g. 2000,10000") from None
    if constraints:
        pairs = [c.partition("=") for c in constraints]
        for c, (label, sep, text) in zip(constraints, pairs):
            if not sep or not label.strip() or not text.strip():
                raise VaekitError(f"--constraint {c}: write LABEL=TEXT")
        overrides.update(constraint_labels=tuple(p[0].strip() for p in pairs),
                         constraint_texts=tuple(p[2].strip() for p in pairs),
                         constraint_weight=constraint_weight, constraint_threshold=constraint_threshold)
    if rnn:
        overrides["rnn"] = rnn
    if not bidirectional:
        overrides["bidirectional"] = False
    if embedding_dim:
        overrides["embedding_dim"] = embedding_dim
    if latent_dim:
        overrides["latent_dim"] = latent_dim
    if dropout is not None:
        overrides["dropout"] = dropout
    if hidden or layers:
        base = TEXT_PRESETS[preset]
        size = hidden or base["encoder_hidden"][0]
        overrides["encoder_hidden"] = (size,) * (layers or len(base["encoder_hidden"]))
        overrides["decoder_hidden"] = hidden or base["decoder_hidden"]
        overrides["decoder_layers"] = layers or base["decoder_layers"]
    if decoder_hidden:
        overrides["decoder_hidden"] = decoder_hidden
    reading = ReadOptions(text_column=text_column, title_column=title_column, label_column=label_column,
                          tags_column=tags_column, condition_column=condition_column, encoding=encoding)
    condition = None
    if condition_embedding is not None:
        condition = DenseCondition(condition_embedding, encoder=sentence_encoder, train=train_word_vectors,
                                   word_vectors=str(word_vectors_file) if word_vectors_file else None)
    elif condition_column or word_vectors_file or train_word_vectors or sentence_encoder:
        raise VaekitError("--condition-column, --sentence-encoder and the word-vector options need --condition-embedding")
    pretrained = None
    if backbone == "pretrained":
        rnn_only = [name for name in ("rnn", "layers", "hidden", "decoder_hidden", "embedding_dim", "dropout",
                                      "tokenizer_kind", "vocab_size", "output_layer", "adaptive_cutoffs", "preset",
                                      "tie_embeddings", "word_dropout")
                    if ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE]
        if rnn_only:
            raise VaekitError(f"--{rnn_only[0].replace('_layer', '').replace('_kind', '').replace('_', '-')} is an "
                              "option of --backbone rnn; the pretrained backbone has its own network and tokenizer")
        # defaults measured for this backbone (README): a smaller rate for the adapters (the new layers get 10x),
        # free bits and an autoencoder warm start so that z is read before the KL pulls it to the prior
        for name, value in (("lr", 5e-4), ("free_bits", 0.5), ("ae_warmup_steps", 300), ("batch_size", 16)):
            if ctx.get_parameter_source(name) != ParameterSource.COMMANDLINE:
                training = dataclasses.replace(training, **{name: value})
        pretrained = {"decoder": decoder_name, "encoder": encoder_name, "finetune": finetune, "lora_rank": lora_rank,
                      "lora_alpha": 2 * lora_rank, "encoder_finetune": encoder_finetune, "hints": hints,
                      **({"latent_dim": latent_dim} if latent_dim else {})}
    else:
        given = [name for name in ("decoder_name", "encoder_name", "finetune", "lora_rank", "encoder_finetune", "hints")
                 if ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE]
        if given:
            raise VaekitError(f"--{given[0].replace('_name', '').replace('_', '-')} needs --backbone pretrained")
    run = train_text(data, out, reading=reading, val_data=val_data, backbone=pretrained,
                     tokenizer_config=TokenizerConfig(kind=tokenizer_kind, vocab_size=vocab_size, lowercase=lowercase,
                                                      pretokenized=pretokenized),
                     preset=preset, model_overrides=overrides, training=training, unit=unit, max_tokens=max_tokens,
                     resume=resume, overwrite=overwrite, progress=not quiet, conditional=conditional, condition=condition,
                     epochs=epochs if resume and ctx.get_parameter_source("epochs") == ParameterSource.COMMANDLINE else None)
    _report_run(run, "text")


def _check_resume(ctx, resume, overwrite, data, allowed) -> None:
    if resume:
        changed = [p for p in ctx.params if p not in allowed
                   and ctx.get_parameter_source(p) == ParameterSource.COMMANDLINE]
        if changed:
            raise VaekitError(f"--{changed[0].replace('_', '-')} cannot change on --resume; the run keeps the "
                              "settings in its config.json (only --epochs and --early-stop can change)")
        if overwrite:
            raise VaekitError("--resume and --overwrite contradict each other; choose one")
    elif data is None:
        raise VaekitError("--data is required (unless --resume)")


@cli.command(context_settings=CONTEXT)
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/quickstart"), show_default=True,
              help="Image run folder (the text run goes to OUT-text); an existing one gets a numbered suffix.")
@click.option("--only", type=click.Choice(["image", "text"]), default=None, help="Run only one of the two parts.")
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help="Training epochs (image: 80; text: 12 with --text-backbone rnn, at most 1 otherwise).")
@click.option("--text-backbone", type=click.Choice(BACKBONES), default="pretrained", show_default=True,
              help="pretrained: a VAE on the bundled SmolLM2 decoder and MiniLM encoder with word hints, which writes "
                   "English and keeps the input's meaning; rnn: a small GRU VAE that learns English from the corpus "
                   "alone (faster, broken English).")
@click.option("--text-minutes", type=click.FloatRange(min=0, min_open=True), default=TEXT_MINUTES, show_default=True,
              help="Training time of the pretrained text model.")
@click.option("--text-steps", type=click.IntRange(min=1), default=TEXT_MIN_STEPS, show_default=True,
              help="Steps of 16 sentences the pretrained text model trains at least, however long they take "
                   "(fewer left its variations unreadable).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def quickstart(out, only, epochs, text_backbone, text_minutes, text_steps, quiet):
    """Train two small VAEs on real data bundled with the dependencies, in a few minutes on 2 CPU cores:
    an image VAE on scikit-learn's 8x8 handwritten digits (samples, reconstructions, latent plot, curves),
    and a text VAE on gensim's Lee news corpus, then print variations of three of its sentences."""
    from ..quickstart import LEE_EXAMPLES, run_image_quickstart, run_text_quickstart

    if only in (None, "image"):
        run = run_image_quickstart(out, **({"epochs": epochs} if epochs else {}), progress=not quiet)
        _report_run(run, "image")
    if only in (None, "text"):
        run = run_text_quickstart(out.with_name(out.name + "-text"), epochs, progress=not quiet,
                                  backbone=text_backbone, minutes=text_minutes, min_steps=text_steps)
        _report_run(run, "text")
        for sentence in LEE_EXAMPLES:
            click.echo(f"\nvariations of: {sentence}")
            for i, v in enumerate(run.model.vary(sentence, n=3, seed=0), 1):
                click.echo(f"  {i}. {v.text}")
