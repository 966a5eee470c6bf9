"""LMTextVAE: a text VAE between pretrained networks (Optimus, Li et al. 2020; LangVAE, 2025).

Encoder: a pretrained sentence encoder (default all-MiniLM-L6-v2) reads the text; its token states are pooled
(mean over real tokens, or the first token) and, with the condition c of a conditional model, a linear head gives
q(z|x) = N(mu, diag sigma^2). The encoder is frozen unless ``encoder_finetune``.

Decoder: a pretrained causal LM (default SmolLM2-135M-Instruct) with z given to it in Optimus's two ways:
- "memory": z -> one extra key/value per layer, in the attention cache before the first token, so every position
  of every layer can attend to it (Li et al. 2020, sec. 3.2);
- "embedding": z -> a vector added to every input embedding.
The base weights are frozen and LoRA adapters (Hu et al. 2022, the ``peft`` library) are trained
(``finetune="lora"``); ``"full"`` trains the whole LM, ``"none"`` only the injections.

log p(x|z) = sum_t log p(x_t | x_<t, z) over the text's tokens and a closing end-of-text token, exactly as the RNN
model; padding never counts. The objective is the same ELBO with the same KL schedules and free bits
(``VAE.loss``). Shape letters: b batch, t tokens, h LM hidden, e encoder hidden, d latent, L layers, k key/value
heads, a head dim, v vocabulary.

The run folder keeps only what was trained (adapters, injections, the posterior head, a fine-tuned encoder) in
``model.safetensors``; ``config.json`` names the base models and the fingerprints of their weights, and loading
refuses base weights that differ.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import random
import warnings
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from ..data.lm_tokenizer import OFFSET, LMTokenizer
from ..data.text import TextBatch, collate
from ..data.tokenizer import EOS_ID, PAD_ID, TOKENIZER_NAME
from ..distributed import to_device
from ..distributions import DiagonalGaussian
from ..errors import VaekitError
from ..runs import ENCODER_TOKENIZER_NAME
from ..nn.lm import INJECTIONS, LMDecoder, base_autocast, base_dtype
from ..nn.text import linear_nll, pad_rows
from .base import VAE
from .text import TextVAE
from .text_conditions import TextConditions

# peft asks transformers a deprecated question on every train()/eval(); not the user's to act on
warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)



@dataclasses.dataclass(frozen=True)
class LMTextVAEConfig(TextConditions):
    vocab_size: int  # the decoder's vocabulary and vaekit's four special ids (data.lm_tokenizer)
    decoder: str = "SmolLM2-135M-Instruct"
    encoder: str = "all-MiniLM-L6-v2"
    # sha256 prefixes of the base weights and of the decoder's tokenizer; a mismatch at load is refused
    decoder_fingerprint: str = ""
    encoder_fingerprint: str = ""
    tokenizer_fingerprint: str = ""
    latent_dim: int = 32
    pooling: Literal["mean", "cls"] = "mean"
    encoder_finetune: bool = False
    finetune: Literal["lora", "full", "none"] = "lora"
    lora_rank: int = 8
    lora_alpha: int = 16
    lora_targets: tuple[str, ...] = ("q_proj", "v_proj")
    # measured on 6,000 headlines (300 steps): the added embedding at this init took the LM's English apart
    # (reconstruction similarity 0.11, word salad), the memory alone kept it (0.15, fluent); 8 slots did not help
    inject: tuple[str, ...] = ("memory",)
    memory_slots: int = 1  # memory positions z gives each layer (Optimus: 1)
    # "prefix": z becomes this many input embeddings read before the text, as tokens are (a soft prompt: Lester et
    # al. 2021; Li & Liang 2021 train such prefixes for a task, here one is computed from z for each text)
    prefix_slots: int = 4
    # "words": z becomes this many words read before the text, each a distribution over the LM's vocabulary (a query
    # of z scored against the LM's token embeddings) given to it as the expected embedding, so that what the frozen
    # LM reads looks like tokens; a bag-of-words loss (Zhao et al. 2017) of this weight teaches them the text's words
    word_slots: int = 8
    bow_weight: float = 1.0
    # the layers trained from scratch (posterior head, injections) learn at this multiple of the run's learning rate;
    # the adapters and a fine-tuned encoder or LM at the rate itself
    head_lr_scale: float = 10.0
    # the frozen base weights kept in bf16 ("auto": where the CPU or GPU computes bf16 natively). Under bf16
    # autocast PyTorch casts a frozen fp32 weight again in every operation: half of a `vary` call's time went
    # into those copies. The trained tensors (adapters, injections, heads) and their optimizer state stay fp32.
    # fp32 by default, measured (docs/pretrained-backbone.md, 2026-12-08, AMX CPU): a bf16 base trains 1.6x faster
    # (quickstart: 57 steps in 2 minutes against 46) and decodes at half the time per step with the same variations,
    # but on the 31,800 headlines its run diverged once the KL weight passed 0.4 (reconstruction 48 -> 102 nats
    # between steps 500 and 560) where the same run with an fp32 base went on improving (45 at step 580).
    base_precision: Literal["auto", "bf16", "fp32"] = "fp32"
    max_tokens: int = 64
    # the decoder's token ids every text starts after (its last one is what <bos> reads); empty: the LM's start
    # token alone. A new model on an instruct LM starts where its chat template has the assistant answer
    # (SmolLM2: "<|im_start|>assistant\n"), where its training put text of its own: measured on 40 news headlines and
    # 3 Lee sentences, the base LM's NLL per text after "<|im_start|>" was 80.5 nats (37% on a "-" first), after
    # "<|im_start|>assistant\n" 68.1 (see start_prefix)
    start_ids: tuple[int, ...] = ()
    # the pooled encoder states standardised (a LayerNorm without weights) before the posterior head, whose mean
    # half starts with unit spread across texts and whose variance starts at posterior_init_std: z carries the
    # input from the first step. PyTorch's default init gave means spread 0.15 across 64 headlines under noise of
    # std 1.0, and the decoder learnt to ignore z. True for new models; runs saved before have False.
    pooled_norm: bool = False
    posterior_init_std: float = 0.1
    unit: Literal["sentence", "paragraph", "document"] = "sentence"
    word_dropout: float = 0.0  # unused by this backbone; the RNN front end reads it
    # the decoder also reads a random subset of the text's content words in its prompt, between hint_open and
    # hint_close (models/hints.py): none for a share hint_dropout of training texts, and never when a
    # likelihood is computed; vary gives each draw the input's content words, each kept with hint_keep
    hints: bool = False
    hint_open: tuple[int, ...] = ()
    hint_close: tuple[int, ...] = ()
    hint_dropout: float = 0.3
    hint_keep: float = 1.0  # measured: 0.595 similarity at 1.0 against 0.532 at 0.7 (BLEU 0.061 and 0.054)

    def __post_init__(self):
        checks = [
            (self.latent_dim > 0, f"latent dimension must be positive, got {self.latent_dim}"),
            (self.max_tokens > 0, "max_tokens must be positive"),
            (self.pooling in ("mean", "cls"), f"pooling must be mean or cls, got {self.pooling!r}"),
            (self.finetune in ("lora", "full", "none"), f"--finetune {self.finetune!r}: choose lora, full or none"),
            (self.finetune != "lora" or (self.lora_rank > 0 and self.lora_targets),
             "--finetune lora needs a positive --lora-rank and at least one target module"),
            (bool(self.inject) and set(self.inject) <= set(INJECTIONS),
             f"inject must name some of {', '.join(INJECTIONS)}, got {list(self.inject)}"),
            (len(set(self.label_names)) == len(self.label_names) and len(self.label_names) != 1,
             "a conditional model needs at least two distinct labels"),
            (len(self.constraint_labels) == len(self.constraint_texts), "one constraint text per constraint label"),
            (self.memory_slots >= 1, "memory_slots must be at least 1"),
            (self.prefix_slots >= 1, "prefix_slots must be at least 1"),
            (self.word_slots >= 1, "word_slots must be at least 1"),
            (self.base_precision in ("auto", "bf16", "fp32"),
             f"base_precision must be auto, bf16 or fp32, got {self.base_precision!r}"),
            (not self.hints or "memory" in self.inject, "word hints need the memory injection (z's key at position 0)"),
            (0.0 <= self.hint_dropout <= 1.0, f"hint_dropout must be in [0, 1], got {self.hint_dropout}"),
            (0.0 <= self.hint_keep <= 1.0, f"hint_keep must be in [0, 1], got {self.hint_keep}"),
        ]
        for ok, message in checks:
            if not ok:
                raise VaekitError(message)


@dataclasses.dataclass
class Bases:
    """The loaded base models, their names and fingerprints, and the decoder's tokenizer in vaekit's id layout."""

    decoder_name: str
    lm: nn.Module
    lm_tokenizer: object
    encoder_name: str
    encoder: nn.Module
    encoder_tokenizer: object
    tokenizer: LMTokenizer
    fingerprints: tuple[str, str]

    @property
    def context(self) -> int:
        """The decoder's context in tokens (its position table), or a large number where it has none."""
        return int(getattr(self.lm.config, "max_position_embeddings", None) or 1 << 20)

    def config(self, **fields) -> LMTextVAEConfig:
        fields.setdefault("start_ids", start_prefix(self.lm_tokenizer))
        fields.setdefault("pooled_norm", True)
        # new models read word hints (models/hints.py), which sit after z's memory; saved runs keep False
        fields.setdefault("hints", "memory" in fields.get("inject", ("memory",)))
        if fields["hints"]:
            from .hints import prompt_parts

            hint_open, hint_close = prompt_parts(self.lm_tokenizer)
            fields.setdefault("hint_open", hint_open)
            fields.setdefault("hint_close", hint_close)
        max_tokens = fields.get("max_tokens", 64)
        inject = fields.get("inject", ("memory",))
        taken = (max(len(fields["start_ids"]), 1) + fields.get("memory_slots", 1) * ("memory" in inject)
                 + fields.get("prefix_slots", 4) * ("prefix" in inject) + fields.get("word_slots", 8) * ("words" in inject))
        if max_tokens + taken > self.context:
            raise VaekitError(f"--max-tokens {max_tokens}: the decoder {self.decoder_name!r} reads at most "
                              f"{self.context} positions; give at most {self.context - taken}")
        return LMTextVAEConfig(vocab_size=self.tokenizer.vocab_size, decoder=self.decoder_name,
                               encoder=self.encoder_name, decoder_fingerprint=self.fingerprints[0],
                               encoder_fingerprint=self.fingerprints[1],
                               tokenizer_fingerprint=self.tokenizer.fingerprint(), **fields)


def load_bases(decoder: str | None, encoder: str | None) -> Bases:
    from ..backbones import fingerprint, load_decoder, load_encoder

    decoder_name, lm, lm_tokenizer = load_decoder(decoder)
    encoder_name, text_encoder, encoder_tokenizer = load_encoder(encoder)
    return Bases(decoder_name, lm, lm_tokenizer, encoder_name, text_encoder, encoder_tokenizer,
                 LMTokenizer.from_hf(lm_tokenizer), (fingerprint(lm), fingerprint(text_encoder)))


def start_prefix(lm_tokenizer) -> tuple[int, ...]:
    """The ids a chat-tuned LM's answer starts after: what its chat template adds for the generation prompt
    (SmolLM2, Qwen: "<|im_start|>assistant\n"); () for a tokenizer without a template, or one that fails."""
    if not getattr(lm_tokenizer, "chat_template", None):
        return ()
    turn = [{"role": "user", "content": "x"}]
    try:
        asked = lm_tokenizer.apply_chat_template(turn, tokenize=False, add_generation_prompt=True)
        plain = lm_tokenizer.apply_chat_template(turn, tokenize=False)
    except Exception:  # a template that needs other turns: no prefix rather than no model
        return ()
    if not asked.startswith(plain) or len(asked) == len(plain):
        return ()
    return tuple(lm_tokenizer(asked[len(plain):], add_special_tokens=False).input_ids)


def _python_rng(generator: torch.Generator | None) -> random.Random:
    """A random.Random seeded from the torch generator, so that word draws follow the caller's seed."""
    return random.Random(int(torch.randint(1 << 62, (1,), generator=generator)))


class LMTextVAE(TextVAE):
    """The RNN text VAE's front end (strings, conditions, vary, constraints) over pretrained networks."""

    model_type = "lm_text_vae"
    # measured (docs/pretrained-backbone.md, 2026-12-07): on 50 held-out headlines the 5 most similar of 15 candidates
    # kept the input's meaning at 0.81 (MiniLM cosine) against 0.69 for the 5 most likely, BLEU 0.13 against 0.10
    default_rank = "similarity"
    modality = "text"
    config_class = LMTextVAEConfig
    EVAL_CHUNK = 1024  # tokens per output-layer pass without gradients: (1024, 49k) fp32 logits are 200 MB

    def __init__(self, config: LMTextVAEConfig, tokenizer: LMTokenizer | None = None, *, decoder=None,
                 encoder=None):
        """``decoder`` = (causal LM, its HF tokenizer) and ``encoder`` = (text encoder, its HF tokenizer) when the
        caller loaded them already; otherwise they are loaded by name and their fingerprints checked."""
        from ..backbones import fingerprint, load_decoder, load_encoder

        VAE.__init__(self, config)
        self.condition_embedder = None
        checks = []  # base models loaded here by name are checked against the fingerprints the model was trained on
        if decoder is None:
            decoder = load_decoder(config.decoder)[1:]
            checks.append(("--decoder", decoder[0], config.decoder_fingerprint))
        if encoder is None:
            encoder = load_encoder(config.encoder)[1:]
            checks.append(("--encoder", encoder[0], config.encoder_fingerprint))
        (lm, lm_tokenizer), (text_encoder, self.encoder_tokenizer) = decoder, encoder
        for what, module, saved in checks:
            if saved and fingerprint(module) != saved:
                name = config.decoder if what == "--decoder" else config.encoder
                raise VaekitError(f"{what} {name!r}: the base weights found have fingerprint {fingerprint(module)}, "
                                  f"this model was trained on {saved}; give the same base model")
        self.tokenizer = tokenizer or LMTokenizer.from_hf(lm_tokenizer)
        if self.tokenizer.vocab_size != config.vocab_size:
            raise VaekitError(f"the decoder's tokenizer has {self.tokenizer.vocab_size - OFFSET} tokens, the model "
                              f"was built for {config.vocab_size - OFFSET}")
        c = config.num_labels + config.num_tags + config.condition_dim
        kept = base_dtype(config.base_precision)
        if not config.encoder_finetune:
            text_encoder.to(kept)
        if config.finetune != "full":
            lm.to(kept)
        self.text_encoder = text_encoder.requires_grad_(config.encoder_finetune)
        hidden = text_encoder.config.hidden_size
        self.pooled_norm = nn.LayerNorm(hidden, elementwise_affine=False) if config.pooled_norm else None
        self.posterior_head = nn.Linear(hidden + c, 2 * config.latent_dim)
        if config.pooled_norm:  # mean ~ N(0, 1) across texts for unit-variance features; sigma = posterior_init_std
            d = config.latent_dim
            nn.init.normal_(self.posterior_head.weight[:d], std=(hidden + c) ** -0.5)
            nn.init.zeros_(self.posterior_head.weight[d:])
            nn.init.zeros_(self.posterior_head.bias[:d])
            nn.init.constant_(self.posterior_head.bias[d:], 2 * math.log(config.posterior_init_std))
        lm.requires_grad_(config.finetune == "full")
        if config.finetune == "lora":
            from peft import LoraConfig, get_peft_model

            linear = sorted({name.rsplit(".", 1)[-1] for name, m in lm.named_modules() if isinstance(m, nn.Linear)})
            if not set(config.lora_targets) & set(linear):
                raise VaekitError(f"--finetune lora: the decoder {config.decoder!r} has no {', '.join(config.lora_targets)} "
                                  f"layers to adapt; its linear layers are {', '.join(linear)}")
            lm = get_peft_model(lm, LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=0.0,
                                               target_modules=list(config.lora_targets)))
        for param in self.parameters():  # what is trained stays fp32 (peft may give adapters the base's dtype)
            if param.requires_grad and param.dtype != torch.float32:
                param.data = param.data.float()
        bos = lm_tokenizer.bos_token_id if lm_tokenizer.bos_token_id is not None else lm_tokenizer.eos_token_id
        self.decoder = LMDecoder(lm, config.latent_dim + c, config, tuple(config.start_ids) or (bos,),
                                 lm_tokenizer.eos_token_id,
                                 self.tokenizer.lm_special_ids)

    @classmethod
    def build(cls, decoder: str | None, encoder: str | None, **fields) -> "LMTextVAE":
        """A new model on the named base models (bundled defaults when None), fingerprints recorded."""
        return cls.from_bases(load_bases(decoder, encoder), **fields)

    @classmethod
    def from_bases(cls, bases: "Bases", **fields) -> "LMTextVAE":
        """A new model on loaded base models. Build one model per Bases: LoRA wraps the decoder in place."""
        config = bases.config(**fields)
        return cls(config, bases.tokenizer, decoder=(bases.lm, bases.lm_tokenizer),
                   encoder=(bases.encoder, bases.encoder_tokenizer))

    def train(self, mode: bool = True) -> "LMTextVAE":
        super().train(mode)
        if not self.config.encoder_finetune:
            self.text_encoder.eval()  # a frozen encoder gives the same code for the same text
        return self

    def loss(self, x: TextBatch, kl_weight: float = 1.0, free_bits: float = 0.0, generator=None):
        """The negative ELBO (and the constraint loss); with the "words" injection, plus bow_weight times a bag-of-
        words loss (Zhao et al. 2017): -sum over the text's tokens t of log (1/w) sum_s q_s(t | z), z a fresh
        reparameterised sample of q(z|x). It is a training aid: the ELBO and what is logged as rec and kl leave it out.
        A word-hints model trains on p(x | z, w), w drawn from each text's words (models/hints.py)."""
        prompts = self.training_prompts(x, generator) if self.training and self.config.hints else None
        with self.decoder.reading(prompts):
            out = super().loss(x, kl_weight=kl_weight, free_bits=free_bits, generator=generator)
        if self.decoder.to_words is None or self.config.bow_weight <= 0 or not self.training:
            return out
        z = out.posterior.sample(generator)
        if self.conditional:
            z = torch.cat([z, self._condition_of(x).to(z.device, z.dtype)], dim=-1)
        log_weights = self.decoder.word_log_weights(z)  # (b, w, V)
        _, targets = self.decoder_io(x)
        real = (targets != PAD_ID) & (targets != EOS_ID)  # (b, t + 1)
        lm_targets = (targets - OFFSET).clamp_min(0)  # (b, t + 1)
        picked = log_weights.gather(2, lm_targets[:, None].expand(-1, log_weights.shape[1], -1))  # (b, w, t + 1)
        token_log_p = torch.logsumexp(picked, dim=1) - math.log(log_weights.shape[1])  # (b, t + 1)
        bow = -torch.where(real, token_log_p, 0.0).sum(-1).mean()
        out.loss = out.loss + self.config.bow_weight * bow
        out.extra["bow"] = bow.detach()
        return out

    # --- word hints: some of the text's words in the decoder's prompt (models/hints.py) ----------------
    def hint_prompts(self, word_lists: list[list[str]]) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Each row's prompt naming its words, as LM ids (r, t) left-padded with their mask (r, t); a row without
        words has none; None when no row has any."""
        if not any(word_lists):
            return None
        cfg = self.config
        rows = [[*cfg.hint_open, *(i - OFFSET for i in self.tokenizer.encode(", ".join(words))), *cfg.hint_close]
                if words else [] for words in word_lists]
        t = max(map(len, rows))
        ids = torch.zeros(len(rows), t, dtype=torch.long)
        mask = torch.zeros(len(rows), t, dtype=torch.bool)
        for i, row in enumerate(rows):
            if row:
                ids[i, t - len(row):] = torch.tensor(row)
                mask[i, t - len(row):] = True
        return ids, mask

    def training_prompts(self, x: TextBatch, generator=None):
        from .hints import training_words

        rng = _python_rng(generator)
        return self.hint_prompts([training_words(text, self.config.hint_dropout, rng) for text in self._texts(x)])

    def decoding_context(self, text: str, rows: int, generator=None, keep: float | None = None, single: bool = False,
                         extra=()):
        """Within the block, decoding for ``rows`` variations of ``text`` reads its word hints: each row its own
        subset of the text's content words, each kept with probability ``keep`` (default hint_keep); one
        subset for all rows when ``single`` (beam search); the words of ``extra`` (required words) in every row."""
        if not self.config.hints:
            return super().decoding_context(text, rows, generator, keep, single, extra)
        from .hints import content_words, pick

        keep = self.config.hint_keep if keep is None else keep
        if not 0.0 <= keep <= 1.0:
            raise VaekitError(f"--keep-words {keep}: give a fraction in [0, 1]")
        rng = _python_rng(generator)
        words, extra = content_words(text), list(extra)
        wanted = {w.lower() for w in extra}
        words = [w for w in words if w.lower() not in wanted]  # a required word is named once, in every row
        lists = [extra + pick(words, keep, rng) for _ in range(1 if single else rows)]
        for row in lists:
            rng.shuffle(row)
        return self.decoder.reading(self.hint_prompts(lists))

    # --- fluency: what the unmodified base LM thinks of a text ---------------------------------
    @torch.no_grad()
    def fluency(self, texts: list[str]) -> list[float] | None:
        """Each text's mean negative log-likelihood per token (nats, its end token included) under the base LM as it
        was pretrained: the adapters switched off, no z, no word hints, after the decoder's start prompt. None
        where the LM itself was fine-tuned (``finetune="full"``): no base is left to ask. vary ranks by it
        (generate.vary_constrained's ``fluency``): a variation should read as well as its input."""
        from ..generate import _decoding_autocast

        if self.config.finetune == "full" or not texts:
            return None if texts else []
        batch = to_device(collate([np.asarray(ids, dtype=np.int64) for ids in self.tokenizer.encode_batch(texts)]),
                          self.device)
        inputs, targets = self.decoder_io(batch)  # (b, t + 1) each, as log_likelihood reads them
        prefix = self.decoder.prefix.expand(len(texts), -1)  # the start prompt but its last token, which <bos> reads
        ids = torch.cat([prefix, self.decoder.lm_ids(inputs)], dim=1)
        mask = torch.cat([torch.ones_like(prefix), (inputs != PAD_ID).long()], dim=1)
        lm = self.decoder.lm
        plain = lm.disable_adapter() if hasattr(lm, "disable_adapter") else contextlib.nullcontext()
        base = self.decoder.output_weight.dtype
        with plain, base_autocast(base, ids.device) if base != torch.float32 else _decoding_autocast(ids.device):
            hidden = self.decoder._base()(input_ids=ids, attention_mask=mask).last_hidden_state  # (b, p + t + 1, h)
        real = targets != PAD_ID  # (b, t + 1): the text's tokens and its end token
        token_nll = self._token_nll(hidden[:, prefix.shape[1]:][real], self.decoder.target_ids(targets[real]))  # (n,)
        total = torch.zeros(len(texts), device=token_nll.device).index_add_(0, real.nonzero()[:, 0], token_nll)
        return (total / real.sum(1)).tolist()

    # --- the VAE pieces -------------------------------------------------------------------------
    def _texts(self, x: TextBatch) -> list[str]:
        return [self.tokenizer.decode(row[:n]) for row, n in zip(x.ids.tolist(), x.lengths.tolist())]

    def encode(self, x: TextBatch) -> DiagonalGaussian:
        """q(z|x): the encoder re-reads each text in its own vocabulary (decoded from the batch's ids, which are
        the decoder's), pools its states and maps them (with c) to mean and log-variance."""
        self._check(x)
        texts = self._texts(x)
        device = x.ids.device
        inputs = self.encoder_tokenizer(texts, padding=True, truncation=True, max_length=256,
                                        return_tensors="pt").to(device)
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.config.encoder_finetune), \
                base_autocast(next(self.text_encoder.parameters()).dtype, device):
            states = self.text_encoder(**inputs).last_hidden_state  # (b, t, e)
            if self.config.pooling == "cls":
                pooled = states[:, 0]
            else:
                mask = inputs["attention_mask"][..., None].to(states.dtype)  # (b, t, 1)
                pooled = (states * mask).sum(1) / mask.sum(1).clamp_min(1)  # (b, e)
        if self.pooled_norm is not None:
            pooled = self.pooled_norm(pooled.float())
        if self.conditional:
            pooled = torch.cat([pooled, self._condition_of(x).to(pooled.dtype)], dim=-1)
        mean, logvar = self.posterior_head(pooled.to(self.posterior_head.weight.dtype)).float().chunk(2, dim=-1)
        return DiagonalGaussian(mean, logvar)

    def log_likelihood(self, x: TextBatch, z: torch.Tensor) -> torch.Tensor:
        """log p(x|z): z (..., b, d) -> (..., b), fp32, the output layer computed at real target positions only."""
        lead = z.shape[:-2]
        if self.conditional and z.shape[-1] == self.latent_dim:
            cond = self._condition_of(x).to(z.device, z.dtype)  # (b, C)
            z = torch.cat([z, cond.expand(*z.shape[:-1], cond.shape[-1])], dim=-1)
        z_flat = z.reshape(-1, z.shape[-1])  # (k * b, d [+ C])
        copies = z_flat.shape[0] // len(x)
        batch = x.repeat(copies) if copies > 1 else x
        inputs, targets = self.decoder_io(batch)  # (b', t + 1) each
        hidden, _ = self.decoder.step(inputs, z_flat, self.decoder.initial_state(z_flat))  # (b', t + 1, h)
        real = targets != PAD_ID
        token_nll = self._token_nll(hidden[real], self.decoder.target_ids(targets[real]))  # (n,)
        rows = real.nonzero()[:, 0]
        nll = torch.zeros(len(batch), dtype=torch.float32, device=token_nll.device).index_add_(0, rows, token_nll)
        return -nll.reshape(*lead, len(x))

    def _token_nll(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """-log p(target) per token, (n,) fp32: the LM's output layer and its cross-entropy in one pass
        (nn.text.linear_nll), rows padded for oneDNN; without gradients EVAL_CHUNK rows at a time."""
        weight = self.decoder.output_weight
        n = len(targets)
        if torch.is_grad_enabled():
            return linear_nll(pad_rows(hidden), weight, None, pad_rows(targets))[:n]
        return torch.cat([linear_nll(hidden[i:i + self.EVAL_CHUNK], weight, None, targets[i:i + self.EVAL_CHUNK])
                          for i in range(0, n, self.EVAL_CHUNK)]) if n else hidden.new_zeros(0, dtype=torch.float32)

    def decoder_step(self, inputs: torch.Tensor, z: torch.Tensor, state):
        return self.decoder.step(inputs, z, state)

    def token_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.decoder.logits(hidden)

    # --- save and load: only what was trained -------------------------------------------------
    def optimizer_groups(self) -> list[dict]:
        new = [p for m in (self.posterior_head, self.decoder.to_memory, self.decoder.to_embedding,
                           self.decoder.to_prefix, self.decoder.to_words) if m is not None
               for p in m.parameters()]
        fresh = {id(p) for p in new}
        pretrained = [p for p in self.parameters() if p.requires_grad and id(p) not in fresh]
        return [{"params": pretrained, "lr_scale": 1.0}, {"params": new, "lr_scale": self.config.head_lr_scale}]

    def trained_state_dict(self) -> dict[str, torch.Tensor]:
        """The tensors training changes: adapters, injections, the posterior head (and a fine-tuned encoder or a
        fully fine-tuned LM); the frozen base weights come from the base models."""
        trained = {name for name, p in self.named_parameters() if p.requires_grad}
        return {k: v for k, v in self.state_dict().items() if k in trained}

    def config_dict(self) -> dict:
        return VAE.config_dict(self)  # TextVAE's adds the word-level tokenizer's settings, which this one has none of

    def save_pretrained(self, directory) -> Path:
        directory = super().save_pretrained(directory)
        from ..config import atomic_write_text

        atomic_write_text(directory / ENCODER_TOKENIZER_NAME, self.encoder_tokenizer.backend_tokenizer.to_str())
        return directory

    @classmethod
    def _attach(cls, model: "LMTextVAE", directory: Path, raw: dict) -> None:
        path = directory / TOKENIZER_NAME
        tokenizer = LMTokenizer.load(path, model.tokenizer.lm_special_ids)
        if model.config.tokenizer_fingerprint and tokenizer.fingerprint() != model.config.tokenizer_fingerprint:
            raise VaekitError(f"{path}: tokenizer fingerprint {tokenizer.fingerprint()} differs from the "
                              f"{model.config.tokenizer_fingerprint} this model was trained with; it belongs to "
                              "another run")
        model.tokenizer = tokenizer
        model.attach_conditions(directory)
