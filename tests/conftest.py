import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from vaekit import ImageVAE, ImageVAEConfig

SHARED_DATA = Path(os.environ.get("VAEKIT_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture(autouse=True)
def _seeded():
    """Every test starts from the same global generators, so no result depends on test order or luck."""
    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)


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


CATS = ["black", "small", "lazy", "old", "happy", "grey"]
PLACES = ["red", "soft", "warm", "dirty", "new", "blue"]
FIRMS = ["banks", "airlines", "miners", "retailers", "insurers", "carmakers"]
TIMES = ["early", "late", "heavy", "light", "monday", "friday"]


def two_topic_sentences() -> list[str]:
    """36 cat sentences and 36 market sentences with disjoint vocabularies."""
    cats = [f"the {a} cat sat on the {b} mat." for a in CATS for b in PLACES]
    markets = [f"shares of {f} fell in {t} trading today." for f in FIRMS for t in TIMES]
    return cats + markets


@pytest.fixture
def corpus_txt(tmp_path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(two_topic_sentences() * 3) + "\n", encoding="utf-8")
    return path


def tiny_text_overrides() -> dict:
    return dict(embedding_dim=16, encoder_hidden=(16,), decoder_hidden=32, latent_dim=4, dropout=0.0)


def fit_steps(model, batch, steps: int, lr: float, seed: int = 0, **loss_options):
    """Adam on one batch for ``steps`` steps with a seeded generator; returns the last LossOutput."""
    optimizer = torch.optim.Adam(model.parameters(), lr)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        out = model.loss(batch, generator=generator, **loss_options)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    return out


def run_cli(*args):
    """The vaekit CLI in-process: arguments are turned into strings; exceptions other than exits propagate."""
    from click.testing import CliRunner

    from vaekit.cli import cli

    return CliRunner().invoke(cli, list(map(str, args)), catch_exceptions=False)


def assert_plain_modes(folder: Path) -> None:
    """Every file and folder under ``folder`` has the mode open() and mkdir() give under the umask (atomic writes
    once made files 0600 and the text tokens folder 0700, which others sharing a run folder could not read), and
    no temporary file is left behind."""
    from vaekit.config import FILE_MODE, FOLDER_MODE

    modes = {p.relative_to(folder).as_posix(): p.stat().st_mode & 0o777 for p in folder.rglob("*")}
    assert {p: oct(m) for p, m in modes.items() if m != (FOLDER_MODE if (folder / p).is_dir() else FILE_MODE)} == {}
    assert [p for p in modes if p.split("/")[-1].startswith(".")] == []
