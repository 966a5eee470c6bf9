"""Commands that write from a trained model: vary, sample, reconstruct, interpolate, traverse."""
from __future__ import annotations

import json
from pathlib import Path

import click

from .. import runs
from ..errors import VaekitError
from ..generate import STRATEGIES
from ..models.text_front import TextFrontEnd

from .base import (CONTEXT, _binarize, _condition_text, _constraint_line, _done, _echo_texts, _is_text,
                   _load_data, _load_model, _need, _nonempty, _reading, _tags, cli, constraint_options,
                   data_option, generation_device_option, image_input_options, run_argument, text_source_options)


@cli.command(context_settings=CONTEXT)
@run_argument
@click.argument("text")
@click.option("-n", "n", type=click.IntRange(min=0), default=5, show_default=True,
              help="How many variations (at most 100; more is capped with a message).")
@click.option("--temperature", type=click.FloatRange(min=0), default=0.5, show_default=True,
              help="Spread of the codes drawn around the text's posterior: 1 samples it, 0 decodes its mean; "
                   "lower keeps variations closer to the input.")
@click.option("--strategy", type=click.Choice(STRATEGIES), default="sample", show_default=True,
              help="How each code is decoded: nucleus sampling, beam search or greedy.")
@click.option("--top-p", type=click.FloatRange(0, 1, min_open=True), default=0.9, show_default=True,
              help="Nucleus size for --strategy sample.")
@click.option("--seed", type=int, default=None, help="Seed for repeatable variations.")
@click.option("--keep-copies", is_flag=True, help="Keep variations identical to the input.")
@click.option("--keep-words", type=click.FloatRange(0, 1), default=None,
              help="Models trained with --word-hints: the share of the input's content words each variation's "
                   "decoder is given (each kept with this probability); higher stays closer to the input "
                   "[default: the model's, 1.0: every content word].")
@click.option("--source-label", default=None,
              help="Conditional models: the input's own label (default: the most likely one under the model).")
@click.option("--source-tags", default=None, metavar="A,B",
              help="Conditional models with tags: the input's own tags (default: none).")
@click.option("--rank", type=click.Choice(TextFrontEnd.RANKS), default=None,
              help="Order of the candidates: likelihood (the model's mean log-probability per token given the input's "
                   "code) or similarity (sentence-embedding cosine to the input: 3N candidates drawn, the N most "
                   "similar kept) [default: the model's: similarity for --backbone pretrained, else likelihood]. "
                   "With --backbone pretrained, candidates that read more than 1 nat per token worse than the input "
                   "under the base LM come last.")
@constraint_options
@click.option("--similarity-model", default=None,
              help="Sentence-transformers model for --min-similarity and --rank similarity (default: bundled "
                   "all-MiniLM-L6-v2).")
@click.option("--json", "as_json", is_flag=True,
              help="Print JSON (text and score of each variation: its mean log-probability per token, given the "
                   "input's code with --rank likelihood, given the code it was drawn from with similarity).")
@generation_device_option
def vary(run, text, n, temperature, strategy, top_p, seed, keep_copies, keep_words, source_label, source_tags, rank,
         label, tags, condition_text, keywords, require, ban, min_similarity, min_length, max_length, avoid, radius,
         max_draws, similarity_model, as_json, device):
    """Generate N variations of TEXT that keep its meaning and change its wording.

    The text is encoded, codes are drawn around its posterior, decoded, de-duplicated (copies of the input
    dropped) and ranked (--rank) by their similarity to the input or by the model's mean log-probability per
    token. A text longer than the model's --max-tokens is varied unit by unit (sentences or paragraphs) and
    reassembled. Constraints (--require,
    --ban, --min-similarity, lengths, --avoid) draw more candidates, up to --max-draws.
    """
    if n == 0:
        raise VaekitError("-n 0: ask for at least one variation")
    model = _load_model(run, device)
    if not _is_text(model):
        raise VaekitError(f"{run}: vary needs a text model; this run is an image model")
    variations = model.vary(text, n=n, seed=seed, temperature=temperature, strategy=strategy, top_p=top_p,
                            keep_copies=keep_copies, keep_words=keep_words, label=label, source_label=source_label, tags=_tags(tags),
                            source_tags=_tags(source_tags), condition_text=_condition_text(condition_text, keywords),
                            require=require, ban=ban, min_similarity=min_similarity, similarity_model=similarity_model,
                            min_length=min_length, max_length=max_length, avoid=avoid, radius=radius,
                            max_draws=max_draws, rank=rank)
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
@click.option("--strategy", type=click.Choice(STRATEGIES), default="greedy", show_default=True,
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
        from ..images import sample_grid

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
        from ..texts import read_texts

        inputs = _nonempty(texts, "reconstruct") or read_texts(_need(data, "--data or TEXT", "text"),
                                                               _reading(text_column, encoding), limit=n)
        outputs = model.reconstruct(inputs)
        _echo_texts([f"{a}\n  => {b}" for a, b in zip(inputs, outputs)], out, "reconstructions")
        return
    from ..images import reconstruct_grid

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
    from ..images import interpolate_grid

    path = interpolate_grid(model, _load_data(_need(data, "--data", "image"), resize, split), _need(indices, "--index", "image"),
                            _need(out, "--out", "image"), steps=steps or 10, binarize=_binarize(run, binarize), seed=seed)
    _done("interpolation", path)


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

    from ..latent import check_dims, traversal_codes

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
        from ..data.images import model_batches
        from ..images import checked_indices

        images = _load_data(_need(data, "--data", "--index with image"), resize, split)
        chosen = checked_indices(images, [index])
        x = model_batches(model, images, _binarize(run, binarize), seed).fixed()[chosen]
        base = model.encode(x).mean
        if model.conditional and label is None:
            label = model.config.label_names[int(x.labels[0])]
    from ..images import write_images
    from ..viz import auto_scale

    with torch.no_grad():
        grid = model.decode_as(traversal_codes(base, dims, *value_range, steps), label)
    out = out or run / runs.PLOTS_DIR / "traverse.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    _done(f"traversal of dimensions {', '.join(map(str, dims))}",
          write_images(grid, out, nrow=steps, scale=auto_scale(model.config.height)))
