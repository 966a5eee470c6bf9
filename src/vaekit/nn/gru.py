"""A GRU layer for training on CPUs: the recurrence in few operations per step, the rest batched over time.

PyTorch runs an LSTM layer on oneDNN's fused kernel on CPUs but a GRU step by step, each step a dozen small
operations forward and as many autograd nodes backward; at the sizes of a sentence VAE (batch 32, hidden 256)
the small operations, not the matrix products, set the speed. This layer computes the same function as
``nn.GRU`` (Cho et al. 2014, PyTorch's gate order r, z, n with the reset gate applied to the recurrent product)

    r_t = sigmoid(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)
    z_t = sigmoid(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)
    n_t = tanh(W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn))
    h_t = (1 - z_t) * n_t + z_t * h_{t-1}

with a hand-written backward pass through time. Forward, the input products of all steps are one matrix product
and a step is one product and five pointwise operations. Backward, only dh_t runs through the recurrence:

    dh_{t-1} = g_{t-1} + dh_t * z_t + [dh_t * M_t] W_hh          (g: the gradient reaching the output h_{t-1})

where M_t (b, 3, h) = [A r (1-r) (W_hn h + b_hn), (h_{t-1} - n) z (1-z), A r] with A = (1-z)(1-n^2) depends on the
forward values only, so it is computed for all steps at once; so are every weight gradient and the input gradient,
each one product over all steps. D independent directions (a bidirectional layer's two) run side by side in
batched operations (half the operations; the time is still about twice one direction's, as the pointwise work
grows with D). One direction of a PTB batch (32 texts, 21 steps, hidden 256), forward and backward in bf16:
12.5 ms with nn.GRU, 10 ms here.

Under autocast the products over all steps (inputs, input and weight gradients) run in its dtype (bf16 on CPUs),
and so does each step's recurrent product from hidden size 384 on (see ``_recurrent_dtype``); gates, states and
gradients stay in fp32. Without autocast everything runs in the input's dtype (fp64 too, for gradcheck).
"""
from __future__ import annotations

import torch


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    if torch.is_autocast_enabled("cpu"):
        return torch.get_autocast_dtype("cpu")
    return x.dtype


RECURRENT_LOW_HIDDEN = 384  # hidden size from which the recurrent product runs in the autocast dtype


def _recurrent_dtype(low: torch.dtype, hidden: int) -> torch.dtype:
    """The dtype of each step's recurrent product. Below RECURRENT_LOW_HIDDEN it is the state's (fp32): casting a
    step's small operands and result costs as much as bf16 saves (one direction, batch 32, hidden 256, forward and
    backward: 10.4 ms in fp32, 12.1 in bf16). From there on the autocast dtype: at hidden 512 an fp32 W_hh (3 MB)
    no longer stays in a core's cache and bf16 wins (batch 32: 26.0 -> 19.7 ms; batch 64: 45.0 -> 37.4 ms)."""
    return low if hidden >= RECURRENT_LOW_HIDDEN else torch.promote_types(low, torch.float32)


class _GRU(torch.autograd.Function):
    """x (D, t, b, i) time-major, h0 (D, b, h), w_ih (D, 3h, i), w_hh (D, 3h, h), b_ih, b_hh (D, 3h)
    -> outputs h_1..h_t (D, t, b, h). Inside, per-step values are kept step-major, (t, D, b, .), so that each
    step reads and writes contiguous blocks."""

    @staticmethod
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh, low, rec):
        state = torch.float32 if x.dtype in (torch.bfloat16, torch.float16) else x.dtype
        with torch.autocast("cpu", enabled=False):
            d, t, b, i = x.shape
            h = w_hh.shape[-1]
            x_low, w_ih_low = x.to(low), w_ih.to(low)
            # the input products of all steps at once, (D, t*b, 3h), then step-major in the state dtype
            gi_low = torch.baddbmm(b_ih.to(low)[:, None], x_low.reshape(d, t * b, i), w_ih_low.transpose(1, 2))
            gi = x.new_empty(t, d, b, 3 * h, dtype=state).copy_(gi_low.view(d, t, b, 3 * h).transpose(0, 1))
            # the recurrent product (b x h x 3h a step) runs in ``rec``: see _recurrent_dtype
            w_hh_t, b_hh_r = w_hh.to(rec).transpose(1, 2), b_hh.to(rec)[:, None]
            hs = x.new_empty(t + 1, d, b, h, dtype=state)  # h_0..h_t
            hs_rec = hs if rec == state else x.new_empty(t + 1, d, b, h, dtype=rec)  # its operand's copy
            gh = x.new_empty(t, d, b, 3 * h, dtype=state)  # W_hh h_{t-1} + b_hh
            rz = x.new_empty(t, d, b, 2 * h, dtype=state)
            n = x.new_empty(t, d, b, h, dtype=state)
            hs[0] = h0
            if hs_rec is not hs:
                hs_rec[0] = h0
            for s in range(t):
                if hs_rec is hs:
                    torch.baddbmm(b_hh_r, hs[s], w_hh_t, out=gh[s])
                else:
                    gh[s] = torch.baddbmm(b_hh_r, hs_rec[s], w_hh_t)
                torch.add(gi[s, ..., :2 * h], gh[s, ..., :2 * h], out=rz[s]).sigmoid_()
                torch.addcmul(gi[s, ..., 2 * h:], rz[s, ..., :h], gh[s, ..., 2 * h:], out=n[s]).tanh_()
                torch.lerp(n[s], hs[s], rz[s, ..., h:], out=hs[s + 1])  # n + z (h_{t-1} - n)
                if hs_rec is not hs:
                    hs_rec[s + 1] = hs[s + 1]
        ctx.save_for_backward(x_low, w_ih_low, w_hh, hs, gh, rz, n)
        ctx.dtypes = (x.dtype, h0.dtype, w_ih.dtype, low, state, rec)
        return hs[1:].transpose(0, 1)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        x_low, w_ih_low, w_hh, hs, gh, rz, n = ctx.saved_tensors
        x_dtype, h0_dtype, w_dtype, low, state, rec = ctx.dtypes
        d, t, b, i = x_low.shape
        h = hs.shape[-1]
        with torch.autocast("cpu", enabled=False):
            w_hh_r = w_hh.to(rec)
            step_rec = None if rec == state else x_low.new_empty(d, b, 3 * h, dtype=rec)
            z = rz[..., h:]
            # M_t = [A r (1-r) ghn, (h_{t-1} - n) z (1-z), A r] with A = (1-z)(1-n^2), for all steps at once
            m = x_low.new_empty(t, d, b, 3, h, dtype=state)
            a = torch.mul(n, n).neg_().add_(1).mul_(1 - z)  # dn_t/dh_t through tanh
            slope = rz * (1 - rz)  # sigmoid' of r and z
            torch.mul(a, rz[..., :h], out=m[..., 2, :])
            torch.mul(a, slope[..., :h], out=m[..., 0, :]).mul_(gh[..., 2 * h:])
            torch.sub(hs[:-1], n, out=m[..., 1, :]).mul_(slope[..., h:])
            grad_out = grad_out.to(state).transpose(0, 1)  # (t, D, b, h)
            dh = x_low.new_empty(t, d, b, h, dtype=state)  # dL/dh_t for t = 1..t
            dgh = x_low.new_empty(t, d, b, 3, h, dtype=state)  # dL/d(W_hh h_{t-1} + b_hh)
            dh[t - 1] = grad_out[t - 1]
            for s in range(t - 1, -1, -1):
                torch.mul(dh[s, :, :, None], m[s], out=dgh[s])
                step = dgh[s].view(d, b, 3 * h)
                back = torch.bmm(step if step_rec is None else step_rec.copy_(step), w_hh_r)  # (D, b, h)
                if s == 0:
                    grad_h0 = back.to(state).addcmul_(dh[0], z[0])
                else:
                    torch.add(grad_out[s - 1], back, out=dh[s - 1]).addcmul_(dh[s], z[s])
            # dL/d(W_ih x + b_ih) equals dgh in the r and z gates; in n it is dh A (dgh has dh A r). Both go
            # direction-major in the products' dtype for the weight and input gradients over all steps
            dgi_n = dh.mul_(a)  # (dh is not needed any more)
            dgi = x_low.new_empty(d, t, b, 3, h, dtype=low)
            dgi.copy_(dgh.transpose(0, 1))
            dgi[..., 2, :].copy_(dgi_n.transpose(0, 1))
            dgh_low = x_low.new_empty(d, t, b, 3 * h, dtype=low).copy_(dgh.view(t, d, b, 3 * h).transpose(0, 1))
            h_prev = x_low.new_empty(d, t, b, h, dtype=low).copy_(hs[:-1].transpose(0, 1))
            dgi, dgh_low = dgi.view(d, t * b, 3 * h), dgh_low.view(d, t * b, 3 * h)
            grad_x = torch.bmm(dgi, w_ih_low).view(d, t, b, i)
            grad_w_ih = torch.bmm(dgi.transpose(1, 2), x_low.reshape(d, t * b, i))
            grad_w_hh = torch.bmm(dgh_low.transpose(1, 2), h_prev.view(d, t * b, h))
            grad_b_hh = dgh.sum((0, 2))  # (D, 3, h), from the state-dtype values
            grad_b_ih = torch.cat([grad_b_hh[:, :2], dgi_n.sum((0, 2))[:, None]], dim=1).view(d, 3 * h)
            grad_b_hh = grad_b_hh.view(d, 3 * h)
        return (grad_x.to(x_dtype), grad_h0.to(h0_dtype), grad_w_ih.to(w_dtype), grad_w_hh.to(w_dtype),
                grad_b_ih.to(w_dtype), grad_b_hh.to(w_dtype), None, None)


def fused_gru_applies(x: torch.Tensor) -> bool:
    """Whether ``gru`` runs this layer's hand-written recurrence: CPU tensors while gradients are recorded, outside
    torch.compile (which traces the plain layer). Elsewhere nn.GRU's own kernels are as fast or faster (cuDNN on
    GPUs; PyTorch's C++ loop without autograd at inference)."""
    return x.device.type == "cpu" and torch.is_grad_enabled() and not torch.compiler.is_compiling()


def gru(x: torch.Tensor, h0: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor, b_ih: torch.Tensor,
        b_hh: torch.Tensor) -> torch.Tensor:
    """D one-directional GRU layers side by side: x (D, t, b, i) time-major, h0 (D, b, h), weights stacked per
    direction as nn.GRU holds them -> outputs (D, t, b, h), fp32 under autocast (the state's dtype)."""
    low = _compute_dtype(x)
    return _GRU.apply(x, h0, w_ih, w_hh, b_ih, b_hh, low, _recurrent_dtype(low, w_hh.shape[-1]))
