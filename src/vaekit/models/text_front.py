"""The strings-in, strings-out front end of every text model (TextVAE, LMTextVAE): batches from strings, the
units a long text is varied in, ``vary`` / ``sample`` / ``reconstruct`` / ``interpolate`` with every option of the
CLI, and the examples written to the monitor each epoch. ``TextFrontEnd`` is a mixin; the model provides
``tokenizer``, ``config``, ``encode``, the condition methods (ConditionedText) and the decoding hooks that
vaekit.generate uses."""
from __future__ import annotations

import contextlib
from typing import Literal, get_args

import numpy as np
import torch

from ..data.text import TextBatch, collate, split_units
from ..data.tokenizer import TextTokenizer
from ..distributed import to_device
from ..distributions import draw
from ..errors import VaekitError, require_text
from .base import generator_for

# vary's orders of candidates (TextFrontEnd.vary's rank; the CLI's and the server's choices)
Rank = Literal["likelihood", "similarity"]
# how generate.vary draws candidates that are ranked by similarity: 1.5 rows per candidate wanted, the round ended
# once two thirds have finished, no likelihood under the posterior mean (measured in docs/pretrained-backbone.md)
SIMILARITY_DRAWS = {"oversample": 1.5, "finish": 2 / 3, "likelihood": False}


class Variations(list):
    """What ``TextVAE.vary`` returns: a list of ``generate.Variation`` (text, score), best first, with the
    constraint counts of the draw (None when nothing was constrained): ``drawn`` distinct candidates looked at,
    ``passed`` the constraints, ``rejected`` by reason; ``similarities`` to the input when a minimum was asked."""

    def __init__(self, items=(), similarities=None, drawn=None, passed=None, rejected=None):
        super().__init__(items)
        self.similarities, self.drawn, self.passed, self.rejected = similarities, drawn, passed, rejected

    @property
    def texts(self) -> list[str]:
        return [v.text for v in self]


class Samples(Variations):
    """What ``TextVAE.sample`` returns: a list of strings, with the same counts as Variations."""

    @property
    def texts(self) -> list[str]:
        return list(self)


class TextFrontEnd:
    """Strings in, strings out, for a text model with a ``tokenizer``."""

    def _need_tokenizer(self) -> TextTokenizer:
        if self.tokenizer is None:
            raise VaekitError("this model has no tokenizer attached; load it with vaekit.load(RUN)")
        return self.tokenizer

    def batch(self, texts: list[str], labels: list[str] | None = None, infer: bool = True,
              tags: list | None = None, conditions: list[str] | None = None) -> TextBatch:
        """Tokenize and pad strings into a TextBatch on the model's device, truncating each to ``max_tokens``. A
        conditional model's texts carry their labels; without ``labels`` they are inferred (see infer_labels)."""
        tokenizer = self._need_tokenizer()
        batch = collate([np.asarray(ids[:self.config.max_tokens], dtype=np.int64)
                         for ids in tokenizer.encode_batch(list(texts))])
        if labels is not None:
            if len(labels) != len(texts):
                raise VaekitError(f"{len(labels)} labels for {len(texts)} texts")
            batch.labels = torch.tensor([self.label_index(label) for label in labels], dtype=torch.long, device="cpu")
        if tags is not None:
            if len(tags) != len(texts):
                raise VaekitError(f"{len(tags)} tag lists for {len(texts)} texts")
            batch.tags = torch.stack([self.tags_vector(t) for t in tags]) if texts else None
        if self.config.condition_dim and len(texts) and (conditions is not None or infer):
            # each text's condition: the given condition texts, else the texts themselves
            batch.cond = self.embed_conditions(conditions if conditions is not None else list(texts))
        batch = to_device(batch, self.device)
        if labels is None and self.labelled and infer and len(texts):
            batch.labels = self.infer_labels(batch)
        return batch

    def units(self, text: str) -> list[str]:
        """The units a text is varied in: itself when it fits in ``max_tokens``, else its sentences or paragraphs."""
        tokenizer = self._need_tokenizer()
        if self.config.unit == "document" or tokenizer.count(text) <= self.config.max_tokens:
            return [" ".join(text.split())]
        return split_units(text, self.config.unit)

    RANKS = get_args(Rank)
    # the order of vary's candidates when none is asked: "similarity" needs the sentence encoder (vaekit[semantic]),
    # which the pretrained backbone has and the RNN one may not
    default_rank = "likelihood"

    def fluency(self, texts: list[str]) -> list[float] | None:
        """Each text's mean NLL per token under a language model that knows English beyond this corpus, or None
        where the model has none (the RNN backbone; LMTextVAE asks its pretrained base)."""
        return None

    def vary(self, text: str, n: int = 5, *, seed: int | None = None, require=(), ban=(),
             min_similarity: float | None = None, similarity=None, similarity_model: str | None = None,
             min_length: int | None = None, max_length: int | None = None, avoid: str | None = None,
             radius: float = 1.0, max_draws: int = 200, rank: str | None = None, **options) -> "Variations":
        """Up to ``n`` variations of ``text`` drawn around its posterior, best first (see vaekit.generate.vary for
        ``temperature``, ``strategy``, ``top_p``, ``keep_copies`` and the conditions ``label``, ``tags``,
        ``source_label``, ``source_tags``, ``condition_text``). Every option of ``vaekit vary`` is here: ``ban``
        masks the words in decoding, ``require``, ``min_length``/``max_length`` (words) and ``min_similarity``
        (sentence-embedding cosine to the input, by ``similarity(text, texts)`` or the encoder
        ``similarity_model``) filter, and ``avoid`` rejects codes within ``radius`` of that text's code; with
        any of them candidates are drawn in rounds up to ``max_draws``. ``rank`` orders the candidates:
        "likelihood", the mean log-probability per token given the posterior mean, or "similarity", the
        sentence-embedding cosine to the input (3n candidates drawn, the n most similar kept; ``min_similarity``
        ranks so too); default ``default_rank``. Whenever candidates are drawn in rounds, a model with a base LM
        (``fluency``) offers those far less fluent than the input last (generate.FLUENCY_MARGIN). The result is a
        list of Variation with the counts ``drawn``, ``passed`` and ``rejected`` (None when nothing was
        constrained)."""
        from ..generate import code_of, near_mask, vary, vary_constrained

        rank = self.default_rank if rank is None else rank
        if rank not in self.RANKS:
            raise VaekitError(f"--rank {rank!r}: choose {' or '.join(self.RANKS)}")
        if avoid is not None:
            centre = code_of(self, avoid)
            options["reject"] = lambda z: near_mask(z, centre, radius)
        constrained = any([require, ban, min_similarity is not None, min_length, max_length, avoid])
        if not constrained and rank == "likelihood":
            return Variations(vary(self, text, n=n, seed=seed, **options))
        by_similarity = min_similarity is not None or rank == "similarity"
        if by_similarity and similarity is None:
            from ..semantic import similarity_function

            similarity = similarity_function(similarity_model)
        if min_similarity is None and rank == "similarity":
            min_similarity = -1.0  # every candidate passes; they are ranked by their similarity
        if rank == "similarity":  # no likelihood to compute, and not waiting for the longest third of the draws
            options = {**SIMILARITY_DRAWS, **options}
        result = vary_constrained(self, text, n=n, require=require, ban=ban, min_similarity=min_similarity,
                                  similarity=similarity if by_similarity else None, min_length=min_length,
                                  max_length=max_length, max_draws=max_draws, seed=seed, fluency=self.fluency,
                                  **options)
        if not constrained:
            return Variations(result.variations, result.similarities)
        return Variations(result.variations, result.similarities, result.drawn, result.passed, result.rejected)

    def decoding_context(self, text: str, rows: int, generator=None, keep: float | None = None, single: bool = False,
                         extra=()):
        """What decoding ``rows`` codes reads besides them, for variations of ``text`` ("" when sampling) and the
        required words ``extra``: nothing for this model (LMTextVAE's word hints), and ``keep`` is refused."""
        if keep is not None:
            raise VaekitError("--keep-words: this model was trained without --word-hints; it reads no words")
        return contextlib.nullcontext()

    def generate_variations(self, text: str, n: int = 5, **options) -> list[str]:
        """The design documents' ``generate_variations(text, n)``: the texts of ``vary(text, n, ...)``, best first.
        They are drawn around ``text``'s own posterior, where the documents' recipe decoded draws from the prior
        and ignored the text."""
        return [variation.text for variation in self.vary(text, n=n, **options)]

    def generate(self, z: torch.Tensor, **options) -> list[str]:
        from ..generate import decode_texts

        return decode_texts(self, z, **options)[0]

    def decode(self, z: torch.Tensor) -> list[str]:
        """Greedy decoding of each code into a string: z (b, d), or (b, d + C) with a conditional model's
        one-hot labels (see decoder_code); a conditional model given bare z decodes with its first label."""
        if self.conditional and z.shape[-1] == self.latent_dim:
            cond = torch.zeros(len(z), self.config.condition_dim, device=z.device) if self.config.condition_dim else None
            z = self.decoder_code(z, torch.zeros(len(z), dtype=torch.long, device=z.device) if self.labelled else None,
                                  None, cond)
        return self.generate(z, strategy="greedy")

    @torch.no_grad()
    def reconstruct(self, texts: list[str], strategy: str = "greedy", labels: list[str] | None = None) -> list[str]:
        for i, text in enumerate(texts):
            require_text(text, f"texts[{i}]", "reconstruct")
        batch = self.batch(texts, labels)
        return self.generate(self.decoder_code(self.encode(batch).mean, batch.labels, batch.tags, batch.cond),
                             strategy=strategy)

    @torch.no_grad()
    def interpolate(self, a: str, b: str, steps: int = 7, strategy: str = "greedy", label: str | None = None) -> list[str]:
        """Texts along the straight line between the posterior means of a and b; a conditional model decodes
        with ``label``, else with a's label."""
        require_text(a, "a", "interpolate from")
        require_text(b, "b", "interpolate to")
        batch = self.batch([a, b])
        za, zb = self.encode(batch).mean  # (d,) each
        t = torch.linspace(0, 1, steps, device=za.device)[:, None]
        target = self.label_index(label) if label is not None else (int(batch.labels[0]) if self.labelled else 0)
        labels = torch.full((steps,), target, dtype=torch.long, device=za.device)
        cond = batch.cond[:1].expand(steps, -1) if batch.cond is not None else None
        tags = batch.tags[:1].expand(steps, -1) if batch.tags is not None else None
        return self.generate(self.decoder_code((1 - t) * za + t * zb, labels, tags, cond), strategy=strategy)

    @torch.no_grad()
    def sample(self, n: int, *, seed: int | None = None, generator: torch.Generator | None = None,
               temperature: float = 1.0, strategy: str = "greedy", label: str | None = None, tags=None,
               condition_text: str | None = None, near: str | None = None, avoid: str | None = None,
               radius: float = 1.0, between: tuple[str, str] | None = None, require=(), ban=(),
               min_similarity: float | None = None, similarity=None, similarity_model: str | None = None,
               min_length: int | None = None, max_length: int | None = None, max_draws: int = 200,
               **options) -> "Samples":
        """Decode n draws from the prior (scaled by ``temperature``); a conditional model decodes each with
        ``label`` (or a label drawn uniformly), ``tags`` and the embedding of ``condition_text``. Every option of
        ``vaekit sample`` is here: the regions ``near``/``avoid`` (within ``radius``) and ``between`` (two texts),
        and the word and similarity filters of ``vary`` (``min_similarity`` compares with ``near``). The result
        is a list of strings with the counts ``drawn``, ``passed`` and ``rejected`` (None when unconstrained)."""
        generator = generator_for(seed, generator)
        regions = near is not None or avoid is not None or between is not None
        if not regions and not any([require, ban, min_similarity is not None, min_length, max_length]):
            z = temperature * draw((n, self.latent_dim), generator, self.device)
            return Samples(self.generate(self.condition_codes(z, label, tags, generator, condition_text),
                                         strategy=strategy, generator=generator, **options))
        from ..generate import sample_constrained

        if min_similarity is not None and similarity is None:
            from ..semantic import similarity_function

            similarity = similarity_function(similarity_model)
        if generator is None:
            generator = torch.Generator().manual_seed(torch.seed() % 2**63)
        result = sample_constrained(self, n, generator, temperature=temperature, strategy=strategy, near=near,
                                    avoid=avoid, radius=radius, between=tuple(between) if between else None,
                                    label=label, tags=tags, condition_text=condition_text, require=require, ban=ban,
                                    min_length=min_length, max_length=max_length, min_similarity=min_similarity,
                                    similarity=similarity, max_draws=max_draws)
        return Samples([v.text for v in result.variations], result.similarities, result.drawn, result.passed,
                       result.rejected)

    # --- monitoring ---------------------------------------------------------------------------
    def log_examples(self, monitor, batch: TextBatch, step: int, generator: torch.Generator) -> None:
        """Each epoch: five validation texts with their reconstructions, and five prior samples, to
        TensorBoard and samples.txt."""
        tokenizer = self._need_tokenizer()
        originals = [tokenizer.decode(ids[:length]) for ids, length in zip(batch.ids[:5], batch.lengths[:5])]
        first = batch[:5]
        recon = self.generate(self.decoder_code(self.encode(first).mean, first.labels, first.tags, first.cond),
                              strategy="greedy")
        if self.config.condition_dim:  # prior draws written with the first text's condition
            z = draw((5, self.latent_dim), generator, self.device)
            labels = first.labels[:1].expand(5) if self.labelled and first.labels is not None else None
            samples = self.generate(self.decoder_code(z, labels, None if first.tags is None else first.tags[:1].expand(5, -1),
                                                      first.cond[:1].expand(5, -1)), strategy="greedy")
        else:
            samples = self.sample(5, generator=generator)
        lines = [f"step {step}", "reconstructions (input => output):"]
        lines += [f"  {a} => {b}" for a, b in zip(originals, recon)]
        lines += ["prior samples:"] + [f"  {s}" for s in samples]
        monitor.text("examples", "\n".join(lines), step, keep=True)
