"""Anomaly scores, calibration, codes as data, latent plots, traversals and the run report (issue 5)."""
import csv
import json

import numpy as np
import pytest

from vaekit.anomaly import anomaly_flags, calibrate, detection_metrics
from vaekit.errors import VaekitError
from vaekit.latent import traversal_codes, write_codes

from conftest import run_cli as run, blobs, two_topic_sentences


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("img")
    data = folder / "tiny.npz"
    np.savez(data, x=blobs(64), y=np.arange(64) % 3, anomaly=(np.arange(64) % 3 == 2).astype(int))
    out = folder / "run"
    result = run("train", "image", "--data", data, "--out", out, "--epochs", 2, "--batch-size", 16, "--latent-dim", 3,
                 "--quiet", "--precision", "fp32")
    assert result.exit_code == 0, result.output
    return out, data


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("txt")
    sentences = two_topic_sentences()
    corpus = folder / "cats.txt"
    corpus.write_text("\n".join(sentences[:36] * 3) + "\n")
    mixed = folder / "mixed.csv"
    with mixed.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "text", "topic", "is_anomaly"])
        for i, text in enumerate(sentences):
            writer.writerow([f"t{i}", text, "cats" if i < 36 else "markets", "yes" if i >= 36 else "no"])
    out = folder / "run"
    result = run("train", "text", "--data", corpus, "--out", out, "--epochs", 4, "--embedding-dim", 16, "--hidden", 16,
                 "--latent-dim", 4, "--dropout", 0, "--batch-size", 16, "--quiet", "--precision", "fp32")
    assert result.exit_code == 0, result.output
    return out, corpus, mixed


def test_image_scores_calibration_and_flags(image_run, tmp_path):
    out, data = image_run
    result = run("score", out, "--data", data, "--out", tmp_path / "s.csv", "--anomaly-class", 2, "--quiet")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((tmp_path / "s.csv").open()))
    assert len(rows) == 64 and rows[5]["id"] == "5" and rows[5]["label"] == "2" and rows[5]["anomaly"] == "1"
    summary = json.loads((tmp_path / "s.json").read_text())
    assert 0 <= summary["auroc"] <= 1 and summary["anomalies"] == 21 and (out / "plots" / "scores.png").is_file()
    result = run("calibrate", out, "--data", data, "--fpr", 0.05, "--score", "rec", "--iw-samples", 2, "--quiet")
    assert result.exit_code == 0, result.output
    stored = json.loads((out / "anomaly.json").read_text())
    assert stored["score"] == "rec" and stored["iw_samples"] == 2 and stored["observed_fpr"] <= 0.05
    # score follows the calibration: same score, flags above the threshold; the npz key gives ground truth
    result = run("score", out, "--data", data, "--out", tmp_path / "f.csv", "--anomaly-label", "anomaly", "--quiet")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((tmp_path / "f.csv").open()))
    assert "rec" in rows[0] and sum(int(r["flagged"]) for r in rows) <= 5
    assert sum(int(r["anomaly"]) for r in rows) == 21


def test_kl_score_is_the_elbo_minus_the_reconstruction(image_run, tmp_path):
    """--score kl is the KL term of the same -ELBO: kl = neg_elbo - rec for each item."""
    out, data = image_run
    values = {}
    for name in ("neg_elbo", "rec", "kl"):
        result = run("score", out, "--data", data, "--out", tmp_path / f"{name}.csv", "--score", name,
                     "--iw-samples", 3, "--quiet")
        assert result.exit_code == 0, result.output
        values[name] = np.array([float(r[name]) for r in csv.DictReader((tmp_path / f"{name}.csv").open())])
    assert (values["kl"] >= 0).all()
    np.testing.assert_allclose(values["kl"], values["neg_elbo"] - values["rec"], rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("args, message", [
    (["--fpr", "1.5"], "--fpr 1.5"),
    (["--fpr", "0"], "--fpr 0"),
])
def test_calibrate_rejects_bad_fpr(image_run, args, message):
    out, data = image_run
    result = run("calibrate", out, "--data", data, *args)
    assert result.exit_code == 2 and message in result.output


def test_calibrate_needs_fifty_items(image_run, tmp_path):
    out, _ = image_run
    small = tmp_path / "small.npz"
    np.savez(small, x=blobs(30))
    result = run("calibrate", out, "--data", small, "--quiet")
    assert result.exit_code == 2 and "30 items are too few" in result.output


def test_image_shape_mismatch_is_named(image_run, tmp_path):
    out, _ = image_run
    other = tmp_path / "big.npz"
    np.savez(other, x=blobs(8, h=16, w=16))
    result = run("score", out, "--data", other, "--out", tmp_path / "s.csv")
    assert result.exit_code == 2 and "(1, 16, 16)" in result.output and "(1, 12, 10)" in result.output


def test_codes_in_three_formats(image_run, tmp_path):
    out, data = image_run
    for name in ("c.npz", "c.csv", "c.parquet"):
        result = run("encode", out, "--data", data, "--out", tmp_path / name, "--quiet")
        assert result.exit_code == 0, result.output
    npz = np.load(tmp_path / "c.npz")
    assert npz["mean"].shape == (64, 3) and npz["ids"][3] == "3" and npz["labels"][4] == "1"
    rows = list(csv.DictReader((tmp_path / "c.csv").open()))
    assert len(rows) == 64 and set(rows[0]) == {"id", "label", *(f"{p}_{j}" for p in ("mean", "logvar") for j in range(3))}
    assert abs(float(rows[7]["mean_1"]) - float(npz["mean"][7, 1])) < 1e-4
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "c.parquet")
    assert table.num_rows == 64 and table.column("id")[3].as_py() == "3"
    result = run("encode", out, "--data", data, "--out", tmp_path / "c.txt")
    assert result.exit_code == 2 and ".npz, .csv or .parquet" in result.output


def test_latent_plot_png_and_html(image_run, tmp_path):
    out, data = image_run
    result = run("latent-plot", out, "--data", data, "--out", tmp_path / "l.png", "--method", "pca")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "l.png").stat().st_size > 0
    page = (tmp_path / "l.html").read_text()
    assert "plotly" in page and "<script src=\"http" not in page  # the JavaScript is embedded: works offline


def test_traverse_images(image_run, tmp_path):
    out, data = image_run
    result = run("traverse", out, "--dim", 0, "--dim", 2, "--steps", 5, "--out", tmp_path / "t.npy")
    assert result.exit_code == 0, result.output
    assert np.load(tmp_path / "t.npy").shape == (10, 1, 12, 10)
    result = run("traverse", out, "--data", data, "--index", 4, "--out", tmp_path / "t.png")
    assert result.exit_code == 0, result.output
    result = run("traverse", out, "--dim", 3)
    assert result.exit_code == 2 and "--dim 3" in result.output and "3 dimensions" in result.output


def test_traversal_codes_vary_one_dimension():
    base = np.array([[0.5, -1.0, 2.0]], dtype=np.float32)
    import torch

    z = traversal_codes(torch.from_numpy(base), [1], -2.0, 2.0, 5)
    assert z.shape == (5, 3) and z[:, 1].tolist() == [-2.0, -1.0, 0.0, 1.0, 2.0]
    assert (z[:, 0] == 0.5).all() and (z[:, 2] == 2.0).all()


def test_text_scores_with_labels_and_ids(text_run, tmp_path):
    out, corpus, mixed = text_run
    result = run("score", out, "--data", mixed, "--out", tmp_path / "s.csv", "--anomaly-label", "is_anomaly",
                 "--score", "iw_nll", "--iw-samples", 5, "--quiet")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((tmp_path / "s.csv").open()))
    assert len(rows) == 72 and rows[0]["id"] == "mixed.csv:t0" and rows[40]["anomaly"] == "1"
    summary = json.loads((tmp_path / "s.json").read_text())
    # market sentences use words the cat model has never seen: they are far less likely
    assert summary["auroc"] > 0.9
    result = run("score", out, "--data", mixed, "--out", tmp_path / "s.csv", "--anomaly-label", "topic", "--quiet")
    assert result.exit_code == 2 and "--anomaly-class" in result.output
    result = run("score", out, "--data", mixed, "--out", tmp_path / "s.csv", "--anomaly-label", "topic",
                 "--anomaly-class", "sports", "--quiet")
    assert result.exit_code == 2 and "sports" in result.output and "cats" in result.output


def test_text_of_another_vocabulary_is_refused(text_run, tmp_path):
    out, _, _ = text_run
    french = tmp_path / "fr.txt"
    french.write_text("le chien noir dort sous la table rouge\n" * 60)
    result = run("score", out, "--data", french, "--out", tmp_path / "s.csv", "--quiet")
    assert result.exit_code == 2 and "outside the model's vocabulary" in result.output


def test_text_latent_tools_and_report(text_run, tmp_path):
    out, corpus, mixed = text_run
    result = run("latent-plot", out, "--data", mixed, "--label-column", "topic", "--out", tmp_path / "l.png")
    assert result.exit_code == 0, result.output
    assert "shares of" in (tmp_path / "l.html").read_text()  # hover shows the text
    result = run("encode", out, "--data", mixed, "--label-column", "topic", "--out", tmp_path / "c.csv", "--quiet")
    rows = list(csv.DictReader((tmp_path / "c.csv").open()))
    assert rows[0]["id"] == "mixed.csv:t0" and rows[0]["label"] == "cats" and rows[-1]["label"] == "markets"
    result = run("traverse", out, "the lazy cat sat on the warm mat.", "--dim", 1, "--steps", 4)
    assert result.exit_code == 0 and result.output.count("\n") == 5 and "dimension 1:" in result.output
    assert run("calibrate", out, "--data", corpus, "--quiet").exit_code == 0
    result = run("report", out)
    assert result.exit_code == 0, result.output
    page = (out / "report.html").read_text()
    for part in ("Training curves", "Variations of:", "Anomaly threshold", "Configuration", "data:image/png;base64"):
        assert part in page
    assert "src=\"http" not in page


def test_image_report(image_run, tmp_path):
    out, _ = image_run
    result = run("report", out, "--out", tmp_path / "r.html")
    assert result.exit_code == 0, result.output
    page = (tmp_path / "r.html").read_text()
    assert page.count("data:image/png;base64") >= 3 and "Samples" in page


def test_library_helpers():
    assert anomaly_flags(["yes", "0", "Anomaly", "normal"]).tolist() == [1, 0, 1, 0]
    assert anomaly_flags(["a", "b", "a"], ("b",)).tolist() == [0, 1, 0]
    metrics = detection_metrics(np.array([1.0, 2.0, 3.0, 4.0]), np.array([0, 0, 1, 1]))
    assert metrics["auroc"] == 1.0 and metrics["auprc"] == 1.0
    with pytest.raises(VaekitError, match="both normal and anomalous"):
        detection_metrics(np.array([1.0, 2.0]), np.array([0, 0]))


def test_calibration_threshold_hits_the_target_rate(tmp_path):
    scores = np.arange(1000, dtype=np.float64)
    record = calibrate(tmp_path, scores, 0.01, "neg_elbo", 10, "normal.txt")
    assert record["observed_fpr"] <= 0.01 and record["threshold"] >= 989
    assert json.loads((tmp_path / "anomaly.json").read_text())["threshold"] == record["threshold"]


def test_write_codes_names_its_format(tmp_path):
    codes = {"mean": np.zeros((2, 2)), "logvar": np.zeros((2, 2)), "ids": ["a", "b"]}
    with pytest.raises(VaekitError, match="--format"):
        write_codes(codes, tmp_path / "x.npz", fmt="xml")
