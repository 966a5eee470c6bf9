"""Property-based tests (hypothesis) for every reader of user files and run folders: whatever the bytes or values,
the result is data or a VaekitError with a one-line message, never another exception (issue 33)."""
import gzip
import io
import json
import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vaekit
from vaekit import VaekitError
from vaekit.data.images import load_images
from vaekit.data.text import TextSource, read_records

from conftest import blobs, tiny_model, two_topic_sentences

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def holds(read):
    """Run ``read``; a VaekitError is fine if its message is one line."""
    try:
        return read()
    except VaekitError as exc:
        assert "\n" not in str(exc).strip() and str(exc).strip(), repr(str(exc))
        return None


def mutated(valid: bytes):
    """Bytes near a valid file (flipped, cut, spliced) or anything at all."""
    flips = st.lists(st.tuples(st.integers(0, max(0, len(valid) - 1)), st.integers(0, 255)), max_size=8)
    near = st.builds(lambda fs, cut: _apply(valid, fs)[:cut], flips, st.integers(0, len(valid)))
    return st.one_of(near, st.binary(max_size=400))


def _apply(data: bytes, flips) -> bytes:
    out = bytearray(data)
    for i, value in flips:
        if out:
            out[i % len(out)] = value
    return bytes(out)


def _write(name: str, data: bytes) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="vaekit-fuzz-"))
    path = folder / name
    path.write_bytes(data)
    return path


TEXT_CELLS = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30)


@FUZZ
@given(name=st.sampled_from(["a.txt", "a.csv", "a.jsonl", "a.txt.gz", "a.csv.gz", "a"]),
       data=st.one_of(st.binary(max_size=300), TEXT_CELLS.map(lambda s: s.encode("utf-8")),
                      st.lists(st.lists(TEXT_CELLS, min_size=1, max_size=4), max_size=5).map(
                          lambda rows: "\n".join(",".join(r) for r in [["text", "label"], *rows]).encode()),
                      st.lists(st.dictionaries(st.sampled_from(["text", "label", "id"]),
                                               st.one_of(TEXT_CELLS, st.integers(), st.none()), max_size=3),
                               max_size=4).map(lambda rows: "\n".join(json.dumps(r) for r in rows).encode())),
       zipped=st.booleans(), column=st.sampled_from([None, "text", "label", "nope"]))
def test_text_readers_give_records_or_one_line(name, data, zipped, column):
    if name.endswith(".gz") and zipped:
        data = gzip.compress(data)
    path = _write(name, data)
    records = holds(lambda: list(read_records(TextSource(path, text_column=column))))
    for record in records or []:
        assert isinstance(record.text, str) and record.text and "\x00" not in record.text
    shutil.rmtree(path.parent)


def _npz_bytes() -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, x=blobs(4), y=np.arange(4))
    return buffer.getvalue()


def _npy_bytes() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, blobs(3))
    return buffer.getvalue()


def _idx_bytes() -> bytes:
    images = blobs(3)  # (3, h, w)
    return struct.pack(">IIII", 0x803, *images.shape) + images.tobytes()  # magic, count, rows, columns


def _png_bytes() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(blobs(1)[0]).save(buffer, format="PNG")
    return buffer.getvalue()


READERS = {"x.npz": _npz_bytes(), "x.npy": _npy_bytes(), "train-images-idx3-ubyte": _idx_bytes(),
           "x.png": _png_bytes()}


@FUZZ
@given(case=st.sampled_from(sorted(READERS)).flatmap(lambda name: st.tuples(st.just(name), mutated(READERS[name]))),
       in_folder=st.booleans(), resize=st.sampled_from([None, "8x8"]))
def test_image_readers_give_images_or_one_line(case, in_folder, resize):
    name, data = case
    path = _write(name, data)
    target = path.parent if in_folder and name == "x.png" else path
    dataset = holds(lambda: load_images(target, resize=resize))
    if dataset is not None:
        assert dataset.images.dtype.is_floating_point is False and dataset.images.ndim == 4 and len(dataset) > 0
    shutil.rmtree(path.parent)


def test_npy_header_with_a_null_byte_is_one_line(tmp_path):
    """Found by the fuzz test above: numpy parses a .npy header with Python's tokenizer, which raises
    tokenize.TokenError (not a ValueError) for a header whose first byte became a null byte."""
    data = bytearray(_npy_bytes())
    data[10] = 0  # '{', the header's first byte, after the magic, the version and the header length
    (tmp_path / "x.npy").write_bytes(bytes(data))
    with pytest.raises(VaekitError, match=r"x\.npy: cannot be read as a NumPy array"):
        load_images(tmp_path / "x.npy")


@pytest.fixture(scope="module")
def saved_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz-runs")
    tiny_model().save_pretrained(root / "image")
    from vaekit import TextVAE, TextVAEConfig
    from vaekit.data.tokenizer import TextTokenizer, TokenizerConfig

    from conftest import tiny_text_overrides

    tok = TextTokenizer.train(two_topic_sentences(), TokenizerConfig(vocab_size=100))
    TextVAE(TextVAEConfig(vocab_size=tok.vocab_size, **tiny_text_overrides()), tok).save_pretrained(root / "text")
    return root


JSON = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
                              TEXT_CELLS),
                    lambda inner: st.one_of(st.lists(inner, max_size=3),
                                            st.dictionaries(TEXT_CELLS, inner, max_size=3)), max_leaves=8)


def _copy(saved_runs, kind: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="vaekit-fuzz-run-")) / kind
    shutil.copytree(saved_runs / kind, folder)
    return folder


@FUZZ
@given(kind=st.sampled_from(["image", "text"]), path=st.lists(st.sampled_from(
    ["model", "model_type", "tokenizer", "tokenizer_fingerprint", "latent_dim", "vocab_size", "kind", "channels"]),
    min_size=1, max_size=2), value=JSON)
def test_config_json_values_load_or_fail_in_one_line(saved_runs, kind, path, value):
    folder = _copy(saved_runs, kind)
    config = json.loads((folder / "config.json").read_text())
    node = config
    for key in path[:-1]:
        node = node.setdefault(key, {}) if isinstance(node, dict) else node
    if isinstance(node, dict):
        node[path[-1]] = value
    (folder / "config.json").write_text(json.dumps(config))
    holds(lambda: vaekit.load(folder))
    shutil.rmtree(folder.parent)


@FUZZ
@given(kind=st.sampled_from(["image", "text"]), which=st.sampled_from(["config.json", "model.safetensors",
                                                                       "tokenizer.json"]), data=st.data())
def test_run_files_bytes_load_or_fail_in_one_line(saved_runs, kind, which, data):
    folder = _copy(saved_runs, kind)
    target = folder / which
    valid = target.read_bytes() if target.is_file() else b""
    target.write_bytes(data.draw(mutated(valid[:2000]) if which == "model.safetensors" else mutated(valid)))
    holds(lambda: vaekit.load(folder))
    shutil.rmtree(folder.parent)


@FUZZ
@given(metadata=st.one_of(JSON.map(json.dumps), TEXT_CELLS))
def test_safetensors_metadata_loads_or_fails_in_one_line(saved_runs, metadata):
    from safetensors.torch import load_file, save_file

    folder = _copy(saved_runs, "image")
    weights = folder / "model.safetensors"
    save_file(load_file(weights), weights, metadata={"vaekit_config": metadata})
    holds(lambda: vaekit.load(folder))
    shutil.rmtree(folder.parent)
