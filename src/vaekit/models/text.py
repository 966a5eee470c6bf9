"""TextVAE: a sentence VAE (Bowman et al. 2016) with a bidirectional GRU/LSTM encoder and an
autoregressive GRU/LSTM decoder that sees z at every step. This module holds its networks and likelihood; its
conditions are in text_conditions.py and its strings-in, strings-out front end in text_front.py.

log p(x|z) = sum_t log p(x_t | x_<t, z), over the real tokens and the closing <eos>; padding never counts.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from ..config import from_dict, to_dict
from ..data.text import TextBatch
from ..data.tokenizer import BOS_ID, EOS_ID, PAD_ID, TOKENIZER_NAME, UNK_ID, TextTokenizer, TokenizerConfig
from ..distributions import DiagonalGaussian
from ..errors import VaekitError
from ..nn.text import BiRNNEncoder, RNNDecoder, word_dropout
from .base import VAE
from .text_conditions import ConditionedText, TextConditions
from .text_front import TextFrontEnd


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


class TextVAE(ConditionedText, TextFrontEnd, VAE):
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
