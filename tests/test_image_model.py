"""Contract tests every model passes on a tiny config."""
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import vaekit
from vaekit import ImageVAE, ImageVAEConfig, VaekitError
from vaekit.models.image import PRESETS

from conftest import blobs, fit_steps, tiny_model


def batch(n=8, h=12, w=10, c=1):
    x = torch.from_numpy(blobs(n, h, w, c)).float() / 255
    return x[:, None] if c == 1 else x.permute(0, 3, 1, 2).contiguous()


@pytest.mark.parametrize("shape", [(1, 12, 10), (3, 9, 13), (1, 28, 28), (1, 8, 8), (3, 5, 7)])
@pytest.mark.parametrize("loss", ["bce", "mse"])
def test_shapes_finite_loss_and_backward(shape, loss):
    c, h, w = shape
    model = tiny_model(in_channels=c, height=h, width=w, loss=loss)
    x = batch(6, h, w, c)
    posterior = model.encode(x)
    assert posterior.mean.shape == (6, 3) and posterior.logvar.shape == (6, 3)
    assert model.decode(posterior.sample()).shape == (6, c, h, w)
    assert model.sample(4).shape == (4, c, h, w)
    assert model.reconstruct(x).shape == x.shape
    assert model.interpolate(x[:1], x[1:2], steps=5).shape == (5, c, h, w)
    out = model.loss(x)
    assert torch.isfinite(out.loss) and out.kl >= 0
    out.loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_seed_preset_is_the_design_documents_network():
    model = ImageVAE.from_preset("seed")
    convs = [m for m in model.encoder.modules() if isinstance(m, nn.Conv2d)]
    assert [(m.in_channels, m.out_channels, m.kernel_size, m.stride) for m in convs] == [
        (1, 32, (3, 3), (2, 2)), (32, 64, (3, 3), (2, 2))]
    dense = [m for m in model.encoder.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in dense] == [(7 * 7 * 64, 16), (16, 4)]  # 4 = mean + logvar of latent 2
    assert [(m.in_features, m.out_features) for m in model.decoder.modules() if isinstance(m, nn.Linear)] == [(2, 7 * 7 * 64)]
    deconvs = [m for m in model.decoder.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [(m.in_channels, m.out_channels, m.stride) for m in deconvs] == [(64, 64, (2, 2)), (64, 32, (2, 2)), (32, 1, (1, 1))]
    assert model.decode(torch.zeros(1, 2)).shape == (1, 1, 28, 28)


def test_save_load_round_trip_is_bit_exact(tmp_path):
    model = tiny_model()
    model.save_pretrained(tmp_path / "m")
    for loaded in (ImageVAE.from_pretrained(tmp_path / "m"), vaekit.load(tmp_path / "m")):
        assert not loaded.training
        assert loaded.config == model.config
        ours, theirs = model.state_dict(), loaded.state_dict()
        assert ours.keys() == theirs.keys()
        for key in ours:
            assert torch.equal(ours[key], theirs[key]), key
    assert set(load_file(tmp_path / "m" / "model.safetensors")) == set(model.state_dict())


def test_loading_catches_an_edited_config(tmp_path):
    import json

    tiny_model().save_pretrained(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    config["model"]["latent_dim"] = 5
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    with pytest.raises(VaekitError, match="latent_dim"):
        vaekit.load(tmp_path / "m")
    config["model"]["latent_dim"] = 3
    config["model"]["colour"] = "red"
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    with pytest.raises(VaekitError, match="unknown field 'colour'"):
        vaekit.load(tmp_path / "m")
    (tmp_path / "m" / "config.json").unlink()
    with pytest.raises(VaekitError, match="config.json: file is missing"):
        vaekit.load(tmp_path / "m")


def test_seeded_runs_are_deterministic():
    x = batch()
    losses = [fit_steps(tiny_model(), x, steps=5, lr=1e-3, seed=3).loss.item() for _ in range(2)]
    assert losses[0] == losses[1]


def test_overfits_one_small_batch():
    x = (batch(8) > 0.5).float()
    model = tiny_model(latent_dim=4)
    first = model.loss(x, generator=torch.Generator().manual_seed(0)).rec.item()
    out = fit_steps(model, x, steps=400, lr=3e-3)
    model.eval()
    assert out.rec.item() < 0.2 * first
    assert ((model.reconstruct(x) > 0.5).float() == x).float().mean() > 0.97


def test_iw_nll_is_at_most_negative_elbo():
    model = tiny_model()
    x = (batch(16) > 0.5).float()
    out = model.iw_nll(x, k=100, generator=torch.Generator().manual_seed(0))
    assert out["iw_nll"].mean() <= out["neg_elbo"].mean()
    one = model.iw_nll(x, k=1, generator=torch.Generator().manual_seed(0))
    assert one["iw_nll"].mean() > out["iw_nll"].mean()


def test_wrong_input_shape_and_bad_config_are_named():
    model = tiny_model()
    with pytest.raises(VaekitError, match=r"do not fit this model"):
        model.encode(torch.zeros(2, 1, 28, 28))
    with pytest.raises(VaekitError, match="latent dimension must be positive"):
        ImageVAEConfig(latent_dim=0)
    with pytest.raises(VaekitError, match="1 or 3 channels"):
        ImageVAEConfig(in_channels=2)
    assert set(PRESETS) == {"seed", "default"}


@pytest.mark.parametrize("stride, output_padding", [(2, 1), (2, 0), (1, 0)])
def test_transposed_conv_with_separate_bias_matches_pytorchs(stride, output_padding):
    """vaekit's ConvTranspose2d adds its bias after the convolution (a faster bias gradient on CPU): outputs,
    gradients and the state dict are those of nn.ConvTranspose2d."""
    from vaekit.nn.image import ConvTranspose2d

    torch.manual_seed(0)
    ours = ConvTranspose2d(6, 4, 3, stride=stride, padding=1, output_padding=output_padding).double()
    ref = nn.ConvTranspose2d(6, 4, 3, stride=stride, padding=1, output_padding=output_padding).double()
    ref.load_state_dict(ours.state_dict())
    assert list(ours.state_dict()) == list(ref.state_dict())
    x = torch.randn(3, 6, 5, 7, dtype=torch.double, requires_grad=True)
    y, y_ref = ours(x), ref(x)
    torch.testing.assert_close(y, y_ref)
    grad = torch.randn_like(y)
    got = torch.autograd.grad(y, [x, ours.weight, ours.bias], grad)
    want = torch.autograd.grad(y_ref, [x, ref.weight, ref.bias], grad)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the bias does not promote the output to fp32
        assert ours.float()(x.float()).dtype == torch.bfloat16


@pytest.mark.parametrize("transposed", [True, False])
@pytest.mark.parametrize("precision", ["fp64", "fp32", "bf16"])
def test_convolutions_with_fused_relu_match_conv_then_relu(precision, transposed):
    """relu=True: on CPUs the bias and the ReLU run inside oneDNN's convolution (fp32, bf16; fp64 takes the
    plain path). Outputs and gradients are relu(conv(x))'s with PyTorch's own layers, the output keeps the
    autocast dtype and the channels-last layout the next convolution wants."""
    from vaekit.nn.image import Conv2d, ConvTranspose2d

    torch.manual_seed(0)
    dtype = torch.float64 if precision == "fp64" else torch.float32
    if transposed:
        ours = ConvTranspose2d(6, 4, 3, stride=2, padding=1, output_padding=1, relu=True).to(dtype)
        ref = nn.ConvTranspose2d(6, 4, 3, stride=2, padding=1, output_padding=1).to(dtype)
    else:
        ours = Conv2d(6, 4, 3, stride=2, padding=1, relu=True).to(dtype)
        ref = nn.Conv2d(6, 4, 3, stride=2, padding=1).to(dtype)
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(3, 6, 5, 7, dtype=dtype).contiguous(memory_format=torch.channels_last).requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        y, y_ref = ours(x), torch.relu(ref(x))
    assert y.dtype == (torch.bfloat16 if precision == "bf16" else dtype)
    from vaekit.precision import cpu_runs_bf16

    fusable = precision == "fp32" or (precision == "bf16" and cpu_runs_bf16())  # oneDNN's bf16: AVX-512 CPUs
    assert ("_ConvReLU" in type(y.grad_fn).__name__) == fusable  # fused where it can be
    assert y.is_contiguous(memory_format=torch.channels_last) and (y_ref > 0).any() and (y_ref == 0).any()
    tol = {"atol": 0.05, "rtol": 0.05} if precision == "bf16" else {}
    torch.testing.assert_close(y.to(dtype), y_ref.to(dtype), **tol)
    grad = torch.randn_like(y_ref)
    got = torch.autograd.grad(y, [x, ours.weight, ours.bias], grad.to(y.dtype))
    want = torch.autograd.grad(y_ref, [x, ref.weight, ref.bias], grad)
    for a, b in zip(got, want):
        assert a.dtype == b.dtype == dtype  # fp32 parameter gradients under autocast
        torch.testing.assert_close(a, b.to(dtype), **({"atol": 0.15, "rtol": 0.05} if precision == "bf16" else {}))


@pytest.mark.parametrize("channels_last", [True, False])
def test_flatten_hands_a_channels_last_gradient_back_channels_last(channels_last):
    """The encoder's Flatten: nn.Flatten's values and gradient, with the gradient in the input's layout (so the
    ReLU and the convolution before it never mix layouts, which PyTorch's CPU kernels run far slower)."""
    from vaekit.nn.image import Flatten

    x = torch.randn(3, 4, 5, 6, dtype=torch.double)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    y, y_ref = Flatten()(x), nn.Flatten()(x)
    torch.testing.assert_close(y, y_ref)
    grad = torch.randn_like(y)
    (got,), (want,) = torch.autograd.grad(y, [x], grad), torch.autograd.grad(y_ref, [x], grad)
    torch.testing.assert_close(got, want)
    assert got.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


@pytest.mark.parametrize("metadata", ["not json", "[1]", '{"model": [1]}', '"text"'])
def test_weights_whose_vaekit_config_is_not_a_json_object_are_named(tmp_path, metadata):
    from safetensors.torch import save_file

    model = tiny_model()
    model.save_pretrained(tmp_path / "m")
    path = tmp_path / "m" / "model.safetensors"
    save_file(load_file(path), path, metadata={"vaekit_config": metadata})
    with pytest.raises(VaekitError, match="model.safetensors: metadata 'vaekit_config' is not"):
        vaekit.load(tmp_path / "m")


def test_weights_holding_nan_are_refused_at_load_naming_the_tensor(tmp_path):
    from safetensors.torch import save_file

    model = tiny_model()
    model.save_pretrained(tmp_path / "m")
    path = tmp_path / "m" / "model.safetensors"
    from safetensors import safe_open

    with safe_open(path, framework="pt") as fh:
        metadata = fh.metadata()
    state = load_file(path)
    key = sorted(state)[0]
    state[key].view(-1)[0] = float("nan")
    save_file(state, path, metadata=metadata)
    with pytest.raises(VaekitError, match=f"tensor {key!r} holds NaN or infinite values"):
        vaekit.load(tmp_path / "m")
