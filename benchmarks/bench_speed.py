"""Speed and memory figures (issue 6), printed as JSON. Nothing here asserts a time.

    python benchmarks/bench_speed.py image     # whole `vaekit train image --preset seed` commands, fp32, bf16 (+fp16 on GPUs)
    python benchmarks/bench_speed.py text      # PTB training tokens/s: Sentence-VAE configuration (bidirectional and
                                               # one-directional encoder, as that implementation's default) and ours
    python benchmarks/bench_speed.py text --text-rnn lstm   # the same with LSTMs (oneDNN's fused kernel on CPUs)
    python benchmarks/bench_speed.py text-parts  # where a Sentence-VAE training step's time goes, part by part
                                               # (--parts-config sentence_vae_uni: its one-directional encoder)
    python benchmarks/bench_speed.py vary --run RUN   # vary latency, one text, 10 variations, 100 calls
    python benchmarks/bench_speed.py memory    # peak RSS: PTB training, encoding 1M short texts
    python benchmarks/bench_speed.py all

The baselines these figures are compared with run in environments of their own, in the same hour:
benchmarks/baseline_keras_vae.py (the design documents' Keras image VAE) and benchmarks/baseline_sentence_vae.py
(one PTB epoch of the popular PyTorch Sentence-VAE).

Image figures are whole commands as a user runs them: images trained (epochs x training images) divided by
the command's wall time, start-up, data loading, validation, checkpoints and plots included; the Trainer's own
count (optimisation time only) is printed beside it. Text tokens/s counts words + <eos> per second of
optimisation. Peak memory is the child process's maximum resident set size.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from common import SHARED, emit


VAEKIT = [sys.executable, "-m", "vaekit"]


# Bowman-style Sentence-VAE sizes, as the popular PyTorch implementation trains it on PTB
SENTENCE_VAE = dict(embedding_dim=300, encoder_hidden=(256,), decoder_hidden=256, latent_dim=16, dropout=0.5)
# ... with its default one-directional encoder (its --bidirectional is off unless asked for); vaekit's is bidirectional
SENTENCE_VAE_UNI = {**SENTENCE_VAE, "bidirectional": False}
# the text benchmarks' model sizes by name (vaekit_default: the default preset)
TEXT_CONFIGS = {"sentence_vae": SENTENCE_VAE, "sentence_vae_uni": SENTENCE_VAE_UNI, "vaekit_default": {}}
PTB_WORDS = dict(vocab_size=10004, lowercase=False, pretokenized=True)  # TokenizerConfig of PTB's own words


# runs a command and prints its peak resident set size (KiB on Linux) as the last line of stderr
PEAK = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(r.returncode)")


def timed(cmd: list[str]) -> tuple[float, str, int]:
    """Wall seconds, stdout and the command's own peak RSS in MB."""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", PEAK, *cmd], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{result.stderr[-2000:]}")
    peak_kib = int(result.stderr.strip().splitlines()[-1])
    return wall, result.stdout, peak_kib // 1024


def image(args) -> None:
    for precision in ("fp32", "bf16") + (("fp16",) if torch.cuda.is_available() else ()):  # fp16: GPUs only
        with tempfile.TemporaryDirectory() as tmp:
            wall, out, _ = timed([*VAEKIT, "train", "image", "--data", str(SHARED / "mnist"), "--out", f"{tmp}/run",
                                  "--preset", "seed", "--binarize", "threshold", "--batch-size", "128", "--epochs",
                                  str(args.image_epochs), "--precision", precision, "--quiet"])
            config = json.loads(Path(f"{tmp}/run/config.json").read_text())
        trained = config["data"]["train_items"] * args.image_epochs
        inner = re.search(r"([\d,]+) images/s", out)
        emit({"bench": "image_train_command", "preset": "seed", "precision": precision, "batch_size": 128,
              "epochs": args.image_epochs, "wall_s": round(wall, 1),
              "images_per_s_whole_command": round(trained / wall),
              "images_per_s_trainer": int(inner.group(1).replace(",", "")) if inner else None})


def text(args) -> None:
    from vaekit import TrainConfig
    from vaekit.data.tokenizer import TokenizerConfig
    from vaekit.texts import train_text

    configs = {name: {**sizes, "output": args.text_output, "rnn": args.text_rnn} for name, sizes in TEXT_CONFIGS.items()}
    for name in args.text_configs.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            run = train_text(SHARED / "ptb" / "ptb.train.txt", Path(tmp) / "run",
                             val_data=SHARED / "ptb" / "ptb.valid.txt", max_tokens=100,
                             tokenizer_config=TokenizerConfig(**PTB_WORDS), model_overrides=configs[name],
                             training=TrainConfig(epochs=1, batch_size=args.text_batch_size, precision=args.precision,
                                                  max_minutes=args.text_minutes, grad_clip=5.0,
                                                  kl_schedule="linear", kl_warmup_steps=2000, compile=args.compile))
            stats = run.stats["train"]
            per_item = (stats["tokens"] + stats["items"]) / stats["items"]
            emit({"bench": "ptb_train_tokens_per_s", "config": name, "model": configs[name],
                  "batch_size": args.text_batch_size, "precision": args.precision, "compile": args.compile,
                  "steps": run.result.step, "tokens_per_s": round(run.result.items_per_second * per_item),
                  "sentences_per_s": round(run.result.items_per_second, 1)})


def text_parts(args) -> None:
    """Milliseconds per part of one bf16 training step of the Sentence-VAE configuration on real PTB batches
    (32 sentences of about the median length, little padding, as the Trainer's length buckets make them),
    each part forward and backward on its own: encoder (embedding, GRU, posterior head), decoder
    GRU, output layer with the cross-entropy, gradient clipping with Adam, and the whole step; beside them the
    output layer's three matrix products alone, which no implementation of this model avoids. Then whole steps
    at the 10th, 50th and 90th percentile of length, and the part of a step's time that does not grow with its
    tokens: why a training epoch, with its many short batches, runs fewer tokens/s than the median batch."""
    import torch.nn.functional as F
    from vaekit import TextVAE, TextVAEConfig
    from vaekit.data.text import collate
    from vaekit.data.tokenizer import TextTokenizer, TokenizerConfig
    from vaekit.memory import reuse_freed_memory
    from vaekit.precision import autocast
    from vaekit.train import clip_gradients

    reuse_freed_memory()  # as the Trainer does
    sentences = (SHARED / "ptb" / "ptb.train.txt").read_text().splitlines()
    tokenizer = TextTokenizer.train(sentences, TokenizerConfig(**PTB_WORDS))
    torch.manual_seed(0)
    config = TextVAEConfig(vocab_size=tokenizer.vocab_size, max_tokens=100, output=args.text_output,
                           **TEXT_CONFIGS[args.parts_config])
    model = TextVAE(config, tokenizer).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    ids = sorted((np.asarray(s) for s in tokenizer.encode_batch(sentences[:6400])), key=len)  # as if bucketed
    every = [collate(ids[i:i + 32]) for i in range(0, len(ids), 32)]
    batches = every[len(every) // 2 - 5:len(every) // 2 + 5]  # the ten around the median length

    def tokens_of(group) -> float:
        return statistics.median(int(b.lengths.sum()) + len(b) for b in group)

    tokens = tokens_of(batches)

    def median_ms(part, batches=batches) -> float:
        for b in batches[:3]:
            part(b)
        times = []
        for _ in range(args.rounds):
            for b in batches:
                if part is optimize:
                    step(b)  # every parameter has a gradient
                else:
                    model.zero_grad(set_to_none=True)  # each part's backward writes fresh gradients, as in a step
                start = time.perf_counter()
                part(b)
                times.append(time.perf_counter() - start)
        return round(statistics.median(times) * 1000, 1)

    def encoder(b):
        with autocast("bf16"):
            posterior = model.encode(b)
        (posterior.mean.float().sum() + posterior.logvar.float().sum()).backward()

    def decoder(b):
        z = torch.randn(len(b), config.latent_dim)
        inputs, _ = model.decoder_io(b)
        with autocast("bf16"):
            hidden, _ = model.decoder_step(inputs, z, model.decoder.initial_state(z))
        hidden.float().sum().backward()

    def output(b):
        _, targets = model.decoder_io(b)
        real = targets != 0
        hidden = torch.randn(int(real.sum()), config.decoder_hidden, requires_grad=True)
        with autocast("bf16"):
            nll = model._token_nll(hidden, targets[real])  # the full or the adaptive softmax
        nll.sum().backward()

    full = model.decoder.output
    weight = full.weight.detach().bfloat16() if full is not None else None  # products: full softmax only

    def products(b):
        x = torch.randn(int(b.lengths.sum()) + len(b), config.decoder_hidden).bfloat16()
        g = F.linear(x, weight)  # the forward product, then the backward's two
        g @ weight, g.t() @ x

    def optimize(b):
        clip_gradients(optimizer, 5.0)  # as the Trainer clips
        optimizer.step()

    def step(b):
        with autocast("bf16"):
            out = model.loss(b, kl_weight=0.5)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimize(b)

    parts = {"encoder": encoder, "decoder_gru": decoder, "output_layer_and_cross_entropy": output,
             "clip_and_adam": optimize, "whole_step": step}
    if full is not None:  # the full softmax's products; the adaptive softmax's depend on how many rare words
        parts["output_layer_products_alone"] = products
    ms = {name: median_ms(part) for name, part in parts.items()}
    emit({"bench": "ptb_step_parts_ms", "config": args.parts_config, "output": args.text_output, "batch_size": 32,
          "precision": "bf16",
          "tokens_per_batch": tokens, "ms": ms, "tokens_per_s_whole_step": round(tokens / ms["whole_step"] * 1000)})
    # whole steps at the 10th, 50th and 90th percentile of length, and the line through them: a step's cost that
    # does not grow with its tokens (optimizer, clipping, the embedding's dense gradient) weighs on short batches
    by_length = []
    for q in (0.1, 0.5, 0.9):
        group = every[int(q * len(every)) - 5:int(q * len(every)) + 5]
        # the median ten are ``batches``, whose whole step was just timed
        ms_q = ms["whole_step"] if q == 0.5 else median_ms(step, group)
        by_length.append({"tokens": tokens_of(group), "ms": ms_q})
    (n0, t0), (n1, t1) = [(r["tokens"], r["ms"]) for r in (by_length[0], by_length[-1])]
    slope = (t1 - t0) / (n1 - n0)
    emit({"bench": "ptb_step_by_length_ms", "config": args.parts_config, "output": args.text_output,
          "steps": by_length, "fixed_ms": round(t0 - slope * n0, 1), "ms_per_100_tokens": round(100 * slope, 2)})


def vary(args) -> None:
    import vaekit

    if args.run is None:
        sys.exit("error: vary needs --run RUN (a trained text run, e.g. from bench_text.py clickbait)")
    model = vaekit.load(args.run, map_location=args.vary_device)
    texts = ["Scientists discover a new species of frog in the Amazon",
             "This is what happens when you leave your dog alone for a day",
             "Stocks fall as oil prices rise"]
    for text_ in texts:  # warm-up
        model.vary(text_, n=10, seed=0)
    times = []
    for i in range(args.calls):
        start = time.perf_counter()
        model.vary(texts[i % len(texts)], n=10, seed=i, temperature=args.temperature)  # returns strings: synchronised
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    emit({"bench": "vary_latency_ms", "run": str(args.run), "n": 10, "calls": args.calls,
          "median": round(statistics.median(times), 1), "p95": round(times[int(0.95 * len(times)) - 1], 1),
          "device": args.vary_device, "threads": torch.get_num_threads()})


def memory(args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        wall, _, peak = timed([*VAEKIT, "train", "text", "--data", str(SHARED / "ptb" / "ptb.train.txt"), "--val-data",
                               str(SHARED / "ptb" / "ptb.valid.txt"), "--pretokenized", "--no-lowercase",
                               "--vocab-size", str(PTB_WORDS["vocab_size"]), "--max-tokens", "100", "--out",
                               f"{tmp}/run", "--epochs", "1", "--max-minutes", str(args.text_minutes), "--quiet"])
        emit({"bench": "peak_rss_mb", "what": "vaekit train text on PTB (default preset, batch 32)",
              "wall_s": round(wall, 1), "peak_rss_mb": peak})
        sentences = (SHARED / "ptb" / "ptb.train.txt").read_text().splitlines()
        big = Path(tmp) / "million.txt"
        with big.open("w") as fh:
            for i in range(args.encode_items):
                fh.write(sentences[i % len(sentences)][:80] + "\n")
        wall, _, peak = timed([*VAEKIT, "encode", f"{tmp}/run", "--data", str(big), "--out", f"{tmp}/codes.npz",
                               "--quiet"])
        emit({"bench": "peak_rss_mb", "what": f"vaekit encode, {args.encode_items:,} short texts",
              "wall_s": round(wall, 1), "texts_per_s": round(args.encode_items / wall), "peak_rss_mb": peak})


def precision(args) -> None:
    """bf16 against fp32 on the same budget of steps: test NLL should agree within about 1 nat."""
    from vaekit import TrainConfig
    from vaekit.data.images import load_images
    from vaekit.data.tokenizer import TokenizerConfig
    from vaekit.images import evaluate_images, train_image
    from vaekit.texts import evaluate_texts, read_texts, train_text

    train, test = load_images(SHARED / "mnist", split="train"), load_images(SHARED / "mnist", split="test")
    ptb_test = read_texts(SHARED / "ptb" / "ptb.test.txt")
    # the default preset (latent 32): the seed preset's 2-D latent lands 50 nats apart from seed to seed in
    # either precision (151.8, 153.1, 204.9 in fp32 for seeds 0-2), which hides any precision effect
    for seed in range(0 if args.skip_mnist else args.seeds):
        for p in ("fp32", "bf16"):
            with tempfile.TemporaryDirectory() as tmp:
                start = time.perf_counter()
                run = train_image(train, Path(tmp) / "run", preset=args.image_preset, binarize="threshold",
                                  training=TrainConfig(epochs=args.image_epochs, batch_size=128, precision=p, seed=seed))
                minutes = (time.perf_counter() - start) / 60
                report = evaluate_images(run.model, test, iw_samples=100, binarize="threshold", precision="fp32")
            emit({"bench": "precision_mnist", "precision": p, "preset": args.image_preset, "seed": seed,
                  "epochs": args.image_epochs, "train_minutes": round(minutes, 2),
                  "test_iw_nll": round(report["iw_nll"], 2), "test_neg_elbo": round(report["neg_elbo"], 2)})
    if args.skip_ptb:
        return
    for p in ("fp32", "bf16"):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            run = train_text(SHARED / "ptb" / "ptb.train.txt", Path(tmp) / "run", max_tokens=100,
                             val_data=SHARED / "ptb" / "ptb.valid.txt",
                             tokenizer_config=TokenizerConfig(**PTB_WORDS),
                             model_overrides={**SENTENCE_VAE, "dropout": 0.3},
                             training=TrainConfig(epochs=args.ptb_epochs, batch_size=64, precision=p, seed=0,
                                                  grad_clip=5.0, kl_schedule="linear", kl_warmup_steps=1000))
            minutes = (time.perf_counter() - start) / 60
            report = evaluate_texts(run.model, ptb_test, iw_samples=20, precision="fp32")
        emit({"bench": "precision_ptb", "precision": p, "epochs": args.ptb_epochs, "steps": run.result.step,
              "train_minutes": round(minutes, 2), "test_iw_nll": round(report["iw_nll"], 2),
              "test_kl": round(report["kl"], 2), "perplexity": round(report["perplexity"], 1)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["image", "text", "text-parts", "vary", "memory", "precision", "all"])
    parser.add_argument("--ptb-epochs", type=int, default=1, help="precision: PTB epochs per precision")
    parser.add_argument("--image-epochs", type=int, default=5)
    parser.add_argument("--image-preset", default="default", help="precision: the MNIST preset")
    parser.add_argument("--seeds", type=int, default=1, help="precision: MNIST seeds per precision")
    parser.add_argument("--skip-ptb", action="store_true", help="precision: MNIST only")
    parser.add_argument("--skip-mnist", action="store_true", help="precision: PTB only")
    parser.add_argument("--text-configs", default="sentence_vae,sentence_vae_uni,vaekit_default",
                        help="text: sentence_vae (Sentence-VAE sizes, vaekit's bidirectional encoder), sentence_vae_uni "
                             "(the same with its one-directional encoder), vaekit_default")
    parser.add_argument("--text-batch-size", type=int, default=32)
    parser.add_argument("--text-minutes", type=float, default=3.0, help="training time per text configuration")
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--text-output", choices=["softmax", "adaptive"], default="softmax",
                        help="text, text-parts: the decoder's output layer (adaptive: Grave et al. 2017)")
    parser.add_argument("--parts-config", choices=["sentence_vae", "sentence_vae_uni"], default="sentence_vae",
                        help="text-parts: the Sentence-VAE sizes with vaekit's bidirectional encoder or its own "
                             "one-directional one")
    parser.add_argument("--text-rnn", choices=["gru", "lstm"], default="gru",
                        help="text: the encoder's and decoder's RNN (on CPUs PyTorch runs LSTMs on oneDNN's fused "
                             "kernel, GRUs step by step)")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--run", type=Path, default=None, help="text run for the vary latency")
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--vary-device", default="cpu", help="vary: where the model runs (cpu, cuda, mps)")
    parser.add_argument("--temperature", type=float, default=0.5)
    parser.add_argument("--encode-items", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5, help="text-parts: passes over its ten batches per part")
    args = parser.parse_args()
    if not SHARED.is_dir():
        sys.exit(f"error: {SHARED} is missing")
    emit({"bench": "machine", "cpu_threads": torch.get_num_threads(), "torch": torch.__version__,
          "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
          "args": {k: str(v) for k, v in vars(args).items()}})
    benches = {"image": image, "text": text, "text-parts": text_parts, "vary": vary, "memory": memory,
               "precision": precision}
    for what, bench in benches.items():
        if args.what in (what, "all") and not (what == "vary" and args.run is None and args.what == "all"):
            bench(args)


if __name__ == "__main__":
    main()
