"""Convolutional encoder and decoder that adapt to any image size.

Shape letters: b batch, c channels, h height, w width, d latent dimension.
Each encoder level is a 3x3 convolution with stride 2 and padding 1, so a side of n pixels becomes
ceil(n / 2). The decoder mirrors it with 3x3 transposed convolutions whose output padding (0 or 1) is
chosen per level so that every level gets back exactly the size the encoder saw there.
"""
from __future__ import annotations

import functools
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..precision import cpu_runs_bf16

# in-place ReLU: every ReLU here follows a convolution or a linear layer, whose backward needs its input, not
# its output, so the ReLU can overwrite it instead of writing a second tensor
ACTIVATIONS = {"relu": functools.partial(nn.ReLU, inplace=True), "elu": nn.ELU, "silu": nn.SiLU}


def level_sizes(height: int, width: int, levels: int) -> list[tuple[int, int]]:
    """Spatial size at the input of each level and after the last: [(h0, w0), ..., (hL, wL)]."""
    sizes = [(height, width)]
    for _ in range(levels):
        h, w = sizes[-1]
        sizes.append(((h + 1) // 2, (w + 1) // 2))
    return sizes


def mlp(dims: Sequence[int], activation: str, last_activation: bool) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if last_activation or i < len(dims) - 2:
            layers.append(ACTIVATIONS[activation]())
    return layers


def fp32(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Run ``module`` in fp32 even under autocast. Used at the two ends of the latent code: in bf16, z and
    the posterior mean would be rounded to 8 significant bits (steps of 0.016 near 3), which for a 2-D latent
    can be as coarse as the posterior's own spread. Both layers are tiny next to the convolutions."""
    with torch.autocast(x.device.type, enabled=False):
        return module(x.float())


class ChannelsLast(nn.Module):
    """Lays activations out channels-last, the layout oneDNN's convolutions are fastest on."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last)


class _FlattenChannelsLast(torch.autograd.Function):
    """Flatten (b, c, h, w) -> (b, c*h*w) in (c, h, w) order, handing the gradient back channels-last."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.shape = x.shape
        return x.flatten(1)  # a copy: a channels-last tensor is not (c, h, w)-contiguous

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad.view(ctx.shape).contiguous(memory_format=torch.channels_last)


class Flatten(nn.Flatten):
    """nn.Flatten that gives a channels-last input its gradient channels-last too. nn.Flatten's backward is a
    view of the (c, h, w)-ordered gradient, so the ReLU before it would compute its backward from a
    channels-first gradient and a channels-last activation: PyTorch's CPU kernel for two layouts is about 25x
    slower than for one (bf16, 128x64x7x7), and the convolution before that gets a gradient to reorder. One
    copy here instead makes a seed-network step about 3% faster. Same values, no parameters."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (self.start_dim, self.end_dim) == (1, -1) and x.dim() == 4 and not x.is_contiguous() \
                and x.is_contiguous(memory_format=torch.channels_last):
            return _FlattenChannelsLast.apply(x)
        return super().forward(x)


class _ConvReLU(torch.autograd.Function):
    """relu(conv(x, w) + b), plain or transposed, as one oneDNN primitive with the bias and the ReLU as post-ops,
    on CPUs. Separately, the bias add and the ReLU each read and write the whole output once more: for the seed
    network's 128x32x28x28 bf16 decoder output that was 3.3 ms of a 23 ms step. The backward is the ReLU's (the
    gradient where the output is positive), the bias gradient as a plain sum (see ConvTranspose2d) and
    PyTorch's own convolution backward for x and w."""

    @staticmethod
    def forward(ctx, x, w, b, stride, padding, output_padding, dilation, groups, transposed):
        if transposed:
            y = torch.ops.mkldnn._convolution_transpose_pointwise(x, w, b, padding, output_padding, stride, dilation,
                                                                  groups, "relu", [], "")
        else:
            y = torch.ops.mkldnn._convolution_pointwise(x, w, b, padding, stride, dilation, groups, "relu", [], "")
        ctx.save_for_backward(x, w, y)
        ctx.conv = (stride, padding, dilation, transposed, output_padding, groups)
        return y

    @staticmethod
    def backward(ctx, grad):
        x, w, y = ctx.saved_tensors
        g = torch.ops.aten.threshold_backward(grad.contiguous(memory_format=torch.channels_last), y, 0)
        gx, gw, _ = torch.ops.aten.convolution_backward(g, x, w, None, *ctx.conv,
                                                        [ctx.needs_input_grad[0], ctx.needs_input_grad[1], False])
        gb = g.sum((0, 2, 3)) if ctx.needs_input_grad[2] else None
        return gx, gw, gb, None, None, None, None, None, None


def conv_relu(conv: nn.Conv2d | nn.ConvTranspose2d, x: torch.Tensor) -> torch.Tensor | None:
    """relu(conv(x)) through _ConvReLU where it applies (a CPU, fp32, or bf16 autocast where oneDNN does bf16, a
    bias, not under torch.compile, which fuses on its own); None elsewhere, for the caller's plain path."""
    if (x.device.type != "cpu" or conv.bias is None or not torch.backends.mkldnn.is_available()
            or torch.compiler.is_compiling() or conv.padding_mode != "zeros"):
        return None
    dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else x.dtype
    # oneDNN's bf16 primitives raise on a CPU without bf16 support, where PyTorch's own layers still compute it
    if dtype not in (torch.float32, torch.bfloat16) or (dtype == torch.bfloat16 and not cpu_runs_bf16()):
        return None
    transposed = isinstance(conv, nn.ConvTranspose2d)
    return _ConvReLU.apply(x.to(dtype).contiguous(memory_format=torch.channels_last), conv.weight.to(dtype),
                           conv.bias.to(dtype), list(conv.stride), list(conv.padding),
                           list(conv.output_padding) if transposed else [0, 0], list(conv.dilation), conv.groups,
                           transposed)


class Conv2d(nn.Conv2d):
    """nn.Conv2d, same parameters and state dict; with ``relu=True`` it applies the ReLU that follows it too,
    on CPUs fused into the convolution (_ConvReLU). The encoder puts an nn.Identity where the ReLU was."""

    def __init__(self, *args, relu: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = conv_relu(self, x) if self.relu else None
        if y is None:
            y = super().forward(x)
            y = torch.relu_(y) if self.relu else y
        return y


class ConvTranspose2d(nn.ConvTranspose2d):
    """nn.ConvTranspose2d, same parameters and state dict, that adds its bias after the convolution. PyTorch's
    CPU backward of a transposed convolution computes the bias gradient about 50x slower than a plain sum over
    the output gradient (bf16, 128x32x28x28: 8.5 ms against 0.17), and that was a third of a training step of
    the seed network; with the bias added separately, autograd's sum computes it.

    With ``relu=True`` the layer applies the ReLU that follows it too, on CPUs fused into the convolution
    (_ConvReLU); the decoder then puts an nn.Identity where the ReLU was, so state dicts match."""

    def __init__(self, *args, relu: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.relu = relu

    def forward(self, x: torch.Tensor, output_size=None) -> torch.Tensor:
        y = conv_relu(self, x) if self.relu and output_size is None else None
        if y is None:
            y = self._conv(x, output_size)
            y = torch.relu_(y) if self.relu else y
        return y

    def _conv(self, x: torch.Tensor, output_size) -> torch.Tensor:
        if output_size is not None or self.bias is None:
            return super().forward(x, output_size)
        y = F.conv_transpose2d(x, self.weight, None, self.stride, self.padding, self.output_padding, self.groups,
                               self.dilation)
        return y + self.bias.to(y.dtype)[:, None, None]  # under autocast y is bf16: keep it so


class ConvEncoder(nn.Module):
    """x (b, c, h, w) -> (mean, logvar), each (b, d). With ``cond_dim`` > 0 a condition c (b, cond_dim) joins
    the flattened features: the first dense layer computes W [h; c] = W_h h + W_c c, W_c being ``cond``."""

    def __init__(self, in_channels: int, height: int, width: int, channels: Sequence[int],
                 hidden_dims: Sequence[int], latent_dim: int, activation: str, convs_per_level: int = 1,
                 cond_dim: int = 0):
        super().__init__()
        act = ACTIVATIONS[activation]
        layers: list[nn.Module] = []
        c_in = in_channels
        fuse = activation == "relu"  # the ReLU runs inside the convolution; Identity keeps the module indices
        post = nn.Identity if fuse else act
        for c_out in channels:
            layers += [Conv2d(c_in, c_out, 3, stride=2, padding=1, relu=fuse), post()]
            for _ in range(convs_per_level - 1):
                layers += [Conv2d(c_out, c_out, 3, padding=1, relu=fuse), post()]
            c_in = c_out
        layers.append(Flatten())
        h, w = level_sizes(height, width, len(channels))[-1]
        layers += mlp([c_in * h * w, *hidden_dims], activation, last_activation=True)
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(hidden_dims[-1] if hidden_dims else c_in * h * w, 2 * latent_dim)
        if cond_dim:
            first = hidden_dims[0] if hidden_dims else 2 * latent_dim
            self.cond = nn.Linear(cond_dim, first, bias=False)
            # where the first dense layer's output is: the body's Linear after Flatten, or the head
            self._split = next(i for i, m in enumerate(self.body) if isinstance(m, Flatten)) + 2

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if c is None:
            out = fp32(self.head, self.body(x))
        elif len(self.body) > self._split:  # a dense layer before the head
            h = self.body[:self._split](x) + self.cond(c.to(x.dtype))
            out = fp32(self.head, self.body[self._split:](h))
        else:
            out = fp32(self.head, self.body(x)) + fp32(self.cond, c)
        mean, logvar = out.chunk(2, dim=-1)  # (b, d) each
        return mean, logvar


class ConvDecoder(nn.Module):
    """z (..., d) -> logits (..., c, h, w). The design documents' decoder when channels=(32, 64) and
    hidden_dims=(): Dense 7*7*64, ConvTranspose 64 and 32 with stride 2, ConvTranspose c with stride 1.
    A conditional decoder reads [z; c], so its first dense layer takes latent_dim + cond_dim inputs."""

    def __init__(self, out_channels: int, height: int, width: int, channels: Sequence[int],
                 hidden_dims: Sequence[int], latent_dim: int, activation: str, convs_per_level: int = 1,
                 cond_dim: int = 0):
        super().__init__()
        act = ACTIVATIONS[activation]
        sizes = level_sizes(height, width, len(channels))
        h, w = sizes[-1]
        self.start_shape = (channels[-1], h, w)
        layers = mlp([latent_dim + cond_dim, *hidden_dims, channels[-1] * h * w], activation, last_activation=True)
        layers += [nn.Unflatten(1, self.start_shape), ChannelsLast()]
        c_in = channels[-1]
        fuse = activation == "relu"  # the ReLU runs inside the convolution; Identity keeps the module indices
        post = nn.Identity if fuse else act
        for level, c_out in zip(reversed(range(len(channels))), reversed(channels)):
            (h_in, w_in), (h_out, w_out) = sizes[level + 1], sizes[level]
            # a stride-2 transposed 3x3 conv with padding 1 gives 2n - 1 + output_padding
            pad = (h_out - (2 * h_in - 1), w_out - (2 * w_in - 1))
            layers += [ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1, output_padding=pad, relu=fuse), post()]
            for _ in range(convs_per_level - 1):
                layers += [Conv2d(c_out, c_out, 3, padding=1, relu=fuse), post()]
            c_in = c_out
        layers.append(ConvTranspose2d(c_in, out_channels, 3, stride=1, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        lead = z.shape[:-1]
        first = fp32(self.net[0], z.reshape(-1, z.shape[-1]))  # z's first layer in fp32 (see fp32)
        if torch.is_autocast_enabled(first.device.type):  # the rest in the autocast dtype, as before
            first = first.to(torch.get_autocast_dtype(first.device.type))
        logits = self.net[1:](first)  # (b', c, h, w)
        return logits.reshape(*lead, *logits.shape[1:])
