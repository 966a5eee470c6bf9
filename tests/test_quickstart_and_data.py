"""The README's first command, and a brief run on the real MNIST files in ../shared/data."""
import json
import subprocess
import sys

import pytest

import vaekit


def test_quickstart_writes_a_run_and_never_overwrites(tmp_path):
    for expected in ("qs", "qs-2"):
        result = subprocess.run([sys.executable, "-m", "vaekit", "quickstart", "--out", str(tmp_path / "qs"),
                                 "--epochs", "2", "--quiet"], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        run = tmp_path / expected
        assert f"run folder: {run}" in result.stdout
        for name in ("curves.png", "samples.png", "reconstructions.png", "latent.png"):
            assert (run / "plots" / name).stat().st_size > 0
    model = vaekit.load(tmp_path / "qs")
    assert (model.config.height, model.config.width, model.latent_dim) == (8, 8, 2)


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
    # an untrained Bernoulli decoder scores about 543 nats (784 log 2); one short epoch already does far better
    assert report["neg_elbo"] < 250 and report["iw_nll"] <= report["neg_elbo"]
