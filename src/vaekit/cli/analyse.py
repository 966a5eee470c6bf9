"""Commands that read data through a trained model: latent-plot, encode, calibrate, score, report, evaluate."""
from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from .. import runs
from ..anomaly import SCORES
from ..errors import VaekitError

from .base import (CONTEXT, _binarize, _done, _is_text, _items, _load_data, _load_model, _output, _reading, cli,
                   data_device_option, label_column_option, run_argument, text_source_options, use_data_options)

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
    from ..latent import encode_items, latent_figure

    _output(out, "--out", (".png", ".pdf", ".svg", ".jpg", ".jpeg"))
    model = _load_model(run, device)
    manifold = None
    if _is_text(model):
        items = _items(run, model, data, split, resize, binarize, seed, text_column, encoding, label_column,
                       keep_texts=True, limit=max_items)
        what = "texts"
    else:
        from ..data.images import load_images
        from ..images import manifold_picture
        from ..items import image_items

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
    from ..latent import code_format, encode_items, write_codes

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
    from ..anomaly import calibrate as store, compute_scores

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
    from ..anomaly import (anomaly_flags, compute_scores, detection_metrics, plot_scores, read_calibration,
                          summary_line, write_scores_csv)
    from ..config import write_json

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
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="HTML file to write [default: RUN/report.html].")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for the samples shown.")
def report(run, out, seed):
    """One self-contained HTML page about a run: config, training curves, evaluation table, samples or
    variations, latent plot, anomaly histogram when calibrated. Pictures are embedded, so the page can
    be mailed or archived alone."""
    from ..report import write_report

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
    from ..config import write_json

    model = _load_model(run, device)
    out = out or run / runs.EVALUATION_NAME
    if _is_text(model):
        from ..texts import evaluate_texts, read_texts, variation_report, write_report_markdown

        texts = read_texts(data, _reading(text_column, encoding), limit=max_items)
        report = evaluate_texts(model, texts, iw_samples=iw_samples, seed=seed, precision=precision, progress=not quiet)
        if variations:
            report["variations"] = variation_report(model, texts[:variation_items], n=n, seed=seed,
                                                    encoder_name=similarity_model, progress=not quiet,
                                                    min_similarity=min_similarity)
        report.pop("per_item")
        write_json(out, report)
        _done("markdown", write_report_markdown(report, out.with_suffix(".md")))
    else:
        from ..images import evaluate_images

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
