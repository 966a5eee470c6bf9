"""Latent codes as data: write them (.npz, .csv, .parquet), project them to 2-D (PCA, or UMAP when
umap-learn is installed), draw them (PNG and an interactive plotly HTML page), and walk along one latent
dimension (traversals) to see what it does.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .config import atomic_path, atomic_write_text
from .distributed import to_device
from .errors import VaekitError
from .items import with_progress

FORMATS = ("npz", "csv", "parquet")
METHODS = ("auto", "pca", "umap")


def code_format(out: Path, fmt: str | None) -> str:
    """--format, or the --out suffix."""
    if fmt is None:
        fmt = out.suffix.lower().lstrip(".")
        if fmt not in FORMATS:
            raise VaekitError(f"--out {out}: name a .npz, .csv or .parquet file, or pass --format")
    if fmt not in FORMATS:
        raise VaekitError(f"--format {fmt}: choose one of {', '.join(FORMATS)}")
    return fmt


def write_codes(codes: dict, out: str | Path, fmt: str | None = None) -> Path:
    """``codes``: mean and logvar (n, d), ids (n,), optional labels (n,). One row per item in CSV/Parquet
    (id, label, mean_0..mean_{d-1}, logvar_0..logvar_{d-1})."""
    out = Path(out)
    fmt = code_format(out, fmt)
    out.parent.mkdir(parents=True, exist_ok=True)
    mean, logvar = np.asarray(codes["mean"], dtype=np.float32), np.asarray(codes["logvar"], dtype=np.float32)
    ids = [str(i) for i in codes.get("ids", range(len(mean)))]
    labels = codes.get("labels")
    d = mean.shape[1]
    if fmt == "npz":
        arrays = {"mean": mean, "logvar": logvar, "ids": np.array(ids)}
        if labels is not None:
            arrays["labels"] = np.array([str(v) for v in labels])
        with atomic_path(out, suffix=".npz") as tmp:  # numpy appends .npz to a name without it
            np.savez_compressed(tmp, **arrays)
        return out
    columns = {"id": ids}
    if labels is not None:
        columns["label"] = [str(v) for v in labels]
    columns.update({f"mean_{j}": mean[:, j] for j in range(d)})
    columns.update({f"logvar_{j}": logvar[:, j] for j in range(d)})
    if fmt == "csv":
        import csv

        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(list(columns))
        numeric = np.concatenate([mean, logvar], axis=1)
        for i in range(len(mean)):
            head = [ids[i]] + ([columns["label"][i]] if labels is not None else [])
            writer.writerow(head + [f"{v:.6g}" for v in numeric[i].tolist()])
        atomic_write_text(out, buffer.getvalue())
        return out
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise VaekitError("--format parquet needs pyarrow: pip install 'vaekit[parquet]'") from exc
    with atomic_path(out) as tmp:
        pq.write_table(pa.table(columns), tmp)
    return out


def project(means: np.ndarray, method: str = "auto", seed: int = 0) -> tuple[np.ndarray, list[str], str]:
    """2-D points for a scatter: the codes themselves for d <= 2, else PCA or UMAP (McInnes et al. 2018).
    Returns (points, axis names, method used)."""
    if method not in METHODS:
        raise VaekitError(f"--method {method}: choose one of {', '.join(METHODS)}")
    d = means.shape[1]
    if d <= 2:
        points = means if d == 2 else np.c_[means, np.zeros(len(means))]
        return points, ["z1", "z2"], "identity"
    if method in ("auto", "umap"):
        try:
            import umap  # noqa: F401  (optional: pip install umap-learn)
        except ImportError:
            if method == "umap":
                raise VaekitError("--method umap needs umap-learn: pip install umap-learn") from None
        else:
            import warnings

            with warnings.catch_warnings():  # umap warns that a seed turns off its parallelism: intended
                warnings.simplefilter("ignore")
                reducer = umap.UMAP(n_components=2, random_state=seed)
                points = reducer.fit_transform(means)
            return points, ["UMAP 1", "UMAP 2"], "umap"
    from sklearn.decomposition import PCA

    pca = PCA(n_components=2, random_state=seed)
    points = pca.fit_transform(means)
    return points, [f"PC{i + 1} ({v:.0%} of variance)" for i, v in enumerate(pca.explained_variance_ratio_)], "pca"


def interactive_plot(points: np.ndarray, labels: Sequence[str] | None, hover: Sequence[str], axis: list[str],
                     path: str | Path, title: str) -> Path:
    """A self-contained HTML scatter (plotly, its JavaScript embedded: works offline); hover shows each
    item's id (and text)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    if labels is None:
        fig.add_trace(go.Scattergl(x=points[:, 0], y=points[:, 1], mode="markers", text=list(hover),
                                   hoverinfo="text", marker={"size": 4, "opacity": 0.7}, name="items"))
    else:
        labels = np.asarray([str(v) for v in labels])
        for name in sorted(set(labels.tolist()), key=_natural):
            keep = labels == name
            fig.add_trace(go.Scattergl(x=points[keep, 0], y=points[keep, 1], mode="markers",
                                       text=[h for h, k in zip(hover, keep) if k], hoverinfo="text",
                                       marker={"size": 4, "opacity": 0.7}, name=name))
    fig.update_layout(title=title, xaxis_title=axis[0], yaxis_title=axis[1], template="plotly_white",
                      legend={"itemsizing": "constant"}, width=900, height=700)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.write_html(tmp, include_plotlyjs=True, full_html=True)
    return path


def _natural(value: str):
    return (0, int(value), "") if value.lstrip("-").isdigit() else (1, 0, value)


def plot_latent(means: np.ndarray, labels: np.ndarray | None, label_names: Sequence[str] | None,
                path: str | Path, manifold: np.ndarray | None = None, title: str = "") -> Path:
    """Posterior means coloured by label. Latent > 2 is projected onto its first two principal components.
    ``manifold`` (a picture of the decoded latent grid, for a 2-D latent) is drawn beside the scatter."""
    from .viz import plot_latent_points

    points, axis, _ = project(means, "pca")
    return plot_latent_points(points, labels, label_names, axis, path, manifold=manifold, title=title)


def latent_figure(means: np.ndarray, labels: Sequence[str] | None, ids: Sequence[str], out: str | Path,
                  method: str = "auto", title: str = "", manifold: np.ndarray | None = None,
                  texts: Sequence[str] | None = None, html: bool = True, seed: int = 0) -> dict:
    """PNG (or PDF/SVG) scatter of the posterior means coloured by label, and an HTML version beside it."""
    from .viz import plot_latent_points

    out = Path(out)
    points, axis, used = project(means, method, seed)
    if labels is not None:
        names = sorted(set(str(v) for v in labels), key=_natural)
        index = {name: i for i, name in enumerate(names)}
        codes = np.array([index[str(v)] for v in labels])
    else:
        names, codes = None, None
    picture = plot_latent_points(points, codes, names, axis, out, manifold=manifold, title=title)
    written = {"picture": picture, "method": used}
    if html:
        hover = [f"{i}: {t[:120]}" for i, t in zip(ids, texts)] if texts is not None else [str(i) for i in ids]
        written["html"] = interactive_plot(points, labels, hover, axis, out.with_suffix(".html"), title)
    return written


def check_dims(model, dims: Sequence[int]) -> list[int]:
    d = model.latent_dim
    for k in dims:
        if not 0 <= k < d:
            raise VaekitError(f"--dim {k}: the model's latent has {d} dimensions (0 to {d - 1})")
    return list(dims)


@torch.no_grad()
def traversal_codes(base: torch.Tensor, dims: Sequence[int], low: float, high: float, steps: int) -> torch.Tensor:
    """(len(dims) * steps, d): ``base`` with dimension k set to each of ``steps`` values in [low, high]."""
    if steps < 2:
        raise VaekitError(f"--steps {steps}: must be at least 2")
    if not low < high:
        raise VaekitError(f"--range {low} {high}: the first value must be below the second")
    values = torch.linspace(low, high, steps, device=base.device)
    rows = []
    for k in dims:
        z = base.repeat(steps, 1)
        z[:, k] = values
        rows.append(z)
    return torch.cat(rows)


@torch.no_grad()
def encode_items(model, items, progress: bool = False) -> dict:
    """Posterior means and log-variances (n, d) of ``items`` (vaekit.items.Items), with ids and labels."""
    from .memory import trim

    model.eval()
    means, logvars = [], []
    batches = with_progress(items.batches(), total=items.count, desc="encoding", unit="item", disable=not progress)
    for i, (bar, batch) in enumerate(batches, start=1):
        posterior = model.encode(to_device(batch, model.device))
        means.append(posterior.mean.float().cpu().numpy().copy())  # not a view that keeps the head's output alive
        logvars.append(posterior.logvar.float().cpu().numpy().copy())
        bar.update(len(batch))
        if i % 20 == 0:
            trim()  # see vaekit.memory: without it, resident memory grows with the number of batches
    codes = {"mean": np.concatenate(means), "logvar": np.concatenate(logvars), "ids": items.ids}
    if items.labels is not None:
        codes["labels"] = items.labels
    return codes
