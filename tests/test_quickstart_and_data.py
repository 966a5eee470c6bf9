"""The README's first command, and a brief run on the real MNIST files in ../shared/data."""
import json
import subprocess
import sys

import pytest

import vaekit


def _quickstart(*args):
    result = subprocess.run([sys.executable, "-m", "vaekit", "quickstart", *map(str, args), "--quiet"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_quickstart_writes_runs_and_never_overwrites(tmp_path):
    for expected in ("qs", "qs-2"):
        stdout = _quickstart("--out", tmp_path / "qs", "--only", "image", "--epochs", 2)
        run = tmp_path / expected
        assert f"run folder: {run}" in stdout
        for name in ("curves.png", "samples.png", "reconstructions.png", "latent.png"):
            assert (run / "plots" / name).stat().st_size > 0
    model = vaekit.load(tmp_path / "qs")
    assert (model.config.height, model.config.width, model.latent_dim) == (8, 8, 2)


def test_quickstart_text_on_the_bundled_lm_with_word_hints(tmp_path):
    """The README's first command's text part: the pretrained backbone with word hints (a few steps here), and
    the RNN one behind --text-backbone rnn."""
    stdout = _quickstart("--out", tmp_path / "qs", "--only", "text", "--text-minutes", 0.02, "--text-steps", 1)
    model = vaekit.load(tmp_path / "qs-text")
    assert model.model_type == "lm_text_vae" and model.config.hints
    assert stdout.count("variations of:") == 3 and "  1. " in stdout
    stdout = _quickstart("--out", tmp_path / "qs", "--only", "text", "--text-backbone", "rnn", "--epochs", 1)
    assert vaekit.load(tmp_path / "qs-text-2").model_type == "text_vae"
    assert stdout.count("variations of:") == 3


@pytest.mark.data
def test_brief_training_on_shared_mnist(shared_data, tmp_path):
    mnist = shared_data / "mnist"
    out = tmp_path / "mnist"
    result = subprocess.run([sys.executable, "-m", "vaekit", "train", "image", "--data", str(mnist), "--out", str(out),
                             "--preset", "seed", "--binarize", "threshold", "--epochs", "1", "--val-fraction", "0.9",
                             "--quiet"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["data"]["shape"] == [1, 28, 28] and config["data"]["train_items"] == 6000
    result = subprocess.run([sys.executable, "-m", "vaekit", "evaluate", str(out), "--data", str(mnist),
                             "--iw-samples", "10", "--quiet", "--out", str(tmp_path / "eval.json")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["items"] == 10000 and report["data"].endswith("t10k-images-idx3-ubyte.gz")
    # an untrained Bernoulli decoder scores about 543 nats (784 log 2); one short epoch (47 steps) lands between
    # about 230 and 270 depending on the machine's kernels (bf16 or fp32): far better, which is what this checks
    assert report["neg_elbo"] < 320 and report["iw_nll"] <= report["neg_elbo"]


@pytest.mark.data
def test_brief_text_training_on_shared_ptb(shared_data, tmp_path):
    ptb = shared_data / "ptb"
    out = tmp_path / "ptb"
    result = subprocess.run([sys.executable, "-m", "vaekit", "train", "text", "--data", str(ptb / "ptb.valid.txt"),
                             "--val-data", str(ptb / "ptb.test.txt"), "--pretokenized", "--no-lowercase", "--out", str(out),
                             "--embedding-dim", "32", "--hidden", "32", "--latent-dim", "8", "--epochs", "1",
                             "--batch-size", "64", "--quiet"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["data"]["stats"]["train"]["items"] == 3370 and config["data"]["stats"]["val"]["items"] == 3761
    assert config["model"]["vocab_size"] <= 10004  # PTB's 10k types, <unk> kept whole
    result = subprocess.run([sys.executable, "-m", "vaekit", "evaluate", str(out), "--data", str(ptb / "ptb.test.txt"),
                             "--max-items", "40", "--iw-samples", "5", "--variation-items", "3", "-n", "2", "--quiet",
                             "--out", str(tmp_path / "e.json")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "e.json").read_text())
    assert report["items"] == 40 and 0 < report["iw_nll"] <= report["neg_elbo"] + 1.0


@pytest.mark.data
def test_clickbait_headlines_read_as_lines(shared_data):
    from vaekit.texts import read_texts

    headlines = read_texts(shared_data / "clickbait-headlines" / "clickbait_data.gz")
    assert len(headlines) == 15999 and headlines[0] == "Should I Get Bings"
