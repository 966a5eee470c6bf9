"""The ``vaekit`` command. Thin: parses options, calls the library, prints where things went.

A user's mistake (bad path, bad file, bad flag) prints one line, ``error: ...``, and exits with code 2.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import sys
from pathlib import Path

import click
import numpy as np
from click.core import ParameterSource

from . import runs
from .anomaly import SCORES
from . import distributed
from .distributed import DEVICES, resolve_device
from .errors import NonFiniteLossError, VaekitError, require_text
from .models import modality_of

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class Group(click.Group):
    """Turns VaekitError into ``error: ...`` with exit code 2, and a stopped run into a friendly line."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except VaekitError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except NonFiniteLossError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)


@click.group(cls=Group, context_settings=CONTEXT)
@click.version_option(package_name="vaekit")
def cli():
    """Train variational autoencoders on your own images and texts, then use them.

    Start with `vaekit quickstart`; see `vaekit COMMAND --help` for each command.
    """
    logging.basicConfig(level=logging.WARNING, format="vaekit: %(message)s")


# --- shared options -------------------------------------------------------------------------
def run_argument(f):
    return click.argument("run", type=click.Path(path_type=Path))(f)


def data_option(required: bool = True, help_extra: str = ""):
    return click.option("--data", type=click.Path(path_type=Path), required=required,
                        help="Images: an IDX file or folder (MNIST style), an .npz/.npy array, or a folder of "
                             "PNG/JPEG files (sub-folders are class labels)." + help_extra)


def image_input_options(f):
    """--split, --resize, --binarize and --seed, for the commands that read images with a model."""
    f = click.option("--seed", type=int, default=0, show_default=True,
                     help="Seed for stochastic binarization and sampling.")(f)
    f = click.option("--binarize", type=click.Choice(["none", "threshold", "dynamic"]), default=None,
                     help="Images: how pixels are binarized before encoding; default: as the run was trained "
                          "(dynamic becomes one fixed stochastic binarization drawn with --seed).")(f)
    f = click.option("--resize", metavar="HxW", default=None, help="Images: resize every image to H x W pixels.")(f)
    return click.option("--split", type=click.Choice(["train", "test"]), default="test", show_default=True,
                        help="Images: in a folder holding both MNIST-style sets, which one to read.")(f)


def use_data_options(f):
    """--data with the image input options."""
    return data_option()(image_input_options(f))


def _load_model(run: Path, device: str = "cpu"):
    from .models import load

    return load(run, map_location=str(resolve_device(device)))


def device_option(default: str, help: str):
    """--device (auto, cpu, cuda, mps; see distributed.resolve_device) with a command's own default and help."""
    return click.option("--device", type=click.Choice(DEVICES), default=default, show_default=True, help=help)


# the commands that push whole data sets through a model (evaluate, encode, calibrate, score, latent-plot)
data_device_option = device_option("auto", "Where the model runs: auto takes a CUDA GPU, then Apple MPS, then the "
                                           "CPU. The seed gives the same draws on any device.")
# the commands that generate from a few items (vary, sample, reconstruct, interpolate, traverse)
generation_device_option = device_option("cpu", "Where the model runs. The CPU by default: starting a GPU takes "
                                                "longer than decoding a few codes; ask for cuda or auto for large -n. "
                                                "The seed gives the same draws on any device.")


def _load_data(data: Path, resize: str | None, split: str):
    from .data.images import load_images

    return load_images(data, resize=resize, split=split)


def _binarize(run: Path, chosen: str | None) -> str:
    from .images import run_binarize

    return chosen or run_binarize(run)


def _output(out: Path, option: str, suffixes: tuple[str, ...]) -> Path:
    """Check an output path before any work: not a folder, and one of the formats the command writes."""
    if out.is_dir() or str(out).endswith(("/", "\\")):
        raise VaekitError(f"{option} {out}: is a folder; give a file name ending in {' or '.join(suffixes)}")
    if out.suffix.lower() not in suffixes:
        raise VaekitError(f"{option} {out}: cannot write {out.suffix or 'a file without a suffix'}; give a file "
                          f"ending in {' or '.join(suffixes)}")
    return out


def _done(what: str, path: Path) -> None:
    click.echo(f"{what}: {path}")


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
    f = click.option("--lr-schedule", type=click.Choice(["constant", "linear", "cosine", "wsd"]), default="constant",
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
    return click.option("--precision", type=click.Choice(["auto", "bf16", "fp16", "fp32"]), default="auto",
                        show_default=True,
                        help="auto: bf16 autocast where the CPU or GPU computes bf16 natively, else fp32; fp16 (GPUs "
                             "only) adds loss scaling. KL, log-softmax sums and the optimizer always stay fp32.")(f)


@train.command("image", context_settings=CONTEXT)
@data_option(required=False, help_extra=" Required unless --resume.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Run folder to write.")
@click.option("--preset", type=click.Choice(["seed", "default"]), default="default", show_default=True,
              help="seed: the design documents' network exactly (Conv 32/64 stride 2, Dense 16, latent 2). "
                   "default: wider, latent 32, for quality.")
@click.option("--latent-dim", type=click.IntRange(min=1), default=None, help="Latent dimensions (overrides the preset).")
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True,
              help="Total epochs; with --resume, the new total.")
@click.option("--batch-size", type=click.IntRange(min=1), default=128, show_default=True, help="Images per step.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True, help="Learning rate.")
@click.option("--optimizer", type=click.Choice(["adam", "rmsprop", "adamw"]), default="adam", show_default=True)
@click.option("--val-fraction", type=click.FloatRange(0, 1, max_open=True), default=0.1, show_default=True,
              help="Fraction held out for validation each epoch (0 disables).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for the split, initialisation and sampling.")
@click.option("--loss", type=click.Choice(["bce", "mse"]), default="bce", show_default=True,
              help="Reconstruction term: Bernoulli (binary cross-entropy) or Gaussian (squared error).")
@click.option("--binarize", type=click.Choice(["none", "threshold", "dynamic"]), default="none", show_default=True,
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
    from .config import TrainConfig
    from .images import train_image

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
                   "or averaged word vectors (--word-vectors FILE or --train-word-vectors). Generate with "
                   "--condition-text or --keywords.")
@click.option("--condition-column", default=None, help="CSV/JSONL column whose text is embedded as the condition.")
@click.option("--sentence-encoder", default=None,
              help="sentence-transformers model name or folder for --condition-embedding sentence "
                   "(default: the bundled all-MiniLM-L6-v2).")
@click.option("--word-vectors", "word_vectors_file", type=click.Path(path_type=Path), default=None,
              help="word2vec (.txt/.bin), GloVe or fastText .vec file for --condition-embedding word-vectors.")
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
@click.option("--unit", type=click.Choice(["sentence", "paragraph", "document"]), default="sentence", show_default=True,
              help="Documents longer than --max-tokens are split into these units (document: truncate instead).")
@click.option("--max-tokens", type=click.IntRange(min=1), default=64, show_default=True,
              help="Longest text in tokens; longer ones are truncated (and counted in the log).")
@click.option("--tokenizer", "tokenizer_kind", type=click.Choice(["word", "bpe"]), default="word", show_default=True,
              help="word: the --vocab-size most frequent words, others become <unk>; bpe: subword units.")
@click.option("--vocab-size", type=click.IntRange(min=8), default=20000, show_default=True, help="Vocabulary size, special tokens included.")
@click.option("--lowercase/--no-lowercase", default=True, show_default=True, help="Lowercase before tokenizing.")
@click.option("--pretokenized", is_flag=True, help="The text is already tokenized (e.g. Penn Treebank): split on whitespace only.")
@click.option("--preset", type=click.Choice(["seed", "default"]), default="default", show_default=True,
              help="seed: the design documents' sizes (Embedding 64, BiGRU 32 -> BiGRU 16 -> Dense 16, latent 32); "
                   "default: embedding 256, BiGRU 256, GRU decoder 512, latent 32.")
@click.option("--backbone", type=click.Choice(["rnn", "pretrained"]), default="rnn", show_default=True,
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
@click.option("--finetune", type=click.Choice(["lora", "full", "none"]), default="lora", show_default=True,
              help="--backbone pretrained: train LoRA adapters on the frozen LM, the whole LM, or only z's injections.")
@click.option("--lora-rank", type=click.IntRange(min=1), default=8, show_default=True,
              help="--backbone pretrained: rank of the LoRA adapters (on the attention's q and v projections).")
@click.option("--encoder-finetune/--encoder-frozen", default=False, show_default=True,
              help="--backbone pretrained: fine-tune the sentence encoder too, or keep it frozen.")
@click.option("--rnn", type=click.Choice(["gru", "lstm"]), default=None, help="Recurrent cell for encoder and decoder.")
@click.option("--bidirectional/--unidirectional", default=True, show_default=True,
              help="Encoder reads each text both ways, or forward only (Bowman et al. 2016's encoder; training steps "
                   "about 1.2x faster at Sentence-VAE sizes).")
@click.option("--layers", type=click.IntRange(min=1), default=None, help="Recurrent layers in the encoder and the decoder.")
@click.option("--hidden", type=click.IntRange(min=1), default=None, help="Hidden units of encoder (per direction) and decoder.")
@click.option("--decoder-hidden", type=click.IntRange(min=1), default=None, help="Decoder hidden units (overrides --hidden).")
@click.option("--embedding-dim", type=click.IntRange(min=1), default=None, help="Word embedding size.")
@click.option("--latent-dim", type=click.IntRange(min=1), default=None, help="Latent dimensions.")
@click.option("--tie-embeddings", is_flag=True, help="Score output words with the input embedding matrix.")
@click.option("--output", "output_layer", type=click.Choice(["softmax", "adaptive"]), default="softmax", show_default=True,
              help="Decoder output layer. softmax: score every word at every step; adaptive: the adaptive softmax "
                   "(Grave et al. 2017), frequent words in a small head and rarer ones in clusters behind it, an exact "
                   "distribution that makes a PTB training step about 1.6x faster (word vocabularies; not with --tie-embeddings).")
@click.option("--adaptive-cutoffs", default="", metavar="N,N,...",
              help="Cluster boundaries for --output adaptive, as word ids (frequency ranks) "
                   "[default: 2000,10000,50000, those below the vocabulary size].")
@click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), default=None, help="Dropout on embeddings and decoder outputs.")
@click.option("--word-dropout", type=click.FloatRange(0, 1, max_open=True), default=0.0, show_default=True,
              help="Replace decoder inputs by <unk> with this probability (Bowman et al. 2016), forcing use of z.")
@click.option("--kl-schedule", type=click.Choice(["constant", "linear", "logistic", "cyclical"]), default="linear",
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
@click.option("--optimizer", type=click.Choice(["adam", "rmsprop", "adamw"]), default="adam", show_default=True)
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
                       finetune, lora_rank, encoder_finetune, rnn, bidirectional, layers, hidden,
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
    from .config import TrainConfig
    from .data.tokenizer import TokenizerConfig
    from .texts import train_text

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
        from .models.text import PRESETS as TEXT_PRESETS

        base = TEXT_PRESETS[preset]
        size = hidden or base["encoder_hidden"][0]
        overrides["encoder_hidden"] = (size,) * (layers or len(base["encoder_hidden"]))
        overrides["decoder_hidden"] = hidden or base["decoder_hidden"]
        overrides["decoder_layers"] = layers or base["decoder_layers"]
    if decoder_hidden:
        overrides["decoder_hidden"] = decoder_hidden
    source = {"text_column": text_column, "title_column": title_column, "label_column": label_column,
              "tags_column": tags_column, "condition_column": condition_column, "encoding": encoding}
    condition = None
    if condition_embedding == "sentence":
        condition = {"kind": "sentence", "encoder": sentence_encoder}
    elif condition_embedding == "word-vectors":
        if (word_vectors_file is None) == (not train_word_vectors):
            raise VaekitError("--condition-embedding word-vectors: give --word-vectors FILE or --train-word-vectors")
        condition = {"kind": "word-vectors", "word_vectors": str(word_vectors_file) if word_vectors_file else None}
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
                      "lora_alpha": 2 * lora_rank, "encoder_finetune": encoder_finetune,
                      **({"latent_dim": latent_dim} if latent_dim else {})}
    else:
        given = [name for name in ("decoder_name", "encoder_name", "finetune", "lora_rank", "encoder_finetune")
                 if ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE]
        if given:
            raise VaekitError(f"--{given[0].replace('_name', '').replace('_', '-')} needs --backbone pretrained")
    run = train_text(data, out, source=source, val_data=val_data, backbone=pretrained,
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
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Training epochs (image: 80, text: 12).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def quickstart(out, only, epochs, quiet):
    """Train two small VAEs on real data bundled with the dependencies, in a few minutes on 2 CPU cores:
    an image VAE on scikit-learn's 8x8 handwritten digits (samples, reconstructions, latent plot, curves),
    and a text VAE on gensim's Lee news corpus, then print variations of three of its sentences."""
    from .quickstart import LEE_EXAMPLES, run_image_quickstart, run_text_quickstart

    if only in (None, "image"):
        run = run_image_quickstart(out, **({"epochs": epochs} if epochs else {}), progress=not quiet)
        _report_run(run, "image")
    if only in (None, "text"):
        run = run_text_quickstart(out.with_name(out.name + "-text"), **({"epochs": epochs} if epochs else {}),
                                  progress=not quiet)
        _report_run(run, "text")
        for sentence in LEE_EXAMPLES:
            click.echo(f"\nvariations of: {sentence}")
            for i, v in enumerate(run.model.vary(sentence, n=3, seed=0), 1):
                click.echo(f"  {i}. {v.text}")


# --- using a trained model ----------------------------------------------------------------
def _is_text(model) -> bool:
    return modality_of(model) == "text"


def _need(value, option: str, kind: str):
    if value is None or value == ():
        raise VaekitError(f"{option} is required for {kind} models")
    return value


def text_source_options(f):
    f = click.option("--encoding", default="utf-8", show_default=True, help="Text models: encoding of --data.")(f)
    f = click.option("--text-column", default=None, help="Text models: CSV/JSONL column with the text.")(f)
    return f


def label_column_option(f):
    return click.option("--label-column", default=None,
                        help="Text models: CSV/JSONL column with a label per text (colours plots, kept in outputs).")(f)


def _source(text_column, encoding, label_column=None) -> dict:
    return {"text_column": text_column, "encoding": encoding, "label_column": label_column}


def _items(run: Path, model, data: Path, split, resize, binarize, seed, text_column, encoding, label_column=None,
           keep_texts: bool = False, limit: int | None = None, anomaly_key: str | None = None):
    from .items import model_items

    return model_items(model, data, binarize=None if _is_text(model) else _binarize(run, binarize), resize=resize,
                       split=split, seed=seed, source=_source(text_column, encoding, label_column),
                       keep_texts=keep_texts, limit=limit, anomaly_key=anomaly_key)


def _nonempty(texts, verb: str) -> list[str]:
    """The TEXT arguments as a list; an empty or blank one is an error that says which, by its place among them
    (interpolate chains them in pairs, so the model's own check could not say which TEXT)."""
    return [require_text(text, f"TEXT {i} of {len(texts)}", verb) for i, text in enumerate(texts, start=1)]


def _echo_texts(texts, out: Path | None, what: str) -> None:
    if out is not None:
        from .config import atomic_write_text

        atomic_write_text(out, "".join(t + "\n" for t in texts))
        _done(what, out)
    else:
        for text in texts:
            click.echo(text)


def constraint_options(f):
    """Post-filters and latent regions shared by vary and sample (text models)."""
    f = click.option("--max-draws", type=click.IntRange(min=1), default=200, show_default=True,
                     help="Most candidates (vary) or codes (sample) looked at to satisfy the constraints; the "
                          "command says how many passed and never loops forever.")(f)
    f = click.option("--radius", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
                     help="Radius of the --near/--avoid regions, in prior standard deviations.")(f)
    f = click.option("--avoid", default=None, metavar="TEXT",
                     help="Reject codes within --radius of this text's code.")(f)
    f = click.option("--max-length", type=click.IntRange(min=1), default=None, help="At most this many words.")(f)
    f = click.option("--min-length", type=click.IntRange(min=1), default=None, help="At least this many words.")(f)
    f = click.option("--min-similarity", type=click.FloatRange(-1, 1), default=None,
                     help="Keep texts whose sentence-embedding cosine similarity to the input (vary) or to "
                          "--near (sample) is at least this.")(f)
    f = click.option("--ban", multiple=True, metavar="WORD",
                     help="A word that must not appear (repeatable): masked while decoding, so it never can.")(f)
    f = click.option("--require", multiple=True, metavar="WORD",
                     help="A word every output must contain (repeatable); a post-filter.")(f)
    f = click.option("--keywords", default=None, metavar="'A, B'",
                     help="Text-embedding conditional models: keywords to move toward (embedded as one text).")(f)
    f = click.option("--condition-text", default=None, metavar="TEXT",
                     help="Text-embedding conditional models: a sentence to move toward.")(f)
    f = click.option("--tags", default=None, metavar="A,B",
                     help="Conditional models with tags: the tags to write with (comma separated).")(f)
    return click.option("--label", default=None,
                        help="Conditional models: the label to write with (vary: keep the content, change the label).")(f)


def _condition_text(text: str | None, keywords: str | None) -> str | None:
    if text is not None and keywords is not None:
        raise VaekitError("give --condition-text or --keywords, not both")
    if keywords is not None:
        from .data.text import parse_tags

        return ", ".join(parse_tags(keywords))
    return text


def _tags(value: str | None) -> list[str] | None:
    from .data.text import parse_tags

    return list(parse_tags(value)) if value else None


def _constraint_line(drawn: int, passed: int, rejected: dict, shown: int) -> str:
    reasons = ", ".join(f"{k} {v}" for k, v in rejected.items() if v)
    return f"({passed} of {drawn} candidates met the constraints{'; rejected: ' + reasons if reasons else ''}; showing {shown})"


@cli.command(context_settings=CONTEXT)
@run_argument
@click.argument("text")
@click.option("-n", "n", type=click.IntRange(min=0), default=5, show_default=True,
              help="How many variations (at most 100; more is capped with a message).")
@click.option("--temperature", type=click.FloatRange(min=0), default=0.5, show_default=True,
              help="Spread of the codes drawn around the text's posterior: 1 samples it, 0 decodes its mean; "
                   "lower keeps variations closer to the input.")
@click.option("--strategy", type=click.Choice(["sample", "beam", "greedy"]), default="sample", show_default=True,
              help="How each code is decoded: nucleus sampling, beam search or greedy.")
@click.option("--top-p", type=click.FloatRange(0, 1, min_open=True), default=0.9, show_default=True,
              help="Nucleus size for --strategy sample.")
@click.option("--seed", type=int, default=None, help="Seed for repeatable variations.")
@click.option("--keep-copies", is_flag=True, help="Keep variations identical to the input.")
@click.option("--source-label", default=None,
              help="Conditional models: the input's own label (default: the most likely one under the model).")
@click.option("--source-tags", default=None, metavar="A,B",
              help="Conditional models with tags: the input's own tags (default: none).")
@constraint_options
@click.option("--similarity-model", default=None,
              help="Sentence-transformers model for --min-similarity (default: bundled all-MiniLM-L6-v2).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (text and score of each variation).")
@generation_device_option
def vary(run, text, n, temperature, strategy, top_p, seed, keep_copies, source_label, source_tags, label, tags,
         condition_text, keywords, require, ban, min_similarity, min_length, max_length, avoid, radius, max_draws,
         similarity_model, as_json, device):
    """Generate N variations of TEXT that keep its meaning and change its wording.

    The text is encoded, codes are drawn around its posterior, decoded, de-duplicated (copies of the input
    dropped) and ranked by the model's mean log-probability per token. A text longer than the model's
    --max-tokens is varied unit by unit (sentences or paragraphs) and reassembled. Constraints (--require,
    --ban, --min-similarity, lengths, --avoid) draw more candidates, up to --max-draws.
    """
    if n == 0:
        raise VaekitError("-n 0: ask for at least one variation")
    model = _load_model(run, device)
    if not _is_text(model):
        raise VaekitError(f"{run}: vary needs a text model; this run is an image model")
    variations = model.vary(text, n=n, seed=seed, temperature=temperature, strategy=strategy, top_p=top_p,
                            keep_copies=keep_copies, label=label, source_label=source_label, tags=_tags(tags),
                            source_tags=_tags(source_tags), condition_text=_condition_text(condition_text, keywords),
                            require=require, ban=ban, min_similarity=min_similarity, similarity_model=similarity_model,
                            min_length=min_length, max_length=max_length, avoid=avoid, radius=radius,
                            max_draws=max_draws)
    constrained = variations.drawn is not None
    if constrained:
        click.echo(_constraint_line(variations.drawn, variations.passed, variations.rejected, len(variations)),
                   err=True)
    if as_json:
        click.echo(json.dumps([{"text": v.text, "score": round(v.score, 4)} for v in variations], indent=2))
        return
    if len(variations) < min(n, 100) and not constrained:
        click.echo(f"({len(variations)} distinct variations found)", err=True)
    for i, v in enumerate(variations, 1):
        click.echo(f"{i}. {v.text}  [{v.score:.2f}]")


@cli.command(context_settings=CONTEXT)
@run_argument
@click.option("-n", "n", type=click.IntRange(1, 10000), default=None, help="How many samples (image: 64, text: 10).")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Image models: .png grid or .npy/.npz array (required). Text models: a .txt file (default: print).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--temperature", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Scale of the prior draws (below 1: more typical, less varied).")
@click.option("--strategy", type=click.Choice(["sample", "beam", "greedy"]), default="greedy", show_default=True,
              help="Text models: how each code is decoded.")
@click.option("--near", default=None, metavar="TEXT",
              help="Text models: draw codes only inside the ball of --radius around this text's code.")
@click.option("--between", nargs=2, default=None, metavar="TEXT_A TEXT_B",
              help="Text models: n evenly spaced points on the path between two texts' codes.")
@constraint_options
@click.option("--similarity-model", default=None,
              help="Sentence-transformers model for --min-similarity (default: bundled all-MiniLM-L6-v2).")
@generation_device_option
def sample(run, n, out, seed, temperature, strategy, near, between, label, tags, condition_text, keywords, require,
           ban, min_similarity, min_length, max_length, avoid, radius, max_draws, similarity_model, device):
    """Decode draws from the prior N(0, I), or from a region of the latent space (--near, --avoid,
    --between); text outputs can be filtered like vary's."""
    model = _load_model(run, device)
    regions = near is not None or avoid is not None or between is not None
    filters = any([require, ban, min_similarity is not None, min_length, max_length])
    if not _is_text(model):
        if regions or filters or tags or condition_text or keywords:
            raise VaekitError("--near, --avoid, --between, --tags, --condition-text and the word filters are for "
                              "text models")
        from .images import sample_grid

        _done(f"{n or 64} samples", sample_grid(model, n or 64, _need(out, "--out", "image"), seed=seed,
                                                temperature=temperature, label=label))
        return
    texts = model.sample(n or 10, seed=seed, temperature=temperature, strategy=strategy, near=near, avoid=avoid,
                         radius=radius, between=tuple(between) if between else None, label=label, tags=_tags(tags),
                         condition_text=_condition_text(condition_text, keywords), require=require, ban=ban,
                         min_length=min_length, max_length=max_length, min_similarity=min_similarity,
                         similarity_model=similarity_model, max_draws=max_draws)
    if texts.drawn is not None:
        click.echo(_constraint_line(texts.drawn, texts.passed, texts.rejected, len(texts)), err=True)
    _echo_texts(list(texts), out, f"{len(texts)} samples")


@cli.command(context_settings=CONTEXT)
@run_argument
@click.argument("texts", nargs=-1)
@data_option(required=False, help_extra=" Text models: a file of texts, or give the texts as arguments.")
@image_input_options
@text_source_options
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Image models: .png grid or .npy/.npz (required). Text models: a .txt file (default: print).")
@click.option("-n", "n", type=click.IntRange(min=1), default=32, show_default=True, help="How many items (the first n).")
@click.option("--index", "indices", type=int, multiple=True, help="Image models: pick images by index (repeatable).")
@click.option("--label", default=None,
              help="Conditional image models: redraw each image as this class, keeping its code (its style).")
@generation_device_option
def reconstruct(run, texts, data, split, resize, binarize, seed, text_column, encoding, out, n, indices, label,
                device):
    """Show items beside their reconstructions (decoded posterior means).

    \b
    vaekit reconstruct runs/mnist --data ../shared/data/mnist --out recon.png
    vaekit reconstruct runs/headlines "a text to reconstruct" "and another"
    """
    model = _load_model(run, device)
    if _is_text(model):
        if label is not None:
            raise VaekitError("--label for texts: use vaekit vary RUN TEXT --label NAME")
        from .texts import read_texts

        inputs = _nonempty(texts, "reconstruct") or read_texts(_need(data, "--data or TEXT", "text"),
                                                               _source(text_column, encoding), limit=n)
        outputs = model.reconstruct(inputs)
        _echo_texts([f"{a}\n  => {b}" for a, b in zip(inputs, outputs)], out, "reconstructions")
        return
    from .images import reconstruct_grid

    path = reconstruct_grid(model, _load_data(_need(data, "--data", "image"), resize, split), _need(out, "--out", "image"),
                            n=n, indices=indices, binarize=_binarize(run, binarize), seed=seed, label=label)
    _done("reconstructions", path)


@cli.command(context_settings=CONTEXT)
@run_argument
@click.argument("texts", nargs=-1)
@data_option(required=False, help_extra=" Image models only.")
@image_input_options
@click.option("--index", "indices", type=int, multiple=True,
              help="Image models: image index (repeat it: --index 3 --index 17); each consecutive pair gives one row.")
@click.option("--steps", type=click.IntRange(min=2), default=None, help="Points along each path (image: 10, text: 7).")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Image models: .png grid or .npy/.npz (required). Text models: a .txt file (default: print).")
@generation_device_option
def interpolate(run, texts, data, split, resize, binarize, seed, indices, steps, out, device):
    """Decode the straight line between the posterior means of two (or more) items.

    \b
    vaekit interpolate runs/mnist --data ../shared/data/mnist --index 3 --index 17 --out interp.png
    vaekit interpolate runs/headlines "text a" "text b" --steps 7
    """
    model = _load_model(run, device)
    if _is_text(model):
        if len(texts) < 2:
            raise VaekitError("give two texts to interpolate between")
        texts = _nonempty(texts, "interpolate between")
        lines = []
        for a, b in zip(texts[:-1], texts[1:]):
            lines += model.interpolate(a, b, steps=steps or 7)
        _echo_texts(lines, out, "interpolation")
        return
    from .images import interpolate_grid

    path = interpolate_grid(model, _load_data(_need(data, "--data", "image"), resize, split), _need(indices, "--index", "image"),
                            _need(out, "--out", "image"), steps=steps or 10, binarize=_binarize(run, binarize), seed=seed)
    _done("interpolation", path)


@cli.command("latent-plot", context_settings=CONTEXT)
@run_argument
@use_data_options
@text_source_options
@label_column_option
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Picture to write (.png, .pdf, .svg); an interactive .html is written beside it.")
@click.option("--method", type=click.Choice(["auto", "pca", "umap"]), default="auto", show_default=True,
              help="Projection for latents above 2-D: UMAP when umap-learn is installed (auto), else PCA.")
@click.option("--max-items", type=click.IntRange(min=2), default=5000, show_default=True,
              help="Plot at most this many items (images: a random subset; texts: the first ones).")
@click.option("--html/--no-html", default=True, show_default=True, help="Also write the interactive plotly page.")
@data_device_option
def latent_plot_command(run, data, split, resize, binarize, seed, text_column, encoding, label_column, out, method,
                        max_items, html, device):
    """Scatter the posterior means coloured by label (projected for latents above 2-D), with an
    interactive HTML version; for a 2-D image latent, also the decoded manifold."""
    from .latent import encode_items, latent_figure

    _output(out, "--out", (".png", ".pdf", ".svg", ".jpg", ".jpeg"))
    model = _load_model(run, device)
    manifold = None
    if _is_text(model):
        items = _items(run, model, data, split, resize, binarize, seed, text_column, encoding, label_column,
                       keep_texts=True, limit=max_items)
        what = "texts"
    else:
        from .data.images import load_images
        from .images import manifold_picture
        from .items import image_items

        images = load_images(data, resize=resize, split=split)
        if len(images) > max_items:
            import torch

            images = images.subset(torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:max_items])
        items = image_items(model, images, _binarize(run, binarize), seed)
        manifold = manifold_picture(model) if model.latent_dim == 2 else None
        what = "images"
    out.parent.mkdir(parents=True, exist_ok=True)
    codes = encode_items(model, items)
    written = latent_figure(codes["mean"], codes.get("labels"), codes["ids"], out, method=method, manifold=manifold,
                            title=f"posterior means of {len(codes['ids'])} {what}", texts=items.texts, html=html,
                            seed=seed)
    _done(f"latent plot ({written['method']})", written["picture"])
    if "html" in written:
        _done("interactive", written["html"])


@cli.command(context_settings=CONTEXT)
@run_argument
@use_data_options
@text_source_options
@label_column_option
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="File to write: .npz (arrays mean, logvar, ids, labels), .csv or .parquet (one row per item).")
@click.option("--format", "fmt", type=click.Choice(["npz", "csv", "parquet"]), default=None,
              help="Output format (default: from the --out suffix). Parquet needs pyarrow.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@data_device_option
def encode(run, data, split, resize, binarize, seed, text_column, encoding, label_column, out, fmt, quiet, device):
    """Write each item's posterior mean and log-variance with its id (file name, CSV id or line number)
    and label: the latent codes as features for dimensionality reduction or other models."""
    from .latent import code_format, encode_items, write_codes

    code_format(out, fmt)  # a bad name fails before any work
    model = _load_model(run, device)
    items = _items(run, model, data, split, resize, binarize, seed, text_column, encoding, label_column)
    codes = encode_items(model, items, progress=not quiet)
    _done(f"codes of {len(codes['ids'])} {'texts' if _is_text(model) else 'images'}", write_codes(codes, out, fmt))


def score_options(f):
    f = data_device_option(f)
    f = click.option("--quiet", is_flag=True, help="No progress bar.")(f)
    f = click.option("--precision", type=click.Choice(["fp32", "bf16"]), default="fp32", show_default=True,
                     help="Arithmetic for scoring.")(f)
    f = click.option("--iw-samples", type=click.IntRange(min=1), default=None,
                     help="Samples of z per item [default: as calibrated, else 10].")(f)
    return click.option("--score", "score_name", type=click.Choice(SCORES), default=None,
                        help="neg_elbo: -ELBO; iw_nll: importance-weighted NLL (tighter, Burda et al. 2016); rec: "
                             "reconstruction error alone; kl: the KL term alone, KL(q(z|x) || p(z)) (does not favour "
                             "simple inputs as likelihoods do) [default: as calibrated, else neg_elbo].")(f)


@cli.command(context_settings=CONTEXT)
@run_argument
@use_data_options
@text_source_options
@score_options
@click.option("--fpr", type=float, default=0.01, show_default=True,
              help="Target false-positive rate on normal data, strictly between 0 and 1.")
def calibrate(run, data, split, resize, binarize, seed, text_column, encoding, score_name, iw_samples, precision,
              quiet, device, fpr):
    """Set the anomaly threshold on held-out NORMAL data (never the evaluation data) at a target false-
    positive rate, and store it in RUN/anomaly.json; `vaekit score` then flags items above it."""
    from .anomaly import calibrate as store, compute_scores

    if not 0 < fpr < 1:
        raise VaekitError(f"--fpr {fpr}: must lie strictly between 0 and 1")
    model = _load_model(run, device)
    score_name = score_name or "neg_elbo"
    iw_samples = iw_samples or 10
    items = _items(run, model, data, split, resize, binarize, seed, text_column, encoding)
    scores = compute_scores(model, items, score_name, iw_samples, seed=seed, precision=precision, progress=not quiet)
    record = store(run, scores, fpr, score_name, iw_samples, str(data), seed=seed)
    click.echo(f"threshold {record['threshold']:.3f} nats of {score_name} ({len(scores)} normal items, "
               f"false-positive rate {record['observed_fpr']:.4f} on them)")
    if record["resolution_note"]:
        click.echo(f"note: {record['resolution_note']}")
    _done("calibration", run / runs.CALIBRATION_NAME)


@cli.command(context_settings=CONTEXT)
@run_argument
@use_data_options
@text_source_options
@score_options
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="CSV to write: id, score, label, anomaly (when known), flagged (when calibrated).")
@click.option("--anomaly-label", default=None, metavar="COLUMN_OR_KEY",
              help="Ground truth: texts: the CSV/JSONL column; images: an array in the .npz. Values read as "
                   "yes/no (1/0, true/false, anomaly/normal) unless --anomaly-class names the anomalous ones.")
@click.option("--anomaly-class", multiple=True,
              help="A label value that marks an anomaly (repeatable); for images, a class name (sub-folder or "
                   "MNIST digit) when --anomaly-label is not given.")
@click.option("--plot/--no-plot", default=True, show_default=True,
              help="With ground truth: draw RUN/plots/scores.png (histograms and ROC).")
def score(run, data, split, resize, binarize, seed, text_column, encoding, score_name, iw_samples, precision, quiet,
          device, out, anomaly_label, anomaly_class, plot):
    """Per-item anomaly scores (nats, higher = more anomalous) with item ids; flags items above the
    calibrated threshold; with ground truth, reports AUROC and AUPRC."""
    from .anomaly import (anomaly_flags, compute_scores, detection_metrics, plot_scores, read_calibration,
                          summary_line, write_scores_csv)
    from .config import write_json

    if out.suffix.lower() != ".csv":
        raise VaekitError(f"--out {out}: scores are written as .csv")
    model = _load_model(run, device)
    calibration = read_calibration(run)
    if calibration is not None:
        score_name = score_name or calibration["score"]
        iw_samples = iw_samples or calibration["iw_samples"]
        if score_name != calibration["score"]:
            click.echo(f"note: calibrated on {calibration['score']}, scoring {score_name}: items are not flagged",
                       err=True)
            calibration = None
    score_name, iw_samples = score_name or "neg_elbo", iw_samples or 10
    text = _is_text(model)
    if (anomaly_label or anomaly_class) and text and not anomaly_label:
        raise VaekitError("--anomaly-class needs --anomaly-label COLUMN for text data")
    items = _items(run, model, data, split, resize, binarize, seed, text_column, encoding,
                   label_column=anomaly_label if text else None, anomaly_key=None if text else anomaly_label)
    if not text and anomaly_class and items.labels is None:
        raise VaekitError(f"{data}: these images carry no labels for --anomaly-class")
    scores = compute_scores(model, items, score_name, iw_samples, seed=seed, precision=precision, progress=not quiet)
    flags = None
    if anomaly_label or anomaly_class:
        flags = anomaly_flags(items.labels, tuple(anomaly_class), where=anomaly_label or "class")
    flagged = scores > calibration["threshold"] if calibration is not None else None
    out.parent.mkdir(parents=True, exist_ok=True)
    write_scores_csv(out, items.ids, scores, score_name, labels=items.labels, flags=flags, flagged=flagged)
    summary = {"items": len(scores), "score": score_name, "iw_samples": iw_samples, "data": str(data),
               "mean": float(scores.mean()), "median": float(np.median(scores))}
    if calibration is not None:
        summary.update(threshold=calibration["threshold"], flagged=int(flagged.sum()))
    if flags is not None:
        summary.update(detection_metrics(scores, flags))
        if plot:
            summary["plot"] = str(plot_scores(scores, flags, run / runs.PLOTS_DIR / "scores.png", score_name,
                                              calibration["threshold"] if calibration else None, summary))
    write_json(out.with_suffix(".json"), summary)
    for key in ("items", "score", "mean", "threshold", "flagged", "auroc", "auprc", "auprc_base_rate"):
        if key in summary:
            click.echo(summary_line(key, summary[key]))
    _done("scores", out)
    if "plot" in summary:
        _done("plot", Path(summary["plot"]))


@cli.command(context_settings=CONTEXT)
@run_argument
@click.argument("text", required=False)
@click.option("--dim", "dims", type=int, multiple=True,
              help="Latent dimension to walk along (repeatable) [default: the first 8, or all if fewer].")
@click.option("--range", "value_range", type=float, nargs=2, default=(-3.0, 3.0), show_default=True,
              help="Values the dimension takes, in prior standard deviations.")
@click.option("--steps", type=click.IntRange(min=2), default=9, show_default=True, help="Points along each walk.")
@data_option(required=False, help_extra=" Image models: start from --index of these images instead of the origin.")
@image_input_options
@click.option("--index", type=int, default=None, help="Image models: the image of --data to start from.")
@click.option("--label", default=None,
              help="Conditional image models: the class to draw [default: the --index image's, else the first].")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Image models: grid to write (.png, .npy, .npz; default RUN/plots/traverse.png). "
                   "Text models: a .txt file (default: print).")
@generation_device_option
def traverse(run, text, dims, value_range, steps, data, split, resize, binarize, seed, index, label, out, device):
    """Decode along one latent dimension at a time, the others held at the origin (or at TEXT's / an
    image's posterior mean), to see what each dimension does: one row per dimension."""
    import torch

    from .latent import check_dims, traversal_codes

    model = _load_model(run, device)
    dims = check_dims(model, dims or range(min(8, model.latent_dim)))
    base = torch.zeros(1, model.latent_dim, device=model.device)
    if _is_text(model):
        if label is not None:
            raise VaekitError("--label is for conditional image models")
        if text is not None:
            base = model.encode(model.batch([text])).mean
        z = traversal_codes(base, dims, *value_range, steps)
        decoded = model.decode(z)
        values = torch.linspace(*value_range, steps, device="cpu").tolist()  # the labels of the rows
        lines = []
        for row, k in enumerate(dims):
            lines.append(f"dimension {k}:")
            lines += [f"  {v:+.2f}  {decoded[row * steps + i]}" for i, v in enumerate(values)]
        _echo_texts(lines, out, "traversal")
        return
    if text is not None:
        raise VaekitError("TEXT is for text models; for images start from --data with --index")
    if index is not None:
        from .images import _inputs, _pick

        images = _load_data(_need(data, "--data", "--index with image"), resize, split)
        chosen = _pick(images, [index])
        x = _inputs(model, images, _binarize(run, binarize), seed).fixed()[chosen]
        base = model.encode(x).mean
        if model.conditional and label is None:
            label = model.config.label_names[int(x.labels[0])]
    from .images import _write_images
    from .viz import auto_scale

    with torch.no_grad():
        grid = model.decode_as(traversal_codes(base, dims, *value_range, steps), label)
    out = out or run / runs.PLOTS_DIR / "traverse.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    _done(f"traversal of dimensions {', '.join(map(str, dims))}",
          _write_images(grid, out, nrow=steps, scale=auto_scale(model.config.height)))


@cli.command(context_settings=CONTEXT)
@run_argument
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="HTML file to write [default: RUN/report.html].")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for the samples shown.")
def report(run, out, seed):
    """One self-contained HTML page about a run: config, training curves, evaluation table, samples or
    variations, latent plot, anomaly histogram when calibrated. Pictures are embedded, so the page can
    be mailed or archived alone."""
    from .report import write_report

    _done("report", write_report(run, _output(out, "--out", (".html", ".htm")) if out else run / runs.REPORT_NAME,
                                 seed=seed))


@cli.command(context_settings=CONTEXT)
@run_argument
@use_data_options
@text_source_options
@click.option("--iw-samples", type=click.IntRange(min=1), default=100, show_default=True,
              help="Importance samples per item for the NLL bound (Burda et al. 2016).")
@click.option("--precision", type=click.Choice(["fp32", "bf16"]), default="fp32", show_default=True,
              help="Arithmetic for evaluation; fp32 gives the reference figures.")
@click.option("--max-items", type=click.IntRange(min=1), default=None, help="Evaluate only the first N items.")
@click.option("--variations/--no-variations", default=True, show_default=True,
              help="Text models: also write the variation report (similarity, BLEU, distinct-n, self-BLEU, baselines).")
@click.option("--variation-items", type=click.IntRange(min=1), default=200, show_default=True,
              help="Text models: how many texts the variation report varies.")
@click.option("-n", "n", type=click.IntRange(min=2, max=100), default=5, show_default=True,
              help="Text models: variations per text in the report.")
@click.option("--similarity-model", default=None,
              help="Text models: sentence-transformers model name or folder (default: bundled all-MiniLM-L6-v2).")
@click.option("--min-similarity", type=click.FloatRange(-1, 1), default=None,
              help="Text models: make the report's variations as `vaekit vary --min-similarity` does (draw more, "
                   "keep those at least this similar to the input, the most similar n). The same sentence model "
                   "ranks and scores them, so this measures the filter, not the model alone.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="JSON report to write (default: RUN/evaluation.json; text models also write a .md table).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@data_device_option
def evaluate(run, data, split, resize, binarize, seed, text_column, encoding, iw_samples, precision, max_items,
             variations, variation_items, n, similarity_model, min_similarity, out, quiet, device):
    """Negative ELBO, reconstruction, KL, importance-weighted NLL, mutual information and active units,
    in nats per item (text: also perplexity, and the variation report)."""
    from .config import write_json

    model = _load_model(run, device)
    out = out or run / runs.EVALUATION_NAME
    if _is_text(model):
        from .texts import evaluate_texts, read_texts, variation_report, write_report_markdown

        texts = read_texts(data, _source(text_column, encoding), limit=max_items)
        report = evaluate_texts(model, texts, iw_samples=iw_samples, seed=seed, precision=precision, progress=not quiet)
        if variations:
            report["variations"] = variation_report(model, texts[:variation_items], n=n, seed=seed,
                                                    encoder_name=similarity_model, progress=not quiet,
                                                    min_similarity=min_similarity)
        report.pop("per_item")
        write_json(out, report)
        _done("markdown", write_report_markdown(report, out.with_suffix(".md")))
    else:
        from .images import evaluate_images

        images = _load_data(data, resize, split)
        if max_items is not None:
            images = images.subset(list(range(min(max_items, len(images)))))
        report = evaluate_images(model, images, iw_samples=iw_samples, binarize=_binarize(run, binarize), seed=seed,
                                 precision=precision, progress=not quiet)
        report.pop("per_item")
        write_json(out, report)
    for key in ("items", "neg_elbo", "rec", "kl", "iw_nll", "perplexity", "mutual_information", "active_units"):
        if key in report:
            value = report[key]
            click.echo(f"{key:>20}: {value:.3f}" if isinstance(value, float) else f"{key:>20}: {value}")
    if "variations" in report:
        click.echo((out.with_suffix(".md")).read_text())
    _done("report", out)


@cli.command(context_settings=CONTEXT)
@click.argument("runs", nargs=-1, type=click.Path(path_type=Path))
@click.option("--model", "named", multiple=True, metavar="NAME=RUN",
              help="Serve RUN under NAME (repeatable); plain RUN arguments are named after their folder.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; 0.0.0.0 opens the server to the network (a warning is printed).")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--api-key", envvar="VAEKIT_API_KEY", default=None,
              help="Require 'Authorization: Bearer KEY' on /v1 endpoints (or set VAEKIT_API_KEY).")
@click.option("--max-text-chars", type=click.IntRange(min=1), default=2000, show_default=True,
              help="Longest text a request may send.")
@click.option("--max-n", type=click.IntRange(min=1), default=50, show_default=True,
              help="Most variations or samples per request.")
@click.option("--max-body-kb", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Largest request body, in kilobytes.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=30.0, show_default=True,
              help="Seconds a request may compute before it gets 504.")
@click.option("--body-timeout", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True,
              help="Seconds a client has to send its request body before it gets 408 (a stalled client holds no "
                   "connection longer).")
@click.option("--similarity-model", default=None,
              help="Sentence-transformers model for similarity to the input (default: bundled all-MiniLM-L6-v2).")
@device_option("cpu", "Where the models run: the CPU unless asked (the latencies measured for vaekit are the "
                      "CPU's); auto takes a CUDA GPU, then Apple MPS, then the CPU.")
def serve(runs, named, host, port, api_key, max_text_chars, max_n, max_body_kb, timeout, body_timeout, similarity_model,
          device):
    """Serve trained models over HTTP (FastAPI): POST /v1/vary, /v1/sample, /v1/interpolate, /v1/encode,
    /v1/score, /v1/decode; GET /v1/models, /healthz; API docs at /docs; a web page at /.

    \b
    Examples:
      vaekit serve runs/headlines
      vaekit serve --model news=runs/headlines --model digits=runs/mnist --port 8080 --api-key s3cret
    """
    from .serve import Limits, create_app

    specs = {}
    for run in runs:
        specs[run.resolve().name] = run
    for item in named:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise VaekitError(f"--model {item}: write NAME=RUN")
        specs[name] = Path(path)
    if not specs:
        raise VaekitError("give a run folder to serve (vaekit serve RUN, or --model NAME=RUN)")
    try:
        import uvicorn
    except ImportError:
        raise VaekitError("vaekit serve needs FastAPI and uvicorn: pip install 'vaekit[serve]'") from None
    import socket

    try:  # before the models load: uvicorn would print nothing useful and exit 3 once "serving ..." was said
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        raise VaekitError(f"--port {port}: cannot listen on {host}:{port} ({exc.strerror or exc}); is another "
                          "server using it? Give another --port") from None
    limits = Limits(max_text_chars=max_text_chars, max_n=max_n, max_body_bytes=max_body_kb * 1000, timeout_s=timeout,
                    body_timeout_s=body_timeout)
    app = create_app(specs, limits, api_key=api_key, similarity_model=similarity_model, device=resolve_device(device))
    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(f"warning: listening on {host}: anyone who can reach this machine can use the models"
                   + ("" if api_key else "; consider --api-key"), err=True)
    click.echo(f"serving {', '.join(specs)} at http://{host}:{port}/ (API docs at /docs)")
    uvicorn.run(app, host=host, port=port, log_level="warning")


def main(argv: list[str] | None = None) -> None:
    """The console script: every user error is one line on stderr with exit code 2."""
    try:
        _run(argv)
    finally:
        distributed.shutdown()


def _run(argv: list[str] | None) -> None:
    try:
        cli.main(args=argv, prog_name="vaekit", standalone_mode=False)
    except click.UsageError as exc:
        where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        click.echo(f"error: {exc.format_message()}{where}", err=True)
        sys.exit(2)
    except click.Abort:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
