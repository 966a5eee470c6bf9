"""Image VAE figures on MNIST (../shared/data/mnist), printed as JSON. Nothing here asserts a time.

    python benchmarks/bench_image.py throughput   # images/s, seed and default presets, bf16 on and off
    python benchmarks/bench_image.py seed         # the design documents' recipe: 3 epochs, --binarize threshold
    python benchmarks/bench_image.py default      # default preset, dynamic binarization, <= 15 min of training
    python benchmarks/bench_image.py all

Training throughput is the Trainer's own count: images per second of optimisation steps over one full
epoch (batch 128), validation excluded. Test figures use the 10,000 t10k images; "dynamic" runs are tested
on one stochastic binarization drawn with seed 0, importance-weighted NLL with k = 100 (Burda et al. 2016).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path


from vaekit import TrainConfig
from vaekit.data.images import load_images
from vaekit.images import evaluate_images, train_image

from common import emit


MNIST = Path(os.environ.get("VAEKIT_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) / "mnist"


def throughput(train) -> None:
    for preset in ("seed", "default"):
        for precision in ("fp32", "bf16"):
            with tempfile.TemporaryDirectory() as tmp:
                run = train_image(train, Path(tmp) / "run", preset=preset, binarize="threshold",
                                  training=TrainConfig(epochs=1, batch_size=128, precision=precision))
            emit({"bench": "image_train_throughput", "preset": preset, "precision": precision, "batch_size": 128,
                  "images_per_s": round(run.result.items_per_second, 1)})


def quality(train, test, preset: str, binarize: str, epochs: int, out: Path, minutes: float | None) -> None:
    start = time.perf_counter()
    run = train_image(train, out, preset=preset, binarize=binarize, overwrite=True,
                      training=TrainConfig(epochs=epochs, batch_size=128, precision="bf16", lr=1e-3))
    train_s = time.perf_counter() - start
    report = evaluate_images(run.model, test, iw_samples=100, binarize=binarize, seed=0, precision="fp32")
    report.pop("per_item")
    emit({"bench": "image_test_nll", "preset": preset, "binarize": binarize, "epochs": run.result.epochs,
          "train_minutes": round(train_s / 60, 2), "budget_minutes": minutes, "train_images_per_s": round(run.result.items_per_second),
          **{k: (round(v, 2) if isinstance(v, float) else v) for k, v in report.items() if k != "data"}})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["throughput", "seed", "default", "all"])
    parser.add_argument("--default-epochs", type=int, default=25,
                        help="epochs for the default preset; 25 fit in 15 minutes on 2 cores with bf16")
    parser.add_argument("--out", type=Path, default=Path("runs/bench"), help="where the quality runs are kept")
    args = parser.parse_args()
    if not MNIST.is_dir():
        sys.exit(f"error: {MNIST} is missing")
    train, test = load_images(MNIST, split="train"), load_images(MNIST, split="test")
    if args.what in ("throughput", "all"):
        throughput(train)
    if args.what in ("seed", "all"):
        quality(train, test, "seed", "threshold", 3, args.out / "seed", None)
    if args.what in ("default", "all"):
        quality(train, test, "default", "dynamic", args.default_epochs, args.out / "default", 15)


if __name__ == "__main__":
    main()
