"""Pictures people would rather look at than read: image grids, training curves, latent plots.

matplotlib is imported lazily with the Agg backend, so nothing here needs a display.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .config import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def image_grid(images: torch.Tensor, nrow: int | None = None, padding: int = 2, scale: int = 1) -> np.ndarray:
    """Float images (n, c, h, w) in [0, 1] -> one uint8 picture (H, W, 3) with the images in rows."""
    images = images.detach().float().clamp(0, 1).cpu()
    n, c, h, w = images.shape
    if c == 1:
        images = images.expand(n, 3, h, w)
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / nrow)
    grid = torch.ones(3, rows * (h + padding) + padding, nrow * (w + padding) + padding, device="cpu")
    for i in range(n):
        r, col = divmod(i, nrow)
        top, left = padding + r * (h + padding), padding + col * (w + padding)
        grid[:, top:top + h, left:left + w] = images[i]
    picture = (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    if scale > 1:
        picture = picture.repeat(scale, axis=0).repeat(scale, axis=1)
    return picture


def auto_scale(height: int) -> int:
    """Upscale small images so that a saved grid is comfortable to look at (8x8 digits become 64x64)."""
    return max(1, 64 // max(1, height))


def save_png(picture: np.ndarray, path: str | os.PathLike) -> Path:
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=path.suffix) as tmp:
        Image.fromarray(picture).save(tmp, format="PNG")
    return path


def save_figure(fig, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=path.suffix) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")
    _pyplot().close(fig)
    return path


def plot_curves(rows: Sequence[dict], path: str | os.PathLike) -> Path | None:
    """Training curves from metrics.jsonl rows: loss, reconstruction and KL, train (per logged step) and
    validation (per epoch), against the optimisation step."""
    train = [r for r in rows if r.get("split") == "train"]
    val = [r for r in rows if r.get("split") == "val"]
    if not train and not val:
        return None
    plt = _pyplot()
    keys = [("loss", "negative ELBO (nats)"), ("rec", "reconstruction (nats)"), ("kl", "KL (nats)")]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, (key, title) in zip(axes, keys):
        if train:
            ax.plot([r["step"] for r in train], [r[key] for r in train], lw=1, alpha=0.7, label="train")
        if val:
            ax.plot([r["step"] for r in val], [r[key] for r in val], "o-", lw=1.5, ms=3, label="validation")
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        finite = [r[key] for r in train[len(train) // 10:] + val if math.isfinite(r[key])]
        if key != "kl" and finite:  # the first steps' huge losses would flatten the rest of the curve
            lo, hi = min(finite), max(finite)
            ax.set_ylim(lo - 0.05 * (hi - lo + 1e-9), hi + 0.05 * (hi - lo + 1e-9))
    fig.tight_layout()
    # one legend above the three panels: it covers no curve, and unlike loc="best" it does not search every
    # plotted point for a free corner (matplotlib warns that this is slow on long runs)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", bbox_to_anchor=(0.5, 0.98), ncol=2,
               frameon=False)
    return save_figure(fig, path)


def plot_latent_points(points: np.ndarray, labels: np.ndarray | None, label_names: Sequence[str] | None,
                       axis: Sequence[str], path: str | os.PathLike, manifold: np.ndarray | None = None,
                       title: str = "") -> Path:
    """A 2-D scatter of ``points`` coloured by integer ``labels`` (names from ``label_names``)."""
    plt = _pyplot()
    ncols = 2 if manifold is not None else 1
    fig, axes = plt.subplots(1, ncols, figsize=(6.5 * ncols, 5.5), squeeze=False)
    ax = axes[0, 0]
    if labels is not None:
        classes = np.unique(labels)
        cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
        for i, cls in enumerate(classes):
            keep = labels == cls
            name = label_names[cls] if label_names is not None and cls < len(label_names) else str(cls)
            ax.scatter(points[keep, 0], points[keep, 1], s=4, alpha=0.6, color=cmap(i % cmap.N), label=name)
        ax.legend(markerscale=3, fontsize=8, loc="best", ncol=2 if len(classes) > 10 else 1)
    else:
        ax.scatter(points[:, 0], points[:, 1], s=4, alpha=0.6)
    ax.set_xlabel(axis[0])
    ax.set_ylabel(axis[1])
    ax.set_title(title or "posterior means")
    ax.grid(alpha=0.3)
    if manifold is not None:
        axes[0, 1].imshow(manifold)
        axes[0, 1].set_title("decoded latent grid (Gaussian quantiles)")
        axes[0, 1].axis("off")
    fig.tight_layout()
    return save_figure(fig, path)
