"""Items a trained model reads for scoring, encoding and plotting: images or texts, each with an id and,
when the data has one, a label. Texts are streamed in batches, so encoding or scoring a large file never
holds it as Python strings; their ids and labels are collected as the batches go by.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .errors import VaekitError
from .models import modality_of

UNKNOWN_LIMIT = 0.5  # more unknown tokens than this means the data do not fit the model's vocabulary


def with_progress(batches, **bar_options) -> Iterator[tuple[Any, Any]]:
    """(bar, batch) for each of ``batches``, with a tqdm bar (``bar_options``) drawn only once the first batch
    has been read: a source that fails on its first read (a missing or empty text file, streamed) prints its
    one-line error alone."""
    from tqdm.auto import tqdm

    bar = None
    try:
        for batch in batches:
            if bar is None:
                bar = tqdm(**bar_options)
            yield bar, batch
    finally:
        if bar is not None:
            bar.close()


@dataclasses.dataclass
class Items:
    """One pass over the items of ``source`` as model inputs. After the pass, ``ids``, ``labels`` (a label
    name per item, or None) and, for texts, ``texts`` (only when ``keep_texts``) hold one entry per item."""

    kind: str  # "image" | "text"
    source: str
    _batches: Any
    count: int | None = None
    ids: list[str] = dataclasses.field(default_factory=list)
    labels: list[str] | None = None
    texts: list[str] | None = None

    def batches(self) -> Iterator[Any]:
        yield from self._batches(self)


def image_items(model, data, binarize: str | None, seed: int = 0, batch_size: int = 500,
                anomaly_key: str | None = None) -> Items:
    """Images of ``data`` (an ImageDataset) for ``model``; ids are file names or indices."""
    from .data.images import model_batches

    batches = model_batches(model, data, binarize, seed)
    ids = list(data.ids) if data.ids is not None else [str(i) for i in range(len(data))]
    labels = None
    if data.labels is not None:
        names = data.label_names
        labels = [names[c] if names is not None and c < len(names) else str(c) for c in data.labels.tolist()]
    if anomaly_key is not None:
        labels = _npz_key(data.source, anomaly_key, len(data))
    items = Items("image", data.source, lambda self: batches.eval_batches(batch_size), count=len(data), ids=ids,
                  labels=labels)
    return items


def _npz_key(source: str, key: str, n: int) -> list[str]:
    path = Path(source)
    if path.suffix != ".npz":
        raise VaekitError(f"--anomaly-label {key}: images read from {path.name} carry no named arrays; "
                          "use an .npz with that key, or --anomaly-class with class labels")
    with np.load(path, allow_pickle=False) as archive:
        if key not in archive.files:
            raise VaekitError(f"{path}: no array named {key!r} (it has {', '.join(archive.files)})")
        values = np.asarray(archive[key]).reshape(-1)
    if len(values) != n:
        raise VaekitError(f"{path}: array {key!r} has {len(values)} entries for {n} images")
    return [str(v) for v in values.tolist()]


def text_items(model, path: str | Path, reading=None, batch_size: int = 500,
               keep_texts: bool = False, limit: int | None = None) -> Items:
    """Texts of a file or folder, one item per record, read with ``reading`` (data.text.ReadOptions; None: the
    defaults) and streamed in batches of ``batch_size``."""
    from .data.text import ReadOptions, read_records

    src = (reading or ReadOptions()).at(path)
    with_labels = src.label_column is not None

    def generate(self: Items):
        chunk, seen = [], 0
        checked = False
        for record in read_records(src):
            text = " ".join(record.text.split())
            self.ids.append(record.id)
            if with_labels:
                if record.label is None:
                    raise VaekitError(f"{record.id}: no value in label column {src.label_column!r}")
                self.labels.append(record.label)
            if keep_texts:
                self.texts.append(text)
            chunk.append(text)
            seen += 1
            if len(chunk) == batch_size or (limit is not None and seen >= limit):
                batch = model.batch(chunk)
                if not checked:
                    check_vocabulary(model, batch, str(path))
                    checked = True
                yield batch
                chunk = []
            if limit is not None and seen >= limit:
                break
        if chunk:
            batch = model.batch(chunk)
            if not checked:
                check_vocabulary(model, batch, str(path))
            yield batch
        if seen == 0:
            raise VaekitError(f"{path}: no texts found")

    return Items("text", str(path), generate, labels=[] if with_labels else None, texts=[] if keep_texts else None)


def check_vocabulary(model, batch, where: str) -> None:
    """Data written in another vocabulary (another language, another tokenizer) cannot be scored fairly."""
    from .data.tokenizer import UNK_ID

    mask = batch.ids != 0
    real = int(mask.sum())
    unknown = int(((batch.ids == UNK_ID) & mask).sum())
    if real and unknown / real > UNKNOWN_LIMIT:
        raise VaekitError(f"{where}: {unknown / real:.0%} of the first texts' tokens are outside the model's "
                          f"vocabulary of {model.config.vocab_size}; is this the data the model was trained for?")


def model_items(model, data: Path, *, binarize: str | None = None, resize: str | None = None, split: str = "test",
                seed: int = 0, reading=None, keep_texts: bool = False, limit: int | None = None,
                anomaly_key: str | None = None) -> Items:
    """Images or texts of ``data``, whichever ``model`` reads."""
    if modality_of(model) == "text":
        return text_items(model, data, reading, keep_texts=keep_texts, limit=limit)
    from .data.images import load_images

    images = load_images(data, resize=resize, split=split)
    if limit is not None and len(images) > limit:
        images = images.subset(np.arange(limit))
    return image_items(model, images, binarize, seed, anomaly_key=anomaly_key)
