import json

import pytest
import torch

import vaekit
from vaekit import NonFiniteLossError, TrainConfig, Trainer, VaekitError
from vaekit.data.images import ImageBatches, load_images
from vaekit.models.image import ImageVAE

from conftest import tiny_model, tiny_text_overrides


def make_trainer(tiny_npz, run_dir, **cfg):
    data = load_images(tiny_npz)
    train, val = data.split(0.25, seed=0)
    config = TrainConfig(**{"epochs": 2, "batch_size": 8, "precision": "fp32", **cfg})
    return Trainer(tiny_model(), ImageBatches(train, "threshold"), ImageBatches(val, "threshold"), config, run_dir)


def test_training_writes_a_complete_run_folder(tiny_npz, tmp_path):
    trainer = make_trainer(tiny_npz, tmp_path)
    result = trainer.fit()
    assert result.status == "finished" and result.epochs == 2 and result.step == 12
    assert (tmp_path / "model.safetensors").is_file() and (tmp_path / "resume.pt").is_file()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert {r["split"] for r in rows} == {"train", "val"} and sum(r["split"] == "val" for r in rows) == 2
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    for name in ("curves.png", "samples.png", "reconstructions.png"):
        assert (tmp_path / "plots" / name).stat().st_size > 0


def test_curves_are_redrawn_at_most_once_a_minute_and_at_the_end(tiny_npz, tmp_path, monkeypatch):
    from vaekit import monitor as monitor_module

    drawn = []
    monkeypatch.setattr(monitor_module.viz, "plot_curves", lambda rows, path: drawn.append(len(rows)))
    make_trainer(tiny_npz, tmp_path, epochs=3).fit()
    rows = len((tmp_path / "metrics.jsonl").read_text().splitlines())
    assert drawn == [drawn[0], rows] and drawn[0] < rows  # after the first epoch, then once at the end

    monitor = monitor_module.Monitor(tmp_path / "m", tensorboard=False)
    monitor.log("train", 1, 1, {"loss": 1.0})
    monitor.plot_curves()
    monitor.plot_curves(final=True)  # nothing new since: not redrawn
    monitor.log("train", 2, 1, {"loss": 0.5})
    monitor.plot_curves()  # too soon
    assert drawn[2:] == [1]
    monitor.plot_curves(final=True)
    monkeypatch.setattr(monitor_module, "CURVES_EVERY_S", 0.0)
    monitor.log("train", 3, 1, {"loss": 0.4})
    monitor.plot_curves()
    assert drawn[2:] == [1, 2, 3]


def test_loss_falls(tiny_npz, tmp_path):
    trainer = make_trainer(tiny_npz, tmp_path, epochs=15, lr=3e-3)
    trainer.fit()
    val = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines() if '"val"' in l]
    assert val[-1]["loss"] < 0.8 * val[0]["loss"]


def test_resume_continues_step_count_and_matches_an_uninterrupted_run(tiny_npz, tmp_path):
    straight = make_trainer(tiny_npz, tmp_path / "a", epochs=3)
    straight.fit()
    first = make_trainer(tiny_npz, tmp_path / "b", epochs=1)
    first.fit()
    assert first.step == 6
    resumed = make_trainer(tiny_npz, tmp_path / "b", epochs=3)
    result = resumed.fit(resume=True)
    assert result.step == 18 and result.epochs == 3
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    steps = [json.loads(l)["step"] for l in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == 18


@pytest.mark.parametrize("content", ["pickle", "no step", "bad step", "list"])
def test_resume_state_that_is_not_vaekits_is_one_line_naming_the_file(tiny_npz, tmp_path, content):
    import os
    import pickle

    make_trainer(tiny_npz, tmp_path, epochs=1).fit()
    path = tmp_path / "resume.pt"
    state = torch.load(path, weights_only=True)
    if content == "pickle":
        path.write_bytes(pickle.dumps({"step": 1, "callable": os.getcwd}))
    else:
        if content == "no step":
            del state["step"]
        elif content == "bad step":
            state["step"] = "twelve"
        torch.save([1, 2] if content == "list" else state, path)
    with pytest.raises(VaekitError, match="resume.pt: ") as error:
        make_trainer(tiny_npz, tmp_path, epochs=2).fit(resume=True)
    assert "\n" not in str(error.value)


def test_resume_state_of_random_bytes_is_one_line_naming_the_file(tiny_npz, tmp_path):
    """Garbage makes the unpickler raise almost anything (UnpicklingError, IndexError, UnicodeDecodeError,
    KeyError); each must become the one-line error. Seeded: the first 200 blobs hold all four kinds."""
    import random

    make_trainer(tiny_npz, tmp_path, epochs=1).fit()
    path = tmp_path / "resume.pt"
    trainer = make_trainer(tiny_npz, tmp_path, epochs=2)
    for seed in range(200):
        path.write_bytes(random.Random(seed).randbytes(256))
        with pytest.raises(VaekitError, match="resume.pt: ") as error:
            trainer.load_resume_state()
        assert "\n" not in str(error.value), seed


def test_resume_without_state_is_an_error(tiny_npz, tmp_path):
    with pytest.raises(VaekitError, match="no resume state"):
        make_trainer(tiny_npz, tmp_path).fit(resume=True)


class Interrupting(ImageBatches):
    """Raises KeyboardInterrupt (as Ctrl-C would) after ``after`` batches of epoch 2."""

    def __init__(self, base, after):
        super().__init__(base.data, base.binarize)
        self.calls, self.after = 0, after

    def train_batches(self, batch_size, generator):
        self.calls += 1
        for i, batch in enumerate(super().train_batches(batch_size, generator)):
            if self.calls == 2 and i == self.after:
                raise KeyboardInterrupt
            yield batch


def test_ctrl_c_keeps_the_last_checkpoint(tiny_npz, tmp_path):
    trainer = make_trainer(tiny_npz, tmp_path, epochs=3)
    trainer.train_data = Interrupting(trainer.train_data, after=2)
    result = trainer.fit()
    assert result.status == "interrupted" and result.epochs == 1
    state = torch.load(tmp_path / "resume.pt", weights_only=True)
    assert state["epoch"] == 1 and state["step"] == 6
    vaekit.load(tmp_path)  # the best weights are still loadable
    resumed = make_trainer(tiny_npz, tmp_path, epochs=3).fit(resume=True)
    assert resumed.status == "finished" and resumed.step == 18


class Exploding(ImageVAE):
    def loss(self, x, **kwargs):
        out = super().loss(x, **kwargs)
        self.calls = getattr(self, "calls", 0) + 1
        if self.calls == 9:
            out.loss = out.loss * float("nan")
        return out


def test_non_finite_loss_names_the_step_and_keeps_the_checkpoint(tiny_npz, tmp_path):
    trainer = make_trainer(tiny_npz, tmp_path, epochs=3)
    torch.manual_seed(0)
    trainer.model = Exploding(trainer.model.config)
    trainer.optimizer = torch.optim.Adam(trainer.model.parameters())
    with pytest.raises(NonFiniteLossError, match="at step 8 \\(epoch 2\\)"):
        trainer.fit()
    state = torch.load(tmp_path / "resume.pt", weights_only=True)
    assert state["epoch"] == 1 and all(torch.isfinite(v).all() for v in state["model"].values())


def test_early_stop_and_best_checkpoint(tiny_npz, tmp_path):
    trainer = make_trainer(tiny_npz, tmp_path, epochs=50, lr=1e-9, early_stop=2)
    result = trainer.fit()
    assert result.status == "early-stopped" and result.epochs < 50
    best = vaekit.load(tmp_path)
    assert result.best_val_loss is not None and best is not None


def test_batch_larger_than_data_is_an_error(tiny_npz, tmp_path):
    with pytest.raises(VaekitError, match="larger than the 48 training items"):
        make_trainer(tiny_npz, tmp_path, batch_size=100)


def test_bf16_autocast_trains(tiny_npz, tmp_path):
    """bf16 trains where the CPU computes it, and is refused in one line where it does not (an AVX2-only CPU)."""
    from vaekit.precision import cpu_runs_bf16

    if not cpu_runs_bf16():
        with pytest.raises(VaekitError, match="--precision bf16: this CPU has no bf16 support"):
            make_trainer(tiny_npz, tmp_path, precision="bf16").fit()
        return
    result = make_trainer(tiny_npz, tmp_path, precision="bf16").fit()
    assert result.status == "finished" and torch.isfinite(torch.tensor(result.best_val_loss))


def test_time_budget_ends_the_epoch_and_checkpoints(tiny_npz, tmp_path):
    result = make_trainer(tiny_npz, tmp_path, epochs=5, max_minutes=1e-9).fit()
    assert result.status == "time-limit" and result.epochs == 1 and result.step == 1
    assert torch.load(tmp_path / "resume.pt", weights_only=True)["epoch"] == 1
    assert make_trainer(tiny_npz, tmp_path, epochs=2).fit(resume=True).status == "finished"
    # a floor of steps holds against the clock (the quickstart's pretrained model wrote nonsense after 7 steps)
    result = make_trainer(tiny_npz, tmp_path / "floor", epochs=5, max_minutes=1e-9, min_steps=3).fit()
    assert result.status == "time-limit" and result.step == 3


def test_posterior_collapse_is_named_once(tiny_npz, tmp_path, caplog):
    trainer = make_trainer(tiny_npz, tmp_path)
    trainer._warn_if_collapsed({"kl": 0.02, "active_units": 0})
    assert "posterior collapse" not in caplog.text  # too early to tell
    trainer.epoch = 3
    trainer._warn_if_collapsed({"kl": 0.02, "active_units": 0})
    assert caplog.text.count("posterior collapse") == 1 and "--beta" in caplog.text and "--word-dropout" not in caplog.text  # image model: no text flags
    healthy = make_trainer(tiny_npz, tmp_path / "h")
    healthy.epoch = 3
    healthy._warn_if_collapsed({"kl": 5.0, "active_units": 3})
    assert caplog.text.count("posterior collapse") == 1


def test_learning_rate_decays_when_validation_stalls_and_resumes_with_it(tiny_npz, tmp_path):
    trainer = make_trainer(tiny_npz, tmp_path, epochs=4, lr=1e-6, lr_decay=0.5, lr_patience=0)
    trainer.fit()
    rates = [json.loads(l)["lr"] for l in (tmp_path / "metrics.jsonl").read_text().splitlines() if '"val"' in l]
    assert rates[0] == pytest.approx(1e-6) and rates[-1] < rates[0]
    resumed = make_trainer(tiny_npz, tmp_path, epochs=5, lr=1e-6, lr_decay=0.5, lr_patience=0)
    resumed.load_resume_state()
    assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(rates[-1])


def test_learning_rate_schedules_follow_steps_or_the_time_budget(tiny_npz, tmp_path, monkeypatch):
    from vaekit.train import lr_factor

    assert [lr_factor("linear", p) for p in (0, 0.25, 1, 2)] == [1.0, 0.75, 0.0, 0.0]
    assert [lr_factor("cosine", p) for p in (0, 0.5)] == [1.0, pytest.approx(0.5)]
    assert lr_factor("constant", 0.9) == 1.0
    assert [lr_factor("wsd", p) for p in (0, 0.8, 0.9, 1)] == [1.0, pytest.approx(1.0), pytest.approx(0.5), 0.0]
    with pytest.raises(VaekitError, match="lr_decay"):
        TrainConfig(lr_schedule="linear", lr_decay=0.5)

    # by steps: 4 epochs of 6 steps; the lr of step s (0-based) is lr * (1 - s / 24), the last one 1/24 of it
    trainer = make_trainer(tiny_npz, tmp_path / "steps", epochs=4, lr=1e-3, lr_schedule="linear")
    trainer.fit()
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 / 24)
    rates = [json.loads(l)["lr"] for l in (tmp_path / "steps" / "metrics.jsonl").read_text().splitlines() if '"val"' in l]
    assert rates == pytest.approx([1e-3 * (1 - s / 24) for s in (5, 11, 17, 23)])

    # by time: with --max-minutes the clock runs the schedule when it is further on than the steps
    clock = iter(range(0, 10_000, 3))  # each reading 3 s later: 60 s of budget pass in 20 readings
    monkeypatch.setattr("vaekit.train.time.perf_counter", lambda: float(next(clock)))
    timed = make_trainer(tiny_npz, tmp_path / "time", epochs=50, lr=1e-3, lr_schedule="linear", max_minutes=1.0)
    result = timed.fit()
    assert result.status == "time-limit" and result.epochs < 10
    steps_alone = 1e-3 * (1 - (result.step - 1) / (50 * 6))  # above 0.96e-3
    assert timed.optimizer.param_groups[0]["lr"] < steps_alone - 0.1e-3


@pytest.mark.parametrize("optimizer", ["adam", "rmsprop"])
def test_clip_gradients_matches_clip_grad_norm(optimizer):
    """Gradient clipping handed to fused Adam as its grad_scale (one pass over the gradients less) moves the
    parameters as clip_grad_norm_ then step() does, on steps that clip and steps that do not; other optimizers
    clip the gradients themselves."""
    import copy

    from vaekit.train import clip_gradients, make_optimizer

    torch.manual_seed(0)
    ours = torch.nn.Sequential(torch.nn.Linear(20, 30), torch.nn.Tanh(), torch.nn.Linear(30, 5))
    ref = copy.deepcopy(ours)
    cfg = TrainConfig(lr=1e-2, optimizer=optimizer)
    opt_ours = make_optimizer(cfg, ours.parameters(), torch.device("cpu"))
    opt_ref = make_optimizer(cfg, ref.parameters(), torch.device("cpu"))
    for i in range(12):
        x = torch.randn(16, 20) * (10.0 if i % 2 else 0.01)  # large gradients clip, small ones do not
        for model, opt in ((ours, opt_ours), (ref, opt_ref)):
            opt.zero_grad(set_to_none=True)
            (model(x) ** 2).sum().backward()
        clip_gradients(opt_ours, 1.0)
        torch.nn.utils.clip_grad_norm_(ref.parameters(), 1.0)
        opt_ours.step()
        opt_ref.step()
    for a, b in zip(ours.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_the_same_seed_trains_the_same_model(tiny_npz, corpus_txt, tmp_path):
    """--seed fixes the whole run, the initial weights included, whatever the process's random state was
    before (PyTorch seeds its default generator at random in each process); another seed gives another model."""
    from safetensors.torch import load_file

    from vaekit.images import train_image
    from vaekit.texts import train_text

    image = dict(model_overrides=dict(channels=(4, 8), hidden_dims=(16,), latent_dim=3), binarize="threshold")
    text = dict(model_overrides=tiny_text_overrides())

    def weights(train, data, name, state, seed=0, **kwargs):
        torch.manual_seed(state)  # a fresh process's random state
        train(data, tmp_path / name, training=TrainConfig(epochs=2, batch_size=16, precision="fp32", seed=seed),
              **kwargs)
        return load_file(tmp_path / name / "model.safetensors")

    for train, data, kwargs in ((train_image, tiny_npz, image), (train_text, corpus_txt, text)):
        first = weights(train, data, f"{train.__name__}-a", state=1, **kwargs)
        again = weights(train, data, f"{train.__name__}-b", state=2, **kwargs)
        other = weights(train, data, f"{train.__name__}-c", state=1, seed=1, **kwargs)
        assert first.keys() == again.keys()
        assert all(torch.equal(first[k], again[k]) for k in first), train.__name__
        assert not all(torch.equal(first[k], other[k]) for k in first), train.__name__
