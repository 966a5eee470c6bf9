"""The networks of the pretrained-LM text VAE (models.lm_text): a causal LM that reads a latent code through Optimus's
injections (Li et al. 2020), its attention cache, and the precision its frozen weights are kept in.

Shape letters: b batch, t tokens, h LM hidden, d latent (+ C condition), L layers, k key/value heads, a head dim,
v vocabulary, s memory slots.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from ..data.lm_tokenizer import OFFSET
from ..data.tokenizer import BOS_ID, EOS_ID

INJECTIONS = ("memory", "embedding", "prefix", "words")
INJECTION_INIT_STD = 0.02

def base_dtype(precision: str) -> torch.dtype:
    """The dtype the frozen base weights are kept in (see LMTextVAEConfig.base_precision)."""
    if precision == "auto":
        from ..precision import resolve_precision

        precision = resolve_precision("auto", "cuda" if torch.cuda.is_available() else "cpu")
    return torch.bfloat16 if precision == "bf16" else torch.float32


def base_autocast(dtype: torch.dtype, device: torch.device):
    """bf16 base weights compute under bf16 autocast whatever the caller's precision: their inputs (embeddings
    plus z's vector, z's memory keys) are fp32 otherwise, and a product of an fp32 input and a bf16 weight fails."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def _attention_kernel(device: torch.device):
    """PyTorch's plain ("math") attention when training on the CPU: at headline lengths the CPU flash-attention
    backward took 30% of a step, and a training step of 16 headlines took 1.86 s with the math kernel against 2.46 s
    (benchmarks/bench_lm_text.py speed, 2026-12-07). Decoding and GPUs keep PyTorch's choice."""
    if device.type != "cpu" or not torch.is_grad_enabled():
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel(SDPBackend.MATH)


class KVState:
    """The decoder's attention cache, one (keys, values) pair per layer, each (b, k, t, a); the first position
    holds z's memory. ``mask`` (b, t), where rows have prompts of different lengths (word hints, left-padded): which
    cached positions are real; None when all are. ``select`` keeps (or repeats) rows, as decoding drops finished
    texts or reorders beams."""

    def __init__(self, layers: list[tuple[torch.Tensor, torch.Tensor]], mask: torch.Tensor | None = None):
        self.layers = layers
        self.mask = mask

    def select(self, index: torch.Tensor) -> "KVState":
        return KVState([(k.index_select(0, index), v.index_select(0, index)) for k, v in self.layers],
                       None if self.mask is None else self.mask.index_select(0, index))

    def cache(self):
        from transformers import DynamicCache

        return DynamicCache(ddp_cache_data=self.layers) if self.layers else DynamicCache()


class LMDecoder(nn.Module):
    """A causal LM that reads a code (b, d + C) through its memory and its input embeddings; ``config`` is the
    model's LMTextVAEConfig (inject, memory_slots, prefix_slots, word_slots)."""

    def __init__(self, lm: nn.Module, code_dim: int, config, start_ids: tuple[int, ...],
                 eos_id: int, special_ids: list[int]):
        super().__init__()
        self.lm = lm
        lm_config = lm.config
        self.layers = lm_config.num_hidden_layers
        self.kv_heads = getattr(lm_config, "num_key_value_heads", None) or lm_config.num_attention_heads
        self.head_dim = getattr(lm_config, "head_dim", None) or lm_config.hidden_size // lm_config.num_attention_heads
        self.slots = config.memory_slots
        self.to_memory = (nn.Linear(code_dim, self.layers * 2 * self.kv_heads * self.slots * self.head_dim)
                          if "memory" in config.inject else None)
        self.to_embedding = nn.Linear(code_dim, lm_config.hidden_size) if "embedding" in config.inject else None
        self.prefix_slots = config.prefix_slots
        self.to_prefix = (nn.Linear(code_dim, self.prefix_slots * lm_config.hidden_size)
                          if "prefix" in config.inject else None)
        self.word_slots = config.word_slots
        self.to_words = (nn.Linear(code_dim, self.word_slots * lm_config.hidden_size)
                         if "words" in config.inject else None)
        for layer in (self.to_memory, self.to_embedding, self.to_prefix, self.to_words):
            if layer is not None:  # the LM starts almost as it was trained: a small vector added, a small key and
                nn.init.normal_(layer.weight, std=INJECTION_INIT_STD)  # value (PyTorch's default init: 173 nats a
                nn.init.zeros_(layer.bias)  # headline after 32 steps; zero: 76 after 50, but no gradient reaches z)
        self.bos_id, self.eos_id = start_ids[-1], eos_id
        self.register_buffer("prefix", torch.tensor(start_ids[:-1], dtype=torch.long), persistent=False)
        self.register_buffer("special_ids", torch.tensor(sorted(set(special_ids) - {eos_id}), dtype=torch.long),
                             persistent=False)
        self.context: tuple[torch.Tensor, torch.Tensor] | None = None  # see reading()

    @contextlib.contextmanager
    def reading(self, context: tuple[torch.Tensor, torch.Tensor] | None):
        """Within the block every text starts after this prompt: (LM ids (r, t), mask (r, t)), left-padded, one
        row per code or a set of rows that the codes repeat (r divides their number: a batch repeated k times,
        or decoding's rows followed by their scoring copies)."""
        saved, self.context = self.context, context
        try:
            yield
        finally:
            self.context = saved

    def _base(self) -> nn.Module:
        """The LM without its output head (``model.model`` of a transformers causal LM, under peft's wrapper)."""
        return self.lm.get_base_model().base_model if hasattr(self.lm, "get_base_model") else self.lm.base_model

    @property
    def output_weight(self) -> torch.Tensor:
        return self.lm.get_output_embeddings().weight  # (v, h)

    def initial_state(self, code: torch.Tensor) -> KVState:
        """The cache every text starts from: the memory of each code, z -> (b, L, 2, k, s, a), s keys and values
        per layer; then the start prefix but its last token (which <bos> reads), read with that memory."""
        state = KVState([])
        if self.to_memory is not None:
            memory = self.to_memory(code).view(len(code), self.layers, 2, self.kv_heads, self.slots, self.head_dim)
            if self.output_weight.dtype != torch.float32:  # the cache holds the base's dtype (see base_autocast)
                memory = memory.to(self.output_weight.dtype)
            state = KVState([(memory[:, i, 0], memory[:, i, 1]) for i in range(self.layers)])
        if self.context is not None:  # the word hints' prompt, after z's memory
            ids, mask = self.context
            if len(code) % len(ids):
                raise ValueError(f"{len(ids)} prompts for {len(code)} codes")
            copies = len(code) // len(ids)
            ids, mask = ids.repeat(copies, 1).to(code.device), mask.repeat(copies, 1).to(code.device)
            state.mask = torch.ones(len(code), self.slots, dtype=torch.bool, device=code.device)
            _, state = self._forward(ids, code, state, mask=mask)
        if self.to_prefix is not None:  # z's soft prompt, (b, p, h), then the start prefix
            prompt = self.to_prefix(code).view(len(code), self.prefix_slots, -1)
            _, state = self._forward(None, code, state, embedded=prompt)
        if self.to_words is not None:  # z's words, (b, w, h), each the expected token embedding
            embeddings = self.lm.get_input_embeddings().weight  # (V, h)
            weights = self.word_log_weights(code).exp().to(embeddings.dtype)  # (b, w, V)
            _, state = self._forward(None, code, state, embedded=weights @ embeddings)
        if len(self.prefix):
            _, state = self._forward(self.prefix.expand(len(code), -1), code, state)
        return state

    def word_log_weights(self, code: torch.Tensor) -> torch.Tensor:
        """log q_s(v | z) (b, w, V), fp32: slot s's query A_s z scored against every token embedding E_v of the LM,
        its special tokens excluded."""
        embeddings = self.lm.get_input_embeddings().weight  # (V, h)
        queries = self.to_words(code).view(len(code), self.word_slots, -1)  # (b, w, h)
        with base_autocast(embeddings.dtype, code.device):
            scores = (queries.to(embeddings.dtype) @ embeddings.T).float()  # (b, w, V)
        scores[..., self.special_ids] = -1e9  # finite: a pad position's gather (then dropped) keeps finite gradients
        scores[..., self.eos_id] = -1e9
        return torch.log_softmax(scores, dim=-1)

    @staticmethod
    def select_state(state: KVState, index: torch.Tensor) -> KVState:
        return state.select(index)

    def lm_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """vaekit ids -> the LM's: <bos> is the LM's start token, padding reads token 0 (its outputs are unused)."""
        return torch.where(ids == BOS_ID, torch.full_like(ids, self.bos_id), (ids - OFFSET).clamp_min(0))

    def step(self, ids: torch.Tensor, code: torch.Tensor, state: KVState) -> tuple[torch.Tensor, KVState]:
        """Hidden states (b, t, h) for input ids (b, t) after the cached positions, and the grown cache."""
        return self._forward(self.lm_ids(ids), code, state)

    def _forward(self, lm_ids: torch.Tensor | None, code: torch.Tensor, state: KVState,
                 embedded: torch.Tensor | None = None, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, KVState]:
        """Hidden states (b, t, h) after the cached positions. With a padded cache (state.mask) each row's positions
        count its real entries only, and ``mask`` (b, t) marks the new positions that are padding."""
        masking = {}
        if state.mask is not None:
            t = (lm_ids if lm_ids is not None else embedded).shape[1]
            new = mask if mask is not None else torch.ones(len(code), t, dtype=torch.bool, device=code.device)
            full = torch.cat([state.mask, new], dim=1)  # (b, past + t)
            positions = state.mask.sum(1, keepdim=True) + new.cumsum(1) - 1  # (b, t): padding repeats a position
            masking = dict(attention_mask=full.long(), position_ids=positions.clamp_min(0))
        with base_autocast(self.output_weight.dtype, code.device), _attention_kernel(code.device):
            if embedded is None:
                embedded = self.lm.get_input_embeddings()(lm_ids)  # (b, t, h)
            else:
                embedded = embedded.to(self.output_weight.dtype)
            if self.to_embedding is not None:
                embedded = embedded + self.to_embedding(code)[:, None].to(embedded.dtype)
            cache = state.cache()
            hidden = self._base()(inputs_embeds=embedded, past_key_values=cache, use_cache=True,
                                  **masking).last_hidden_state
        return hidden, KVState([(layer.keys, layer.values) for layer in cache.layers],
                               masking["attention_mask"].bool() if masking else None)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """(n, h) -> (n, v + 4) in vaekit's id layout: <pad>, <unk>, <bos> impossible, <eos> the LM's end token,
        then the LM's tokens with its special tokens (and its end token, now at <eos>) masked."""
        raw = F.linear(hidden, self.output_weight.to(hidden.dtype))  # (n, v)
        out = raw.new_full((len(raw), OFFSET + raw.shape[-1]), float("-inf"))
        out[:, OFFSET:] = raw
        out[:, EOS_ID] = raw[:, self.eos_id]
        out[:, OFFSET + self.eos_id] = float("-inf")
        out[:, OFFSET + self.special_ids] = float("-inf")
        return out

    def target_ids(self, targets: torch.Tensor) -> torch.Tensor:
        """vaekit target ids (real positions only) -> the LM's, <eos> -> its end token."""
        return torch.where(targets == EOS_ID, torch.full_like(targets, self.eos_id), targets - OFFSET)
