"""A pretrained language model's tokenizer behind vaekit's tokenizer interface.

vaekit's decoding and data code speak ids with its four special tokens at 0-3 (<pad>, <unk>, <bos>, <eos>).
``LMTokenizer`` shows the LM's vocabulary shifted up by four: vaekit id = LM id + 4. The LM's own special
tokens (its <|endoftext|>, chat markers, ...) are never produced from text and never decoded, so a variation
cannot contain one. Saved as the LM's ``tokenizer.json`` (HF ``tokenizers``), which keeps casing and spacing:
decoding gives text as people write it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from ..config import atomic_write_text
from ..errors import VaekitError
from .tokenizer import SPECIALS, content_ids, fingerprint

OFFSET = len(SPECIALS)


class LMTokenizer:
    def __init__(self, tokenizer, special_ids: Iterable[int] = ()):
        self.tokenizer = tokenizer  # a tokenizers.Tokenizer
        added = [i for i, token in tokenizer.get_added_tokens_decoder().items() if token.special]
        self.lm_special_ids = sorted(set(added) | set(special_ids))  # LM ids, masked in decoding

    @classmethod
    def from_hf(cls, hf_tokenizer) -> "LMTokenizer":
        """From a transformers fast tokenizer (its Rust ``backend_tokenizer``)."""
        from tokenizers import Tokenizer

        specials = [i for i in (hf_tokenizer.bos_token_id, hf_tokenizer.eos_token_id, hf_tokenizer.pad_token_id,
                                hf_tokenizer.unk_token_id) if i is not None]
        return cls(Tokenizer.from_str(hf_tokenizer.backend_tokenizer.to_str()), specials)

    @classmethod
    def load(cls, path: str | Path, special_ids: Iterable[int] = ()) -> "LMTokenizer":
        from tokenizers import Tokenizer

        path = Path(path)
        if not path.is_file():
            raise VaekitError(f"{path}: file is missing (the decoder's tokenizer is needed to read and write text)")
        try:
            return cls(Tokenizer.from_file(str(path)), special_ids)
        except Exception as exc:  # tokenizers raises a bare Exception on malformed JSON
            raise VaekitError(f"{path}: not a readable tokenizer file ({str(exc).splitlines()[0]})") from None

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, self.tokenizer.to_str(pretty=False))

    def fingerprint(self) -> str:
        return fingerprint(self.tokenizer)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True) + OFFSET

    def _strip_special(self, ids: list[int]) -> list[int]:
        banned = self.lm_special_ids
        return [i + OFFSET for i in ids if i not in banned]

    def encode(self, text: str) -> list[int]:
        return self._strip_special(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [self._strip_special(e.ids) for e in self.tokenizer.encode_batch(texts, add_special_tokens=False)]

    def count(self, text: str) -> int:
        return len(self.encode(text))

    def decode(self, ids: Iterable[int]) -> str:
        """Ids up to the first <eos>, without special tokens, as text (<unk> never occurs: no word is unknown)."""
        kept = [i - OFFSET for i in content_ids(ids) if i >= OFFSET]
        text = self.tokenizer.decode(kept, skip_special_tokens=True).replace("\ufeff", "")  # no stray BOM
        return " ".join(text.split())  # a unit is one line: an LM's newline inside a headline is a space

    def unknown_fraction(self, text: str) -> float:
        return 0.0  # byte-level subwords: no word is unknown

    def word_forms(self, word: str) -> set[str]:
        """The spellings a banned word is masked in: as given, lowercased, capitalised and upper case, each alone
        and after a space (a subword vocabulary has a token for " word" apart from "word")."""
        forms = {word, word.lower(), word.capitalize(), word.upper()}
        return forms | {" " + f for f in forms}
