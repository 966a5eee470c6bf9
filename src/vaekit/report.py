"""`vaekit report`: one self-contained HTML page about a run. Pictures are embedded as data URIs and the
page loads nothing from the network, so it can be mailed, archived or opened offline."""
from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np
import torch

from . import runs
from .config import atomic_write_text, read_json
from .errors import VaekitError
from .models import modality_of

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;font-size:14px} td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}
th{background:#f4f4f4} td.num{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%;border:1px solid #eee} .muted{color:#777} ul.texts li{margin:.2em 0}
details{margin:.5em 0} code{background:#f4f4f4;padding:0 3px}
"""


def _img(data: bytes | Path, alt: str) -> str:
    raw = data.read_bytes() if isinstance(data, Path) else data
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(raw).decode()}">'


def _png_bytes(picture: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG")
    return buffer.getvalue()


def _figure_bytes(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buffer.getvalue()


def _flatten(prefix: str, value, rows: list) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}" if prefix else key, inner, rows)
    else:
        rows.append((prefix, value))


def _table(rows, header=("setting", "value")) -> str:
    out = ["<table>", "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"]
    for row in rows:
        cells = []
        for value in row:
            if isinstance(value, float):
                cells.append(f'<td class="num">{value:.4g}</td>')
            else:
                text = json.dumps(value) if isinstance(value, (list, tuple)) else str(value)
                cells.append(f"<td>{html.escape(text)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    return "\n".join(out + ["</table>"])


def _texts(items: list[str]) -> str:
    return '<ul class="texts">' + "".join(f"<li>{html.escape(t)}</li>" for t in items) + "</ul>"


def _curves(run: Path) -> str:
    path = run / runs.PLOTS_DIR / "curves.png"
    if not path.is_file():
        from .monitor import read_metrics
        from .viz import plot_curves

        rows = read_metrics(run) if (run / runs.METRICS_NAME).is_file() else []
        if not rows:
            return '<p class="muted">No training metrics in this folder.</p>'
        buffer_path = run / runs.PLOTS_DIR / "curves.png"
        buffer_path.parent.mkdir(exist_ok=True)
        if plot_curves(rows, buffer_path) is None:
            return '<p class="muted">No training metrics in this folder.</p>'
    return _img(path, "training curves")


def _last_validation(run: Path) -> list[tuple[str, float]]:
    from .monitor import read_metrics

    if not (run / runs.METRICS_NAME).is_file():
        return []
    rows = [r for r in read_metrics(run) if r.get("split") == "val"]
    if not rows:
        return []
    best = min(rows, key=lambda r: r.get("loss", float("inf")))
    return [(k, float(v)) for k, v in best.items() if isinstance(v, (int, float)) and k not in ("split",)]


def _evaluation(run: Path) -> str:
    path = run / runs.EVALUATION_NAME
    if not path.is_file():
        return (f'<p class="muted">Not evaluated yet: <code>vaekit evaluate {html.escape(str(run))} --data '
                "TEST_DATA</code> writes evaluation.json, shown here.</p>")
    report = read_json(path)
    keys = ("items", "data", "iw_samples", "neg_elbo", "rec", "kl", "iw_nll", "iw_nll_std_error", "perplexity",
            "mutual_information", "active_units", "latent_dim")
    body = _table([(k, report[k]) for k in keys if k in report], header=("metric (nats per item)", "value"))
    variations = report.get("variations")
    if variations:
        rows = [(name, m.get("similarity_to_input", float("nan")), m.get("bleu_to_input", float("nan")),
                 m.get("distinct_2", float("nan")), m.get("self_bleu", float("nan")))
                for name, m in variations["systems"].items()]
        body += "<h3>Variations</h3>" + _table(rows, header=("system", "similarity to input", "BLEU to input",
                                                              "distinct-2", "self-BLEU"))
    return body


def _image_samples(model, seed: int) -> str:
    from .viz import auto_scale, image_grid

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        images = model.sample(64, generator=generator)
    return _img(_png_bytes(image_grid(images, nrow=8, scale=auto_scale(model.config.height))), "prior samples")


def _validation_texts(run: Path, model, n: int = 3) -> list[str]:
    from .data.text import TokenFile

    stem = run / "data" / "val"
    try:
        tokens = TokenFile(stem)
    except Exception:  # a save_pretrained folder has no token files
        return []
    picked = np.linspace(0, len(tokens) - 1, num=min(n, len(tokens))).astype(int) if len(tokens) else []
    return [model.tokenizer.decode(tokens[int(i)].tolist()) for i in picked]


def _text_samples(run: Path, model, seed: int) -> str:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        samples = model.sample(8, generator=generator)
    body = "<h3>Prior samples (greedy)</h3>" + _texts(samples)
    for text in _validation_texts(run, model):
        variations = [v.text for v in model.vary(text, n=5, seed=seed, temperature=0.5)]
        body += f"<h3>Variations of: {html.escape(text)}</h3>" + _texts(variations or ["(no distinct variation)"])
    return body


def _latent(run: Path) -> str:
    path = run / runs.PLOTS_DIR / "latent.png"
    if path.is_file():
        return _img(path, "latent plot")
    return (f'<p class="muted">No latent plot yet: <code>vaekit latent-plot {html.escape(str(run))} --data DATA '
            f"--out {html.escape(str(run / 'plots' / 'latent.png'))}</code> draws one.</p>")


def _anomaly(run: Path) -> str:
    from .anomaly import read_calibration
    from .viz import _pyplot

    calibration = read_calibration(run)
    if calibration is None:
        return ""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    counts, edges = calibration["histogram"]["counts"], calibration["histogram"]["edges"]
    ax.stairs(counts, edges, fill=True, alpha=0.6, color="tab:blue", label=f"normal ({calibration['items']})")
    ax.axvline(calibration["threshold"], color="black", linestyle="--",
               label=f"threshold {calibration['threshold']:.1f} (fpr {calibration['fpr']})")
    ax.set_xlabel(f"{calibration['score']} (nats)")
    ax.set_ylabel("items")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    body = "<h2>Anomaly threshold</h2>" + _table([(k, calibration[k]) for k in (
        "score", "iw_samples", "fpr", "threshold", "observed_fpr", "items", "data")])
    body += _img(_figure_bytes(fig), "calibration histogram")
    scores = run / runs.PLOTS_DIR / "scores.png"
    if scores.is_file():
        body += "<h3>Last labelled scoring</h3>" + _img(scores, "score histograms")
    return body


def write_report(run: str | Path, out: str | Path, seed: int = 0) -> Path:
    """Write the HTML report of ``run`` to ``out``."""
    from .models import load

    run, out = Path(run), Path(out)
    if not (run / runs.CONFIG_NAME).is_file():
        raise VaekitError(f"{run}: not a run folder (config.json is missing)")
    model = load(run)
    raw = read_json(run / runs.CONFIG_NAME)
    text = modality_of(model) == "text"
    config_rows = []
    for section in ("model", "training", "data"):
        if section in raw:
            _flatten(section, raw[section], config_rows)
    config_rows = [(k, v) for k, v in config_rows if k != "data.stats" and not k.startswith("model.tokenizer.")]
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>vaekit report: {html.escape(run.name)}</title>",
             f"<style>{STYLE}</style></head><body>",
             f"<h1>{html.escape(run.name)}</h1>",
             f'<p class="muted">{html.escape(model.model_type)} with a {model.latent_dim}-dimensional latent; '
             f"run folder <code>{html.escape(str(run.resolve()))}</code></p>",
             "<h2>Training curves</h2>", _curves(run)]
    best = _last_validation(run)
    if best:
        parts += ["<h3>Best validation epoch</h3>", _table(best, header=("metric", "value"))]
    parts += ["<h2>Evaluation</h2>", _evaluation(run),
              "<h2>" + ("Samples and variations" if text else "Samples") + "</h2>",
              _text_samples(run, model, seed) if text else _image_samples(model, seed),
              "<h2>Latent space</h2>", _latent(run), _anomaly(run),
              "<h2>Configuration</h2>", "<details open><summary>config.json</summary>", _table(config_rows),
              "</details>", "</body></html>"]
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, "\n".join(parts))
    return out
