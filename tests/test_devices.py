"""Generation and evaluation follow the model's device (issue 6: nothing assumes one device).

A model loaded with ``vaekit.load(run, map_location="cuda")`` must vary, sample and evaluate there. Without a
GPU this is checked with PyTorch's "meta" device as the default device: every tensor that vaekit makes without
naming a device lands on "meta", and mixing it with the model's CPU tensors is an error. So a run under
``torch.device("meta")`` that gives the same result as a plain run made every tensor where the model is (or,
for tokenization and random draws, deliberately on the CPU). On a machine with a GPU the same calls run with
the model on CUDA too.
"""
import contextlib
import json

import numpy as np
import pytest
import torch

from vaekit import ImageVAE, TextVAE, TextVAEConfig
from vaekit.data.images import ImageBatch
from vaekit.data.tokenizer import TextTokenizer, TokenizerConfig
from vaekit.evaluate import evaluate
from vaekit.generate import region_codes, vary
from vaekit.latent import encode_items, traversal_codes

from conftest import blobs, run_cli, tiny_model, tiny_text_overrides, two_topic_sentences

DEVICES = ["meta-default"] + (["cuda"] if torch.cuda.is_available() else [])


def text_model(**overrides) -> TextVAE:
    sentences = two_topic_sentences()
    tokenizer = TextTokenizer.train(sentences, TokenizerConfig())
    torch.manual_seed(0)
    config = TextVAEConfig(vocab_size=tokenizer.vocab_size, max_tokens=12, **{**tiny_text_overrides(), **overrides})
    return TextVAE(config, tokenizer).eval()


def on(device: str, model, fn):
    """fn(model) with the model on ``device``, or on the CPU under the meta default device."""
    if device == "meta-default":
        with torch.device("meta"):
            return fn(model)
    moved = model.to(device)
    try:
        return fn(moved)
    finally:
        model.to("cpu")


def same(a, b):
    if isinstance(a, torch.Tensor):
        torch.testing.assert_close(a.cpu(), b.cpu(), atol=1e-4, rtol=1e-4)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            same(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            same(x, y)
    elif isinstance(a, float):
        assert a == pytest.approx(b, rel=1e-4, abs=1e-4, nan_ok=True)
    elif hasattr(a, "__dataclass_fields__"):
        same(vars(a), vars(b))
    else:
        assert a == b


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


TEXT_CALLS = {
    "vary": lambda m: vary(m, "the lazy cat sat on the warm mat.", n=4, seed=1),
    "vary_greedy": lambda m: vary(m, "shares of banks fell in late trading today.", n=2, seed=1, strategy="greedy"),
    "vary_beam": lambda m: vary(m, "the old cat sat on the red mat.", n=2, seed=1, strategy="beam"),
    "vary_banned": lambda m: vary(m, "the old cat sat on the red mat.", n=3, seed=2, banned=[5, 6]),
    "sample": lambda m: m.sample(3, generator=gen(), strategy="sample"),
    "interpolate": lambda m: m.interpolate("the lazy cat sat on the red mat.", "shares of banks fell today."),
    "reconstruct": lambda m: m.reconstruct(["the lazy cat sat on the red mat."]),
    "near": lambda m: region_codes(m, 5, gen(), near="the lazy cat sat.", radius=0.5),
    "avoid": lambda m: region_codes(m, 5, gen(), avoid="the lazy cat sat.", radius=0.5),
    "between": lambda m: region_codes(m, 3, gen(), between=("the lazy cat sat.", "shares fell.")),
    "evaluate": lambda m: {k: v for k, v in evaluate(m, [m.batch(two_topic_sentences()[:6])], iw_samples=5).items()
                           if k != "per_item"},
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("call", sorted(TEXT_CALLS))
def test_text_generation_follows_the_model(device, call):
    model = text_model()
    same(TEXT_CALLS[call](model), on(device, model, TEXT_CALLS[call]))


@pytest.mark.parametrize("device", DEVICES)
def test_conditional_text_generation_follows_the_model(device):
    model = text_model(label_names=("cats", "markets"), tag_names=("animal", "finance"))

    def calls(m):
        return (vary(m, "the lazy cat sat on the warm mat.", n=3, seed=1, label="markets", tags=["finance"]),
                m.sample(2, generator=gen(), label="cats", tags=["animal"]),
                m.interpolate("the lazy cat sat.", "shares fell.", steps=3, label="cats"),
                m.decode(torch.zeros(2, m.latent_dim, device=m.device)))

    same(calls(model), on(device, model, calls))


class Items:
    """The least of vaekit.items.Items that encode_items reads."""

    def __init__(self, batches):
        self._batches = batches
        self.count = sum(len(b) for b in batches)
        self.ids, self.labels = list(range(self.count)), None

    def batches(self):
        return iter(self._batches)


def image_calls(m):
    x = torch.from_numpy(blobs(8)).float()[:, None] / 255
    return {"sample": m.sample(4, generator=gen()),
            "reconstruct": m.reconstruct(x),
            "interpolate": m.interpolate(x[:1], x[1:2], steps=3),
            "traverse": traversal_codes(m.encode(x[:1]).mean[0], [0, 2], -2.0, 2.0, 3),
            "evaluate": {k: v for k, v in evaluate(m, [x], iw_samples=5).items() if k != "per_item"},
            "encode": {k: torch.from_numpy(v) for k, v in encode_items(m, Items([x[:4], x[4:]])).items()
                       if k in ("mean", "logvar")}}


@pytest.mark.parametrize("device", DEVICES)
def test_image_generation_and_evaluation_follow_the_model(device):
    model = tiny_model().eval()
    same(image_calls(model), on(device, model, image_calls))


@pytest.mark.parametrize("device", DEVICES)
def test_conditional_images_follow_the_model(device):
    model = tiny_model(label_names=("a", "b", "c")).eval()
    x = torch.from_numpy(blobs(6)).float()[:, None] / 255
    batch = ImageBatch(x, torch.tensor([0, 1, 2, 0, 1, 2]))

    def calls(m):
        return m.sample(3, generator=gen(), label="b"), m.reconstruct(batch, label="c"), m.interpolate(batch[:1], batch[1:2], 3)

    same(calls(model), on(device, model, calls))


class Recorder:
    """What a model's log_examples writes to during training: pictures and texts, and run_dir/samples.txt."""

    def __init__(self, run_dir):
        self.run_dir, self.logged = run_dir, []
        run_dir.mkdir()

    def image(self, tag, picture, step, save_as=None):
        self.logged.append((tag, torch.from_numpy(picture), step, save_as))

    def text(self, tag, text, step, keep=False):
        self.logged.append((tag, text, step, keep))

    def written(self):
        samples = self.run_dir / "samples.txt"
        return self.logged, samples.read_text() if samples.exists() else None


def example_inputs(kind: str):
    x = torch.from_numpy(blobs(8)).float()[:, None] / 255
    if kind == "image":
        return tiny_model(), x
    if kind == "conditional_image":
        return tiny_model(label_names=("a", "b", "c")), ImageBatch(x, torch.tensor([0, 1, 2, 0, 1, 2, 0, 1]))
    model = text_model(**({"label_names": ("a", "b"), "tag_names": ("x",)} if kind == "conditional_text" else {}))
    if kind == "conditional_text":
        return model, model.batch(two_topic_sentences()[:8], labels=["a", "b"] * 4, tags=[["x"], []] * 4)
    return model, model.batch(two_topic_sentences()[:8])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", ["text", "conditional_text", "image", "conditional_image"])
def test_training_examples_follow_the_model(device, kind, tmp_path):
    """The Trainer draws each epoch's examples with the model where it trains (no CPU copy of a GPU model),
    from a CPU batch of the evaluation data."""
    model, batch = example_inputs(kind)
    runs = iter(["plain", "moved"])

    def examples(m):
        recorder = Recorder(tmp_path / next(runs))
        m.log_examples(recorder, batch, 3, gen())
        return recorder.written()

    same(examples(model), on(device, model, examples))


@pytest.mark.parametrize("device", DEVICES)
def test_image_pictures_follow_the_model(device, tmp_path, tiny_npz):
    """What vaekit sample, reconstruct, interpolate and latent-plot draw for an image model."""
    from vaekit.data.images import load_images
    from vaekit.images import interpolate_grid, manifold_picture, reconstruct_grid, sample_grid

    data = load_images(tiny_npz)
    model = tiny_model(latent_dim=2).eval()
    runs = iter(["plain", "moved"])

    def pictures(m):
        out = tmp_path / next(runs)
        out.mkdir()
        written = [sample_grid(m, 4, out / "s.npy", seed=1), reconstruct_grid(m, data, out / "r.npy", n=4),
                   interpolate_grid(m, data, [0, 1, 2], out / "i.npy", steps=3)]
        return [torch.from_numpy(np.load(path)) for path in written] + [torch.from_numpy(manifold_picture(m, size=3))]

    same(pictures(model), on(device, model, pictures))


def training_step(model, batch) -> float:
    """One bf16 training step as the Trainer takes it: loss, backward, clipping, fused Adam (fp32 on a CPU without
    bf16, where PyTorch's LSTM refuses it)."""
    from vaekit.precision import cpu_runs_bf16
    from vaekit.config import TrainConfig
    from vaekit.train import clip_gradients, make_optimizer

    optimizer = make_optimizer(TrainConfig(), model.parameters(), model.device)
    model.train()
    with torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=cpu_runs_bf16()):
        out = model.loss(batch, kl_weight=0.5, free_bits=0.1, generator=torch.Generator(model.device).manual_seed(0))
    out.loss.backward()
    clip_gradients(optimizer, 1.0)
    optimizer.step()
    return out.loss.item()


TEXT_VARIANTS = {"plain": {}, "adaptive": {"output": "adaptive", "adaptive_cutoffs": (10,)},
                 "lstm_word_dropout": {"rnn": "lstm", "word_dropout": 0.2},
                 "labels_and_tags": {"label_names": ("a", "b"), "tag_names": ("x",)}}


@pytest.mark.parametrize("variant", sorted(TEXT_VARIANTS))
def test_text_training_step_makes_its_tensors_on_the_model_device(variant):
    """The kind of bug a GPU found (issue 6): the decoder's inputs and the per-text NLL sums were made on the CPU."""
    model = text_model(**TEXT_VARIANTS[variant])
    conditional = model.conditional
    batch = model.batch(two_topic_sentences()[:8], labels=["a", "b"] * 4 if conditional else None,
                        tags=[["x"], []] * 4 if conditional else None)
    with torch.device("meta"):
        loss = training_step(model, batch)
    assert loss > 0


def test_image_training_step_makes_its_tensors_on_the_model_device():
    model = tiny_model(label_names=("a", "b"))
    batch = ImageBatch(torch.from_numpy(blobs(8)).float()[:, None] / 255, torch.tensor([0, 1] * 4))
    with torch.device("meta"):
        loss = training_step(model, batch)
    assert loss > 0


def test_data_commands_take_a_device(tmp_path, tiny_npz):
    """evaluate, encode, calibrate and score run where --device says; the figures do not depend on where."""
    run = tmp_path / "run"
    assert run_cli("train", "image", "--data", tiny_npz, "--out", run, "--epochs", 1, "--batch-size", 16, "--quiet",
                   "--precision", "fp32", "--device", "cpu").exit_code == 0
    reports = {}
    for device in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
        out = tmp_path / device
        out.mkdir()
        for args in (("evaluate", "--iw-samples", 5, "--out", out / "eval.json"),
                     ("encode", "--out", out / "codes.npz"),
                     ("calibrate", "--fpr", 0.1),
                     ("score", "--out", out / "scores.csv", "--no-plot")):
            result = run_cli(args[0], run, "--data", tiny_npz, *args[1:], "--quiet", "--device", device)
            assert result.exit_code == 0, result.output
        reports[device] = (json.loads((out / "eval.json").read_text()), np.load(out / "codes.npz")["mean"])
    if "cuda" in reports:
        assert reports["cuda"][0]["iw_nll"] == pytest.approx(reports["cpu"][0]["iw_nll"], rel=1e-3)
        np.testing.assert_allclose(reports["cuda"][1], reports["cpu"][1], atol=1e-4)
    else:  # without a GPU, asking for one is a one-line error
        result = run_cli("evaluate", run, "--data", tiny_npz, "--device", "cuda")
        assert result.exit_code == 2 and "--device cuda" in result.output


def test_generation_commands_take_a_device(tmp_path, tiny_npz, monkeypatch):
    """vary, sample, reconstruct, interpolate, traverse and latent-plot run where --device says (the CPU unless
    asked), with the same output on any device. Under the meta default device the commands get models loaded
    beforehand, so that a tensor any command makes without naming a device fails there."""
    import vaekit
    import vaekit.cli

    text_run, image_run = tmp_path / "text", tmp_path / "image"
    text_model().save_pretrained(text_run)
    tiny_model(latent_dim=2).save_pretrained(image_run)
    loaded = {run: vaekit.load(run) for run in (text_run, image_run)}
    cat = "the lazy cat sat on the warm mat."
    outputs = {}
    for device in ["cpu", "meta-default"] + (["cuda"] if torch.cuda.is_available() else []):
        out = tmp_path / device
        out.mkdir()
        printed = []
        context = contextlib.nullcontext()
        if device == "meta-default":
            for module in (vaekit.cli.base, vaekit.cli.generate, vaekit.cli.analyse):
                monkeypatch.setattr(module, "_load_model", lambda run, device: loaded[run])
            context, device = torch.device("meta"), "cpu"
        for args in (("vary", text_run, cat, "-n", 3, "--seed", 1),
                     ("sample", text_run, "-n", 3, "--strategy", "sample"),
                     ("reconstruct", text_run, cat),
                     ("interpolate", text_run, cat, "shares of banks fell today.", "--steps", 3),
                     ("traverse", text_run, cat, "--steps", 3),
                     ("sample", image_run, "-n", 4, "--out", out / "sample.npy"),
                     ("reconstruct", image_run, "--data", tiny_npz, "-n", 4, "--out", out / "reconstruct.npy"),
                     ("interpolate", image_run, "--data", tiny_npz, "--index", 0, "--index", 5, "--steps", 3,
                      "--out", out / "interpolate.npy"),
                     ("traverse", image_run, "--steps", 3, "--out", out / "traverse.npy"),
                     ("latent-plot", image_run, "--data", tiny_npz, "--out", out / "latent.png", "--no-html")):
            with context:
                result = run_cli(*args, "--device", device)
            assert result.exit_code == 0, (args, result.output)
            printed.append(result.output.replace(str(out), "OUT"))
        monkeypatch.undo()
        arrays = {name: np.load(out / f"{name}.npy") for name in ("sample", "reconstruct", "interpolate", "traverse")}
        assert (out / "latent.png").stat().st_size > 0
        outputs[out.name] = printed, arrays
    for device in set(outputs) - {"cpu"}:
        assert outputs[device][0] == outputs["cpu"][0]
        for name, array in outputs["cpu"][1].items():
            np.testing.assert_allclose(outputs[device][1][name], array, atol=1e-4)
    if "cuda" not in outputs:  # without a GPU, asking for one is a one-line error
        result = run_cli("vary", text_run, cat, "--device", "cuda")
        assert result.exit_code == 2 and "--device cuda" in result.output
