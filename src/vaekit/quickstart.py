"""``vaekit quickstart``: a complete image run on real data that ships with a dependency.

scikit-learn bundles the UCI optical-recognition handwritten digits (1,797 images, 8x8, grey levels
0-16, labelled 0-9), so this needs no download and no data folder.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .config import TrainConfig
from .data.images import ImageDataset


def digits_dataset() -> ImageDataset:
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.rint(digits.images / 16.0 * 255).astype(np.uint8)[:, None]  # (1797, 1, 8, 8)
    return ImageDataset(torch.from_numpy(pixels), digits.target.astype(np.int64),
                        [str(i) for i in range(10)], source="sklearn.datasets.load_digits")


def free_folder(out: Path) -> Path:
    """``out`` if it is free, else ``out-2``, ``out-3``...: a quickstart never overwrites a run."""
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return out
    n = 2
    while (candidate := out.with_name(f"{out.name}-{n}")).exists():
        n += 1
    return candidate


def run_quickstart(out: str | Path = "runs/quickstart", epochs: int = 80, progress: bool = False):
    from .images import train_image

    training = TrainConfig(epochs=epochs, batch_size=64, lr=2e-3, val_fraction=0.1, seed=0)
    # a 2-D latent gives the classic picture: classes as clusters, and the decoded manifold beside them
    return train_image(digits_dataset(), free_folder(Path(out)), preset="default",
                       model_overrides={"latent_dim": 2}, training=training, progress=progress)
