import os
from pathlib import Path

import numpy as np
import pytest
import torch

from vaekit import ImageVAE, ImageVAEConfig

SHARED_DATA = Path(os.environ.get("VAEKIT_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture
def shared_data() -> Path:
    """../shared/data beside the checkout. Missing is a failure, never a skip."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"shared data folder {SHARED_DATA} is missing; tests marked 'data' need it "
                    "(set VAEKIT_SHARED_DATA to its location)")
    return SHARED_DATA


def blobs(n: int = 64, h: int = 12, w: int = 10, c: int = 1, seed: int = 0) -> np.ndarray:
    """Tiny structured images (n, h, w[, c]) uint8: a bright rectangle at a random place."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, h, w, c), dtype=np.uint8)
    for i in range(n):
        top, left = rng.integers(0, h - 4), rng.integers(0, w - 4)
        images[i, top:top + 4, left:left + 4] = rng.integers(150, 256, size=c)
    return images[..., 0] if c == 1 else images


@pytest.fixture
def tiny_npz(tmp_path) -> Path:
    path = tmp_path / "tiny.npz"
    np.savez(path, x=blobs(64), y=np.arange(64) % 3)
    return path


def tiny_model(**overrides) -> ImageVAE:
    cfg = dict(in_channels=1, height=12, width=10, channels=(4, 8), hidden_dims=(16,), latent_dim=3)
    cfg.update(overrides)
    torch.manual_seed(0)
    return ImageVAE(ImageVAEConfig(**cfg))
