"""The ``vaekit`` command. Thin: parses options, calls the library, prints where things went.

A user's mistake (bad path, bad file, bad flag) prints one line, ``error: ...``, and exits with code 2.
"""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click
from click.core import ParameterSource

from .errors import NonFiniteLossError, VaekitError

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


def use_data_options(f):
    """--data, --split, --resize, --binarize and --seed for the commands that read images with a model."""
    f = click.option("--seed", type=int, default=0, show_default=True,
                     help="Seed for stochastic binarization and sampling.")(f)
    f = click.option("--binarize", type=click.Choice(["none", "threshold", "dynamic"]), default=None,
                     help="How pixels are binarized before encoding; default: as the run was trained "
                          "(dynamic becomes one fixed stochastic binarization drawn with --seed).")(f)
    f = click.option("--resize", metavar="HxW", default=None, help="Resize every image to H x W pixels.")(f)
    f = click.option("--split", type=click.Choice(["train", "test"]), default="test", show_default=True,
                     help="In a folder holding both MNIST-style sets, which one to read.")(f)
    return data_option()(f)


def _load_model(run: Path):
    from .runs import load

    return load(run)


def _load_data(data: Path, resize: str | None, split: str):
    from .data.images import load_images

    return load_images(data, resize=resize, split=split)


def _binarize(run: Path, chosen: str | None) -> str:
    from .images import run_binarize

    return chosen or run_binarize(run)


def _done(what: str, path: Path) -> None:
    click.echo(f"{what}: {path}")


# --- training ---------------------------------------------------------------------------
@cli.group(cls=Group, context_settings=CONTEXT)
def train():
    """Train a VAE into a run folder."""


RESUMABLE = {"data", "out", "epochs", "resume", "quiet", "early_stop"}


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
@click.option("--precision", type=click.Choice(["auto", "bf16", "fp32"]), default="auto", show_default=True,
              help="auto uses bf16 autocast where the CPU has native bf16; losses and optimizer stay fp32.")
@click.option("--beta", type=click.FloatRange(min=0), default=1.0, show_default=True, help="Weight on the KL term.")
@click.option("--early-stop", type=click.IntRange(min=0), default=0, show_default=True,
              help="Stop after N epochs without a better validation loss (0: never).")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint, with its settings.")
@click.option("--overwrite", is_flag=True, help="Replace an existing run in --out.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.pass_context
def train_image_command(ctx, data, out, preset, latent_dim, epochs, batch_size, lr, optimizer, val_fraction,
                        seed, loss, binarize, resize, precision, beta, early_stop, resume, overwrite, quiet):
    """Train an image VAE on your images.

    \b
    Examples:
      vaekit train image --data ../shared/data/mnist --out runs/mnist
      vaekit train image --data ../shared/data/mnist --out runs/seed --preset seed --binarize threshold --epochs 3
      vaekit train image --out runs/mnist --resume --epochs 20
    """
    from .config import TrainConfig
    from .images import train_image

    if resume:
        changed = [p for p in ctx.params if p not in RESUMABLE
                   and ctx.get_parameter_source(p) == ParameterSource.COMMANDLINE]
        if changed:
            raise VaekitError(f"--{changed[0].replace('_', '-')} cannot change on --resume; the run keeps the "
                              "settings in its config.json (only --epochs and --early-stop can change)")
        if overwrite:
            raise VaekitError("--resume and --overwrite contradict each other; choose one")
    elif data is None:
        raise VaekitError("--data is required (unless --resume)")
    training = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer,
                           val_fraction=val_fraction, seed=seed, precision=precision, beta=beta,
                           early_stop=early_stop)
    overrides = {"loss": loss}
    if latent_dim is not None:
        overrides["latent_dim"] = latent_dim
    run = train_image(data, out, preset=preset, model_overrides=overrides, training=training, binarize=binarize,
                      resize=resize, resume=resume, overwrite=overwrite, progress=not quiet,
                      epochs=epochs if resume and ctx.get_parameter_source("epochs") == ParameterSource.COMMANDLINE else None)
    _report_run(run)


def _report_run(run) -> None:
    result = run.result
    best = f"{result.best_val_loss:.2f} nats" if result.best_val_loss is not None else "n/a"
    click.echo(f"{result.status} after {result.epochs} epochs ({result.step} steps, "
               f"{result.items_per_second:,.0f} images/s); best validation negative ELBO {best}")
    click.echo(f"run folder: {run.run_dir}")
    for name in ("curves.png", "samples.png", "reconstructions.png", "latent.png"):
        path = run.run_dir / "plots" / name
        if path.exists():
            click.echo(f"  {path}")
    click.echo(f"  TensorBoard: tensorboard --logdir {run.run_dir / 'tensorboard'}")
    if result.status == "interrupted":
        click.echo(f"interrupted: continue with `vaekit train image --out {run.run_dir} --resume`", err=True)
        sys.exit(130)


@cli.command(context_settings=CONTEXT)
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/quickstart"), show_default=True,
              help="Run folder; if it exists, a new one with a numbered suffix is used.")
@click.option("--epochs", type=click.IntRange(min=1), default=80, show_default=True, help="Training epochs.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def quickstart(out, epochs, quiet):
    """Train a small image VAE on scikit-learn's bundled 8x8 handwritten digits (1,797 images) and write
    samples, reconstructions, a latent plot and training curves. Takes about a minute on 2 CPU cores."""
    from .quickstart import run_quickstart

    _report_run(run_quickstart(out, epochs=epochs, progress=not quiet))


# --- using a trained model ----------------------------------------------------------------
@cli.command(context_settings=CONTEXT)
@run_argument
@click.option("-n", "n", type=click.IntRange(1, 10000), default=64, show_default=True, help="How many samples.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help=".png grid, or .npy/.npz array.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--temperature", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Scale of the prior draws (below 1: more typical, less varied).")
def sample(run, n, out, seed, temperature):
    """Decode draws from the prior N(0, I)."""
    from .images import sample_grid

    _done(f"{n} samples", sample_grid(_load_model(run), n, out, seed=seed, temperature=temperature))


@cli.command(context_settings=CONTEXT)
@run_argument
@use_data_options
@click.option("--out", type=click.Path(path_type=Path), required=True, help=".png grid, or .npy/.npz array.")
@click.option("-n", "n", type=click.IntRange(min=1), default=32, show_default=True, help="How many images (the first n).")
@click.option("--index", "indices", type=int, multiple=True, help="Pick images by index (repeatable) instead of the first n.")
def reconstruct(run, data, split, resize, binarize, seed, out, n, indices):
    """Show images beside their reconstructions (decoded posterior means)."""
    from .images import reconstruct_grid

    model = _load_model(run)
    path = reconstruct_grid(model, _load_data(data, resize, split), out, n=n, indices=indices,
                            binarize=_binarize(run, binarize), seed=seed)
    _done("reconstructions", path)


@cli.command(context_settings=CONTEXT)
@run_argument
@use_data_options
@click.option("--index", "indices", type=int, multiple=True, required=True,
              help="Image index (repeat it: --index 3 --index 17); each consecutive pair gives one row.")
@click.option("--steps", type=click.IntRange(min=2), default=10, show_default=True, help="Images per row.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help=".png grid, or .npy/.npz array.")
def interpolate(run, data, split, resize, binarize, seed, indices, steps, out):
    """Decode the straight line between the posterior means of two (or more) images."""
    from .images import interpolate_grid

    model = _load_model(run)
    path = interpolate_grid(model, _load_data(data, resize, split), indices, out, steps=steps,
                            binarize=_binarize(run, binarize), seed=seed)
    _done("interpolation", path)


@cli.command("latent-plot", context_settings=CONTEXT)
@run_argument
@use_data_options
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Picture to write (.png, .pdf, .svg).")
@click.option("--max-items", type=click.IntRange(min=2), default=5000, show_default=True,
              help="Plot a random subset of at most this many images.")
def latent_plot_command(run, data, split, resize, binarize, seed, out, max_items):
    """Scatter the posterior means coloured by label (PCA beyond 2 dimensions); for a 2-D latent, also
    the decoded manifold."""
    from .images import latent_plot

    model = _load_model(run)
    path = latent_plot(model, _load_data(data, resize, split), out, binarize=_binarize(run, binarize), seed=seed,
                       max_items=max_items)
    _done("latent plot", path)


@cli.command(context_settings=CONTEXT)
@run_argument
@use_data_options
@click.option("--out", type=click.Path(path_type=Path), required=True, help=".npz with mean, logvar (n, d), labels, ids.")
def encode(run, data, split, resize, binarize, seed, out):
    """Write each image's posterior mean and log-variance."""
    from .images import encode_data, save_codes

    model = _load_model(run)
    codes = encode_data(model, _load_data(data, resize, split), binarize=_binarize(run, binarize), seed=seed)
    _done(f"codes of {len(codes['mean'])} images", save_codes(codes, out))


@cli.command(context_settings=CONTEXT)
@run_argument
@use_data_options
@click.option("--iw-samples", type=click.IntRange(min=1), default=100, show_default=True,
              help="Importance samples per item for the NLL bound (Burda et al. 2016).")
@click.option("--precision", type=click.Choice(["fp32", "bf16"]), default="fp32", show_default=True,
              help="Arithmetic for evaluation; fp32 gives the reference figures.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="JSON report to write (default: RUN/evaluation.json).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def evaluate(run, data, split, resize, binarize, seed, iw_samples, precision, out, quiet):
    """Negative ELBO, reconstruction, KL, importance-weighted NLL, mutual information and active units,
    in nats per item."""
    from .config import write_json
    from .images import evaluate_images

    model = _load_model(run)
    report = evaluate_images(model, _load_data(data, resize, split), iw_samples=iw_samples,
                             binarize=_binarize(run, binarize), seed=seed, precision=precision, progress=not quiet)
    report.pop("per_item")
    out = out or run / "evaluation.json"
    write_json(out, report)
    for key in ("items", "neg_elbo", "rec", "kl", "iw_nll", "mutual_information", "active_units"):
        value = report[key]
        click.echo(f"{key:>20}: {value:.3f}" if isinstance(value, float) else f"{key:>20}: {value}")
    _done("report", out)


def main(argv: list[str] | None = None) -> None:
    """The console script: every user error is one line on stderr with exit code 2."""
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
