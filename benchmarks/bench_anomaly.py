"""Anomaly detection figures on ../shared/data, printed as JSON. Nothing here asserts a time.

    python benchmarks/bench_anomaly.py mnist   # train on nine digits, the tenth is the anomaly (and/or one-class)
    python benchmarks/bench_anomaly.py text    # train on news headlines, score held-out clickbait vs news

MNIST, two protocols (--protocol):
- leave-one-out (the issue's): for each digit d, an ImageVAE (default preset, grayscale BCE) is trained on the
  60,000 training images minus digit d, then the 10,000 test images are scored; d's test images are the
  anomalies.
- one-class (the protocol of the published deep one-class figures, e.g. Ruff et al. 2018, Deep SVDD, mean
  AUROC 0.948): for each digit d, the VAE is trained on d's ~6,000 training images only; the test images of
  the nine other digits are the anomalies.
AUROC is reported for the negative ELBO, the reconstruction error and the KL term (k = 10 draws of z per
image), and for -ELBO minus the PNG length (Serra et al. 2020), per digit and averaged.

Text: a TextVAE trained on news headlines scores 1,000 held-out news headlines and 1,000 clickbait
headlines; AUROC for the negative ELBO and for the negative ELBO per token (length removed).
"""
from __future__ import annotations

import argparse
import gzip
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from vaekit import TrainConfig
from vaekit.anomaly import all_scores, compute_scores, detection_metrics
from vaekit.data.images import load_images
from vaekit.images import train_image
from vaekit.items import image_items, text_items

from common import SHARED, emit


def png_nats(images: torch.Tensor) -> np.ndarray:
    """Input complexity L(x) (Serra et al. 2020): each image's PNG-compressed length, in nats."""
    import io

    from PIL import Image

    sizes = []
    for image in images[:, 0].numpy():
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG", optimize=True)
        sizes.append(len(buffer.getvalue()) * 8 * np.log(2))
    return np.array(sizes)


def mnist(args) -> None:
    train = load_images(SHARED / "mnist", split="train")
    test = load_images(SHARED / "mnist", split="test")
    complexity = png_nats(test.images)
    digits = [int(d) for d in args.digits.split(",")] if args.digits else list(range(10))
    protocols = ["leave-one-out", "one-class"] if args.protocol == "both" else [args.protocol]
    names = ("neg_elbo", "rec", "kl", "complexity")
    for protocol in protocols:
        one_class = protocol == "one-class"
        epochs = args.one_class_epochs if one_class else args.epochs
        results = []
        for digit in digits:
            keep = np.flatnonzero((train.labels == digit) if one_class else (train.labels != digit))
            start = time.perf_counter()
            with tempfile.TemporaryDirectory() as tmp:
                run = train_image(train.subset(keep), Path(tmp) / "run", preset="default", binarize="none",
                                  training=TrainConfig(epochs=epochs, batch_size=128, precision="bf16", seed=0))
            train_s = time.perf_counter() - start
            flags = ((test.labels != digit) if one_class else (test.labels == digit)).astype(int)
            row = {"bench": "mnist_anomaly", "protocol": protocol, "digit": digit, "train_images": len(keep),
                   "epochs": epochs, "train_minutes": round(train_s / 60, 2)}
            scores = all_scores(run.model, image_items(run.model, test, "none"), iw_samples=10, seed=0)
            scores["complexity"] = scores["neg_elbo"] - complexity
            for score in names:
                metrics = detection_metrics(scores[score], flags)
                row[f"auroc_{score}"], row[f"auprc_{score}"] = round(metrics["auroc"], 4), round(metrics["auprc"], 4)
            emit(row)
            results.append(row)
        emit({"bench": "mnist_anomaly_mean", "protocol": protocol, "digits": digits, "epochs": epochs,
              **{f"mean_auroc_{s}": round(float(np.mean([r[f"auroc_{s}"] for r in results])), 4)
                 for s in names}})


def _headlines(name: str) -> list[str]:
    with gzip.open(SHARED / "clickbait-headlines" / name, "rt", encoding="utf-8") as fh:
        return [" ".join(line.split()) for line in fh if line.strip()]


def text(args) -> None:
    from vaekit.texts import train_text

    news, clickbait = _headlines("non_clickbait_data.gz"), _headlines("clickbait_data.gz")
    rng = random.Random(0)
    rng.shuffle(news)
    rng.shuffle(clickbait)
    held_news, train_news = news[:1000], news[1000:]
    held_clickbait = clickbait[:1000]
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "news.txt"
        corpus.write_text("\n".join(train_news) + "\n", encoding="utf-8")
        mixed = Path(tmp) / "mixed.txt"
        mixed.write_text("\n".join(held_news + held_clickbait) + "\n", encoding="utf-8")
        start = time.perf_counter()
        run = train_text(corpus, Path(tmp) / "run", max_tokens=40,
                         model_overrides=dict(embedding_dim=256, encoder_hidden=(256,), decoder_hidden=512, latent_dim=32,
                                              dropout=0.3),
                         training=TrainConfig(epochs=args.text_epochs, batch_size=32, lr=1e-3, precision="bf16",
                                              kl_schedule="linear", kl_warmup_steps=2000, free_bits=0.2,
                                              max_minutes=args.minutes, grad_clip=5.0))
        train_s = time.perf_counter() - start
        items = text_items(run.model, mixed)
        scores = compute_scores(run.model, items, "neg_elbo", iw_samples=10, seed=0)
    flags = np.r_[np.zeros(len(held_news)), np.ones(len(held_clickbait))].astype(int)
    tokens = np.array([len(ids) + 1 for ids in run.model.tokenizer.encode_batch(held_news + held_clickbait)])
    emit({"bench": "text_clickbait_vs_news", "train_headlines": len(train_news), "epochs": run.result.epochs,
          "train_minutes": round(train_s / 60, 2), "normal": len(held_news), "anomalous": len(held_clickbait),
          "auroc_neg_elbo": round(detection_metrics(scores, flags)["auroc"], 4),
          "auprc_neg_elbo": round(detection_metrics(scores, flags)["auprc"], 4),
          "auroc_neg_elbo_per_token": round(detection_metrics(scores / tokens, flags)["auroc"], 4),
          "mean_tokens_news": round(float(tokens[flags == 0].mean()), 2),
          "mean_tokens_clickbait": round(float(tokens[flags == 1].mean()), 2)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["mnist", "text", "all"])
    parser.add_argument("--protocol", choices=["leave-one-out", "one-class", "both"], default="both",
                        help="MNIST: train on nine digits (the issue's) or on one digit (the published one-class setting)")
    parser.add_argument("--epochs", type=int, default=3, help="MNIST leave-one-out epochs per digit")
    parser.add_argument("--one-class-epochs", type=int, default=25, help="MNIST one-class epochs (~6,000 images each)")
    parser.add_argument("--digits", default="", help="comma-separated anomaly digits (default: all ten)")
    parser.add_argument("--text-epochs", type=int, default=20)
    parser.add_argument("--minutes", type=float, default=5.0, help="text training time budget")
    args = parser.parse_args()
    if not SHARED.is_dir():
        sys.exit(f"error: {SHARED} is missing")
    emit({"bench": "machine", "cpu_threads": torch.get_num_threads(), "torch": torch.__version__,
          "args": vars(args)})
    if args.what in ("mnist", "all"):
        mnist(args)
    if args.what in ("text", "all"):
        text(args)


if __name__ == "__main__":
    main()
