"""Times the popular PyTorch Sentence-VAE (github.com/timbmg/Sentence-VAE) on one PTB epoch: issue 6's text baseline.

Its code is not part of vaekit and is not copied here. Clone it, give it an environment of its own with the
torch vaekit is tested with, and point this script at the clone:

    git clone https://github.com/timbmg/Sentence-VAE /tmp/Sentence-VAE
    python -m venv /tmp/svenv && /tmp/svenv/bin/pip install torch==2.13.0 nltk tensorboardX numpy
    /tmp/svenv/bin/python benchmarks/baseline_sentence_vae.py --checkout /tmp/Sentence-VAE --ptb ../shared/data/ptb

The script runs its ``train.py`` unchanged, with its defaults (GRU, embedding 300, hidden 256, latent 16, batch 32,
one-directional encoder, a DataLoader with one worker per core), for one epoch in a scratch folder, and stops it
once its TRAIN split ends. Building its vocabulary and JSON files is done first and not timed. Its TRAIN split is
timed from its own printed lines: from the line it prints after the first batch to the epoch's summary line, i.e.
all batches but the first, so the rate is its token count (``<sos>`` plus words, capped at 60, as its ``ptb.py``
counts them) times (batches - 1) / batches over that time. Compare with vaekit's ``bench_speed.py text`` run in the
same hour: the machine's speed varies by 10-20% from day to day.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkout", type=Path, required=True, help="a clone of timbmg/Sentence-VAE")
    parser.add_argument("--ptb", type=Path, required=True, help="folder with ptb.train.txt and ptb.valid.txt")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("extra", nargs="*", help="more train.py options after --, e.g. -- --bidirectional")
    args = parser.parse_args()
    train_py = (args.checkout / "train.py").resolve()
    if not train_py.is_file():
        fail(f"{train_py} not found: --checkout takes a clone of timbmg/Sentence-VAE")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        for split in ("train", "valid"):
            source = args.ptb / f"ptb.{split}.txt"
            if not source.is_file():
                fail(f"{source} not found")
            (data / source.name).write_bytes(source.read_bytes())
        base = [sys.executable, "-u", str(train_py), "--data_dir", str(data), "-bs", str(args.batch_size), *args.extra]
        # --create_data with 0 epochs builds the vocabulary and the JSON files, then stops: not timed
        made = subprocess.run([*base, "--create_data", "-ep", "0"], cwd=tmp, capture_output=True, text=True)
        if made.returncode != 0:
            last = (made.stderr.strip().splitlines() or ["no message"])[-1]
            fail(f"the Sentence-VAE's train.py failed while building its data: {last}")
        start, marks = time.perf_counter(), {}
        proc = subprocess.Popen([*base, "-ep", "1"], cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                text=True)
        for line in proc.stdout:
            now = time.perf_counter() - start
            if line.startswith("TRAIN Batch 0000"):
                marks["first_batch_s"] = now
            elif line.startswith("TRAIN Epoch"):
                marks["train_end_s"] = now
                # the timed part is over; its VALID split is not timed (and under torch 2 its idx2word fails
                # there, looking words up by str(tensor))
                proc.terminate()
                break
        proc.wait()
        if len(marks) != 2:
            fail("the Sentence-VAE's train.py stopped before its TRAIN epoch ended; "
                     "run it by hand to see why")
        items = json.loads((data / "ptb.train.json").read_text())
    tokens = sum(item["length"] for item in items.values())
    batches = -(-len(items) // args.batch_size)
    seconds = marks["train_end_s"] - marks["first_batch_s"]
    print(json.dumps({"bench": "sentence_vae_baseline", "batch_size": args.batch_size, "extra": args.extra,
                      "tokens_per_epoch": tokens, "batches": batches, "train_s": round(seconds, 1),
                      "tokens_per_s": round(tokens * (batches - 1) / batches / seconds)}), flush=True)


if __name__ == "__main__":
    main()
