"""Run monitoring: metrics.jsonl, TensorBoard event files and plots/curves.png, all inside the run folder."""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from . import viz
from .config import atomic_write_text
from .runs import METRICS_NAME, PLOTS_DIR, SAMPLES_NAME, TENSORBOARD_DIR

log = logging.getLogger(__name__)

# plots/curves.png is redrawn at most this often during training (and always once at its end): drawing it takes
# matplotlib about 0.4 s, which after every epoch was 3% of a 5-epoch MNIST run; TensorBoard shows the curves live
CURVES_EVERY_S = 60.0


def read_metrics(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / METRICS_NAME
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut short by a crash
            continue
    return rows


class Monitor:
    """Writes what training reports. On resume, rows and TensorBoard events after ``resume_step`` (from a
    run that went on past its last checkpoint) are dropped so the history stays consistent."""

    def __init__(self, run_dir: str | Path, resume_step: int | None = None, tensorboard: bool = True,
                 metrics: bool = True):
        self.run_dir = Path(run_dir)
        self.metrics_path = self.run_dir / METRICS_NAME if metrics else None
        (self.run_dir / PLOTS_DIR).mkdir(parents=True, exist_ok=True)
        if self.metrics_path is None:
            self.rows = []
        elif resume_step is None:
            self.rows: list[dict] = []
            atomic_write_text(self.metrics_path, "")
        else:
            self.rows = [r for r in read_metrics(self.run_dir) if r.get("step", 0) <= resume_step]
            atomic_write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in self.rows))
        self._curves_drawn: tuple[float, int] | None = None  # when, and with how many rows
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.run_dir / TENSORBOARD_DIR), purge_step=resume_step)

    def log(self, split: str, step: int, epoch: int, metrics: dict[str, float]) -> None:
        row = {"split": split, "step": step, "epoch": epoch, **metrics}
        self.rows.append(row)
        if self.metrics_path is not None:
            with self.metrics_path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(row) + "\n")
        if self.writer is not None:
            for key, value in metrics.items():
                if isinstance(value, (int, float)):
                    self.writer.add_scalar(f"{split}/{key}", value, step)

    def image(self, tag: str, picture: np.ndarray, step: int, save_as: str | None = None) -> None:
        """A uint8 (H, W, 3) picture to TensorBoard and, with ``save_as``, to plots/."""
        if self.writer is not None:
            self.writer.add_image(tag, picture, step, dataformats="HWC")
        if save_as:
            viz.save_png(picture, self.run_dir / PLOTS_DIR / save_as)

    def text(self, tag: str, text: str, step: int, keep: bool = False) -> None:
        """Text to TensorBoard and, with ``keep``, appended to the run's samples.txt."""
        if self.writer is not None:
            self.writer.add_text(tag, text.replace("\n", "  \n"), step)  # markdown: keep the line breaks
        if keep:
            with open(self.run_dir / SAMPLES_NAME, "a", encoding="utf-8") as fh:
                fh.write(text + "\n\n")

    def plot_curves(self, final: bool = False) -> None:
        """Draw plots/curves.png: the first time, then at most every CURVES_EVERY_S seconds, and at the end
        (``final``) unless nothing was logged since the last drawing."""
        now = time.perf_counter()
        if self._curves_drawn is not None:
            when, rows = self._curves_drawn
            if rows == len(self.rows) or (not final and now - when < CURVES_EVERY_S):
                return
        viz.plot_curves(self.rows, self.run_dir / PLOTS_DIR / "curves.png")
        self._curves_drawn = (time.perf_counter(), len(self.rows))

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
