"""Shared pieces of the ``vaekit`` command: the group, its error handling, options and helpers every command
group uses."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from ..data.images import BINARIZE
from ..distributed import DEVICES, resolve_device
from ..errors import NonFiniteLossError, VaekitError, require_text
from ..models import modality_of


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
    f = click.option("--binarize", type=click.Choice(BINARIZE), default=None,
                     help="Images: how pixels are binarized before encoding; default: as the run was trained "
                          "(dynamic becomes one fixed stochastic binarization drawn with --seed).")(f)
    f = click.option("--resize", metavar="HxW", default=None, help="Images: resize every image to H x W pixels.")(f)
    return click.option("--split", type=click.Choice(["train", "test"]), default="test", show_default=True,
                        help="Images: in a folder holding both MNIST-style sets, which one to read.")(f)


def use_data_options(f):
    """--data with the image input options."""
    return data_option()(image_input_options(f))


def _load_model(run: Path, device: str = "cpu"):
    from ..models import load

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
    from ..data.images import load_images

    return load_images(data, resize=resize, split=split)


def _binarize(run: Path, chosen: str | None) -> str:
    from ..images import run_binarize

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


def _reading(text_column, encoding, label_column=None):
    from ..data.text import ReadOptions

    return ReadOptions(text_column=text_column, encoding=encoding, label_column=label_column)


def _items(run: Path, model, data: Path, split, resize, binarize, seed, text_column, encoding, label_column=None,
           keep_texts: bool = False, limit: int | None = None, anomaly_key: str | None = None):
    from ..items import model_items

    return model_items(model, data, binarize=None if _is_text(model) else _binarize(run, binarize), resize=resize,
                       split=split, seed=seed, reading=_reading(text_column, encoding, label_column),
                       keep_texts=keep_texts, limit=limit, anomaly_key=anomaly_key)


def _nonempty(texts, verb: str) -> list[str]:
    """The TEXT arguments as a list; an empty or blank one is an error that says which, by its place among them
    (interpolate chains them in pairs, so the model's own check could not say which TEXT)."""
    return [require_text(text, f"TEXT {i} of {len(texts)}", verb) for i, text in enumerate(texts, start=1)]


def _echo_texts(texts, out: Path | None, what: str) -> None:
    if out is not None:
        from ..config import atomic_write_text

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
        from ..data.text import parse_tags

        return ", ".join(parse_tags(keywords))
    return text


def _tags(value: str | None) -> list[str] | None:
    from ..data.text import parse_tags

    return list(parse_tags(value)) if value else None


def _constraint_line(drawn: int, passed: int, rejected: dict, shown: int) -> str:
    reasons = ", ".join(f"{k} {v}" for k, v in rejected.items() if v)
    return f"({passed} of {drawn} candidates met the constraints{'; rejected: ' + reasons if reasons else ''}; showing {shown})"
