"""Anomaly scores from a trained VAE: items the model finds unlikely are anomalous (An & Cho 2015).

Four scores, in nats per item, higher = more anomalous:
- ``neg_elbo``: -ELBO = E_q[-log p(x|z)] + KL(q(z|x) || p(z)), averaged over k draws of z;
- ``iw_nll``: the importance-weighted bound on -log p(x) with k samples (Burda et al. 2016), tighter;
- ``rec``: the reconstruction term E_q[-log p(x|z)] alone (reconstruction error);
- ``kl``: the KL term KL(q(z|x) || p(z)) alone, the "rate" (Alemi et al. 2018): how many nats the encoder
  spends to describe x. It does not reward inputs for being simple the way the likelihood does (Nalisnick
  et al. 2019), and on MNIST one-class it ranks anomalies better than -ELBO (benchmarks/bench_anomaly.py).

A threshold is calibrated on held-out *normal* data at a target false-positive rate: the (1 - fpr)
quantile of their scores. It is stored as ``anomaly.json`` in the run folder; ``score`` then flags items.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from .config import atomic_write_text, read_json, write_json
from .errors import VaekitError
from .runs import CALIBRATION_NAME
from .items import Items

SCORES = ("neg_elbo", "iw_nll", "rec", "kl")
MIN_CALIBRATION_ITEMS = 50
TRUE_WORDS = {"1", "true", "yes", "y", "anomaly", "anomalous", "abnormal", "outlier"}
FALSE_WORDS = {"0", "false", "no", "n", "normal", "inlier"}


def compute_scores(model, items: Items, score: str = "neg_elbo", iw_samples: int = 10, seed: int = 0,
                   precision: str = "fp32", progress: bool = False) -> np.ndarray:
    """Per-item scores (n,) in the order of ``items``; fills ``items.ids`` (and labels) as a side effect."""
    if score not in SCORES:
        raise VaekitError(f"--score {score}: choose one of {', '.join(SCORES)}")
    return all_scores(model, items, iw_samples, seed, precision, progress)[score]


def all_scores(model, items: Items, iw_samples: int = 10, seed: int = 0, precision: str = "fp32",
               progress: bool = False) -> dict[str, np.ndarray]:
    """Every score of SCORES per item, from one pass (they share the k draws of z)."""
    from .evaluate import evaluate

    if iw_samples < 1:
        raise VaekitError(f"--iw-samples {iw_samples}: must be at least 1")
    report = evaluate(model, items.batches(), iw_samples=iw_samples, seed=seed, precision=precision,
                      progress=progress, total=items.count)
    return {name: report["per_item"][name] for name in SCORES}


def anomaly_flags(labels: list[str], anomaly_classes: tuple[str, ...] = (), where: str = "label") -> np.ndarray:
    """1 for anomalous items, 0 for normal ones. With ``anomaly_classes`` a label in that set is anomalous;
    otherwise labels must read as yes/no (1/0, true/false, anomaly/normal)."""
    if anomaly_classes:
        known = set(labels)
        missing = [c for c in anomaly_classes if c not in known]
        if missing:
            raise VaekitError(f"--anomaly-class {missing[0]}: no item has that {where}; seen: "
                              f"{', '.join(sorted(known)[:20])}")
        wanted = set(anomaly_classes)
        return np.array([label in wanted for label in labels], dtype=np.int64)
    flags = []
    for label in labels:
        word = str(label).strip().lower()
        if word in TRUE_WORDS:
            flags.append(1)
        elif word in FALSE_WORDS:
            flags.append(0)
        else:
            raise VaekitError(f"{where} value {label!r} is not yes/no (1/0, true/false, anomaly/normal); "
                              "name the anomalous values with --anomaly-class")
    return np.array(flags, dtype=np.int64)


def detection_metrics(scores: np.ndarray, flags: np.ndarray) -> dict:
    """AUROC and AUPRC (average precision) of ``scores`` for the anomalous items (``flags`` == 1)."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    positives = int(flags.sum())
    if positives == 0 or positives == len(flags):
        raise VaekitError("AUROC needs both normal and anomalous items; the labels mark "
                          f"{positives} of {len(flags)} as anomalous")
    return {"auroc": float(roc_auc_score(flags, scores)), "auprc": float(average_precision_score(flags, scores)),
            "anomalies": positives, "normals": int(len(flags) - positives),
            "auprc_base_rate": positives / len(flags)}


def calibrate(run_dir: str | Path, scores: np.ndarray, fpr: float, score: str, iw_samples: int, data: str,
              seed: int = 0) -> dict:
    """Store the threshold whose false-positive rate on these normal items is ``fpr``."""
    if not 0 < fpr < 1:
        raise VaekitError(f"--fpr {fpr}: must lie strictly between 0 and 1")
    n = len(scores)
    if n < MIN_CALIBRATION_ITEMS:
        raise VaekitError(f"{data}: {n} items are too few to calibrate; give at least {MIN_CALIBRATION_ITEMS} "
                          "held-out normal items")
    threshold = float(np.quantile(scores, 1 - fpr, method="higher"))
    counts, edges = np.histogram(scores, bins=min(50, max(10, n // 20)))
    record = {"score": score, "iw_samples": iw_samples, "fpr": fpr, "threshold": threshold,
              "observed_fpr": float((scores > threshold).mean()), "items": n, "data": data, "seed": seed,
              "normal_mean": float(scores.mean()), "normal_std": float(scores.std()),
              "histogram": {"counts": counts.tolist(), "edges": edges.tolist()},
              "resolution_note": (f"with {n} items the false-positive rate cannot be set finer than {1 / n:.4f}"
                                  if 1 / n > fpr else "")}
    write_json(Path(run_dir) / CALIBRATION_NAME, record)
    return record


def read_calibration(run_dir: str | Path) -> dict | None:
    path = Path(run_dir) / CALIBRATION_NAME
    return read_json(path) if path.is_file() else None


def write_scores_csv(path: str | Path, ids: list[str], scores: np.ndarray, score: str,
                     labels: list[str] | None = None, flags: np.ndarray | None = None,
                     flagged: np.ndarray | None = None) -> Path:
    """id, score[, label][, anomaly][, flagged], one row per item, written atomically."""
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    header = ["id", score] + (["label"] if labels is not None else []) + (["anomaly"] if flags is not None else []) \
        + (["flagged"] if flagged is not None else [])
    writer.writerow(header)
    for i, (item_id, value) in enumerate(zip(ids, scores.tolist())):
        row = [item_id, f"{value:.4f}"]
        if labels is not None:
            row.append(labels[i])
        if flags is not None:
            row.append(int(flags[i]))
        if flagged is not None:
            row.append(int(flagged[i]))
        writer.writerow(row)
    path = Path(path)
    if path.suffix.lower() != ".csv":
        raise VaekitError(f"--out {path}: scores are written as .csv")
    atomic_write_text(path, buffer.getvalue())
    return path


def plot_scores(scores: np.ndarray, flags: np.ndarray | None, path: str | Path, score: str,
                threshold: float | None = None, metrics: dict | None = None) -> Path:
    """Score histograms, normal vs anomalous (densities, so unequal counts compare), with the calibrated
    threshold, and the ROC curve beside them when labels are known."""
    from .viz import _pyplot, save_figure

    plt = _pyplot()
    ncols = 2 if flags is not None else 1
    fig, axes = plt.subplots(1, ncols, figsize=(6.5 * ncols, 4.5), squeeze=False)
    ax = axes[0, 0]
    finite = scores[np.isfinite(scores)]
    lo, hi = np.percentile(finite, [0.5, 99.5]) if len(finite) else (0, 1)
    bins = np.linspace(lo, hi if hi > lo else lo + 1, 60)
    if flags is None:
        ax.hist(np.clip(scores, lo, hi), bins=bins, color="tab:blue", alpha=0.8, label="all items")
    else:
        ax.hist(np.clip(scores[flags == 0], lo, hi), bins=bins, density=True, alpha=0.6, color="tab:blue",
                label=f"normal ({int((flags == 0).sum())})")
        ax.hist(np.clip(scores[flags == 1], lo, hi), bins=bins, density=True, alpha=0.6, color="tab:red",
                label=f"anomalous ({int(flags.sum())})")
    if threshold is not None:
        ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.1f}")
    ax.set_xlabel(f"{score} (nats; higher = more anomalous)")
    ax.set_ylabel("density" if flags is not None else "items")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    if flags is not None:
        from sklearn.metrics import roc_curve

        fpr, tpr, _ = roc_curve(flags, scores)
        roc = axes[0, 1]
        roc.plot(fpr, tpr, color="tab:red")
        roc.plot([0, 1], [0, 1], color="grey", linestyle=":")
        roc.set_xlabel("false-positive rate")
        roc.set_ylabel("true-positive rate")
        title = "ROC"
        if metrics:
            title += f": AUROC {metrics['auroc']:.3f}, AUPRC {metrics['auprc']:.3f}"
        roc.set_title(title)
        roc.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)


def summary_line(name: str, value) -> str:
    if isinstance(value, float):
        return f"{name:>16}: {value:.4f}" if math.isfinite(value) else f"{name:>16}: nan"
    return f"{name:>16}: {value}"
