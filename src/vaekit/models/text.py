"""TextVAE: a sentence VAE (Bowman et al. 2016) with a bidirectional GRU/LSTM encoder and an
autoregressive GRU/LSTM decoder that sees z at every step.

log p(x|z) = sum_t log p(x_t | x_<t, z), over the real tokens and the closing <eos>; padding never counts.
"""
from __future__ import annotations

import contextlib

import dataclasses
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import from_dict, to_dict
from ..data.text import TextBatch, collate, split_units
from ..data.tokenizer import BOS_ID, EOS_ID, PAD_ID, TOKENIZER_NAME, UNK_ID, TextTokenizer, TokenizerConfig
from ..distributed import to_device
from ..distributions import DiagonalGaussian, draw
from ..errors import VaekitError, require_text
from ..nn.text import BiRNNEncoder, RNNDecoder, word_dropout
from .base import VAE, generator_for


@dataclasses.dataclass(frozen=True, kw_only=True)
class TextConditions:
    """The condition and constraint-loss fields every text model's config has (the text front end reads them)."""

    # a conditional VAE (Sohn et al. 2015) on these labels: one-hot c into the encoder and beside z for the decoder
    label_names: tuple[str, ...] = ()
    # ... and on tags: multi-hot c (several at once, or none)
    tag_names: tuple[str, ...] = ()
    # ... and on a dense embedding of a condition text (vaekit.conditions): its size and what makes it
    # ("word-vectors", or a sentence-transformers model name or folder)
    condition_dim: int = 0
    condition_encoder: str = ""
    # constraint loss: texts labelled constraint_labels[i] are pulled toward the code of constraint_texts[i]
    constraint_labels: tuple[str, ...] = ()
    constraint_texts: tuple[str, ...] = ()
    constraint_weight: float = 0.0
    constraint_threshold: float = 0.0

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    @property
    def num_tags(self) -> int:
        return len(self.tag_names)


@dataclasses.dataclass(frozen=True)
class TextVAEConfig(TextConditions):
    vocab_size: int
    embedding_dim: int = 256
    rnn: Literal["gru", "lstm"] = "gru"
    encoder_hidden: tuple[int, ...] = (256,)
    encoder_dense: tuple[int, ...] = ()
    # False: the encoder reads each text forward only (Bowman et al. 2016; the popular PyTorch Sentence-VAE's default)
    bidirectional: bool = True
    latent_dim: int = 32
    decoder_hidden: int = 512
    decoder_layers: int = 1
    dropout: float = 0.3
    word_dropout: float = 0.0
    tie_embeddings: bool = False
    # "softmax" scores every word from the decoder state; "adaptive" is the adaptive softmax (Grave et al. 2017)
    # with clusters at adaptive_cutoffs (empty: 2,000 / 10,000 / 50,000 below the vocabulary size)
    output: Literal["softmax", "adaptive"] = "softmax"
    adaptive_cutoffs: tuple[int, ...] = ()
    max_tokens: int = 64
    unit: Literal["sentence", "paragraph", "document"] = "sentence"
    def __post_init__(self):
        checks = [
            (self.latent_dim > 0, f"latent dimension must be positive, got {self.latent_dim}"),
            (self.vocab_size > 4, f"vocab_size must exceed the 4 special tokens, got {self.vocab_size}"),
            (self.encoder_hidden and min(self.encoder_hidden) > 0, "encoder_hidden must list positive sizes"),
            (self.decoder_hidden > 0 and self.decoder_layers > 0, "decoder_hidden and decoder_layers must be positive"),
            (0 <= self.word_dropout < 1, "word_dropout must be in [0, 1)"),
            (0 <= self.dropout < 1, "dropout must be in [0, 1)"),
            (self.max_tokens > 0, "max_tokens must be positive"),
            (self.output in ("softmax", "adaptive"), f"output must be softmax or adaptive, got {self.output!r}"),
            (not (self.output == "adaptive" and self.tie_embeddings),
             "the adaptive softmax has its own output weights: it cannot be tied to the embeddings"),
            (list(self.adaptive_cutoffs) == sorted(set(self.adaptive_cutoffs))
             and all(0 < c < self.vocab_size - 1 for c in self.adaptive_cutoffs),
             f"adaptive_cutoffs must increase strictly and stay between 1 and vocab_size - 2, got "
             f"{list(self.adaptive_cutoffs)}"),
            (len(set(self.label_names)) == len(self.label_names), "label_names must be distinct"),
            (len(self.label_names) != 1, "a conditional model needs at least two labels"),
            (len(self.constraint_labels) == len(self.constraint_texts), "one constraint text per constraint label"),
            (self.constraint_weight >= 0 and self.constraint_threshold >= 0,
             "constraint weight and threshold must be non-negative"),
        ]
        for ok, message in checks:
            if not ok:
                raise VaekitError(message)


PRESETS: dict[str, dict] = {
    # The design documents' sizes: Embedding 64, BiGRU 32 -> BiGRU 16 -> Dense 16 -> latent 32. Their
    # RepeatVector decoder is replaced by an autoregressive GRU (see README).
    "seed": dict(embedding_dim=64, rnn="gru", encoder_hidden=(32, 16), encoder_dense=(16,), latent_dim=32,
                 decoder_hidden=64, decoder_layers=1, dropout=0.0),
    "default": dict(embedding_dim=256, rnn="gru", encoder_hidden=(256,), encoder_dense=(), latent_dim=32,
                    decoder_hidden=512, decoder_layers=1, dropout=0.3),
}


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


class TextVAE(VAE):
    """Inputs are TextBatch objects (ids without <bos>/<eos>, right-padded, with lengths); the tokenizer that
    turns strings into them travels with the model (``model.tokenizer``)."""

    model_type = "text_vae"
    modality = "text"
    config_class = TextVAEConfig

    def __init__(self, config: TextVAEConfig, tokenizer: TextTokenizer | None = None):
        super().__init__(config)
        self.tokenizer = tokenizer
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_dim, padding_idx=PAD_ID)
        c = config.num_labels + config.num_tags + config.condition_dim
        self.condition_embedder = None  # set by attach_conditions for a dense-condition model
        self.encoder = BiRNNEncoder(config.embedding_dim, config.rnn, config.encoder_hidden, config.encoder_dense,
                                    config.latent_dim, config.dropout, cond_dim=c, bidirectional=config.bidirectional)
        # the decoder's code is [z, c]: generation passes that concatenation wherever it passes "z"
        self.decoder = RNNDecoder(config.embedding_dim, config.rnn, config.decoder_hidden, config.decoder_layers,
                                  config.latent_dim + c, config.vocab_size, config.dropout, config.tie_embeddings,
                                  output=config.output, cutoffs=config.adaptive_cutoffs)

    # --- the constraint loss ---------------------------------------------------------------------
    def loss(self, x: TextBatch, kl_weight: float = 1.0, free_bits: float = 0.0, generator=None):
        """The negative ELBO, plus with constraints (the design documents' constraint loss)
        weight * max(0, ||mu(x) - mu(constraint)||^2 - threshold) for each text whose label has a constraint,
        averaged over the batch. The constraint's code is a fixed target each step (no gradient through it)."""
        out = super().loss(x, kl_weight=kl_weight, free_bits=free_bits, generator=generator)
        cfg = self.config
        if not cfg.constraint_texts or cfg.constraint_weight <= 0 or not self.training:
            return out
        labels = self._labels_of(x)
        label_ids = getattr(self, "_constraint_label_ids", None)
        if label_ids is None:
            label_ids = self._constraint_label_ids = [self._raw_label_index(name) for name in cfg.constraint_labels]
        with torch.no_grad():
            targets = self.encode(self._constraint_batch(x)).mean  # (k, d)
        penalty = torch.zeros((), device=out.posterior.mean.device)
        for target, label in zip(targets, label_ids):
            mask = labels.to(out.posterior.mean.device) == label
            if mask.any():
                distance = ((out.posterior.mean[mask].float() - target.float()) ** 2).sum(-1)
                penalty = penalty + torch.relu(distance - cfg.constraint_threshold).sum()
        penalty = cfg.constraint_weight * penalty / len(x)
        out.loss = out.loss + penalty
        out.extra["constraint"] = penalty.detach()
        return out

    def _raw_label_index(self, name: str) -> int:
        names = self.constraint_label_names
        if name not in names:
            raise VaekitError(f"constraint label {name!r}: unknown; the data's labels are {', '.join(names)}")
        return names.index(name)

    @property
    def constraint_label_names(self) -> tuple[str, ...]:
        return self.config.label_names or getattr(self, "data_label_names", ())

    def _constraint_batch(self, x: TextBatch) -> TextBatch:
        batch = getattr(self, "_constraint_cache", None)
        if batch is None:
            texts = list(self.config.constraint_texts)
            labels = list(self.config.constraint_labels) if self.conditional else None
            # a text-embedding model conditions each constraint text on its own embedding, as for any text
            conditions = texts if self.config.condition_dim else None
            batch = self._constraint_cache = self.batch(texts, labels, infer=False, conditions=conditions)
        return to_device(batch, x.ids.device)  # every tensor field moves: ids, lengths, labels, tags, cond

    # --- conditions (a conditional VAE when config.label_names is set) ---------------------------
    @property
    def conditional(self) -> bool:
        return self.config.num_labels > 0 or self.config.num_tags > 0 or self.config.condition_dim > 0

    def attach_conditions(self, directory: Path) -> None:
        """The embedder of condition texts: the run's word vectors, or the named sentence encoder."""
        from ..conditions import WORD_VECTORS, SentenceEmbedder, WordVectors

        if not self.config.condition_dim:
            return
        if self.config.condition_encoder == WORD_VECTORS:
            self.condition_embedder = WordVectors.load(Path(directory))
        else:
            self.condition_embedder = SentenceEmbedder(self.config.condition_encoder)

    def embed_conditions(self, texts: list[str]) -> torch.Tensor:
        """(n, E) condition vectors of condition texts (a sentence, or keywords)."""
        if not self.config.condition_dim:
            raise VaekitError("--condition-text/--keywords: this model was trained without a condition embedding; "
                              "train it with --condition-embedding")
        if self.condition_embedder is None:
            raise VaekitError("this model's condition embedder is not attached; load it with vaekit.load(RUN)")
        vectors = torch.from_numpy(np.asarray(self.condition_embedder(list(texts)), dtype=np.float32))
        if vectors.shape[1] != self.config.condition_dim:
            raise VaekitError(f"condition vectors have {vectors.shape[1]} dimensions, the model was trained with "
                              f"{self.config.condition_dim}")
        return vectors

    @property
    def labelled(self) -> bool:
        return self.config.num_labels > 0

    def tags_vector(self, tags) -> torch.Tensor:
        """Multi-hot (T,) of tag names; an unknown tag is an error that lists the known ones."""
        names = self.config.tag_names
        if not names:
            raise VaekitError("--tags: this model was trained without tags; train it with --conditional and "
                              "--tags-column")
        vector = torch.zeros(len(names), device="cpu")  # built element by element: on the CPU, moved with its batch
        for tag in tags:
            if tag not in names:
                shown = ", ".join(names[:30]) + (" ..." if len(names) > 30 else "")
                raise VaekitError(f"tag {tag!r}: unknown; this model knows {shown}")
            vector[names.index(tag)] = 1.0
        return vector

    def condition(self, labels: torch.Tensor | None, tags: torch.Tensor | None, n: int,
                  cond: torch.Tensor | None = None, device: torch.device | None = None) -> torch.Tensor:
        """c (n, C) on ``device`` (default: the model's): the one-hot label (labelled models) then the multi-hot
        tags (tagged models; none: zeros) and the condition embedding. Parts made elsewhere (label names, tag
        lists and condition embedders give CPU tensors) are moved there."""
        device = self.device if device is None else device
        labels, tags, cond = (None if t is None else t.to(device) for t in (labels, tags, cond))
        parts = []
        if self.labelled:
            if labels is None:
                raise VaekitError("this conditional model needs a label (--label)")
            parts.append(self.one_hot(labels))
        if self.config.num_tags:
            parts.append(tags.float() if tags is not None else torch.zeros(n, self.config.num_tags, device=device))
        if self.config.condition_dim:
            if cond is None:
                raise VaekitError("this model is conditioned on a text embedding: give --condition-text or --keywords")
            parts.append(cond.float())
        return torch.cat(parts, dim=-1)

    def condition_codes(self, z: torch.Tensor, label: str | None = None, tags=None,
                        generator: torch.Generator | None = None, condition_text: str | None = None) -> torch.Tensor:
        """Decoder codes for z (n, d) written with ``label`` (default: one drawn uniformly), ``tags`` and the
        embedding of ``condition_text``."""
        if condition_text is not None and not self.config.condition_dim:
            self.embed_conditions([condition_text])  # names the problem
        if not self.conditional:
            if label is not None:
                self.label_index(label)  # names the problem
            if tags:
                self.tags_vector(tags)
            return z
        n = len(z)
        labels = None
        if self.labelled:
            labels = (torch.full((n,), self.label_index(label), dtype=torch.long, device=z.device) if label is not None
                      else torch.randint(self.config.num_labels, (n,), generator=generator,  # on the generator's device
                                         device=generator.device if generator is not None else z.device))
        elif label is not None:
            self.label_index(label)
        tag_rows = self.tags_vector(tags).expand(n, -1) if tags else None
        cond = self.embed_conditions([condition_text]).expand(n, -1) if condition_text is not None else None
        return self.decoder_code(z, labels, tag_rows, cond)

    def label_index(self, label: str) -> int:
        """The index of ``label``; an unknown one is an error that lists the known ones."""
        names = self.config.label_names
        if not names:
            raise VaekitError("--label: this model was trained without labels; train it with --conditional "
                              "and --label-column")
        if label not in names:
            raise VaekitError(f"label {label!r}: unknown; this model knows {', '.join(names)}")
        return names.index(label)

    def one_hot(self, labels: torch.Tensor) -> torch.Tensor:
        """(b,) label indices -> (b, C) float one-hot conditions."""
        return F.one_hot(labels.long(), self.config.num_labels).float()

    def decoder_code(self, z: torch.Tensor, labels: torch.Tensor | None = None,
                     tags: torch.Tensor | None = None, cond: torch.Tensor | None = None) -> torch.Tensor:
        """What the decoder reads: z (b, d), with the condition c beside it for a conditional model."""
        if not self.conditional:
            return z
        return torch.cat([z, self.condition(labels, tags, len(z), cond, z.device).to(z.dtype)], dim=-1)

    def _condition_of(self, x: TextBatch) -> torch.Tensor:
        return self.condition(self._labels_of(x) if self.labelled else None, x.tags, len(x), x.cond, x.ids.device)

    def _labels_of(self, x: TextBatch) -> torch.Tensor:
        if x.labels is None:
            raise VaekitError("this conditional model needs each text's label (give labels to model.batch, or "
                              "--label/--source-label)")
        return x.labels

    @torch.no_grad()
    def infer_labels(self, x: TextBatch) -> torch.Tensor:
        """The most likely label of each text by Bayes' rule with a uniform prior: argmax_c of the ELBO
        log p(x | mu(x, c), c) - KL(q(z | x, c) || p(z)), one pass per label."""
        scores = []
        for c in range(self.config.num_labels):
            labels = torch.full((len(x),), c, dtype=torch.long, device=x.ids.device)
            labelled = dataclasses.replace(x, labels=labels)  # tags kept
            posterior = self.encode(labelled)
            scores.append(self.log_likelihood(labelled, posterior.mean[None])[0] - posterior.kl().sum(-1))
        return torch.stack(scores, dim=-1).argmax(-1)

    # --- the VAE pieces -------------------------------------------------------------------------
    def _check(self, x: TextBatch) -> None:
        if not isinstance(x, TextBatch):
            raise VaekitError("TextVAE takes TextBatch inputs; use model.batch(texts) to make one from strings")
        if x.ids.numel() and int(x.ids.max()) >= self.config.vocab_size:
            raise VaekitError(f"token id {int(x.ids.max())} is outside this model's vocabulary of {self.config.vocab_size}")

    def encode(self, x: TextBatch) -> DiagonalGaussian:
        self._check(x)
        cond = self._condition_of(x) if self.conditional else None
        mean, logvar = self.encoder(self.embedding(x.ids), x.lengths, cond)
        return DiagonalGaussian(mean, logvar)

    @staticmethod
    def decoder_io(x: TextBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher forcing: inputs <bos> x_1..x_T and targets x_1..x_T <eos>, both (b, t + 1), pad elsewhere."""
        b, t = x.ids.shape
        device = x.ids.device
        inputs = torch.cat([torch.full((b, 1), BOS_ID, dtype=torch.long, device=device), x.ids], dim=1)
        targets = torch.cat([x.ids, torch.full((b, 1), PAD_ID, dtype=torch.long, device=device)], dim=1)
        targets[torch.arange(b, device=device), x.lengths] = EOS_ID
        return inputs, targets

    def log_likelihood(self, x: TextBatch, z: torch.Tensor) -> torch.Tensor:
        """log p(x|z): z (..., b, d) -> (..., b), fp32. Logits are computed at real target positions only."""
        lead = z.shape[:-2]
        if self.conditional and z.shape[-1] == self.latent_dim:  # append the batch's one-hot labels to each z
            cond = self._condition_of(x).to(z.device, z.dtype)  # (b, C)
            z = torch.cat([z, cond.expand(*z.shape[:-1], cond.shape[-1])], dim=-1)
        z_flat = z.reshape(-1, z.shape[-1])  # (k * b, d [+ C])
        copies = z_flat.shape[0] // len(x)
        batch = x.repeat(copies) if copies > 1 else x
        inputs, targets = self.decoder_io(batch)
        if self.training and self.config.word_dropout > 0:
            inputs = word_dropout(inputs, self.config.word_dropout, UNK_ID, keep=(inputs == BOS_ID) | (inputs == PAD_ID))
        hidden, _ = self.decoder_step(inputs, z_flat, self.decoder.initial_state(z_flat))  # (b', t + 1, h)
        real = targets != PAD_ID  # (b', t + 1)
        token_nll = self._token_nll(hidden[real], targets[real])  # (n,)
        rows = real.nonzero()[:, 0]
        nll = torch.zeros(len(batch), dtype=torch.float32, device=token_nll.device).index_add_(0, rows, token_nll)
        return -nll.reshape(*lead, len(x))

    EVAL_CHUNK = 4096  # tokens per output-layer pass when no gradient is kept

    def _token_nll(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """-log p(target) per token, (n,), in fp32 (the softmax's sums in fp32; at inference under bf16 autocast p
        itself is rounded to bf16 before the log, within 0.002 nats: see nn.text._softmax_nll). Without
        gradients the (n, v) logits are made EVAL_CHUNK rows at a time: a 256-text validation batch of long
        sentences would otherwise hold several (20k, 10k) fp32 arrays at once (2.8 GB peak on PTB)."""
        nll, weight = self.decoder.token_nll, self.embedding.weight
        if torch.is_grad_enabled() or len(hidden) <= self.EVAL_CHUNK:
            return nll(hidden, targets, weight)
        return torch.cat([nll(hidden[i:i + self.EVAL_CHUNK], targets[i:i + self.EVAL_CHUNK], weight)
                          for i in range(0, len(hidden), self.EVAL_CHUNK)])

    def decoder_step(self, inputs: torch.Tensor, z: torch.Tensor, state):
        """Decoder outputs (b, t, h) and state for input ids (b, t) given z (b, d)."""
        return self.decoder.step(self.embedding(inputs), z, state)

    def token_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.decoder.logits(hidden, self.embedding.weight)

    def count_targets(self, x: TextBatch) -> int:
        """Predicted tokens: every real token and one <eos> per text (for perplexity)."""
        return int(x.lengths.sum()) + len(x)

    # --- strings in, strings out ----------------------------------------------------------------
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

    def vary(self, text: str, n: int = 5, *, seed: int | None = None, require=(), ban=(),
             min_similarity: float | None = None, similarity=None, similarity_model: str | None = None,
             min_length: int | None = None, max_length: int | None = None, avoid: str | None = None,
             radius: float = 1.0, max_draws: int = 200, **options) -> "Variations":
        """Up to ``n`` variations of ``text`` drawn around its posterior, best first (see vaekit.generate.vary for
        ``temperature``, ``strategy``, ``top_p``, ``keep_copies`` and the conditions ``label``, ``tags``,
        ``source_label``, ``source_tags``, ``condition_text``). Every option of ``vaekit vary`` is here: ``ban``
        masks the words in decoding, ``require``, ``min_length``/``max_length`` (words) and ``min_similarity``
        (sentence-embedding cosine to the input, by ``similarity(text, texts)`` or the encoder
        ``similarity_model``) filter, and ``avoid`` rejects codes within ``radius`` of that text's code; with
        any of them candidates are drawn in rounds up to ``max_draws``. The result is a list of Variation with
        the counts ``drawn``, ``passed`` and ``rejected`` (None when nothing was constrained)."""
        from ..generate import code_of, near_mask, vary, vary_constrained

        if avoid is not None:
            centre = code_of(self, avoid)
            options["reject"] = lambda z: near_mask(z, centre, radius)
        if not any([require, ban, min_similarity is not None, min_length, max_length, avoid]):
            return Variations(vary(self, text, n=n, seed=seed, **options))
        if min_similarity is not None and similarity is None:
            from ..semantic import similarity_function

            similarity = similarity_function(similarity_model)
        result = vary_constrained(self, text, n=n, require=require, ban=ban, min_similarity=min_similarity,
                                  similarity=similarity, min_length=min_length, max_length=max_length,
                                  max_draws=max_draws, seed=seed, **options)
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

    # --- save and load ------------------------------------------------------------------------
    def config_dict(self) -> dict:
        out = super().config_dict()
        if self.tokenizer is not None:
            out["tokenizer"] = to_dict(self.tokenizer.config)
            out["tokenizer_fingerprint"] = self.tokenizer.fingerprint()
        return out

    def save_pretrained(self, directory) -> Path:
        directory = super().save_pretrained(directory)
        self._need_tokenizer().save(directory / TOKENIZER_NAME)
        if hasattr(self.condition_embedder, "save"):  # word vectors travel with the model
            self.condition_embedder.save(directory)
        return directory

    @classmethod
    def _attach(cls, model: "TextVAE", directory: Path, raw: dict) -> None:
        tok_config = from_dict(TokenizerConfig, raw.get("tokenizer") or {}, where=f"{directory / 'config.json'} \"tokenizer\"")
        tokenizer = TextTokenizer.load(directory / TOKENIZER_NAME, tok_config)
        if tokenizer.vocab_size != model.config.vocab_size:
            raise VaekitError(f"{directory / TOKENIZER_NAME}: has {tokenizer.vocab_size} tokens but the model was trained "
                              f"with a vocabulary of {model.config.vocab_size}; it belongs to another run")
        saved = raw.get("tokenizer_fingerprint")  # runs before it was recorded have none
        if saved is not None and tokenizer.fingerprint() != saved:
            raise VaekitError(f"{directory / TOKENIZER_NAME}: is not the tokenizer this model was trained with "
                              f"(fingerprint {tokenizer.fingerprint()}, trained with {saved}); it belongs to another run")
        model.tokenizer = tokenizer
        model.attach_conditions(directory)
