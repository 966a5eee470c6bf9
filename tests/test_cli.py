"""The CLI through its entry point: `python -m vaekit` in a subprocess for exit codes and output, and
click's runner (same entry point, in process) for the rest."""
import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

import vaekit
from vaekit.cli import cli

from conftest import assert_plain_modes, blobs


def vaekit_cmd(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "vaekit", *map(str, args)], capture_output=True, text=True, cwd=cwd)


def run(*args):
    result = CliRunner().invoke(cli, list(map(str, args)), catch_exceptions=False)
    return result


@pytest.fixture
def trained(tmp_path, tiny_npz):
    out = tmp_path / "run"
    result = run("train", "image", "--data", tiny_npz, "--out", out, "--epochs", 2, "--batch-size", 16,
                 "--latent-dim", 2, "--quiet", "--precision", "fp32")
    assert result.exit_code == 0, result.output
    return out


def test_train_writes_a_loadable_run(trained):
    for name in ("config.json", "model.safetensors", "resume.pt", "metrics.jsonl"):
        assert (trained / name).is_file()
    for name in ("curves.png", "samples.png", "reconstructions.png", "latent.png"):
        assert (trained / "plots" / name).is_file()
    assert_plain_modes(trained)
    config = json.loads((trained / "config.json").read_text())
    assert config["model_type"] == "image_vae" and config["model"]["latent_dim"] == 2
    assert config["data"]["shape"] == [1, 12, 10] and config["training"]["epochs"] == 2
    assert vaekit.load(trained).latent_dim == 2


def test_use_commands(trained, tiny_npz, tmp_path):
    assert run("sample", trained, "-n", 9, "--out", tmp_path / "s.png").exit_code == 0
    assert run("sample", trained, "-n", 5, "--out", tmp_path / "s.npy").exit_code == 0
    assert np.load(tmp_path / "s.npy").shape == (5, 1, 12, 10)
    assert run("reconstruct", trained, "--data", tiny_npz, "--out", tmp_path / "r.png", "-n", 8).exit_code == 0
    result = run("interpolate", trained, "--data", tiny_npz, "--index", 3, "--index", 17, "--steps", 6,
                 "--out", tmp_path / "i.npy")
    assert result.exit_code == 0, result.output
    assert np.load(tmp_path / "i.npy").shape == (6, 1, 12, 10)
    assert run("latent-plot", trained, "--data", tiny_npz, "--out", tmp_path / "l.png").exit_code == 0
    assert (tmp_path / "l.png").stat().st_size > 0
    assert run("encode", trained, "--data", tiny_npz, "--out", tmp_path / "c.npz").exit_code == 0
    codes = np.load(tmp_path / "c.npz")
    assert codes["mean"].shape == (64, 2) and codes["logvar"].shape == (64, 2) and codes["labels"].shape == (64,)
    result = run("evaluate", trained, "--data", tiny_npz, "--iw-samples", 20, "--quiet")
    assert result.exit_code == 0, result.output
    report = json.loads((trained / "evaluation.json").read_text())
    assert report["items"] == 64 and report["iw_nll"] <= report["neg_elbo"] + 1e-3
    assert 0 <= report["active_units"] <= 2 and report["units"] == "nats per item"


def test_resume_continues_the_step_count(trained):
    before = json.loads((trained / "metrics.jsonl").read_text().splitlines()[-1])["step"]
    result = run("train", "image", "--out", trained, "--resume", "--epochs", 3, "--quiet")
    assert result.exit_code == 0, result.output
    rows = [json.loads(l) for l in (trained / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == before * 3 // 2 and rows[-1]["epoch"] == 3
    assert json.loads((trained / "config.json").read_text())["training"]["epochs"] == 3


@pytest.mark.parametrize("args, message", [
    (["--data", "{tmp}/missing", "--out", "{tmp}/o"], "missing: no such file or folder"),
    (["--data", "{npz}", "--out", "{tmp}/o", "--latent-dim", "0"], "--latent-dim"),
    (["--data", "{npz}", "--out", "{tmp}/o", "--batch-size", "1000"], "--batch-size 1000 is larger than"),
    (["--data", "{npz}", "--out", "{tmp}/o", "--resize", "abc"], "--resize 'abc'"),
    (["--out", "{tmp}/o"], "--data is required"),
    (["--out", "{tmp}/o", "--resume"], "no run to resume"),
])
def test_bad_training_input_exits_2_with_one_line(tmp_path, tiny_npz, args, message):
    args = [a.format(tmp=tmp_path, npz=tiny_npz) for a in args]
    result = vaekit_cmd("train", "image", *args, "--quiet")
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_existing_run_is_never_overwritten_without_a_flag(trained, tiny_npz):
    before = (trained / "model.safetensors").read_bytes()
    result = vaekit_cmd("train", "image", "--data", tiny_npz, "--out", trained, "--quiet")
    assert result.returncode == 2 and "pass --resume to continue it or --overwrite" in result.stderr
    assert (trained / "model.safetensors").read_bytes() == before
    result = vaekit_cmd("train", "image", "--out", trained, "--resume", "--lr", "0.1", "--quiet")
    assert result.returncode == 2 and "--lr cannot change on --resume" in result.stderr
    result = run("train", "image", "--data", tiny_npz, "--out", trained, "--overwrite", "--epochs", 1,
                 "--batch-size", 16, "--quiet")
    assert result.exit_code == 0 and json.loads((trained / "config.json").read_text())["training"]["epochs"] == 1


def test_bad_data_does_not_touch_an_existing_run(trained, tmp_path):
    before = {p.name: p.read_bytes() for p in trained.iterdir() if p.is_file()}
    np.save(tmp_path / "bad.npy", np.zeros((4, 5, 5, 7)))
    result = vaekit_cmd("train", "image", "--data", tmp_path / "bad.npy", "--out", trained, "--overwrite")
    assert result.returncode == 2 and "bad.npy: array of shape (4, 5, 5, 7)" in result.stderr
    assert {p.name: p.read_bytes() for p in trained.iterdir() if p.is_file()} == before


def test_run_folder_problems_are_named(trained, tmp_path, tiny_npz):
    config = json.loads((trained / "config.json").read_text())
    config["model"]["hidden_dims"] = [32]
    (trained / "config.json").write_text(json.dumps(config))
    result = vaekit_cmd("sample", trained, "--out", tmp_path / "s.png")
    assert result.returncode == 2 and "field 'model.hidden_dims'" in result.stderr
    (trained / "config.json").unlink()
    result = vaekit_cmd("sample", trained, "--out", tmp_path / "s.png")
    assert result.returncode == 2 and "config.json: file is missing" in result.stderr
    result = vaekit_cmd("sample", tmp_path / "nowhere", "--out", tmp_path / "s.png")
    assert result.returncode == 2 and "no such run folder" in result.stderr


def test_data_that_does_not_fit_the_model_is_named(trained, tmp_path):
    np.save(tmp_path / "big.npy", blobs(4, 20, 20))
    result = vaekit_cmd("reconstruct", trained, "--data", tmp_path / "big.npy", "--out", tmp_path / "r.png")
    assert result.returncode == 2 and "images are (1, 20, 20) (c, h, w) but the model takes (1, 12, 10)" in result.stderr
    result = vaekit_cmd("reconstruct", trained, "--data", tmp_path / "big.npy", "--out", tmp_path / "r.png", "--resize", "12x10")
    assert result.returncode == 0, result.stderr


def test_help_explains_every_option():
    result = vaekit_cmd("train", "image", "--help")
    assert result.returncode == 0
    for option in ("--preset", "--latent-dim", "--binarize", "--resume", "--overwrite", "--early-stop", "--loss"):
        assert option in result.stdout
    top = vaekit_cmd("--help").stdout
    for command in ("quickstart", "train", "sample", "reconstruct", "interpolate", "latent-plot", "encode", "evaluate"):
        assert command in top


@pytest.mark.parametrize("args, message", [
    (["latent-plot", "{run}", "--data", "{data}", "--out", "{tmp}/l.xyz"], "--out {tmp}/l.xyz: cannot write .xyz"),
    (["report", "{run}", "--out", "{tmp}/somedir/"], "is a folder"),
    (["train", "image", "--data", "{data}", "--out", "{tmp}/big", "--resize", "100000x100000"],
     "at most 4096 pixels a side"),
])
def test_output_paths_and_sizes_that_cannot_work_are_one_line_before_any_work(trained, tiny_npz, tmp_path, args,
                                                                               message):
    (tmp_path / "somedir").mkdir()
    fill = dict(run=trained, data=tiny_npz, tmp=tmp_path)
    result = CliRunner().invoke(cli, [a.format(**fill) for a in args])
    assert result.exit_code == 2, result.output
    assert message.format(**fill) in result.output and "Traceback" not in result.output
    assert not (tmp_path / "big").exists() and list((tmp_path / "somedir").iterdir()) == []
