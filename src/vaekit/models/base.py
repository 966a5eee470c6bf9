"""What every vaekit model shares: the ELBO, importance-weighted NLL, and the save/load format.

A saved model is a folder with ``config.json`` ({"model_type", "model": {...}}) and ``model.safetensors``
whose metadata repeats the model config, so an edited config.json is caught and named on load.
Loading never executes code from the folder.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, ClassVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ..config import atomic_path, from_dict, read_json, to_dict
from ..deadline import check as check_deadline
from ..distributions import DiagonalGaussian, draw
from ..errors import VaekitError
from ..objectives import iw_log_likelihood, kl_term
from ..runs import CONFIG_NAME, WEIGHTS_NAME, update_config



@dataclasses.dataclass
class LossOutput:
    """Batch means of the per-item terms, in nats. ``loss`` is what is optimised."""

    loss: torch.Tensor
    rec: torch.Tensor
    kl: torch.Tensor
    posterior: DiagonalGaussian | None = None
    tokens: int | None = None  # predicted tokens in the batch (text models), for perplexity
    extra: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)  # further terms, logged by name

    def items(self) -> dict[str, float]:
        return {"loss": self.loss.item(), "rec": self.rec.item(), "kl": self.kl.item(),
                **{k: v.item() for k, v in self.extra.items()}}


def save_weights(module: nn.Module, path: str | os.PathLike, metadata: dict[str, str],
                 state: dict[str, torch.Tensor] | None = None) -> None:
    """Write a safetensors file atomically (temporary file, then rename): ``state`` (default: the whole
    state dict)."""
    path = Path(path)
    state = module.state_dict() if state is None else state
    tensors = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata=metadata)


def generator_for(seed: int | None = None, generator: torch.Generator | None = None) -> torch.Generator | None:
    """The generator a draw uses: ``generator`` as given, else a CPU generator seeded with ``seed`` (CPU draws
    are the same whatever device the model is on, see distributions.draw), else None (the global one)."""
    if generator is not None:
        if seed is not None:
            raise VaekitError("give a seed or a generator, not both")
        return generator
    return None if seed is None else torch.Generator().manual_seed(int(seed))


class VAE(nn.Module):
    """The model contract. A subclass sets ``model_type``, ``modality`` ("image" or "text": which front end,
    data readers and CLI options apply) and ``config_class``, registers itself in ``vaekit.models.MODEL_TYPES``
    and implements ``encode(x) -> DiagonalGaussian``, ``log_likelihood(x, z) -> log p(x|z)`` and ``decode(z)``.

    Every model answers the same calls with the same keyword names: ``loss(x, kl_weight, free_bits,
    generator)``, ``iw_nll(x, k, generator)``, ``sample(n, seed=, generator=, temperature=)``,
    ``reconstruct(x)``, ``interpolate(a, b, steps)``; wherever a draw happens ``seed=`` or ``generator=``
    makes it repeatable."""

    model_type: ClassVar[str]
    modality: ClassVar[str]
    config_class: ClassVar[type]
    IW_ROWS: ClassVar[int] = 1024  # iw_nll: items x samples decoded in one pass

    def __init__(self, config):
        super().__init__()
        self.config = config

    # --- the model's own pieces -------------------------------------------------------------
    def encode(self, x: Any) -> DiagonalGaussian:
        raise NotImplementedError

    def log_likelihood(self, x: Any, z: torch.Tensor) -> torch.Tensor:
        """log p(x|z) in nats, summed over each item's dimensions: z (..., b, d) -> (..., b)."""
        raise NotImplementedError

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    @property
    def device(self) -> torch.device:
        """Where the weights are (``vaekit.load(run, map_location=...)``, ``model.to(...)``); generation and
        evaluation put their inputs there."""
        return next(self.parameters()).device

    # --- the ELBO (Kingma & Welling 2014, eq. 3) ----------------------------------------------
    def loss(self, x: Any, kl_weight: float = 1.0, free_bits: float = 0.0,
             generator: torch.Generator | None = None) -> LossOutput:
        """Negative ELBO with a weighted KL: E_q[-log p(x|z)] + kl_weight * KL(q(z|x) || p(z)).

        One reparameterised sample per item; terms are summed over each item and averaged over the batch.
        """
        posterior = self.encode(x)
        z = posterior.sample(generator)
        rec = -self.log_likelihood(x, z)  # (b,)
        kl_dims = posterior.kl()  # (b, d), fp32
        objective = rec + kl_weight * kl_term(kl_dims, free_bits)
        return LossOutput(loss=objective.mean(), rec=rec.mean(), kl=kl_dims.sum(-1).mean(), posterior=posterior,
                          tokens=self.count_targets(x))

    def count_targets(self, x: Any) -> int | None:
        """How many symbols log p(x|z) predicts (text models: tokens), or None where perplexity means nothing."""
        return None

    @torch.no_grad()
    def iw_nll(self, x: Any, k: int = 100, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Per item: importance-weighted NLL with k samples (Burda et al. 2016), and from the same samples the
        negative ELBO (mean reconstruction term + closed-form KL) and its parts. All (b,), nats."""
        posterior = self.encode(x)
        z = posterior.sample_k(k, generator)  # (k, b, d)
        per_chunk = max(1, self.IW_ROWS // len(posterior.mean))  # samples per pass: bounded memory, and a deadline
        log_px_z = []  # (see vaekit.deadline) is looked at between passes
        for start in range(0, k, per_chunk):
            check_deadline()
            log_px_z.append(self.log_likelihood(x, z[start:start + per_chunk]).float())
        log_px_z = torch.cat(log_px_z)  # (k, b)
        rec = -log_px_z.mean(0)
        kl = posterior.kl().sum(-1)
        return {
            "iw_nll": -iw_log_likelihood(log_px_z, z, posterior),
            "neg_elbo": rec + kl,
            "rec": rec,
            "kl": kl,
            "mean": posterior.mean,
            "logvar": posterior.logvar,
        }

    @torch.no_grad()
    def sample(self, n: int, *, seed: int | None = None, generator: torch.Generator | None = None,
               temperature: float = 1.0):
        """Decode n draws from the prior N(0, I), scaled by ``temperature``."""
        z = temperature * draw((n, self.latent_dim), generator_for(seed, generator), self.device)
        return self.decode(z)

    @torch.no_grad()
    def interpolate(self, a: Any, b: Any, steps: int = 10):
        """Decode ``steps`` points on the straight line between the posterior means of a and b."""
        za, zb = self.encode(a).mean, self.encode(b).mean  # (1, d) each
        t = torch.linspace(0, 1, steps, device=za.device)[:, None]
        return self.decode((1 - t) * za + t * zb)

    # --- save and load ----------------------------------------------------------------------
    def config_dict(self) -> dict:
        return {"model_type": self.model_type, "model": to_dict(self.config)}

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into ``directory`` (created if needed)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.save_weights(directory / WEIGHTS_NAME)
        update_config(directory, self.config_dict())
        return directory

    def optimizer_groups(self) -> list[dict]:
        """The trainable parameters as optimizer groups; ``lr_scale`` multiplies the run's learning rate."""
        return [{"params": [p for p in self.parameters() if p.requires_grad], "lr_scale": 1.0}]

    def trained_state_dict(self) -> dict[str, torch.Tensor]:
        """The tensors a run folder's model.safetensors and resume.pt keep: all of them here; a model on frozen
        pretrained weights keeps only what training changes."""
        return self.state_dict()

    def load_trained_state(self, state: dict[str, torch.Tensor]) -> None:
        """Load what ``trained_state_dict`` gave: strictly when that is the whole state dict; else only those
        tensors (the others are the base weights the model was built on)."""
        self.load_state_dict(state, strict=len(self.trained_state_dict()) == len(self.state_dict()))

    def save_weights(self, path: str | os.PathLike) -> None:
        save_weights(self, path, {"vaekit_config": json.dumps(self.config_dict())}, self.trained_state_dict())

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, map_location: str = "cpu") -> "VAE":
        """Load a folder written by ``save_pretrained`` or by training; the model comes back in eval mode.

        Raises VaekitError naming the problem: missing files, unknown or ill-typed config fields, a config
        that no longer matches the weights, missing or unexpected tensors.
        """
        directory = Path(directory)
        if not directory.is_dir():
            raise VaekitError(f"{directory}: no such run folder")
        raw = read_json(directory / CONFIG_NAME)
        model_type = raw.get("model_type")
        if model_type != cls.model_type:
            raise VaekitError(f"{directory / CONFIG_NAME}: model_type is {model_type!r}, expected {cls.model_type!r}")
        config = from_dict(cls.config_class, raw.get("model"), where=f"{directory / CONFIG_NAME} \"model\"")
        weights_path = directory / WEIGHTS_NAME
        if not weights_path.is_file():
            raise VaekitError(f"{weights_path}: file is missing")
        try:
            state = load_file(weights_path, device=map_location)
            from safetensors import safe_open

            with safe_open(weights_path, framework="pt") as fh:
                metadata = fh.metadata() or {}
        except (SafetensorError, OSError) as exc:
            raise VaekitError(f"{weights_path}: not a readable safetensors file ({exc})") from None
        try:
            saved_config = json.loads(metadata.get("vaekit_config", "{}"))
        except json.JSONDecodeError:
            saved_config = None
        saved = saved_config.get("model") if isinstance(saved_config, dict) else None
        if not isinstance(saved_config, dict) or not isinstance(saved, (dict, type(None))):
            raise VaekitError(f"{weights_path}: metadata 'vaekit_config' is not the JSON object vaekit writes; "
                              "these weights were not saved by vaekit or were altered")
        if saved is not None:
            current = to_dict(config)
            # a field added in a later version is absent from older weights: fine while it keeps its default
            defaults = {f.name: json.loads(json.dumps(f.default)) for f in dataclasses.fields(cls.config_class)
                        if f.default is not dataclasses.MISSING}
            for key in sorted(set(saved) | set(current)):
                if key not in saved and key in defaults and current.get(key) == defaults[key]:
                    continue
                if saved.get(key) != current.get(key):
                    raise VaekitError(
                        f"{directory / CONFIG_NAME}: field 'model.{key}' is {current.get(key)!r} but the weights were "
                        f"saved with {saved.get(key)!r}; the config was edited after saving"
                    )
        model = cls(config)
        expected = model.trained_state_dict()
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        if missing or unexpected:
            raise VaekitError(f"{weights_path}: missing tensors {missing[:3]}, unexpected tensors {unexpected[:3]}")
        for key, tensor in state.items():
            if tensor.shape != expected[key].shape:
                raise VaekitError(
                    f"{weights_path}: tensor {key!r} has shape {tuple(tensor.shape)}, the config needs "
                    f"{tuple(expected[key].shape)}"
                )
            if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                raise VaekitError(f"{weights_path}: tensor {key!r} holds NaN or infinite values; these weights are "
                                  "broken (a diverged run?)")
        model.load_trained_state(state)
        cls._attach(model, directory, raw)
        return model.to(map_location).eval()

    @classmethod
    def _attach(cls, model: "VAE", directory: Path, raw: dict) -> None:
        """Load what a model needs beside its weights (a text model's tokenizer)."""
