"""Image data: MNIST-style IDX files, .npz/.npy arrays and folders of PNG/JPEG files.

Every source becomes an ImageDataset holding uint8 pixels (n, c, h, w), so MNIST takes 47 MB, and
optional integer labels. Batches are converted to float in [0, 1] and binarized as asked.
"""
from __future__ import annotations

import dataclasses
import gzip
import re
import struct
import tokenize
import zipfile
import zlib
from pathlib import Path
from typing import Iterator, Literal, get_args

import numpy as np
import torch

from ..errors import VaekitError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
IDX_IMAGES = re.compile(r"images[-.]idx3[-.]ubyte(\.gz)?$")
Binarize = Literal["none", "threshold", "dynamic"]
BINARIZE = get_args(Binarize)  # the CLI's choices and the trainer's check


@dataclasses.dataclass
class ImageDataset:
    images: torch.Tensor  # uint8 (n, c, h, w)
    labels: np.ndarray | None = None  # int64 (n,)
    label_names: list[str] | None = None
    ids: list[str] | None = None  # file names, when the source has them
    source: str = ""

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # (c, h, w)

    def subset(self, index: np.ndarray | torch.Tensor) -> "ImageDataset":
        index = torch.as_tensor(index, dtype=torch.long)
        return ImageDataset(
            images=self.images[index],
            labels=None if self.labels is None else self.labels[index.numpy()],
            label_names=self.label_names,
            ids=None if self.ids is None else [self.ids[i] for i in index.tolist()],
            source=self.source,
        )

    def split(self, val_fraction: float, seed: int) -> tuple["ImageDataset", "ImageDataset | None"]:
        """A seeded random split into training and validation parts."""
        if val_fraction <= 0:
            return self, None
        n_val = max(1, int(round(len(self) * val_fraction)))
        if n_val >= len(self):
            raise VaekitError(f"{self.source}: {len(self)} images are too few to hold out {val_fraction:.0%} for validation")
        perm = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))
        return self.subset(perm[n_val:]), self.subset(perm[:n_val])


def _open_maybe_gzip(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise VaekitError(f"{path}: cannot be read ({exc})") from None


def read_idx(path: Path, expect_ndim: int) -> np.ndarray:
    """Read an IDX file (LeCun's MNIST format): 2 zero bytes, a type byte (0x08 = uint8), the number of
    dimensions, then that many big-endian uint32 sizes and the data."""
    raw = _open_maybe_gzip(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise VaekitError(f"{path}: not an IDX file (bad magic number)")
    dtype_code, ndim = raw[2], raw[3]
    if dtype_code != 0x08:
        raise VaekitError(f"{path}: IDX data type 0x{dtype_code:02x} is not supported (only unsigned bytes, 0x08)")
    if ndim != expect_ndim:
        raise VaekitError(f"{path}: IDX header says {ndim} dimensions, expected {expect_ndim}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise VaekitError(f"{path}: IDX header is truncated")
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    size = int(np.prod(dims))
    if len(raw) - header != size:
        raise VaekitError(f"{path}: IDX header promises {dims} = {size} bytes of data but the file holds {len(raw) - header}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _load_idx(path: Path) -> ImageDataset:
    images = read_idx(path, 3)
    labels = None
    label_path = path.with_name(re.sub(r"images[-.]idx3", "labels-idx1", path.name))
    if not label_path.exists():
        alt = label_path.with_name(label_path.name[:-3]) if label_path.suffix == ".gz" else label_path.with_name(label_path.name + ".gz")
        label_path = alt if alt.exists() else label_path
    if label_path.exists():
        labels = read_idx(label_path, 1).astype(np.int64)
        if len(labels) != len(images):
            raise VaekitError(f"{label_path}: {len(labels)} labels for {len(images)} images in {path.name}")
    names = [str(i) for i in range(int(labels.max()) + 1)] if labels is not None else None
    return ImageDataset(torch.from_numpy(images.copy())[:, None], labels, names, source=str(path))


def _to_uint8(array: np.ndarray, where: str) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if not np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_:
        if array.dtype == np.bool_:
            return array.astype(np.uint8) * 255
        raise VaekitError(f"{where}: array of type {array.dtype} is not an image array")
    values = array.astype(np.float64)
    if not np.isfinite(values).all():
        bad = np.argwhere(~np.isfinite(values))[0]
        raise VaekitError(f"{where}: contains NaN or infinite values (first at index {tuple(int(i) for i in bad)})")
    lo, hi = values.min(), values.max()
    if lo < 0 or hi > 255:
        raise VaekitError(f"{where}: values span [{lo:g}, {hi:g}]; expected [0, 1] or [0, 255]")
    if hi > 1.0 and not np.array_equal(values, np.rint(values)):
        # fractions and values above 1: neither [0, 1] intensities nor 0-255 grey levels
        bad = tuple(int(i) for i in np.argwhere(values > 1.0)[0])
        raise VaekitError(f"{where}: float values span [{lo:g}, {hi:g}] with fractions, so neither [0, 1] nor "
                          f"whole 0-255 grey levels; first value above 1 at index {bad}")
    scale = 255.0 if hi <= 1.0 else 1.0
    return np.clip(np.rint(values * scale), 0, 255).astype(np.uint8)


def _array_to_nchw(array: np.ndarray, where: str) -> np.ndarray:
    """(n, h, w), (n, h, w, c) or (n, c, h, w) with c in {1, 3} -> (n, c, h, w)."""
    if array.ndim == 3:
        return array[:, None]
    if array.ndim == 4:
        if array.shape[-1] in (1, 3):
            return np.ascontiguousarray(array.transpose(0, 3, 1, 2))
        if array.shape[1] in (1, 3):
            return array
    raise VaekitError(f"{where}: array of shape {array.shape} is not (n, h, w), (n, h, w, c) or (n, c, h, w) with c = 1 or 3")


# what numpy raises for a damaged .npy or .npz (a cut file, a broken zip, a bad compressed stream or header; numpy
# reads the header with Python's tokenizer, which raises TokenError for some damaged ones)
UNREADABLE_ARRAY = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, KeyError, struct.error,
                    tokenize.TokenError)


def _load_array(path: Path) -> ImageDataset:
    labels = None
    try:
        loaded = np.load(path, allow_pickle=False)
    except UNREADABLE_ARRAY as exc:
        raise VaekitError(f"{path}: cannot be read as a NumPy array ({exc})") from None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        keys = list(loaded.keys())
        image_key = next((k for k in ("x", "images", "X", "arr_0") if k in keys), None)
        if image_key is None:
            raise VaekitError(f"{path}: no image array; expected a key named x or images (found {', '.join(keys) or 'none'})")
        try:
            array = loaded[image_key]
            label_key = next((k for k in ("y", "labels") if k in keys), None)
            label_array = loaded[label_key] if label_key is not None else None
        except ValueError as exc:  # an object array: reading it would need pickle, which stays off
            if "allow_pickle" not in str(exc):
                raise VaekitError(f"{path} [{image_key}]: cannot be read as a NumPy array ({exc})") from None
            raise VaekitError(f"{path}: cannot be read without pickle ({exc}); save numbers, not objects") from None
        except UNREADABLE_ARRAY as exc:  # a damaged member of the archive
            raise VaekitError(f"{path} [{image_key}]: cannot be read as a NumPy array ({exc})") from None
        if label_key is not None:
            labels = np.asarray(label_array)
            if labels.shape != (len(array),) or not np.issubdtype(labels.dtype, np.integer):
                raise VaekitError(f"{path}: labels {label_key!r} must be {len(array)} integers, got shape {labels.shape} of {labels.dtype}")
            labels = labels.astype(np.int64)
        where = f"{path} [{image_key}]"
    else:
        array, where = loaded, str(path)
    images = _array_to_nchw(_to_uint8(np.asarray(array), where), where)
    names = [str(i) for i in range(int(labels.max()) + 1)] if labels is not None and len(labels) else None
    return ImageDataset(torch.from_numpy(np.ascontiguousarray(images)), labels, names, source=str(path))


def parse_size(text: str | None) -> tuple[int, int] | None:
    """'28x28' -> (28, 28)."""
    if text is None:
        return None
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match or int(match[1]) < 1 or int(match[2]) < 1:
        raise VaekitError(f"--resize {text!r}: expected HxW, such as 28x28")
    if max(int(match[1]), int(match[2])) > MAX_SIDE:
        raise VaekitError(f"--resize {text!r}: at most {MAX_SIDE} pixels a side (a VAE on larger images would not "
                          "fit in memory)")
    return int(match[1]), int(match[2])


MAX_SIDE = 4096


GREY_MODES = ("1", "L", "I", "I;16", "F", "LA")


def _open_image(path: Path):
    """A fully decoded PIL image; a corrupt or truncated file is a VaekitError naming it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            return img.copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise VaekitError(f"{path}: corrupt or truncated image ({exc})") from None


def _load_folder(root: Path, resize: tuple[int, int] | None) -> ImageDataset:
    from PIL import Image

    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise VaekitError(f"{root}: no PNG or JPEG images found (looked in all sub-folders)")
    pictures = [_open_image(path) for path in files]
    mode = "L" if all(pic.mode in GREY_MODES for pic in pictures) else "RGB"
    if resize is None:
        first = pictures[0].size
        for path, pic in zip(files, pictures):
            if pic.size != first:
                raise VaekitError(
                    f"images differ in size: {files[0]} is {first[1]}x{first[0]} but {path} is {pic.size[1]}x{pic.size[0]}; "
                    "pass --resize HxW"
                )
    arrays = []
    for pic in pictures:
        pic = pic.convert(mode)
        if resize is not None and pic.size != (resize[1], resize[0]):
            pic = pic.resize((resize[1], resize[0]), Image.BILINEAR)
        arrays.append(np.asarray(pic, dtype=np.uint8))
    stacked = np.stack(arrays)  # (n, h, w) or (n, h, w, 3)
    images = _array_to_nchw(stacked, str(root))
    relative = [p.relative_to(root) for p in files]
    labels = names = None
    if all(len(r.parts) >= 2 for r in relative):  # every image in a class sub-folder
        names = sorted({r.parts[0] for r in relative})
        labels = np.array([names.index(r.parts[0]) for r in relative], dtype=np.int64)
    return ImageDataset(torch.from_numpy(np.ascontiguousarray(images)), labels, names,
                        ids=[str(r) for r in relative], source=str(root))


def _pick_idx(files: list[Path], split: str | None, root: Path) -> Path:
    if len(files) == 1:
        return files[0]
    wanted = {"train": ("train",), "test": ("t10k", "test")}.get(split or "train", ())
    matches = [f for f in files if f.name.lower().startswith(wanted)]
    if len(matches) != 1:
        raise VaekitError(f"{root}: several IDX image files ({', '.join(f.name for f in files)}); point --data at one")
    return matches[0]


def load_images(path: str | Path, resize: str | tuple[int, int] | None = None,
                split: Literal["train", "test"] | None = None) -> ImageDataset:
    """Load images from a file or folder. In a folder holding several IDX files, ``split`` picks the
    ``train-*`` or the ``t10k-*``/``test-*`` one."""
    path = Path(path)
    size = parse_size(resize) if isinstance(resize, str) else resize
    if not path.exists():
        raise VaekitError(f"{path}: no such file or folder")
    if path.is_dir():
        idx = sorted(p for p in path.iterdir() if IDX_IMAGES.search(p.name))
        data = _load_idx(_pick_idx(idx, split, path)) if idx else _load_folder(path, size)
    elif IDX_IMAGES.search(path.name):
        data = _load_idx(path)
    elif path.suffix in (".npz", ".npy"):
        data = _load_array(path)
    elif path.suffix.lower() in IMAGE_SUFFIXES:
        data = _single_image(path, size)
    else:
        raise VaekitError(f"{path}: unsupported file type; use IDX, .npz/.npy, or a folder of PNG/JPEG images")
    if len(data) == 0:
        raise VaekitError(f"{path}: holds no images")
    if size is not None and data.shape[1:] != size:
        data.images = torch.nn.functional.interpolate(data.images.float(), size=size, mode="bilinear",
                                                      align_corners=False).round().clamp(0, 255).to(torch.uint8)
    return data


def _single_image(path: Path, size: tuple[int, int] | None) -> ImageDataset:
    from PIL import Image

    pic = _open_image(path)
    pic = pic.convert("L" if pic.mode in GREY_MODES else "RGB")
    if size is not None:
        pic = pic.resize((size[1], size[0]), Image.BILINEAR)
    array = _array_to_nchw(np.asarray(pic, dtype=np.uint8)[None], str(path))
    return ImageDataset(torch.from_numpy(np.ascontiguousarray(array)), ids=[path.name], source=str(path))


def to_float(images: torch.Tensor, binarize: Binarize, generator: torch.Generator | None = None) -> torch.Tensor:
    """uint8 (b, c, h, w) -> float in [0, 1]. "threshold": x > 0.5; "dynamic": x ~ Bernoulli(pixel)
    redrawn every time (Salakhutdinov & Murray 2008), drawn with ``generator`` for reproducibility."""
    x = images.float().div_(255.0)
    if binarize == "threshold":
        return (x > 0.5).float()
    if binarize == "dynamic":
        return torch.bernoulli(x, generator=generator)
    return x


@dataclasses.dataclass
class ImageBatch:
    """Images with their class labels, for a conditional model (Sohn et al. 2015): float (b, c, h, w) and
    the model's label indices (b,). Slicing and indexing apply to both."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def shape(self) -> torch.Size:
        return self.images.shape

    def __getitem__(self, index) -> "ImageBatch":
        if isinstance(index, int):
            index = slice(index, index + 1)
        return ImageBatch(self.images[index], self.labels[index])

    def float(self) -> "ImageBatch":
        return ImageBatch(self.images.float(), self.labels)


def pixels(batch: "torch.Tensor | ImageBatch") -> torch.Tensor:
    """The image tensor of a batch, labelled or not."""
    return batch.images if isinstance(batch, ImageBatch) else batch


class ImageBatches:
    """Batches of float images for the Trainer.

    Training batches are shuffled and, with "dynamic", re-binarized each epoch. Evaluation batches are fixed:
    "dynamic" becomes one stochastic binarization drawn with ``eval_seed``, the same on every call.
    With ``labels`` (the model's label index of every image) batches are ImageBatch, for conditional models.
    """

    def __init__(self, data: ImageDataset, binarize: Binarize = "none", eval_seed: int = 0,
                 labels: torch.Tensor | None = None):
        self.data = data
        self.binarize = binarize
        self._fixed: torch.Tensor | None = None
        self.eval_seed = eval_seed
        self.labels = labels

    def __len__(self) -> int:
        return len(self.data)

    def _with_labels(self, images: torch.Tensor, index) -> "torch.Tensor | ImageBatch":
        return images if self.labels is None else ImageBatch(images, self.labels[index])

    def fixed(self) -> "torch.Tensor | ImageBatch":
        """All images as evaluated: float (n, c, h, w), binarized deterministically (an ImageBatch with labels)."""
        if self._fixed is None:
            self._fixed = to_float(self.data.images, self.binarize, torch.Generator().manual_seed(self.eval_seed))
        return self._with_labels(self._fixed, slice(None))

    def train_batches(self, batch_size: int, generator: torch.Generator, rank: int = 0,
                      world_size: int = 1) -> Iterator[torch.Tensor]:
        """Shuffled batches; the last partial batch is dropped when it is smaller than half a batch. With
        ``world_size`` > 1 (distributed training) every rank draws the same permutation from an identically
        seeded ``generator`` and takes every world_size-th image from offset ``rank``; the permutation is cut
        to a multiple of world_size so every rank gets as many batches of the same sizes (a rank with one
        batch more would wait for the others forever)."""
        perm = torch.randperm(len(self.data), generator=generator)
        perm = perm[:len(perm) - len(perm) % world_size][rank::world_size]
        for start in range(0, len(perm), batch_size):
            index = perm[start:start + batch_size]
            if len(index) < batch_size // 2 and start > 0:
                break
            yield self._with_labels(to_float(self.data.images[index], self.binarize, generator), index)

    def eval_batches(self, batch_size: int) -> Iterator[torch.Tensor]:
        fixed = self.fixed()
        for start in range(0, len(fixed), batch_size):
            yield fixed[start:start + batch_size]

    def num_train_batches(self, batch_size: int, world_size: int = 1) -> int:
        n = len(self.data) // world_size
        full, rest = divmod(n, batch_size)
        return full + (1 if rest and (rest >= batch_size // 2 or full == 0) else 0)


def model_batches(model, data: ImageDataset, binarize: str | None, seed: int) -> ImageBatches:
    """Batches of ``data`` for ``model`` (an ImageVAE): its shape checked, a conditional model's labels matched."""
    want = (model.config.in_channels, model.config.height, model.config.width)
    if data.shape != want:
        raise VaekitError(f"{data.source}: images are {data.shape} (c, h, w) but the model takes {want}; "
                          "use --resize HxW for other sizes")
    return ImageBatches(data, binarize or "none", eval_seed=seed, labels=model_labels(model, data))


def model_labels(model, data: ImageDataset) -> torch.Tensor | None:
    """A conditional model's label index of every image, matched by label name (None for other models)."""
    if not model.conditional:
        return None
    if data.labels is None:
        raise VaekitError(f"{data.source}: this conditional model needs each image's class label "
                          f"({', '.join(model.config.label_names)}); these images have none")
    names = data.label_names or [str(i) for i in range(int(data.labels.max()) + 1)]
    known = model.config.label_names
    unknown = sorted({names[c] for c in np.unique(data.labels).tolist()} - set(known))
    if unknown:
        raise VaekitError(f"{data.source}: label {unknown[0]!r} is unknown to this model, which knows {', '.join(known)}")
    mapping = np.array([known.index(name) if name in known else -1 for name in names], dtype=np.int64)
    return torch.from_numpy(mapping[data.labels])
