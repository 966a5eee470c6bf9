"""The text side of the CLI through its entry point."""
import json
import subprocess
import sys

import pytest


from conftest import assert_plain_modes, run_cli as run, two_topic_sentences

TINY = ["--embedding-dim", "16", "--hidden", "16", "--latent-dim", "4", "--dropout", "0", "--batch-size", "16",
        "--precision", "fp32", "--quiet"]


def vaekit_cmd(*args):
    return subprocess.run([sys.executable, "-m", "vaekit", *map(str, args)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("text")
    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join(two_topic_sentences() * 2))
    out = folder / "run"
    result = run("train", "text", "--data", corpus, "--out", out, "--epochs", 3, *TINY)
    assert result.exit_code == 0, result.output
    assert "try: vaekit vary" in result.output
    return out, corpus


def test_run_folder(text_run):
    out, _ = text_run
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "text_vae" and config["model"]["latent_dim"] == 4
    assert config["tokenizer"]["kind"] == "word" and config["data"]["stats"]["train"]["items"] > 0
    for name in ("model.safetensors", "tokenizer.json", "resume.pt", "metrics.jsonl", "samples.txt", "plots/curves.png"):
        assert (out / name).exists(), name
    assert_plain_modes(out)


def test_use_commands(text_run, tmp_path):
    out, corpus = text_run
    result = run("vary", out, "the lazy cat sat on the warm mat.", "-n", 3, "--seed", 1, "--json")
    assert result.exit_code == 0, result.output
    variations = json.loads(result.output)
    assert 1 <= len(variations) <= 3 and all("text" in v and "score" in v for v in variations)
    for strategy in ("greedy", "beam"):
        assert run("vary", out, "shares of banks fell.", "-n", 2, "--strategy", strategy, "--temperature", 0.5).exit_code == 0
    result = run("sample", out, "-n", 4)
    assert result.exit_code == 0 and len(result.output.strip().splitlines()) == 4
    result = run("reconstruct", out, "the old cat sat on the red mat.")
    assert result.exit_code == 0 and "=>" in result.output
    result = run("interpolate", out, "the old cat sat.", "shares fell today.", "--steps", 5)
    assert result.exit_code == 0 and len(result.output.strip().splitlines()) == 5
    result = run("encode", out, "--data", corpus, "--out", tmp_path / "codes.npz")
    assert result.exit_code == 0, result.output
    import numpy as np

    assert np.load(tmp_path / "codes.npz")["mean"].shape == (144, 4)


def test_evaluate_with_variation_report(text_run, tmp_path):
    out, corpus = text_run
    result = run("evaluate", out, "--data", corpus, "--max-items", 20, "--iw-samples", 10, "--variation-items", 4,
                 "-n", 3, "--out", tmp_path / "e.json", "--quiet")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "e.json").read_text())
    assert report["items"] == 20 and report["perplexity"] > 1 and report["iw_nll"] <= report["neg_elbo"] + 0.5
    systems = report["variations"]["systems"]
    assert set(systems) == {"vaekit", "copy", "prior"}
    assert systems["copy"]["similarity_to_input"] == pytest.approx(1.0, abs=1e-4)
    assert systems["copy"]["bleu_to_input"] == pytest.approx(1.0) and systems["copy"]["self_bleu"] == pytest.approx(1.0)
    assert "| vaekit |" in (tmp_path / "e.md").read_text()
    # vary's similarity post-filter: each text's variations come back most similar first
    result = run("evaluate", out, "--data", corpus, "--max-items", 4, "--iw-samples", 2, "-n", 3,
                 "--min-similarity", -1, "--out", tmp_path / "f.json", "--quiet")
    assert result.exit_code == 0, result.output
    filtered = json.loads((tmp_path / "f.json").read_text())["variations"]
    assert filtered["min_similarity"] == -1 and "similarity post-filter" in (tmp_path / "f.md").read_text()
    from vaekit.semantic import similarities

    for example in filtered["examples"]:
        scores = similarities(example["input"], example["variations"])
        assert all(a >= b - 1e-4 for a, b in zip(scores, scores[1:]))  # re-embedded in another batch


def test_resume_continues(text_run):
    out, _ = text_run
    result = run("train", "text", "--out", out, "--resume", "--epochs", 4, "--quiet")
    assert result.exit_code == 0, result.output
    rows = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["epoch"] == 4


@pytest.mark.parametrize("setup, args, message", [
    (lambda p: p.write_text("\n\n"), [], "holds no text"),
    (lambda p: p.write_text("post_id,title,body\n1,a,b\n"), [], "the columns are post_id, title, body"),
    (lambda p: p.write_bytes(b"ok\nbad \xff byte\n"), [], "byte offset 7 (line 2) is not valid utf-8"),
])
def test_bad_corpus_exits_2(tmp_path, setup, args, message):
    path = tmp_path / ("data.csv" if "columns" in message else "data.txt")
    setup(path)
    result = vaekit_cmd("train", "text", "--data", path, "--out", tmp_path / "o", *args, "--quiet")
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1 and not (tmp_path / "o").exists()


def test_vary_bad_input_exits_2(text_run, tmp_path):
    out, _ = text_run
    assert "cannot vary an empty text" in vaekit_cmd("vary", out, "  ").stderr
    assert "-n 0" in vaekit_cmd("vary", out, "the cat", "-n", "0").stderr
    for command, verb in ((("reconstruct", "the cat", " "), "reconstruct"), (("interpolate", "the cat", ""), "interpolate between")):
        result = vaekit_cmd(command[0], out, *command[1:])
        assert result.returncode == 2, result.stderr
        assert result.stderr == f"error: TEXT 2 of 2 is empty: cannot {verb} an empty text\n"
    # a missing or empty file: the one-line error alone, no progress bar drawn before it, and nothing written
    (tmp_path / "empty.txt").write_text("")
    calibrated = (out / "anomaly.json").exists()
    for data, message in (("missing.txt", "missing.txt: no such file or folder"), ("empty.txt", "empty.txt: holds no text")):
        for command in (("encode", "--out", tmp_path / "c.npz"), ("evaluate", "--out", tmp_path / "e.json"),
                        ("score", "--out", tmp_path / "s.csv"), ("calibrate",)):
            result = vaekit_cmd(command[0], out, "--data", tmp_path / data, *command[1:])
            assert result.returncode == 2 and result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, \
                (command, result.stderr)
            assert message in result.stderr
    assert not any((tmp_path / name).exists() for name in ("c.npz", "e.json", "s.csv"))
    assert (out / "anomaly.json").exists() == calibrated
    result = vaekit_cmd("vary", out, "the cat sat", "-n", "1000", "--seed", "0")
    assert result.returncode == 0 and "capped at 100" in result.stderr
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    (broken / "tokenizer.json").unlink()
    result = vaekit_cmd("vary", broken, "the cat")
    assert result.returncode == 2 and "tokenizer.json: file is missing" in result.stderr


def test_unidirectional_encoder_trains_saves_and_varies(tmp_path):
    """--unidirectional: an encoder that reads forward only, recorded in config.json and loaded back as such."""
    from vaekit import load
    from vaekit.generate import vary

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(two_topic_sentences()))
    out = tmp_path / "run"
    result = run("train", "text", "--data", corpus, "--out", out, "--epochs", 1, "--unidirectional", *TINY)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["model"]["bidirectional"] is False
    model = load(out)
    assert model.encoder.directions == 1 and not model.encoder.layers[0].bidirectional
    assert vary(model, "the lazy cat sat on the warm mat.", n=2, seed=0, keep_copies=True)


def test_adaptive_output_trains_and_varies_and_bad_settings_exit_2(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(two_topic_sentences()))
    out = tmp_path / "run"
    result = run("train", "text", "--data", corpus, "--out", out, "--epochs", 1, "--output", "adaptive",
                 "--adaptive-cutoffs", "12", *TINY)
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())["model"]
    assert config["output"] == "adaptive" and config["adaptive_cutoffs"] == [12]
    assert run("vary", out, "the lazy cat sat on the warm mat.", "-n", 2, "--seed", 0).exit_code == 0
    for args, message in [(["--output", "adaptive", "--tie-embeddings"], "cannot be tied to the embeddings"),
                          (["--adaptive-cutoffs", "100"], "--adaptive-cutoffs needs --output adaptive")]:
        result = vaekit_cmd("train", "text", "--data", corpus, "--out", tmp_path / "o", *args, "--quiet")
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert result.stderr.count("\n") == 1
