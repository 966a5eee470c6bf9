"""Tokenizers from HF ``tokenizers``, saved as ``tokenizer.json`` in the run folder.

- "word": a word-level vocabulary of the ``vocab_size`` most frequent words, unknown words -> <unk> (what the
  design documents' Keras ``Tokenizer(num_words=...)`` does). Punctuation is split from words unless the
  text is already tokenized (``pretokenized``, e.g. Penn Treebank), when only whitespace separates tokens.
- "bpe": byte-pair encoding subwords (Sennrich et al. 2016) with a metaspace marker, so decoding restores
  the spacing exactly and no word is ever unknown.
Special tokens: <pad> = 0, <unk> = 1, <bos> = 2, <eos> = 3.
"""
from __future__ import annotations

import hashlib
import os

import dataclasses
import re
from pathlib import Path
from typing import Iterable, Literal

from ..config import atomic_write_text
from ..errors import VaekitError
from ..runs import TOKENIZER_NAME  # noqa: F401 (re-exported: models name the file through here)

# HF tokenizers' own thread pool competes with PyTorch's for the same cores and, with glibc's per-thread
# arenas, made encoding 1M texts take 45% more memory; one thread is plenty for batches of short texts.
# A user's explicit setting wins.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
SPECIALS = (PAD, UNK, BOS, EOS)
PAD_ID, UNK_ID, BOS_ID, EOS_ID = range(4)


@dataclasses.dataclass(frozen=True)
class TokenizerConfig:
    kind: Literal["word", "bpe"] = "word"
    vocab_size: int = 20000
    lowercase: bool = True
    pretokenized: bool = False
    min_frequency: int = 1

    def __post_init__(self):
        if self.vocab_size < len(SPECIALS) + 1:
            raise VaekitError(f"--vocab-size {self.vocab_size}: must be at least {len(SPECIALS) + 1}")


_NO_SPACE_BEFORE = re.compile(r" ([.,!?;:%)\]}”’]|'s\b|n't\b|'re\b|'ve\b|'ll\b|'d\b|'m\b)")
_NO_SPACE_AFTER = re.compile(r"([(\[{$“‘]) ")
_APOSTROPHE = re.compile(r"(\w) ' (\w)")


def detokenize_words(tokens: list[str]) -> str:
    """Join word-level tokens, closing the spaces that splitting punctuation opened."""
    text = " ".join(tokens)
    text = _APOSTROPHE.sub(r"\1'\2", text)
    text = _NO_SPACE_BEFORE.sub(r"\1", text)
    return _NO_SPACE_AFTER.sub(r"\1", text)


def content_ids(ids: Iterable[int]) -> list[int]:
    """The ids before the first <eos>, without <pad> and <bos>: what a decoded text is made of."""
    kept = []
    for i in ids:
        i = int(i)
        if i == EOS_ID:
            break
        if i not in (PAD_ID, BOS_ID):
            kept.append(i)
    return kept


def fingerprint(tokenizer) -> str:
    """sha256 prefix of a ``tokenizers.Tokenizer``'s JSON: another vocabulary of the same size is told apart."""
    return hashlib.sha256(tokenizer.to_str(pretty=False).encode()).hexdigest()[:16]


class TextTokenizer:
    """A ``tokenizers.Tokenizer`` with vaekit's special tokens and decoding rules."""

    def __init__(self, tokenizer, config: TokenizerConfig):
        self.tokenizer = tokenizer
        self.config = config
        for i, token in enumerate(SPECIALS):
            if tokenizer.token_to_id(token) != i:
                raise VaekitError(f"tokenizer: special token {token} must have id {i}")

    @classmethod
    def train(cls, texts: Iterable[str], config: TokenizerConfig) -> "TextTokenizer":
        from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

        if config.kind == "word":
            tokenizer = Tokenizer(models.WordLevel(unk_token=UNK))
            tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit() if config.pretokenized else pre_tokenizers.Whitespace()
            trainer = trainers.WordLevelTrainer(vocab_size=config.vocab_size, min_frequency=config.min_frequency,
                                                special_tokens=list(SPECIALS), show_progress=False)
        else:
            tokenizer = Tokenizer(models.BPE(unk_token=UNK))
            tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
            tokenizer.decoder = decoders.Metaspace()
            trainer = trainers.BpeTrainer(vocab_size=config.vocab_size, min_frequency=max(2, config.min_frequency),
                                          special_tokens=list(SPECIALS), show_progress=False)
        steps = [normalizers.NFKC()] + ([normalizers.Lowercase()] if config.lowercase else [])
        tokenizer.normalizer = normalizers.Sequence(steps)
        # added before training, so that a literal "<unk>" in the corpus (as in Penn Treebank) is matched whole
        tokenizer.add_special_tokens(list(SPECIALS))
        tokenizer.train_from_iterator(texts, trainer=trainer)
        if config.kind == "word":
            # the trainer also counts a literal "<unk>" as a word, which can shift the special ids: rebuild the
            # vocabulary as the specials at 0-3 followed by the words in the trainer's (frequency) order
            vocab = tokenizer.get_vocab(with_added_tokens=False)
            words = [w for w, _ in sorted(vocab.items(), key=lambda item: item[1]) if w not in SPECIALS]
            words = words[:config.vocab_size - len(SPECIALS)]
            tokenizer.model = models.WordLevel(vocab={w: i for i, w in enumerate([*SPECIALS, *words])}, unk_token=UNK)
        if tokenizer.get_vocab_size() <= len(SPECIALS):
            raise VaekitError("the corpus gave no tokens to build a vocabulary from")
        return cls(tokenizer, config)

    @classmethod
    def load(cls, path: str | Path, config: TokenizerConfig) -> "TextTokenizer":
        from tokenizers import Tokenizer

        path = Path(path)
        if not path.is_file():
            raise VaekitError(f"{path}: file is missing (the run's vocabulary is needed to read and write text)")
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises a bare Exception on malformed JSON
            raise VaekitError(f"{path}: not a readable tokenizer file ({str(exc).splitlines()[0]})") from None
        return cls(tokenizer, config)

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, self.tokenizer.to_str(pretty=False))

    def fingerprint(self) -> str:
        return fingerprint(self.tokenizer)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch(texts, add_special_tokens=False)]

    def count(self, text: str) -> int:
        return len(self.encode(text))

    def decode(self, ids: Iterable[int]) -> str:
        """Ids up to the first <eos>, without special tokens, as text."""
        kept = content_ids(ids)
        if self.config.kind == "bpe":
            return self.tokenizer.decode(kept, skip_special_tokens=False).strip()
        tokens = [self.tokenizer.id_to_token(i) for i in kept]
        return " ".join(tokens) if self.config.pretokenized else detokenize_words(tokens)

    def unknown_fraction(self, text: str) -> float:
        ids = self.encode(text)
        return sum(i == UNK_ID for i in ids) / max(1, len(ids))

    def word_forms(self, word: str) -> set[str]:
        """The spellings of a word to mask when it is banned: the word itself (the normaliser lowercases)."""
        return {word}

    def token_ids(self, words: Iterable[str]) -> list[int]:
        """Ids of the given words (for banning or requiring words), unknown ones skipped."""
        ids = []
        for word in words:
            ids += [i for i in self.encode(word) if i != UNK_ID]
        return ids
