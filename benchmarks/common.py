"""What every benchmark script shares: where the shared data lives, the JSON-lines output with a machine header,
and the clickbait/news headlines split the text benchmarks hold out from (the first 200 after a seed-0 shuffle)."""
from __future__ import annotations

import gzip
import json
import os
import platform
import random
from pathlib import Path

SHARED = Path(os.environ.get("VAEKIT_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
_header_printed = False


def machine() -> dict:
    """The machine a figure was measured on: compare figures only between runs with the same header."""
    import torch

    import vaekit

    return {"bench": "machine", "cpu_threads": torch.get_num_threads(), "cpus": os.cpu_count(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "torch": torch.__version__, "python": platform.python_version(),
            "vaekit": getattr(vaekit, "__version__", None)}


def emit(record: dict) -> None:
    """One JSON line on stdout; the first one of a script is preceded by the machine header."""
    global _header_printed
    if not _header_printed:
        _header_printed = True
        if record.get("bench") != "machine":
            print(json.dumps(machine()), flush=True)
    print(json.dumps(record), flush=True)


def labelled_headlines() -> list[tuple[str, str]]:
    """(headline, "clickbait" | "news") for both files, whitespace normalised, shuffled with seed 0."""
    rows = []
    for name, label in (("clickbait_data.gz", "clickbait"), ("non_clickbait_data.gz", "news")):
        with gzip.open(SHARED / "clickbait-headlines" / name, "rt", encoding="utf-8") as fh:
            rows += [(" ".join(line.split()), label) for line in fh if line.strip()]
    random.Random(0).shuffle(rows)
    return rows


def headlines() -> tuple[list[str], list[str]]:
    """(the 200 held out, the rest) of labelled_headlines' texts."""
    texts = [text for text, _ in labelled_headlines()]
    return texts[:200], texts[200:]
