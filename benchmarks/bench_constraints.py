"""Control accuracy of conditional generation on ../shared/data/clickbait-headlines (issue 4), as JSON.

    python benchmarks/bench_constraints.py [--minutes 10] [--unconditional-run RUN] [--run RUN]
    python benchmarks/bench_constraints.py --images [--image-epochs 5]

1. A judge: TF-IDF + logistic regression trained on real labelled headlines; its own held-out accuracy.
2. A conditional TextVAE (--conditional on the label) trained on the same training headlines.
3. Control accuracy: 200 samples per label; the fraction the judge assigns to the requested label. An
   unconditional run (--unconditional-run, e.g. from bench_text.py clickbait) gives the baseline: its
   samples' label shares sit near the base rate.
4. vary --label other on 100 held-out headlines (5 variations each): how often the judge's label flips,
   and how often it flips while the similarity to the input (MiniLM cosine) stays >= 0.5.
5. --require: for 100 held-out headlines, require the input's longest known word; the share of inputs with
   at least one passing variation, and passed / drawn candidates.

--images: the same control accuracy for a conditional image VAE on ../shared/data/mnist. The judge is a
logistic regression on 20,000 training images (its test accuracy is printed); 100 samples per digit.
"""
from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from common import SHARED, emit, labelled_headlines


LABELS = ("clickbait", "news")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="training time budget")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--unconditional-run", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-constraints"))
    parser.add_argument("--temperature", type=float, default=0.5)
    parser.add_argument("--run", type=Path, default=None,
                        help="a conditional run to evaluate (skips training; e.g. --out's conditional/ from before)")
    parser.add_argument("--train-size", type=int, default=None,
                        help="train on the first N training headlines only (a user-sized corpus; the issue's 3,000)")
    parser.add_argument("--control-only", action="store_true",
                        help="only the control accuracy (step 3), not the vary and --require figures")
    parser.add_argument("--images", action="store_true", help="the conditional image VAE on MNIST instead")
    parser.add_argument("--image-epochs", type=int, default=5)
    args = parser.parse_args()
    if not SHARED.is_dir():
        sys.exit(f"error: {SHARED} is missing")
    if args.images:
        return images(args)
    rows = labelled_headlines()
    held, train = rows[:1000], rows[1000:]
    judge_vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, lowercase=True)
    judge = LogisticRegression(max_iter=2000, C=4.0).fit(judge_vec.fit_transform([t for t, _ in train]),
                                                        [l for _, l in train])
    judge_acc = float((judge.predict(judge_vec.transform([t for t, _ in held])) == np.array([l for _, l in held])).mean())
    classify = lambda texts: judge.predict(judge_vec.transform(texts)) if texts else np.array([])  # noqa: E731
    emit({"bench": "judge", "model": "tf-idf (1-2 grams) + logistic regression", "train": len(train),
          "held_out": len(held), "held_out_accuracy": round(judge_acc, 4),
          "base_rate": {l: round(sum(1 for _, x in train if x == l) / len(train), 4) for l in LABELS}})

    if args.run is not None:
        import vaekit

        model = vaekit.load(args.run)
        emit({"bench": "conditional_run", "run": str(args.run), "labels": list(model.config.label_names)})
    else:
        model = train_conditional(args, train[:args.train_size])
    evaluate(args, model, held, classify)


def train_conditional(args, train):
    from vaekit import TrainConfig
    from vaekit.data.tokenizer import TokenizerConfig
    from vaekit.data.text import ReadOptions
    from vaekit.texts import train_text

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "headlines.csv"
        with data.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["text", "label"])
            writer.writerows(train)
        start = time.perf_counter()
        run = train_text(data, args.out / "conditional", reading=ReadOptions(label_column="label"), conditional=True,
                         overwrite=True, max_tokens=40, tokenizer_config=TokenizerConfig(vocab_size=12000),
                         model_overrides=dict(embedding_dim=256, encoder_hidden=(256,), decoder_hidden=512,
                                              latent_dim=32, dropout=0.3, word_dropout=0.3),
                         training=TrainConfig(epochs=args.epochs, batch_size=32, lr=1e-3, grad_clip=5.0,
                                              kl_schedule="linear", kl_warmup_steps=3000, free_bits=0.5,
                                              max_minutes=args.minutes))
    emit({"bench": "conditional_train", "status": run.result.status, "epochs": run.result.epochs, "texts": len(train),
          "minutes": round((time.perf_counter() - start) / 60, 2), "labels": list(run.model.config.label_names)})
    return run.model


def evaluate(args, model, held, classify):
    from vaekit.generate import vary_constrained
    from vaekit.semantic import embed

    g = torch.Generator().manual_seed(0)
    control, examples = {}, {}
    for label in LABELS:
        texts = model.sample(200, generator=g, label=label, strategy="sample", top_p=0.9)
        control[label] = round(float((classify(texts) == label).mean()), 4)
        examples[label] = list(texts)
    emit({"bench": "control_accuracy", "samples_per_label": 200, "decoding": "nucleus top-p 0.9",
          "fraction_judged_as_requested": control, "mean": round(float(np.mean(list(control.values()))), 4),
          "examples": {label: texts[:5] for label, texts in examples.items()}})
    if args.control_only:
        return
    if args.unconditional_run is not None:
        import vaekit

        base = vaekit.load(args.unconditional_run)
        texts = base.sample(400, generator=torch.Generator().manual_seed(0), strategy="sample", top_p=0.9)
        judged = classify(texts)
        emit({"bench": "unconditional_baseline", "run": str(args.unconditional_run), "samples": 400,
              "judged_share": {l: round(float((judged == l).mean()), 4) for l in LABELS}})

    inputs = held[:100]
    flips, flips_similar, total = 0, 0, 0
    for i, (text, label) in enumerate(inputs):
        other = LABELS[1 - LABELS.index(label)]
        variations = [v.text for v in model.vary(text, n=5, seed=i, label=other, source_label=label,
                                                 temperature=args.temperature)]
        if not variations:
            continue
        judged = classify(variations)
        vectors = embed([text, *variations])
        similarity = vectors[1:] @ vectors[0]
        flips += int((judged == other).sum())
        flips_similar += int(((judged == other) & (similarity >= 0.5)).sum())
        total += len(variations)
    emit({"bench": "vary_label_flip", "inputs": len(inputs), "variations": total,
          "flip_rate": round(flips / max(total, 1), 4), "flip_and_similarity_at_least_0.5": round(flips_similar / max(total, 1), 4)})

    vocab = model.tokenizer
    satisfied, passed, drawn = 0, 0, 0
    for i, (text, _) in enumerate(inputs):
        words = [w for w in text.lower().split() if w.isalpha() and vocab.unknown_fraction(w) == 0]
        if not words:
            continue
        word = max(words, key=len)
        result = vary_constrained(model, text, n=3, require=[word], seed=i, max_draws=60, temperature=args.temperature)
        satisfied += bool(result.variations)
        passed += result.passed
        drawn += result.drawn
    emit({"bench": "require_pass_rate", "inputs": len(inputs), "required": "the input's longest known word",
          "inputs_with_a_passing_variation": round(satisfied / len(inputs), 4),
          "passed_over_drawn": round(passed / max(drawn, 1), 4)})


def images(args) -> None:
    from vaekit import TrainConfig
    from vaekit.data.images import load_images
    from vaekit.images import train_image

    train = load_images(SHARED / "mnist", split="train")
    test = load_images(SHARED / "mnist", split="test")
    flat = lambda x: (x.reshape(len(x), -1).float() / 255.0).numpy()  # noqa: E731
    pick = np.random.default_rng(0).permutation(len(train))[:20000]
    judge = LogisticRegression(max_iter=300, C=0.1).fit(flat(train.images[pick]), train.labels[pick])
    emit({"bench": "image_judge", "model": "logistic regression on pixels", "train": len(pick),
          "test_accuracy": round(float((judge.predict(flat(test.images)) == test.labels).mean()), 4)})
    start = time.perf_counter()
    run = train_image(train, args.out / "conditional-mnist", preset="default", binarize="dynamic", overwrite=True,
                      conditional=True, training=TrainConfig(epochs=args.image_epochs, batch_size=128, seed=0))
    emit({"bench": "conditional_image_train", "epochs": run.result.epochs, "preset": "default",
          "minutes": round((time.perf_counter() - start) / 60, 2)})
    model, g, control = run.model, torch.Generator().manual_seed(0), {}
    for digit in model.config.label_names:
        samples = model.sample(100, generator=g, label=digit)  # mean images in [0, 1]
        control[digit] = float((judge.predict(samples.reshape(100, -1).numpy()) == int(digit)).mean())
    emit({"bench": "image_control_accuracy", "samples_per_label": 100, "per_digit": control,
          "mean": round(float(np.mean(list(control.values()))), 4)})


if __name__ == "__main__":
    main()
