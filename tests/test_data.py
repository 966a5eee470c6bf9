import gzip
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from vaekit import VaekitError
from vaekit.data.images import ImageBatches, load_images, to_float

from conftest import blobs


def write_idx(path, array, magic_type=0x08):
    header = struct.pack(">BBBB", 0, 0, magic_type, array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as fh:
            fh.write(data)
    else:
        path.write_bytes(data)


def test_idx_folder_with_labels(tmp_path):
    images = blobs(20, 28, 28)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", images)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.arange(20) % 10)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", images[:5])
    train = load_images(tmp_path, split="train")
    assert train.images.shape == (20, 1, 28, 28) and train.images.dtype == torch.uint8
    assert train.labels.tolist() == (np.arange(20) % 10).tolist()
    test = load_images(tmp_path, split="test")
    assert len(test) == 5 and test.labels is None


def test_corrupt_idx_header_is_named(tmp_path):
    bad = tmp_path / "train-images-idx3-ubyte"
    write_idx(bad, blobs(4, 28, 28))
    raw = bytearray(bad.read_bytes())
    raw[8:12] = struct.pack(">I", 99)  # claims 99 rows per image
    bad.write_bytes(bytes(raw))
    with pytest.raises(VaekitError, match=r"train-images-idx3-ubyte: IDX header promises"):
        load_images(bad)
    bad.write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(VaekitError, match="bad magic number"):
        load_images(bad)


@pytest.mark.parametrize("layout", ["nhw", "nhwc", "nchw"])
def test_array_layouts(tmp_path, layout):
    rgb = blobs(6, 9, 7, c=3)  # (n, h, w, c)
    array = {"nhw": rgb[..., 0], "nhwc": rgb, "nchw": rgb.transpose(0, 3, 1, 2)}[layout]
    np.save(tmp_path / "a.npy", array)
    data = load_images(tmp_path / "a.npy")
    assert data.images.shape == ((6, 1, 9, 7) if layout == "nhw" else (6, 3, 9, 7))


def test_float_arrays_in_unit_range_are_scaled(tmp_path):
    np.savez(tmp_path / "f.npz", images=np.full((3, 4, 4), 0.5, dtype=np.float32))
    assert load_images(tmp_path / "f.npz").images.unique().tolist() == [128]


def test_a_unit_range_float_array_with_a_value_out_of_range_is_named(tmp_path):
    images = np.full((3, 4, 4), 0.5, dtype=np.float32)
    images[1, 2, 3] = 3.0
    np.savez(tmp_path / "f.npz", x=images)
    with pytest.raises(VaekitError, match=r"f.npz \[x\]: .*\[0.5, 3\].* first value above 1 at index \(1, 2, 3\)"):
        load_images(tmp_path / "f.npz")
    whole = np.full((3, 4, 4), 32.0, dtype=np.float32)  # whole numbers up to 255: grey levels as floats
    np.savez(tmp_path / "g.npz", x=whole)
    assert load_images(tmp_path / "g.npz").images.unique().tolist() == [32]


def test_an_object_array_is_one_line_not_unpickled(tmp_path):
    np.savez(tmp_path / "o.npz", x=np.array([np.zeros((4, 4)), "text"], dtype=object))
    with pytest.raises(VaekitError, match=r"o.npz: .*object"):
        load_images(tmp_path / "o.npz")


def test_bad_arrays_are_named(tmp_path):
    array = np.zeros((3, 4, 4), dtype=np.float32)
    array[1, 2, 3] = np.nan
    np.save(tmp_path / "nan.npy", array)
    with pytest.raises(VaekitError, match=r"nan.npy: contains NaN .* index \(1, 2, 3\)"):
        load_images(tmp_path / "nan.npy")
    np.save(tmp_path / "shape.npy", np.zeros((3, 4, 4, 5)))
    with pytest.raises(VaekitError, match=r"shape.npy: array of shape \(3, 4, 4, 5\)"):
        load_images(tmp_path / "shape.npy")
    np.save(tmp_path / "range.npy", np.full((2, 3, 3), 300.0))
    with pytest.raises(VaekitError, match=r"values span"):
        load_images(tmp_path / "range.npy")


def test_image_folder_with_class_subfolders(tmp_path):
    for label in ("cat", "dog"):
        (tmp_path / label).mkdir()
        for i, image in enumerate(blobs(3, 10, 8, seed=len(label))):
            Image.fromarray(image).save(tmp_path / label / f"{i}.png")
    data = load_images(tmp_path)
    assert data.images.shape == (6, 1, 10, 8)
    assert data.label_names == ["cat", "dog"] and data.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert data.ids[0] == "cat/0.png"


def test_image_folder_errors(tmp_path):
    with pytest.raises(VaekitError, match="no such file or folder"):
        load_images(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("hi")
    with pytest.raises(VaekitError, match="no PNG or JPEG images"):
        load_images(tmp_path / "empty")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    Image.fromarray(blobs(1, 10, 8)[0]).save(mixed / "a.png")
    Image.fromarray(blobs(1, 12, 8)[0]).save(mixed / "b.png")
    with pytest.raises(VaekitError, match=r"a.png is 10x8 but .*b.png is 12x8; pass --resize HxW"):
        load_images(mixed)
    assert load_images(mixed, resize="6x6").images.shape == (2, 1, 6, 6)
    (mixed / "c.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    with pytest.raises(VaekitError, match=r"c.png: corrupt or truncated image"):
        load_images(mixed, resize="6x6")


def test_truncated_png_is_named(tmp_path):
    Image.fromarray(blobs(1, 30, 30)[0]).save(tmp_path / "ok.png")
    raw = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(VaekitError, match=r"cut.png: corrupt or truncated"):
        load_images(tmp_path)


def test_binarization_modes():
    pixels = torch.tensor([[[[0, 100, 200, 255]]]], dtype=torch.uint8)
    assert to_float(pixels, "threshold").flatten().tolist() == [0, 0, 1, 1]
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([to_float(pixels, "dynamic", g) for _ in range(2000)]).mean(0).flatten()
    assert torch.allclose(draws, pixels.float().flatten() / 255, atol=0.04)


def test_fixed_evaluation_binarization_is_repeatable(tiny_npz):
    data = load_images(tiny_npz)
    a, b = ImageBatches(data, "dynamic", eval_seed=4), ImageBatches(data, "dynamic", eval_seed=4)
    assert torch.equal(a.fixed(), b.fixed())
    assert not torch.equal(a.fixed(), ImageBatches(data, "dynamic", eval_seed=5).fixed())


def test_split_is_seeded_and_disjoint(tiny_npz):
    data = load_images(tiny_npz)
    train, val = data.split(0.25, seed=1)
    assert len(train) == 48 and len(val) == 16
    train2, val2 = data.split(0.25, seed=1)
    assert torch.equal(val.images, val2.images)
