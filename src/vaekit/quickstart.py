"""``vaekit quickstart``: complete image and text runs on real data that ship with dependencies.

- Images: scikit-learn bundles the UCI optical-recognition handwritten digits (1,797 images, 8x8, grey
  levels 0-16, labelled 0-9).
- Text: gensim bundles the Lee news corpus (``gensim.test.utils.datapath("lee_background.cor")``: 300
  Australian news articles, one per line, about 2,700 sentences).
No download and no data folder are needed.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .conditions import DenseCondition
from .config import TrainConfig
from .data.images import ImageDataset

LEE_EXAMPLES = (
    "Hundreds of people have been forced to vacate their homes in the Southern Highlands of New South Wales.",
    "The Australian cricket team has won the first test match.",
    "Police say they have arrested a man over the attack.",
)


# the pretrained text model's budget: 2 minutes, but at least 20 steps of 16 (fewer left its variations unreadable)
TEXT_MINUTES = 2.0
TEXT_MIN_STEPS = 20


def digits_dataset() -> ImageDataset:
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.rint(digits.images / 16.0 * 255).astype(np.uint8)[:, None]  # (1797, 1, 8, 8)
    return ImageDataset(torch.from_numpy(pixels), digits.target.astype(np.int64),
                        [str(i) for i in range(10)], source="sklearn.datasets.load_digits")


def lee_corpus() -> str:
    from gensim.test.utils import datapath

    return datapath("lee_background.cor")


def free_folder(out: Path) -> Path:
    """``out`` if it is free, else ``out-2``, ``out-3``...: a quickstart never overwrites a run."""
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return out
    n = 2
    while (candidate := out.with_name(f"{out.name}-{n}")).exists():
        n += 1
    return candidate


def run_image_quickstart(out: str | Path = "runs/quickstart", epochs: int = 80, progress: bool = False):
    from .images import train_image

    training = TrainConfig(epochs=epochs, batch_size=64, lr=2e-3, val_fraction=0.1, seed=0)
    # a 2-D latent gives the classic picture: classes as clusters, and the decoded manifold beside them
    return train_image(digits_dataset(), free_folder(Path(out)), preset="default",
                       model_overrides={"latent_dim": 2}, training=training, progress=progress)


def run_text_quickstart(out: str | Path = "runs/quickstart-text", epochs: int | None = None, progress: bool = False,
                        backbone: str = "pretrained", minutes: float = TEXT_MINUTES,
                        min_steps: int = TEXT_MIN_STEPS):
    """A text VAE on the Lee corpus.

    ``backbone="pretrained"`` (the default): the VAE between the bundled MiniLM encoder and SmolLM2-135M-Instruct
    decoder, with word hints (models/hints.py): its English comes from the LM, and each variation's decoder is given
    some of the input's content words, which keeps its meaning. Trained for ``minutes`` but at least ``min_steps``
    steps of 16 (the LoRA adapters and z's memory learn the corpus's form; the LM already writes English). Measured
    on a 2-core AVX2 CPU: after 17 and 19 steps the variations were English on the input's subject, after 7 they
    were not (validation reconstruction 113-114 nats against 125). ``"rnn"``: a small sentence VAE that learns
    English from these 2,700 sentences alone (KL annealing and word dropout keep z in use, Bowman et al. 2016; the
    decoder also reads each sentence's MiniLM embedding), for ``epochs`` (12)."""
    from .texts import train_text

    out = free_folder(Path(out))
    if backbone == "pretrained":
        training = TrainConfig(epochs=epochs or 1, batch_size=16, lr=5e-4, val_fraction=0.02, seed=0, grad_clip=5.0,
                               free_bits=0.5, ae_warmup_steps=300, max_minutes=minutes, min_steps=min_steps)
        return train_text(lee_corpus(), out, training=training, unit="sentence", max_tokens=48, progress=progress,
                          backbone={"hints": True})
    training = TrainConfig(epochs=epochs or 12, batch_size=32, lr=2e-3, val_fraction=0.1, seed=0, grad_clip=5.0,
                           kl_schedule="linear", free_bits=0.1)
    overrides = dict(embedding_dim=128, encoder_hidden=(128,), decoder_hidden=256, latent_dim=16, word_dropout=0.2)
    return train_text(lee_corpus(), out, model_overrides=overrides, training=training,
                      unit="sentence", max_tokens=48, progress=progress, condition=DenseCondition("sentence"))
