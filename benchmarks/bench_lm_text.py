"""Figures of the pretrained-LM text VAE (vaekit train text --backbone pretrained), printed as JSON lines. Nothing
here asserts a time.

    python benchmarks/bench_lm_text.py speed              # training tokens/s: vaekit's LMTextVAE step against a plain
                                                          # transformers + peft loop (same base, LoRA rank, batch, bf16)
    python benchmarks/bench_lm_text.py vary --run RUN     # vary latency for one headline, 5 variations: median, p95
    python benchmarks/bench_lm_text.py quality --run RUN  # variation report on 200 held-out headlines with a fluency
                                                          # column, beside the copy and prior baselines

The headlines are ../shared/data/clickbait-headlines (both files, shuffled with seed 0; the first 200 are held
out, as in bench_text.py). Fluency: each text's mean negative log-likelihood per token under the unmodified base
LM (nats), beside its input's; "within_1_nat" is the fraction of variations at most 1 nat per token worse.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import statistics
import time
from pathlib import Path

import torch

SHARED = Path(os.environ.get("VAEKIT_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


def headlines() -> tuple[list[str], list[str]]:
    """(held-out 200, the rest)."""
    folder = SHARED / "clickbait-headlines"
    texts = []
    for name in ("clickbait_data.gz", "non_clickbait_data.gz"):
        with gzip.open(folder / name, "rt", encoding="utf-8") as fh:
            texts += [line.strip() for line in fh if line.strip()]
    random.Random(0).shuffle(texts)
    return texts[:200], texts[200:]


def _time_steps(step, batches, warmup: int = 2) -> float:
    for batch in batches[:warmup]:
        step(batch)
    start = time.perf_counter()
    for batch in batches[warmup:]:
        step(batch)
    return time.perf_counter() - start


def speed(args) -> None:
    """Same batches of real headlines for both, bf16 autocast, rank-8 LoRA on q/v, Adam."""
    from peft import LoraConfig, get_peft_model

    from vaekit.models.lm_text import LMTextVAE, load_bases
    from vaekit.precision import autocast

    _, train = headlines()
    rng = random.Random(1)
    groups = [rng.sample(train, args.batch_size) for _ in range(args.steps + 2)]
    cpu = torch.device("cpu")

    torch.manual_seed(0)
    model = LMTextVAE.from_bases(load_bases(None, None), lora_rank=8, lora_alpha=16, max_tokens=32).train()
    batches = [model.batch(g) for g in groups]
    tokens = sum(int(b.lengths.sum()) + len(b) for b in batches[2:])
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], 1e-4)

    def vaekit_step(batch):
        with autocast("bf16", cpu):
            out = model.loss(batch, kl_weight=1.0, free_bits=0.5)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    ours = _time_steps(vaekit_step, batches)

    bases = load_bases(None, None)  # a fresh copy: LoRA wraps in place
    tokenizer = bases.lm_tokenizer
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    lm = get_peft_model(bases.lm, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj"]))
    plain_optimizer = torch.optim.Adam([p for p in lm.parameters() if p.requires_grad], 1e-4)
    encoded = [tokenizer([tokenizer.bos_token + t + tokenizer.eos_token for t in g], return_tensors="pt",
                         padding=True, truncation=True, max_length=34) for g in groups]

    def plain_step(enc):
        labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
        with autocast("bf16", cpu):
            loss = lm(**enc, labels=labels).loss
        loss.backward()
        plain_optimizer.step()
        plain_optimizer.zero_grad(set_to_none=True)

    theirs = _time_steps(plain_step, encoded)
    emit({"bench": "lm_text_train_speed", "batch_size": args.batch_size, "steps": args.steps, "tokens": tokens,
          "vaekit_tokens_per_s": round(tokens / ours, 1), "plain_peft_tokens_per_s": round(tokens / theirs, 1),
          "ratio": round(theirs / ours, 2),
          "note": "vaekit's step also runs the MiniLM encoder and the KL; both count the same real tokens"})


def vary_latency(args) -> None:
    import vaekit

    model = vaekit.load(args.run)
    held, _ = headlines()
    times = []
    for i in range(args.calls + 2):
        start = time.perf_counter()
        model.vary(held[i % len(held)], n=5, seed=i)
        times.append(time.perf_counter() - start)
    times = sorted(times[2:])
    emit({"bench": "lm_text_vary_latency", "calls": args.calls, "median_ms": round(1000 * statistics.median(times), 1),
          "p95_ms": round(1000 * times[int(0.95 * (len(times) - 1))], 1)})


@torch.no_grad()
def fluency(texts: list[str], lm, tokenizer) -> list[float]:
    """Mean NLL per token (nats) of each text under the base LM, its end token included."""
    out = []
    for text in texts:
        ids = tokenizer(tokenizer.bos_token + text + tokenizer.eos_token, return_tensors="pt").input_ids
        out.append(float(lm(ids, labels=ids).loss))
    return out


def quality(args) -> None:
    import vaekit
    from vaekit.backbones import load_decoder
    from vaekit.texts import variation_report

    model = vaekit.load(args.run)
    held, _ = headlines()
    held = held[:args.inputs]
    report = variation_report(model, held, n=5, temperature=args.temperature, strategy=args.strategy, top_p=args.top_p,
                              seed=0, progress=True)
    _, lm, tokenizer = load_decoder(None)
    ours = [model.vary(t, n=5, temperature=args.temperature, strategy=args.strategy, top_p=args.top_p, seed=i).texts
            for i, t in enumerate(held[:args.fluency_inputs])]
    base = fluency(held[:args.fluency_inputs], lm, tokenizer)
    flat = [(v, base[i]) for i, group in enumerate(ours) for v in group]
    scores = fluency([v for v, _ in flat], lm, tokenizer)
    emit({"bench": "lm_text_variations", **{k: v for k, v in report.items() if k != "examples"}})
    emit({"bench": "lm_text_fluency", "inputs": len(base), "input_nll_per_token": round(statistics.mean(base), 3),
          "variation_nll_per_token": round(statistics.mean(scores), 3),
          "within_1_nat": round(sum(s <= b + 1 for s, (_, b) in zip(scores, flat)) / max(1, len(flat)), 3)})
    emit({"bench": "lm_text_examples", "examples": [{"input": t, "variations": v}
                                                    for t, v in zip(held[:10], ours[:10])]})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["speed", "vary", "quality"])
    parser.add_argument("--run", type=Path, help="a run folder trained with --backbone pretrained (vary, quality)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10, help="speed: timed steps each")
    parser.add_argument("--calls", type=int, default=50, help="vary: timed calls")
    parser.add_argument("--inputs", type=int, default=200, help="quality: held-out headlines")
    parser.add_argument("--fluency-inputs", type=int, default=50, help="quality: headlines scored for fluency")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--strategy", default="sample")
    parser.add_argument("--top-p", type=float, default=0.9)
    args = parser.parse_args()
    if args.what != "speed" and args.run is None:
        parser.error(f"{args.what} needs --run")
    {"speed": speed, "vary": vary_latency, "quality": quality}[args.what](args)


if __name__ == "__main__":
    main()
