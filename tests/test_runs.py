"""The run folder: what --overwrite removes, the training lock, nothing left by a run that fails before its
first checkpoint, --resume on the run's own data, stale temporaries (issue 31 step 2, issue 33 defect 10)."""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from conftest import blobs, run_cli as run, two_topic_sentences
from vaekit import runs

IMAGE = ["--epochs", 1, "--batch-size", 16, "--latent-dim", 2, "--quiet", "--precision", "fp32"]
TEXT = ["--embedding-dim", "16", "--hidden", "16", "--latent-dim", "4", "--dropout", "0", "--batch-size", "16",
        "--precision", "fp32", "--quiet", "--epochs", 1]


def vaekit_cmd(*args):
    return subprocess.run([sys.executable, "-m", "vaekit", *map(str, args)], capture_output=True, text=True)


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(two_topic_sentences() * 2) + "\n", encoding="utf-8")
    return path


def test_overwrite_removes_the_old_runs_calibration_evaluation_report_and_samples(tmp_path, tiny_npz):
    out = tmp_path / "r"
    assert run("train", "image", "--data", tiny_npz, "--out", out, *IMAGE).exit_code == 0
    assert run("calibrate", out, "--data", tiny_npz, "--quiet").exit_code == 0
    assert run("evaluate", out, "--data", tiny_npz, "--iw-samples", 2, "--quiet").exit_code == 0
    assert run("report", out).exit_code == 0
    (out / "samples.txt").write_text("old\n")
    (out / "evaluation.md").write_text("old\n")  # a text run's evaluate writes it
    for name in ("anomaly.json", "evaluation.json", "report.html"):
        assert (out / name).is_file(), name
    (out / "notes.txt").write_text("mine")  # not vaekit's: kept
    assert run("train", "image", "--data", tiny_npz, "--out", out, "--overwrite", *IMAGE).exit_code == 0
    left = {p.name for p in out.iterdir()}
    assert not left & {"anomaly.json", "evaluation.json", "evaluation.md", "report.html", "samples.txt"}
    assert "notes.txt" in left and runs.LOCK_NAME not in left


def test_every_name_a_run_writes_is_one_that_overwrite_removes(tmp_path, corpus):
    out = tmp_path / "t"
    assert run("train", "text", "--data", corpus, "--out", out, *TEXT).exit_code == 0
    assert {p.name for p in out.iterdir()} <= set(runs.RUN_FILES)
    assert (out / "samples.txt").is_file()  # written by the monitor


def test_a_second_trainer_on_the_same_folder_exits_2_naming_the_holder(tmp_path, tiny_npz):
    out = tmp_path / "r"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / runs.LOCK_NAME).write_text(f"{holder.pid} {socket.gethostname()}\n")
        result = vaekit_cmd("train", "image", "--data", tiny_npz, "--out", out, "--overwrite", *IMAGE)
        assert result.returncode == 2, result.stderr
        assert result.stderr.count("\n") == 1 and f"pid {holder.pid}" in result.stderr, result.stderr
        assert {p.name for p in out.iterdir()} == {runs.LOCK_NAME}  # untouched
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone: its lock is stale and taken over
    result = vaekit_cmd("train", "image", "--data", tiny_npz, "--out", out, "--overwrite", *IMAGE)
    assert result.returncode == 0, result.stderr
    assert (out / "model.safetensors").is_file() and not (out / runs.LOCK_NAME).exists()


def test_fp16_on_a_cpu_leaves_nothing(tmp_path, corpus, tiny_npz):
    for args in (("text", "--data", corpus, *TEXT), ("image", "--data", tiny_npz, *IMAGE)):
        out = tmp_path / f"fp-{args[0]}"
        result = vaekit_cmd("train", *args, "--out", out, "--precision", "fp16", "--device", "cpu")
        assert result.returncode == 2 and "fp16" in result.stderr, result.stderr
        assert not out.exists(), list(out.iterdir())
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_run_that_fails_before_its_first_checkpoint_leaves_nothing(tmp_path, corpus, monkeypatch):
    from vaekit import train as train_module
    from vaekit.errors import VaekitError

    def fail(self, resume=False):
        raise VaekitError("boom")

    monkeypatch.setattr(train_module.Trainer, "fit", fail)
    out = tmp_path / "t"
    result = run("train", "text", "--data", corpus, "--out", out, *TEXT)
    assert result.exit_code == 2 and "boom" in result.output
    assert not out.exists() or list(out.iterdir()) == []
    monkeypatch.undo()
    assert run("train", "text", "--data", corpus, "--out", out, *TEXT).exit_code == 0  # a retry just works


def test_resume_refuses_other_data(tmp_path, tiny_npz, corpus):
    other = tmp_path / "other.npz"
    np.savez(other, x=blobs(64, seed=3))
    out = tmp_path / "r"
    assert run("train", "image", "--data", tiny_npz, "--out", out, *IMAGE).exit_code == 0
    before = json.loads((out / "config.json").read_text())
    result = vaekit_cmd("train", "image", "--out", out, "--resume", "--data", other, "--epochs", 2, "--quiet")
    assert result.returncode == 2 and "--resume continues the run on its own data" in result.stderr, result.stderr
    assert json.loads((out / "config.json").read_text()) == before
    assert run("train", "image", "--out", out, "--resume", "--data", tiny_npz, "--epochs", 2, "--quiet").exit_code == 0

    other_text = tmp_path / "other.txt"
    other_text.write_text("a b c\n" * 50)
    out = tmp_path / "t"
    assert run("train", "text", "--data", corpus, "--out", out, *TEXT).exit_code == 0
    result = vaekit_cmd("train", "text", "--out", out, "--resume", "--data", other_text, "--epochs", 2, "--quiet")
    assert result.returncode == 2 and "--resume continues the run on its own data" in result.stderr, result.stderr


def test_stale_temporaries_are_removed_when_a_trainer_takes_the_folder(tmp_path, tiny_npz, corpus):
    out = tmp_path / "r"
    assert run("train", "image", "--data", tiny_npz, "--out", out, *IMAGE).exit_code == 0
    (out / ".resume.pt.k1ll3d.tmp").write_bytes(b"")  # a kill during the checkpoint write
    assert run("train", "image", "--out", out, "--resume", "--epochs", 2, "--quiet").exit_code == 0
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []

    out = tmp_path / "t"
    stale = tmp_path / ".t.tokens.k1ll3d"  # a kill during tokenisation
    stale.mkdir()
    (stale / "train.ids.npy").write_bytes(b"x")
    assert run("train", "text", "--data", corpus, "--out", out, *TEXT).exit_code == 0
    assert not stale.exists()


def test_lock_is_per_process_and_released(tmp_path):
    lock = runs.TrainingLock(tmp_path / "new")
    lock.acquire()
    assert (tmp_path / "new" / runs.LOCK_NAME).read_text().split()[0] == str(os.getpid())
    lock.release()
    assert not (tmp_path / "new").exists()  # it made the folder, and the folder is empty again


def test_sigkill_at_random_moments_leaves_a_run_that_resumes_to_the_uninterrupted_result(tmp_path, tiny_npz):
    """Crash safety (issue 33): a training subprocess killed with SIGKILL at seeded random moments, three times;
    each time the folder loads (once it has a checkpoint), --resume (or, killed before the first checkpoint, a
    retry with --overwrite) completes, the weights equal an uninterrupted run's, and no temporary is left."""
    import random
    import signal
    import time

    import torch
    from safetensors.torch import load_file

    import vaekit

    def command(out, *extra):
        return [sys.executable, "-m", "vaekit.cli", "train", "image", "--data", str(tiny_npz), "--out", str(out),
                "--epochs", "6", "--batch-size", "8", "--latent-dim", "2", "--precision", "fp32", "--quiet",
                "--seed", "0", *extra]

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(command(tmp_path / "straight"), check=True, env=env, capture_output=True)
    expected = load_file(tmp_path / "straight" / "model.safetensors")
    rng = random.Random(0)
    for trial in range(3):
        out = tmp_path / f"killed{trial}"
        proc = subprocess.Popen(command(out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(2.0, 7.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if (out / "resume.pt").is_file():
            vaekit.load(out)  # the last good checkpoint loads
            retry = [sys.executable, "-m", "vaekit.cli", "train", "image", "--out", str(out), "--resume", "--quiet"]
        else:
            retry = command(out, "--overwrite")
        done = subprocess.run(retry, env=env, capture_output=True, text=True)
        assert done.returncode == 0, (trial, retry[-1], done.stderr[-2000:])
        got = load_file(out / "model.safetensors")
        for key, value in expected.items():
            assert torch.equal(value, got[key]), (trial, key)
        leftovers = [p.name for p in out.iterdir() if p.name.startswith(".")] + \
                    [p.name for p in tmp_path.glob(f".{out.name}.*")]
        assert leftovers == [], (trial, leftovers)
