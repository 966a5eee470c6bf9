"""Text corpora: read records from .txt, folders of .txt, .csv, .jsonl (each optionally .gz), split long
documents into units, and stream token ids into a numpy file so a large corpus never sits in memory as
Python strings.

Shape letters: b batch, t time (tokens).
"""
from __future__ import annotations

import codecs
import csv
import dataclasses
import gzip
import io
import json
import logging
import re
import sys
from pathlib import Path
from typing import Iterator, Literal

import numpy as np
import torch

from ..errors import VaekitError

log = logging.getLogger(__name__)

Unit = Literal["sentence", "paragraph", "document"]
DEFAULT_TEXT_COLUMNS = ("text", "content")


@dataclasses.dataclass
class TextRecord:
    text: str
    id: str
    label: str | None = None
    title: str | None = None
    tags: tuple[str, ...] | None = None
    condition: str | None = None  # text whose embedding conditions the model (--condition-column)


def parse_tags(value) -> tuple[str, ...]:
    """Tags from a comma-separated string or a JSON list: stripped, empty ones dropped, order kept."""
    items = value if isinstance(value, (list, tuple)) else str(value or "").split(",")
    return tuple(dict.fromkeys(str(t).strip() for t in items if str(t).strip()))


@dataclasses.dataclass(frozen=True, kw_only=True)
class ReadOptions:
    """How to read a corpus file's records: the CSV/JSONL columns that hold the text, a title put before it, a label,
    tags and a condition text, and the file's encoding. ``at(path)`` gives the TextSource that reads that file."""

    text_column: str | None = None
    title_column: str | None = None
    label_column: str | None = None
    encoding: str = "utf-8"
    tags_column: str | None = None
    condition_column: str | None = None

    def at(self, path: str | Path) -> "TextSource":
        return TextSource(str(path), **{f.name: getattr(self, f.name) for f in dataclasses.fields(ReadOptions)})


@dataclasses.dataclass(frozen=True)
class TextSource(ReadOptions):
    """How to read a corpus: the path and the reading options, recorded in the run's config."""

    path: str


def _kind(path: Path) -> tuple[str, bool]:
    name = path.name.lower()
    gz = name.endswith(".gz")
    if gz:
        name = name[:-3]
    for suffix in (".txt", ".csv", ".jsonl", ".json"):
        if name.endswith(suffix):
            return suffix.lstrip("."), gz
    return "", gz


def _bad_byte_offset(path: Path, encoding: str, gz: bool) -> tuple[int, int]:
    """(byte offset, line number) of the first byte that does not decode, counted in the (decompressed) file."""
    decoder = codecs.getincrementaldecoder(encoding)()
    opener = gzip.open if gz else open
    offset, line = 0, 1
    with opener(path, "rb") as fh:
        while chunk := fh.read(1 << 16):
            for i in range(len(chunk)):
                try:
                    text = decoder.decode(chunk[i:i + 1])
                except UnicodeDecodeError as exc:
                    # exc.object holds the bytes buffered since the last complete character, ending at byte i
                    return offset + i + 1 - len(exc.object) + exc.start, line
                line += text.count("\n")
            offset += len(chunk)
    return offset, line


def _open_text(path: Path, encoding: str, gz: bool) -> io.TextIOBase:
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise VaekitError(f"--encoding {encoding!r}: unknown encoding") from None
    raw = gzip.open(path, "rb") if gz else open(path, "rb")
    return io.TextIOWrapper(raw, encoding=encoding, errors="strict", newline="")


def _guard(path: Path, encoding: str, gz: bool, records: Iterator[TextRecord]) -> Iterator[TextRecord]:
    """Turn decoding errors into one line naming the file, the byte offset and --encoding; a NUL byte (a binary or
    corrupt file: it would become a word of the vocabulary) into one naming the record."""
    try:
        for record in records:
            if any("\x00" in field for field in (record.text, record.label, record.title, record.condition) if field):
                raise VaekitError(f"{path}: {record.id} holds a NUL byte (\\x00): a binary or damaged file? "
                                  "remove it and train again")
            yield record
    except UnicodeDecodeError:
        offset, line = _bad_byte_offset(path, encoding, gz)
        raise VaekitError(f"{path}: byte offset {offset} (line {line}) is not valid {encoding}; "
                          "pass --encoding (for example latin-1)") from None
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise VaekitError(f"{path}: cannot be read ({exc})") from None


def _read_lines(path: Path, src: TextSource, gz: bool) -> Iterator[TextRecord]:
    with _open_text(path, src.encoding, gz) as fh:
        for number, line in enumerate(fh, start=1):
            line = line.strip()
            if line:
                yield TextRecord(line, f"{path.name}:{number}")


def _pick_column(columns: list[str], wanted: str | None, option: str, path: Path, default: tuple[str, ...] = ()) -> str | None:
    if wanted is not None:
        if wanted not in columns:
            raise VaekitError(f"{path}: no column {wanted!r} for {option}; the columns are {', '.join(columns) or 'none'}")
        return wanted
    for name in default:
        if name in columns:
            return name
    if default:
        raise VaekitError(f"{path}: no 'text' or 'content' column; pass {option} (the columns are {', '.join(columns) or 'none'})")
    return None


def _read_csv(path: Path, src: TextSource, gz: bool) -> Iterator[TextRecord]:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # blog posts can be long fields
    with _open_text(path, src.encoding, gz) as fh:
        reader = csv.DictReader(fh)  # newline="" above: quoted multi-line fields are one record
        columns = reader.fieldnames or []
        text_col = _pick_column(columns, src.text_column, "--text-column", path, DEFAULT_TEXT_COLUMNS)
        title_col = _pick_column(columns, src.title_column, "--title-column", path)
        label_col = _pick_column(columns, src.label_column, "--label-column", path)
        tags_col = _pick_column(columns, src.tags_column, "--tags-column", path)
        cond_col = _pick_column(columns, src.condition_column, "--condition-column", path)
        id_col = next((c for c in ("id", "post_id") if c in columns), None)
        for row in reader:
            text = (row.get(text_col) or "").strip()
            if text:
                yield TextRecord(text, f"{path.name}:{row[id_col]}" if id_col else f"{path.name}:{reader.line_num}",
                                 row.get(label_col) if label_col else None, row.get(title_col) if title_col else None,
                                 parse_tags(row.get(tags_col)) if tags_col else None,
                                 (row.get(cond_col) or "") if cond_col else None)


def _read_jsonl(path: Path, src: TextSource, gz: bool) -> Iterator[TextRecord]:
    with _open_text(path, src.encoding, gz) as fh:
        text_col = None
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise VaekitError(f"{path}: line {number} is not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise VaekitError(f"{path}: line {number} is not a JSON object")
            if text_col is None:
                text_col = _pick_column(list(row), src.text_column, "--text-column", path, DEFAULT_TEXT_COLUMNS)
                for option, column in (("--title-column", src.title_column), ("--label-column", src.label_column),
                                       ("--tags-column", src.tags_column), ("--condition-column", src.condition_column)):
                    _pick_column(list(row), column, option, path)
            text = row.get(text_col)
            if not isinstance(text, str):
                raise VaekitError(f"{path}: line {number} has no text under {text_col!r}")
            if text.strip():
                label = row.get(src.label_column) if src.label_column else None
                yield TextRecord(text.strip(), f"{path.name}:{row.get('id', number)}",
                                 None if label is None else str(label),
                                 row.get(src.title_column) if src.title_column else None,
                                 parse_tags(row.get(src.tags_column)) if src.tags_column else None,
                                 str(row.get(src.condition_column) or "") if src.condition_column else None)


def _read_file(path: Path, src: TextSource) -> Iterator[TextRecord]:
    kind, gz = _kind(path)
    # any other file (.cor, .tok, no suffix...) is read as plain text, one text per line
    reader = {"csv": _read_csv, "jsonl": _read_jsonl, "json": _read_jsonl}.get(kind, _read_lines)
    yield from _guard(path, src.encoding, gz, reader(path, src, gz))


def _read_folder(root: Path, src: TextSource) -> Iterator[TextRecord]:
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name.lower().endswith((".txt", ".txt.gz")))
    if not files:
        raise VaekitError(f"{root}: no .txt files found (looked in all sub-folders)")
    for path in files:
        _, gz = _kind(path)

        def whole(path=path, gz=gz):
            with _open_text(path, src.encoding, gz) as fh:
                yield TextRecord(fh.read().strip(), str(path.relative_to(root)))

        for record in _guard(path, src.encoding, gz, whole()):
            if record.text:
                yield record


def read_records(src: TextSource) -> Iterator[TextRecord]:
    """Stream the records of a corpus. A .txt file is one text per line; a folder holds one document per
    .txt file, read recursively."""
    path = Path(src.path)
    if not path.exists():
        raise VaekitError(f"{path}: no such file or folder")
    records = _read_folder(path, src) if path.is_dir() else _read_file(path, src)
    empty = True
    for record in records:
        empty = False
        yield record
    if empty:
        raise VaekitError(f"{path}: holds no text")


# a sentence ends at . ! or ?, perhaps followed by closing quotes or brackets, then space and a capital or digit;
# the cut is made in that space. Abbreviations such as "Dr." are split too: a regex cannot tell them apart.
SENTENCE_END = re.compile(r"[.!?][\"'”’)\]]*(\s+)(?=[\"'“‘(\[]?[A-Z0-9])")
PARAGRAPH_BREAK = re.compile(r"\n\s*\n")


def _sentences(paragraph: str) -> list[str]:
    pieces, start = [], 0
    for match in SENTENCE_END.finditer(paragraph):
        pieces.append(paragraph[start:match.start(1)])
        start = match.end(1)
    return pieces + [paragraph[start:]]


def split_units(text: str, unit: Unit) -> list[str]:
    """Split a document into sentences or paragraphs (whitespace inside each is collapsed)."""
    if unit == "document":
        parts = [text]
    elif unit == "paragraph":
        parts = PARAGRAPH_BREAK.split(text)
    else:
        parts = [s for p in PARAGRAPH_BREAK.split(text) for s in _sentences(p)]
    return [" ".join(p.split()) for p in parts if p.strip()]


def corpus_units(src: TextSource, unit: Unit, max_tokens: int, count_tokens) -> Iterator[tuple[TextRecord, str]]:
    """(record, unit text) pairs: a record longer than ``max_tokens`` tokens is split into units; a single
    line that is too long stays whole (it is truncated when tokenized)."""
    for record in read_records(src):
        text = " ".join(record.text.split())
        if unit != "document" and count_tokens(text) > max_tokens:
            for part in split_units(record.text, unit):
                yield record, part
        else:
            yield record, text


# --- token id files ----------------------------------------------------------------------------
class TokenFile:
    """A flat uint32 array of token ids plus (n + 1) offsets, on disk; item i is ids[offsets[i]:offsets[i+1]]."""

    def __init__(self, stem: Path):
        self.stem = stem
        self.ids = np.load(f"{stem}.ids.npy", mmap_mode="r")
        self.offsets = np.load(f"{stem}.offsets.npy")
        labels_path = Path(f"{stem}.labels.npy")
        self.labels = np.load(labels_path) if labels_path.exists() else None
        tags_path = Path(f"{stem}.tags.npy")
        self.tags = np.load(tags_path) if tags_path.exists() else None  # (n, T) uint8 multi-hot
        cond_path = Path(f"{stem}.cond.npy")
        self.cond = np.load(cond_path, mmap_mode="r") if cond_path.exists() else None  # (n, E) float32

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def __getitem__(self, i: int) -> np.ndarray:
        return np.asarray(self.ids[self.offsets[i]:self.offsets[i + 1]])


class TokenFileWriter:
    """Appends token id sequences to ``stem.ids.npy`` without holding the corpus in memory."""

    def __init__(self, stem: Path):
        self.stem = stem
        self.raw_path = Path(f"{stem}.ids.raw")
        self.fh = open(self.raw_path, "wb")
        self.offsets = [0]
        self.labels: list[int] = []
        self.tags: list[list[int]] = []
        self.num_tags = 0
        self.cond: list[np.ndarray] = []  # condition vectors, added a chunk at a time (add_conditions)

    def add(self, ids: list[int], label: int | None = None, tags: list[int] | None = None) -> None:
        self.fh.write(np.asarray(ids, dtype=np.uint32).tobytes())
        self.offsets.append(self.offsets[-1] + len(ids))
        if label is not None:
            self.labels.append(label)
        if tags is not None:
            self.tags.append(tags)

    def close(self) -> None:
        self.fh.close()
        total = self.offsets[-1]
        ids = np.lib.format.open_memmap(f"{self.stem}.ids.npy", mode="w+", dtype=np.uint32, shape=(total,))
        raw = np.memmap(self.raw_path, dtype=np.uint32, mode="r", shape=(total,)) if total else np.zeros(0, np.uint32)
        for start in range(0, total, 1 << 24):  # copy in 64 MB pieces
            ids[start:start + (1 << 24)] = raw[start:start + (1 << 24)]
        ids.flush()
        del ids, raw
        self.raw_path.unlink()
        np.save(f"{self.stem}.offsets.npy", np.asarray(self.offsets, dtype=np.int64))
        if self.labels and len(self.labels) == len(self.offsets) - 1:
            np.save(f"{self.stem}.labels.npy", np.asarray(self.labels, dtype=np.int64))
        if self.cond:
            np.save(f"{self.stem}.cond.npy", np.concatenate(self.cond).astype(np.float32))
        if self.num_tags and len(self.tags) == len(self.offsets) - 1:
            hot = np.zeros((len(self.tags), self.num_tags), dtype=np.uint8)
            for row, indices in enumerate(self.tags):
                hot[row, indices] = 1
            np.save(f"{self.stem}.tags.npy", hot)


@dataclasses.dataclass
class TextBatch:
    """Right-padded token ids (b, t) with their lengths (b,). Ids exclude bos and eos."""

    ids: torch.Tensor
    lengths: torch.Tensor
    labels: torch.Tensor | None = None  # (b,) label indices
    tags: torch.Tensor | None = None  # (b, T) multi-hot, float
    cond: torch.Tensor | None = None  # (b, E) condition embeddings, float

    def __len__(self) -> int:
        return self.ids.shape[0]

    def __getitem__(self, index) -> "TextBatch":
        lengths = self.lengths[index]
        t = int(lengths.max()) if len(lengths) else 0
        return TextBatch(self.ids[index][:, :t], lengths, None if self.labels is None else self.labels[index],
                         None if self.tags is None else self.tags[index],
                         None if self.cond is None else self.cond[index])

    def repeat(self, k: int) -> "TextBatch":
        """The batch k times over, (k * b, t), item-major within each copy."""
        return TextBatch(self.ids.repeat(k, 1), self.lengths.repeat(k),
                         None if self.labels is None else self.labels.repeat(k),
                         None if self.tags is None else self.tags.repeat(k, 1),
                         None if self.cond is None else self.cond.repeat(k, 1))


def collate(sequences: list[np.ndarray], pad_id: int = 0, labels: list[int] | None = None,
            tags: np.ndarray | None = None, cond: np.ndarray | None = None) -> TextBatch:
    """A padded batch, built on the CPU (the Trainer and model.batch move it to the model's device)."""
    lengths = torch.tensor([len(s) for s in sequences], dtype=torch.long, device="cpu")
    ids = torch.full((len(sequences), max(1, int(lengths.max()))), pad_id, dtype=torch.long, device="cpu")
    for i, seq in enumerate(sequences):
        ids[i, :len(seq)] = torch.from_numpy(seq.astype(np.int64))
    return TextBatch(ids, lengths, None if labels is None else torch.tensor(labels, dtype=torch.long, device="cpu"),
                     None if tags is None else torch.from_numpy(np.asarray(tags, dtype=np.float32)),
                     None if cond is None else torch.from_numpy(np.asarray(cond, dtype=np.float32)))


class TextBatches:
    """Batches for the Trainer, bucketed by length so that padding stays small: shuffle, cut into pools
    of 50 batches, sort each pool by length, cut into batches, shuffle the batches."""

    POOL = 50

    def __init__(self, tokens: TokenFile, pad_id: int = 0):
        self.tokens = tokens
        self.pad_id = pad_id
        self.lengths = tokens.lengths

    def __len__(self) -> int:
        return len(self.tokens)

    def _batch(self, index: np.ndarray) -> TextBatch:
        labels = None if self.tokens.labels is None else self.tokens.labels[index].tolist()
        tags = None if self.tokens.tags is None else self.tokens.tags[index]
        cond = None if self.tokens.cond is None else np.asarray(self.tokens.cond[index])
        return collate([self.tokens[i] for i in index], self.pad_id, labels, tags, cond)

    def _plan(self, batch_size: int, generator: torch.Generator | None) -> list[np.ndarray]:
        n = len(self)
        order = torch.randperm(n, generator=generator).numpy() if generator is not None else np.arange(n)
        batches = []
        pool = batch_size * self.POOL
        for start in range(0, n, pool):
            chunk = order[start:start + pool]
            chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
        if generator is not None:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
        return batches

    def train_batches(self, batch_size: int, generator: torch.Generator, rank: int = 0,
                      world_size: int = 1) -> Iterator[TextBatch]:
        """Bucketed, shuffled batches. Distributed (``world_size`` > 1): every rank plans the same batches
        from an identically seeded ``generator`` and takes every world_size-th, the plan cut to a multiple
        of world_size so that all ranks step together."""
        plan = self._plan(batch_size, generator)
        plan = plan[:len(plan) - len(plan) % world_size][rank::world_size]
        for index in plan:
            yield self._batch(index)

    def num_train_batches(self, batch_size: int, world_size: int = 1) -> int:
        pool = batch_size * self.POOL
        n = len(self)
        full, rest = divmod(n, pool)
        return (full * -(-pool // batch_size) + -(-rest // batch_size)) // world_size

    def eval_batches(self, batch_size: int) -> Iterator[TextBatch]:
        """Deterministic, length-sorted batches (the order of items is not kept)."""
        order = np.argsort(self.lengths, kind="stable")
        for start in range(0, len(order), batch_size):
            yield self._batch(order[start:start + batch_size])
