"""Recurrent encoder and decoder for text VAEs (Bowman et al. 2016).

Shape letters: b batch, t time (tokens), e embedding, h hidden, d latent, v vocabulary, n real tokens.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from vaekit.nn.gru import fused_gru_applies, gru

RNNS = {"gru": nn.GRU, "lstm": nn.LSTM}


def word_dropout(ids: torch.Tensor, rate: float, unk_id: int, keep: torch.Tensor, generator=None) -> torch.Tensor:
    """Replace decoder input tokens by <unk> with probability ``rate`` (Bowman et al. 2016, sec. 3.3), so the
    decoder must lean on z. ``keep`` marks positions never dropped (<bos>, padding)."""
    if rate <= 0:
        return ids
    drop = torch.rand(ids.shape, generator=generator, device=ids.device) < rate
    return torch.where(drop & ~keep, torch.full_like(ids, unk_id), ids)


class Dropout(nn.Module):
    """Inverted dropout, as nn.Dropout, with the mask drawn from random bits: each 64-bit draw of PyTorch's
    generator gives four 15-bit uniform integers u, and an element is kept when u >= round(32768 p), so p is
    used to the nearest 1/32768 and the kept ones are scaled by 32768 / (32768 - round(32768 p)). On CPUs that
    is about 2x faster than comparing torch.rand to p (PTB embeddings, (32, 23, 300) bf16: 0.84 -> 0.42 ms) and
    4x faster than the Bernoulli sampler nn.Dropout uses; dropout was 8% of a text training step."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p <= 0:
            return x
        threshold = min(round(self.p * 32768), 32767)
        n = x.numel()
        bits = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_()  # uniform in [0, 2^63)
        u = bits.view(torch.int16)[:n].view(x.shape).bitwise_and_(0x7FFF)  # the low 15 bits of each quarter
        return x * (u >= threshold).to(x.dtype).mul_(32768 / (32768 - threshold))

    def extra_repr(self) -> str:
        return f"p={self.p}"


FLOOR = 1e-30  # a target probability below this has its -log p recomputed from the row's logits in fp32


def _softmax_nll(logits: torch.Tensor, targets: torch.Tensor, out: torch.Tensor, exact_logits) -> torch.Tensor:
    """Writes softmax(logits) (n, v) to ``out`` (which may be ``logits`` itself) and returns -log p(target),
    (n,) in fp32 (fp64 for fp64). PyTorch's CPU softmax takes each row's max, exp and sum in fp32 for bf16 and
    writes a row only after reading it: one multithreaded pass, no fp32 copy of (n, v). -log p from p in bf16 is
    within 2^-9 relative of p, about 0.002 nats, less than rounding the logits to bf16 already moves it; a p below
    FLOOR (the target's logit more than 69 nats below the row's log-sum-exp) is not trusted, and those rows are
    done again exactly from ``exact_logits(rows)``."""
    torch.ops.aten._softmax.out(logits, 1, False, out=out)
    acc = torch.promote_types(out.dtype, torch.float32)
    p_target = out[torch.arange(len(targets), device=out.device), targets].to(acc)
    nll = -p_target.clamp_min(FLOOR).log()
    far = (p_target < FLOOR).nonzero().squeeze(1)
    if len(far):
        exact = exact_logits(far).to(acc)
        nll[far] = exact.logsumexp(dim=1) - exact.gather(1, targets[far, None]).squeeze(1)
    return nll


def _linear_softmax_nll(logits: torch.Tensor, targets: torch.Tensor, x: torch.Tensor, weight: torch.Tensor,
                        bias: torch.Tensor | None, acc: torch.dtype) -> torch.Tensor:
    """_softmax_nll for logits = x W^T + b, the softmax written over the logits in place; the rows it does not
    trust are computed again from x in ``acc``."""
    return _softmax_nll(logits, targets, logits, lambda rows: F.linear(
        x[rows].to(acc), weight.to(acc), None if bias is None else bias.to(acc)))


def _wide_exponent(dtype: torch.dtype) -> bool:
    """bf16, fp32, fp64: small probabilities do not underflow (fp16's would below 6e-8)."""
    return torch.finfo(dtype).tiny <= torch.finfo(torch.float32).tiny


class _TokenNLL(torch.autograd.Function):
    """-log softmax(logits)[target] per row, the softmax kept for the backward pass (see ``token_nll``)."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        p = torch.empty_like(logits)
        nll = _softmax_nll(logits, targets, p, lambda rows: logits[rows])
        ctx.save_for_backward(p, targets)
        return nll.float()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        # d/dlogits of lse - logit[target] = softmax(logits) - onehot(target), scaled by each row's grad
        p, targets = ctx.saved_tensors
        out = p * grad.to(p.dtype)[:, None]  # not in place: a second backward (retain_graph) reads p again
        out[torch.arange(len(targets), device=out.device), targets] -= grad.to(out.dtype)
        return out, None


def token_nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """-log p(target) = logsumexp(logits) - logits[target] per row, (n,), in fp32: the softmax
    cross-entropy against target indices (never a one-hot). With a gradient on a CPU the forward pass keeps the
    softmax in the logits' dtype (see _softmax_nll) and the backward pass scales it: F.cross_entropy on an fp32
    copy of bf16 logits makes four (n, v) fp32 arrays (the copy, log-softmax, the nll gradient and the
    log-softmax gradient), 26 ms of a 130 ms PTB step against 11 ms."""
    if logits.requires_grad and logits.device.type == "cpu" and _wide_exponent(logits.dtype):
        return _TokenNLL.apply(logits, targets)
    return F.cross_entropy(logits.float(), targets, reduction="none")


_ONEDNN_BIAS: list[bool] = []  # whether oneDNN's linear took a plain bf16 weight with a bias here (tried once)


def _biased_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """F.linear(x, weight, bias) for 2-D operands. bf16 on a CPU with a bias runs on oneDNN's linear
    (``mkldnn._linear_pointwise`` with the plain weight), which adds the bias inside the product, where PyTorch's
    addmm first copies the bias into every row of the output: a PTB batch's output layer (704 x 256 x 10k), 3.5 ->
    2.4 ms, the same values. Elsewhere, or where this PyTorch build refuses it, F.linear."""
    if bias is not None and x.dtype == torch.bfloat16 and x.device.type == "cpu" and _ONEDNN_BIAS != [False]:
        try:
            out = torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
            _ONEDNN_BIAS[:] = [True]
            return out
        except (AttributeError, RuntimeError):  # no oneDNN, or the op moved or refuses these operands
            _ONEDNN_BIAS[:] = [False]
    return F.linear(x, weight, bias)


class _LinearNLL(torch.autograd.Function):
    """-log softmax(x W^T + b)[target] per row with the softmax's gradient made in the forward pass (see
    ``linear_nll``)."""

    @staticmethod
    def forward(ctx, x, weight, bias, targets, low):
        with torch.autocast(x.device.type, enabled=False):
            x_low, weight_low = x.to(low), weight.to(low)
            b_low = None if bias is None else bias.to(low)
            logits = _biased_linear(x_low, weight_low, b_low)  # (n, v)
            acc = torch.promote_types(low, torch.float32)  # fp32 (fp64 for fp64)
            nll = _linear_softmax_nll(logits, targets, x_low, weight_low, b_low, acc)  # the softmax over the logits
            logits[torch.arange(len(targets), device=x.device), targets] -= 1  # softmax - onehot(target)
        ctx.save_for_backward(x_low, weight_low, logits)
        ctx.dtypes = (x.dtype, weight.dtype, None if bias is None else bias.dtype, acc)
        return nll.float()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        # with s the gradient reaching each row's nll and P = softmax - onehot: dlogits = diag(s) P, so
        # dx = diag(s) (P W), dW = P^T (diag(s) x) and db = P^T s; P is read by the products only
        x_low, weight_low, p = ctx.saved_tensors
        x_dtype, w_dtype, b_dtype, acc = ctx.dtypes
        with torch.autocast(x_low.device.type, enabled=False):
            scale = grad.to(acc)[:, None]
            grad_x = (p @ weight_low).to(acc).mul_(scale).to(x_dtype)
            if not ctx.needs_input_grad[1]:  # a frozen output layer (a pretrained LM's): no dW, no db
                grad_w, grad_b = None, None
            elif b_dtype is None:
                grad_w, grad_b = (p.t() @ (x_low.to(acc) * scale).to(p.dtype)).to(w_dtype), None
            else:  # db = P^T s as one more column of dW's product, P^T [diag(s) x | s] (padded to 16 columns):
                k = x_low.shape[1]  # one pass over P instead of two (a 704 x 10k P: 3.9 -> 3.4 ms)
                columns = x_low.new_zeros(len(p), k + 16, dtype=p.dtype)
                torch.mul(x_low, scale, out=columns[:, :k])
                columns[:, k] = scale[:, 0]
                both = p.t() @ columns
                grad_w, grad_b = both[:, :k].to(w_dtype), both[:, k].to(b_dtype)
        return grad_x, grad_w, grad_b, None, None


def linear_nll(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, targets: torch.Tensor) -> torch.Tensor:
    """-log softmax(x W^T + b)[target] per row, (n,) in fp32: an output layer and its cross-entropy in one. With
    a gradient on a CPU the forward pass turns the logits into the gradient softmax - onehot in place (one
    softmax pass, see _softmax_nll), so the backward pass only multiplies: token_nll's second pass over the
    logits and its fp32 copies go. Forward and backward of a PTB batch's output layer (672 tokens, 10k words,
    bf16): 22 ms with token_nll, 16.5 ms with a loop of 32-row fp32 blocks in place of the softmax, 16 ms now
    (18.5 against 16.0 ms in the same process for 600-736 tokens). Elsewhere, the plain layer and
    ``token_nll``."""
    if x.requires_grad or weight.requires_grad:
        if x.device.type == "cpu" and not torch.compiler.is_compiling():
            low = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else x.dtype
            if _wide_exponent(low):
                return _LinearNLL.apply(x, weight, bias, targets, low)
    return token_nll(F.linear(x, weight, bias), targets)


ROWS = 64  # output-layer row counts are rounded up to a multiple of this (see pad_rows)


def pad_rows(x: torch.Tensor, multiple: int = ROWS) -> torch.Tensor:
    """x (n, ...) with zero rows appended up to a multiple of ``multiple``. On CPUs PyTorch's bf16 matrix
    products run on oneDNN, which builds a kernel for every new shape and keeps a cache of them: about 25 ms for
    an output layer's three products, where the products themselves take 11 ms. A text batch's count of real
    tokens is new almost every step (and too many shapes to cache), so the output layer sees each count rounded
    up; the rounding costs at most ROWS - 1 rows of work (PTB, Sentence-VAE sizes: 6,466 -> 8,896 tokens/s)."""
    extra = -len(x) % multiple
    return x if extra == 0 else torch.cat([x, x.new_zeros(extra, *x.shape[1:])])


def _packed_weight(weight: torch.Tensor) -> torch.Tensor | None:
    """A bf16 (out, in) weight in oneDNN's blocked layout for ``mkldnn._linear_pointwise``, or None where this
    PyTorch build cannot (no oneDNN, or the ops moved): callers then use F.linear on the plain weight."""
    try:
        if not torch.backends.mkldnn.is_available():
            return None
        packed = torch.ops.mkldnn._reorder_linear_weight(weight, ROWS)
        torch.ops.mkldnn._linear_pointwise(weight.new_zeros(1, weight.shape[1]), packed, None, "none", [], "")
        return packed
    except (AttributeError, RuntimeError):  # also a CPU on which the product itself refuses bf16
        return None


def adaptive_cutoffs(vocab_size: int) -> tuple[int, ...]:
    """Default cluster boundaries of the adaptive softmax: the 2,000 most frequent ids in the head, then clusters
    up to 10,000 and 50,000 ids (word-level vocabularies are numbered by frequency; see ``TextTokenizer``)."""
    cutoffs = tuple(c for c in (2000, 10000, 50000) if c < vocab_size - 1)
    return cutoffs or (max(1, vocab_size // 4),)


class BiRNNEncoder(nn.Module):
    """Embedded tokens (b, t, e) with lengths (b,) -> (mean, logvar), each (b, d).

    Stacked bidirectional layers, one per entry of ``hidden`` (per direction), then dense layers, then the
    posterior head. The final forward and backward states of the last layer summarise the text. With
    ``bidirectional=False`` the layers read forward only (Bowman et al. 2016's encoder, and the popular PyTorch
    Sentence-VAE's default) and the forward state alone summarises the text."""

    def __init__(self, embedding_dim: int, rnn: str, hidden: Sequence[int], dense: Sequence[int],
                 latent_dim: int, dropout: float, cond_dim: int = 0, bidirectional: bool = True):
        super().__init__()
        self.dropout = Dropout(dropout)
        self.rnn_type = rnn
        self.directions = 2 if bidirectional else 1
        sizes = [embedding_dim, *[self.directions * h for h in hidden]]
        self.layers = nn.ModuleList(RNNS[rnn](sizes[i], h, batch_first=True, bidirectional=bidirectional)
                                    for i, h in enumerate(hidden))
        mlp: list[nn.Module] = []
        n_in = self.directions * hidden[-1] + cond_dim  # a conditional VAE's q(z|x, c) sees the condition too
        for n_out in dense:
            mlp += [nn.Linear(n_in, n_out), nn.ReLU()]
            n_in = n_out
        self.dense = nn.Sequential(*mlp)
        self.head = nn.Linear(n_in, 2 * latent_dim)

    def forward(self, embedded: torch.Tensor, lengths: torch.Tensor,
                cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.dropout(embedded)  # (b, t, e)
        lengths = lengths.clamp(min=1)  # an empty text is read as one (padding) token
        summary = (self._summary_unpacked if x.device.type == "cpu" else self._summary_packed)(x, lengths)
        if cond is not None:
            summary = torch.cat([summary, cond.to(summary.dtype)], dim=-1)  # (b, 2h + c), (b, h + c) one-way
        mean, logvar = self.head(self.dense(summary)).chunk(2, dim=-1)
        return mean, logvar

    def _summary_packed(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Each layer over a PackedSequence (cuDNN runs both directions of one in a single call)."""
        lengths_cpu = lengths.cpu()
        final = None
        for i, layer in enumerate(self.layers):
            packed = pack_padded_sequence(x, lengths_cpu, batch_first=True, enforce_sorted=False)
            out, state = layer(packed)
            if i < len(self.layers) - 1:
                x, _ = pad_packed_sequence(out, batch_first=True)  # (b, t, 2h)
            final = state[0] if self.rnn_type == "lstm" else state  # (2, b, h): forward, backward; (1, b, h)
        return torch.cat(list(final), dim=-1)  # (b, 2h) or (b, h)

    def _summary_unpacked(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The same function as _summary_packed, without packing: on CPUs PyTorch computes a padded sequence's
        input projections for all steps in one matrix product, but a packed one's step by step, which made the
        encoder about 25% slower. The forward direction reads the right-padded batch; the backward direction
        reads each text reversed within its own length, so padding comes after every real token in both and
        never reaches a real position's state. A direction's summary is its output at the text's last token."""
        if self.directions == 1:
            return self._summary_forward(x, lengths)
        b, t, _ = x.shape
        steps = torch.arange(t, device=x.device)[None, :]
        reverse = torch.where(steps < lengths[:, None], lengths[:, None] - 1 - steps, steps)  # (b, t), an involution
        last = (lengths - 1)[:, None, None]
        summary = None
        for i, layer in enumerate(self.layers):
            # forward (b, t, h) and backward (b, t, h), the latter in reversed time
            x_reversed = x.gather(1, reverse[..., None].expand_as(x))
            forward, backward = self._directions(layer, [("", x), ("_reverse", x_reversed)])
            if i < len(self.layers) - 1:
                backward_in_time = backward.gather(1, reverse[..., None].expand_as(backward))
                x = torch.cat([forward, backward_in_time], dim=-1)  # (b, t, 2h)
            else:
                h = forward.shape[-1]
                summary = torch.cat([forward.gather(1, last.expand(-1, 1, h)).squeeze(1),
                                     backward.gather(1, last.expand(-1, 1, h)).squeeze(1)], dim=-1)  # (b, 2h)
        return summary

    def _summary_forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """_summary_unpacked for one-directional layers: each layer over the right-padded batch, the output at
        each text's last token from the last layer."""
        for layer in self.layers:
            (x,) = self._directions(layer, [("", x)])  # (b, t, h)
        return x.gather(1, (lengths - 1)[:, None, None].expand(-1, 1, x.shape[-1])).squeeze(1)  # (b, h)

    def _directions(self, layer: nn.RNNBase, inputs: Sequence[tuple[str, torch.Tensor]]) -> list[torch.Tensor]:
        """Directions of a layer, each named by its weights' suffix ("" forward, "_reverse" backward) and given its
        input (b, t, in) -> their outputs, (b, t, h) each. A GRU being trained on a CPU runs them side by side in
        vaekit's own layer."""
        x = inputs[0][1]
        if self.rnn_type == "gru" and fused_gru_applies(x):
            weights = [torch.stack([getattr(layer, f"{name}_l0{suffix}") for suffix, _ in inputs])
                       for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            xs = torch.stack([x_d for _, x_d in inputs]).transpose(1, 2)  # (D, t, b, in)
            out = gru(xs, x.new_zeros(len(inputs), x.shape[0], layer.hidden_size, dtype=torch.float32), *weights)
            return list(out.transpose(1, 2))
        return [self._direction(layer, suffix, x_d) for suffix, x_d in inputs]

    def _direction(self, layer: nn.RNNBase, suffix: str, x: torch.Tensor) -> torch.Tensor:
        """One direction of a bidirectional layer as a one-directional RNN over x (b, t, in), starting from zeros,
        with that direction's weights: the same kernel nn.GRU/nn.LSTM call (torch._VF)."""
        weights = [getattr(layer, f"{name}_l0{suffix}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        zeros = x.new_zeros(1, x.shape[0], layer.hidden_size)
        if self.rnn_type == "lstm":
            out, _, _ = torch._VF.lstm(x, (zeros, zeros), weights, True, 1, 0.0, self.training, False, True)
        else:
            out, _ = torch._VF.gru(x, zeros, weights, True, 1, 0.0, self.training, False, True)
        return out


class RNNDecoder(nn.Module):
    """An autoregressive GRU/LSTM language model conditioned on z: z sets the initial state (through a
    linear map and tanh) and is concatenated to the input embedding at every step."""

    def __init__(self, embedding_dim: int, rnn: str, hidden: int, layers: int, latent_dim: int,
                 vocab_size: int, dropout: float, tie_embeddings: bool, output: str = "softmax",
                 cutoffs: Sequence[int] = ()):
        super().__init__()
        self.rnn_type = rnn
        self.layers = layers
        self.hidden = hidden
        self.dropout = Dropout(dropout)
        self.rnn = RNNS[rnn](embedding_dim + latent_dim, hidden, num_layers=layers, batch_first=True)
        self.init_state = nn.Linear(latent_dim, layers * hidden)
        self.adaptive = None
        if output == "adaptive":
            # Grave et al. 2017, "Efficient softmax approximation for GPUs": the frequent words and one entry per
            # cluster of rarer words share a softmax (the head); a rare word's probability is p(cluster) times its
            # probability within the cluster, scored from a hidden state projected down by 4 per cluster. It is
            # an exact, normalised distribution over the vocabulary (so NLL and perplexity mean what they mean
            # with the full softmax), and most tokens never touch the rare clusters' weights.
            self.adaptive = nn.AdaptiveLogSoftmaxWithLoss(hidden, vocab_size, list(cutoffs or adaptive_cutoffs(vocab_size)),
                                                          div_value=4.0, head_bias=True)
            self.to_embedding = self.output = None
        elif tie_embeddings:  # project to the embedding size, then score with the (shared) embedding matrix
            self.to_embedding = nn.Linear(hidden, embedding_dim)
            self.output = None
        else:
            self.to_embedding = None
            self.output = nn.Linear(hidden, vocab_size)

    def initial_state(self, z: torch.Tensor):
        h0 = torch.tanh(self.init_state(z)).view(z.shape[0], self.layers, self.hidden).transpose(0, 1).contiguous()
        return (h0, torch.zeros_like(h0)) if self.rnn_type == "lstm" else h0  # (layers, b, h)

    @staticmethod
    def select_state(state, index: torch.Tensor):
        """The state's rows ``index`` (kept or repeated), as decoding drops finished texts or reorders beams."""
        if isinstance(state, tuple):  # an LSTM's (h, c)
            return tuple(s[:, index] for s in state)
        return state[:, index]  # (layers, b, h)

    def step(self, embedded: torch.Tensor, z: torch.Tensor, state):
        """Run the RNN over embedded inputs (b, t, e) given z (b, d); returns outputs (b, t, h) and the state."""
        x = self.dropout(embedded)
        x = torch.cat([x, z[:, None, :].expand(-1, x.shape[1], -1).to(x.dtype)], dim=-1)  # (b, t, e + d)
        if self.rnn_type == "gru" and fused_gru_applies(x):  # training on a CPU: vaekit's own GRU layer
            x, finals = x.transpose(0, 1)[None], []  # (1, t, b, e + d)
            for i in range(self.layers):
                weights = [getattr(self.rnn, f"{name}_l{i}")[None]
                           for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
                x = gru(x, state[i:i + 1], *weights)  # (1, t, b, h)
                finals.append(x[0, -1])
            return x[0].transpose(0, 1), torch.stack(finals)  # (b, t, h), (layers, b, h)
        return self.rnn(x, state)

    def token_nll(self, hidden: torch.Tensor, targets: torch.Tensor, embedding_weight: torch.Tensor) -> torch.Tensor:
        """-log p(target) for hidden states (n, h) and targets (n,), (n,) in fp32, whichever the output layer.
        The rows are padded to a multiple of ROWS first (see ``pad_rows``); the padding's values are dropped."""
        n = len(targets)
        hidden, targets = pad_rows(hidden), pad_rows(targets)  # padding targets id 0, always in the head
        if self.adaptive is not None:
            return -self.target_log_prob(hidden, targets)[:n]
        x, weight, bias = self._output_layer(hidden, embedding_weight)
        if self._at_inference():  # scoring, evaluation: the kept output weight
            logits = self._inference_linear(x, weight, bias)
            if logits.device.type == "cpu" and _wide_exponent(logits.dtype):  # a softmax in place, not 3 fp32 copies
                return _linear_softmax_nll(logits, targets, x, weight, bias, torch.float32)[:n].float()
            return token_nll(logits, targets)[:n]
        return linear_nll(x, weight, bias, targets)[:n]

    def _output_layer(self, hidden: torch.Tensor, embedding_weight: torch.Tensor):
        """The full-softmax output layer's input, weight and bias for hidden states: (dropout(h), W, b), or with
        tied embeddings (to_embedding(dropout(h)), the embedding matrix, None)."""
        hidden = self.dropout(hidden)
        if self.output is not None:
            return hidden, self.output.weight, self.output.bias
        return self.to_embedding(hidden), embedding_weight, None

    def _at_inference(self) -> bool:
        return not self.training and not torch.is_grad_enabled()

    def target_log_prob(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Adaptive softmax only: log p(target) for hidden states (n, h) and targets (n,), (n,) in fp32:
        log p(head entry) + log p(word | cluster) for a word in a cluster, each a log-softmax in fp32 (token_nll)
        while the matrix products follow autocast."""
        asm, x = self.adaptive, self.dropout(hidden)
        head_target = targets.clone()
        in_cluster = torch.zeros(len(targets), dtype=torch.float32, device=targets.device)
        for i in range(asm.n_clusters):
            low, high = asm.cutoffs[i], asm.cutoffs[i + 1]
            # a cluster with no target in this batch still runs (on no rows), so that every parameter takes part
            # in the backward pass, as DistributedDataParallel requires
            rows = ((targets >= low) & (targets < high)).nonzero().squeeze(1)
            head_target[rows] = asm.shortlist_size + i
            logits = asm.tail[i](pad_rows(x.index_select(0, rows)))[:len(rows)]
            nll = token_nll(logits, targets.index_select(0, rows) - low)
            in_cluster = in_cluster.index_add(0, rows, -nll)
        return in_cluster - token_nll(asm.head(x), head_target)

    def _adaptive_log_probs(self, hidden: torch.Tensor) -> torch.Tensor:
        """Adaptive softmax only: log p(word) for every word of the vocabulary, (n, h) -> (n, v) in fp32."""
        asm = self.adaptive
        head = F.log_softmax(asm.head(hidden).float(), dim=-1)  # (n, shortlist + clusters)
        out = torch.empty(len(hidden), asm.n_classes, dtype=torch.float32, device=hidden.device)
        out[:, :asm.shortlist_size] = head[:, :asm.shortlist_size]
        for i in range(asm.n_clusters):
            low, high = asm.cutoffs[i], asm.cutoffs[i + 1]
            out[:, low:high] = F.log_softmax(asm.tail[i](hidden).float(), dim=-1) + head[:, asm.shortlist_size + i, None]
        return out

    def logits(self, hidden: torch.Tensor, embedding_weight: torch.Tensor) -> torch.Tensor:
        """(..., h) -> (..., v); ``embedding_weight`` (v, e) scores the tokens when embeddings are tied. With the
        adaptive softmax these are the log-probabilities themselves (fp32), which sampling and search treat as
        logits."""
        if self.adaptive is not None:
            hidden = self.dropout(hidden)
            return self._adaptive_log_probs(hidden.reshape(-1, hidden.shape[-1])).reshape(*hidden.shape[:-1], -1)
        x, weight, bias = self._output_layer(hidden, embedding_weight)
        if self._at_inference():
            return self._inference_linear(x, weight, bias)
        return F.linear(x, weight, bias)

    def train(self, mode: bool = True) -> "RNNDecoder":
        # training may change the weights without a trace the cache could see; eval() keeps it, since every
        # decoding call switches to eval mode and back (and a call on a model in eval mode did drop the cache)
        if mode:
            self._bf16_output = None
        return super().train(mode)

    def _inference_linear(self, hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """The output layer at inference (decoding, scoring, evaluation). Under bf16 autocast on a CPU its weight
        (vocabulary x hidden, the largest matrix) is cast to bf16 once and kept until the weight changes, where
        autocast would cast it again on every call (as long as the decoding steps of a short text); where oneDNN
        is there the kept copy is also laid out in oneDNN's own blocked format for products with few rows
        (``mkldnn._reorder_linear_weight``, what torch.compile's weight freezing uses): a decoding step's
        (20 x 512) x (512 x 20k) product reads the whole weight for few rows, 1.1 -> 0.7 ms, the same values."""
        device = weight.device.type
        if not torch.is_autocast_enabled(device) or torch.get_autocast_dtype(device) != torch.bfloat16:
            return F.linear(hidden, weight, bias)
        # _version alone cannot say "changed": fused Adam updates parameters in place without bumping it. train()
        # drops the cache whenever training starts; while gradients are held, an optimizer may also step the
        # weights of a model left in eval mode, so the weight is cast afresh
        if weight.grad is not None:
            return F.linear(hidden, weight.to(torch.bfloat16), None if bias is None else bias.to(torch.bfloat16))
        key = (weight.data_ptr(), weight._version, None if bias is None else bias._version)
        cached = getattr(self, "_bf16_output", None)
        if cached is None or cached[0] != key:
            low = weight.detach().to(torch.bfloat16)
            packed = _packed_weight(low) if device == "cpu" else None
            cached = self._bf16_output = (key, None if packed is not None else low,  # one copy kept, not two
                                          None if bias is None else bias.detach().to(torch.bfloat16), packed)
        _, low, low_bias, packed = cached
        if packed is None:
            return F.linear(hidden, low, low_bias)
        rows = hidden.reshape(-1, hidden.shape[-1]).to(torch.bfloat16).contiguous()
        out = torch.ops.mkldnn._linear_pointwise(rows, packed, low_bias, "none", [], "")
        return out.reshape(*hidden.shape[:-1], out.shape[-1])
