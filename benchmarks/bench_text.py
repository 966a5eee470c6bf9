"""Text VAE figures on ../shared/data, printed as JSON. Nothing here asserts a time.

    python benchmarks/bench_text.py ptb        # PTB: tokens/s, then test IW-NLL, KL, active units (<= 30 min training)
    python benchmarks/bench_text.py clickbait  # headlines: variation report on 200 held-out headlines, 5 variations each
    python benchmarks/bench_text.py clickbait --reuse runs/bench/clickbait --strategy beam --temperature 0.8
                                               # the same report for other decoding settings, without training again
    python benchmarks/bench_text.py ptb --reuse runs/bench/ptb --iw-samples 500
                                               # the test figures of a trained PTB model with another k
    python benchmarks/bench_text.py ptb --rnn lstm --batch-size 128 --lr 1.5e-3 --kl-warmup-steps 2500 \
        --lr-schedule wsd --output adaptive --free-bits 0.2 --dropout 0.4
                                               # the README's best PTB figure (test IW-NLL 102.9 at k=500)

PTB follows the text-VAE literature (Bowman et al. 2016; He et al. 2019): Mikolov's preprocessed split,
10k-word vocabulary, one sentence per line, NLL summed over each sentence's words and its <eos>, importance-
weighted with k samples (Burda et al. 2016; --iw-samples, default 100; He et al. 2019 use k=500, a tighter bound).
Tokens/s counts words + <eos> per second of optimisation.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from vaekit import TrainConfig
from vaekit.conditions import DenseCondition
from vaekit.data.tokenizer import TokenizerConfig
from vaekit.texts import evaluate_texts, read_texts, train_text, variation_report

from common import SHARED, emit, headlines


def rounded(report: dict) -> dict:
    return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in report.items() if k not in ("per_item", "data")}


def tokens_per_second(run) -> float:
    stats = run.stats["train"]
    return run.result.items_per_second * (stats["tokens"] + stats["items"]) / stats["items"]


def trained_or_reused(args, bench: str, train):
    """The model ``train()`` trains, or with --reuse the one an earlier run of this benchmark trained."""
    if args.reuse is None:
        return train()
    from vaekit import load

    model = load(args.reuse)
    emit({"bench": f"{bench}_reuse", "run": str(args.reuse)})
    return model


def ptb(args) -> None:
    ptb_dir = SHARED / "ptb"
    model = trained_or_reused(args, "ptb", lambda: train_ptb(args, ptb_dir))  # --reuse: another --iw-samples, say
    test = read_texts(ptb_dir / "ptb.test.txt")
    report = evaluate_texts(model, test, iw_samples=args.iw_samples, seed=0, precision=args.eval_precision)
    emit({"bench": "ptb_test", "eval_precision": args.eval_precision, **rounded(report)})


def train_ptb(args, ptb_dir: Path):
    overrides = dict(embedding_dim=args.embedding_dim, encoder_hidden=(args.hidden,), decoder_hidden=args.decoder_hidden,
                     latent_dim=args.latent_dim, dropout=args.dropout, word_dropout=args.word_dropout, rnn=args.rnn,
                     tie_embeddings=args.tie_embeddings, output=args.output)
    training = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, grad_clip=5.0, precision="bf16",
                           kl_schedule=args.kl_schedule, kl_warmup_steps=args.kl_warmup_steps, free_bits=args.free_bits,
                           max_minutes=args.minutes, lr_decay=args.lr_decay, lr_patience=1,
                           lr_schedule=args.lr_schedule)
    start = time.perf_counter()
    run = train_text(ptb_dir / "ptb.train.txt", args.out / "ptb", val_data=ptb_dir / "ptb.valid.txt", overwrite=True,
                     tokenizer_config=TokenizerConfig(vocab_size=10004, lowercase=False, pretokenized=True),
                     model_overrides=overrides, training=training, max_tokens=100, progress=args.progress)
    train_minutes = (time.perf_counter() - start) / 60
    emit({"bench": "ptb_train", "status": run.result.status, "epochs": run.result.epochs, "steps": run.result.step,
          "train_minutes": round(train_minutes, 2), "sentences_per_s": round(run.result.items_per_second, 1),
          "tokens_per_s": round(tokens_per_second(run)), "batch_size": args.batch_size, "model": overrides,
          "kl_schedule": args.kl_schedule, "free_bits": args.free_bits, "vocab_size": run.model.config.vocab_size})
    return run.model


def clickbait(args) -> None:
    held_out, train = headlines()
    model = trained_or_reused(args, "clickbait", lambda: train_clickbait(args, train))  # --reuse: other decoding
    nll = evaluate_texts(model, held_out, iw_samples=args.iw_samples, seed=0, precision=args.eval_precision)
    emit({"bench": "clickbait_heldout_nll", **rounded(nll)})
    decoding = dict(n=5, temperature=args.temperature, top_p=args.top_p, strategy=args.strategy, seed=0)
    report = variation_report(model, held_out, **decoding)
    emit({"bench": "clickbait_variations", **{k: v for k, v in report.items() if k != "examples"}})
    emit({"bench": "clickbait_examples", "examples": report["examples"]})
    if args.min_similarity is not None:  # vary --min-similarity: ranked by the encoder that scores the report
        report = variation_report(model, held_out, **decoding, min_similarity=args.min_similarity)
        emit({"bench": "clickbait_variations_min_similarity",
              **{k: v for k, v in report.items() if k not in ("examples", "systems")},
              "vaekit": report["systems"]["vaekit"], "examples": report["examples"]})


def train_clickbait(args, train: list[str]):
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "headlines.txt"
        corpus.write_text("\n".join(train) + "\n", encoding="utf-8")
        overrides = dict(embedding_dim=args.embedding_dim, encoder_hidden=(args.hidden,), decoder_hidden=args.decoder_hidden,
                         latent_dim=args.latent_dim, dropout=args.dropout, word_dropout=args.word_dropout, rnn=args.rnn,
                         tie_embeddings=args.tie_embeddings, output=args.output)
        training = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, grad_clip=5.0, precision="bf16",
                               kl_schedule=args.kl_schedule, kl_warmup_steps=args.kl_warmup_steps,
                               free_bits=args.free_bits, max_minutes=args.minutes, beta=args.beta,
                               lr_schedule=args.lr_schedule)
        condition = None
        if args.condition_embedding == "sentence":
            condition = DenseCondition("sentence")
        elif args.condition_embedding == "word-vectors":
            condition = DenseCondition("word-vectors", train=True)  # Word2Vec fitted on the training part
        run = train_text(corpus, args.out / "clickbait", overwrite=True, model_overrides=overrides, training=training,
                         max_tokens=40, progress=args.progress, condition=condition,
                         tokenizer_config=TokenizerConfig(vocab_size=args.vocab_size, lowercase=True))
    emit({"bench": "clickbait_train", "status": run.result.status, "epochs": run.result.epochs,
          "condition_embedding": args.condition_embedding,
          "tokens_per_s": round(tokens_per_second(run)), "train_items": run.stats["train"]["items"], "model": overrides})
    return run.model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["ptb", "clickbait"])
    parser.add_argument("--minutes", type=float, default=30.0, help="training time budget")
    parser.add_argument("--epochs", type=int, default=100, help="upper bound; the time budget usually ends training")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--rnn", default="gru")
    parser.add_argument("--embedding-dim", type=int, default=256)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--decoder-hidden", type=int, default=512)
    parser.add_argument("--latent-dim", type=int, default=32)
    parser.add_argument("--dropout", type=float, default=0.3)
    parser.add_argument("--word-dropout", type=float, default=0.0)
    parser.add_argument("--kl-schedule", default="linear")
    parser.add_argument("--kl-warmup-steps", type=int, default=5000)
    parser.add_argument("--free-bits", type=float, default=0.0)
    parser.add_argument("--beta", type=float, default=1.0, help="clickbait: final KL weight")
    parser.add_argument("--vocab-size", type=int, default=20000, help="clickbait: word vocabulary")
    parser.add_argument("--iw-samples", type=int, default=100,
                        help="importance samples for the test NLL (He et al. 2019 use 500 on PTB; the bound tightens "
                             "as k grows)")
    parser.add_argument("--eval-precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--condition-embedding", choices=["none", "sentence", "word-vectors"], default="none",
                        help="clickbait: condition the decoder on each headline's own embedding (vaekit train text "
                             "--condition-embedding); vary then keeps the input's embedding and varies z")
    parser.add_argument("--lr-decay", type=float, default=1.0,
                        help="ptb: multiply the learning rate by this when validation stops improving")
    parser.add_argument("--lr-schedule", choices=["constant", "linear", "cosine", "wsd"], default="constant",
                        help="anneal the learning rate to 0 over --minutes (or the epochs)")
    parser.add_argument("--min-similarity", type=float, default=None,
                        help="clickbait: also report vary's similarity post-filter (vaekit vary --min-similarity)")
    parser.add_argument("--output", choices=["softmax", "adaptive"], default="softmax",
                        help="the decoder's output layer: full softmax, or adaptive softmax (Grave et al. 2017)")
    parser.add_argument("--tie-embeddings", action="store_true", help="tie the output layer to the embeddings")
    parser.add_argument("--top-p", type=float, default=0.9, help="clickbait: vary's nucleus")
    parser.add_argument("--temperature", type=float, default=1.0, help="vary's spread around the posterior")
    parser.add_argument("--strategy", choices=["sample", "greedy", "beam"], default="sample",
                        help="clickbait: vary's decoding")
    parser.add_argument("--reuse", type=Path, default=None,
                        help="skip training and report on this run folder (OUT/ptb or OUT/clickbait of an earlier run)")
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("runs/bench"))
    args = parser.parse_args()
    if not SHARED.is_dir():
        sys.exit(f"error: {SHARED} is missing")
    emit({"bench": "machine", "cpu_threads": torch.get_num_threads(), "torch": torch.__version__, "args": {
        k: str(v) for k, v in vars(args).items()}})
    {"ptb": ptb, "clickbait": clickbait}[args.what](args)


if __name__ == "__main__":
    main()
