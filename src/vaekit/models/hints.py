"""Word hints: a pretrained decoder that also reads some of the text's own words in its prompt.

The measurements behind it (docs/pretrained-backbone.md): the instruct LM keeps a text's meaning when the text
sits in its context (the prompted baseline: MiniLM similarity 0.73), while a decoder that must learn to read the
meaning from z alone reached 0.31 after 14 minutes on 2 cores. So the decoder is trained as
p(x | z, w) with w a random subset of x's content words, shuffled, given as a user turn of the LM's chat template
before the text's answer turn:

    w ~ keep each content word of x with probability u, u ~ U(0, 1); w = {} with probability ``hint_dropout``
    L = E_w [ -ELBO(x | w) ] = E_w E_q(z|x) [ -log p(x | z, w) ] + beta KL(q(z|x) || p(z))

z still carries the rest (the word order, the words left out, the form), and with w = {} the model is the plain
VAE p(x) = E_p(z) p(x | z): likelihoods (validation, IW-NLL, scores) are always computed that way, never with
words taken from the text they score. ``vary`` gives each draw its own subset of the input's content words (each
kept with probability ``hint_keep``): the meaning comes with the words, the variation from z and the words left
out. It is a conditional VAE over a hint drawn from the text itself (cf. the conditional VAE for paraphrase of
Gupta et al. 2018, which needs paraphrase pairs this does not), trained without any paraphrase data.
"""
from __future__ import annotations

import random
import re

_WORD = re.compile(r"\w+(?:['’]\w+)?", re.UNICODE)
MAX_WORDS = 16  # words a prompt names at most: a headline has fewer content words, a long sentence's extra ones go


def _stop_words() -> frozenset[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS)


def content_words(text: str) -> list[str]:
    """The text's words that are not English stop words, as written, each once, in order."""
    stop = _stop_words()
    seen, words = set(), []
    for word in _WORD.findall(text):
        key = word.lower()
        if key not in stop and key not in seen:
            seen.add(key)
            words.append(word)
    return words


def pick(words: list[str], keep: float, rng: random.Random) -> list[str]:
    """Each word kept with probability ``keep``, the kept ones shuffled (their order is z's to say), at most
    MAX_WORDS."""
    kept = [w for w in words if rng.random() < keep]
    rng.shuffle(kept)
    return kept[:MAX_WORDS]


def training_words(text: str, dropout: float, rng: random.Random) -> list[str]:
    """The words a training text is given: none with probability ``dropout``, else each content word with a
    probability u ~ U(0, 1) drawn for this text, so that every density of hint is seen."""
    if rng.random() < dropout:
        return []
    return pick(content_words(text), rng.random(), rng)


def prompt_parts(lm_tokenizer) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(ids before the words, ids after them): the user turn of the LM's chat template without its system prompt
    (SmolLM2: "<|im_start|>user\\n" ... "<|im_end|>\\n"), or "Keywords: " ... "\\n" for an LM without one."""
    marker = "\u2063WORDS\u2063"
    encode = lambda text: tuple(lm_tokenizer(text, add_special_tokens=False).input_ids)  # noqa: E731
    if getattr(lm_tokenizer, "chat_template", None):
        try:
            rendered = lm_tokenizer.apply_chat_template([{"role": "user", "content": marker}], tokenize=False)
        except Exception:  # a template that needs other turns: the plain form below
            rendered = ""
        at = rendered.find(marker)
        if at >= 0:  # ChatML's user turn alone; another template's whole text before the words
            return encode(rendered[max(rendered.rfind("<|im_start|>", 0, at), 0):at]), encode(rendered[at + len(marker):])
    return encode("Keywords: "), encode("\n")
