"""One Trainer for every vaekit model, and one pipeline around it (run_training: the run folder, resume, the best
model) into which each modality plugs its data step.

The run folder it writes:
    config.json        model, training and data settings (written by the caller before training)
    model.safetensors  the best weights by validation loss (the last ones when there is no validation set)
    resume.pt          last epoch's model, optimizer, step, epoch and RNG state, for --resume
    metrics.jsonl      one JSON row per logged training step and per validation pass
    tensorboard/       TensorBoard event files
    plots/             curves.png, redrawn every epoch, and the model's example pictures
Every file is written to a temporary name and renamed, so a crash or Ctrl-C leaves the last good one.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import os
import pickle
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from . import distributed
from .distributed import to_device
from .config import TrainConfig, atomic_path, from_dict, read_json, to_dict
from .errors import NonFiniteLossError, VaekitError
from .models import load
from .models.base import VAE
from .runs import CONFIG_NAME, RESUME_NAME, WEIGHTS_NAME, prepare_run_dir, training_folder, update_config
from .memory import reuse_freed_memory, trim
from .monitor import Monitor
from .evaluate import active_units
from .objectives import kl_weight, mutual_information
from .precision import autocast, resolve_precision

log = logging.getLogger(__name__)



class TrainData(Protocol):
    def __len__(self) -> int: ...
    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterable[Any]: ...
    def num_train_batches(self, batch_size: int) -> int: ...
    # distributed training also passes rank= and world_size= to both
    def eval_batches(self, batch_size: int) -> Iterable[Any]: ...


@dataclasses.dataclass
class TrainResult:
    status: str  # "finished", "early-stopped", "time-limit" or "interrupted"
    epochs: int
    step: int
    best_val_loss: float | None
    items_per_second: float


def make_optimizer(cfg: TrainConfig, params, device: torch.device | None = None) -> torch.optim.Optimizer:
    """Adam and AdamW use PyTorch's fused kernels where the device has them (CPU and CUDA): one pass over the
    parameters instead of a dozen, about 8% of a text training step on 2 CPU cores."""
    params = [{**g, "lr": cfg.lr * g.get("lr_scale", 1.0)} if isinstance(g, dict) else g for g in params]
    fused = {"fused": True} if device is not None and device.type in ("cpu", "cuda") else {}
    if cfg.optimizer in ("adam", "adamw"):
        cls = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
        try:
            return cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **fused)
        except (RuntimeError, TypeError):  # an older PyTorch without fused kernels for this device
            return cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.RMSprop(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def clip_gradients(optimizer: torch.optim.Optimizer, max_norm: float) -> None:
    """Clip the gradients of the optimizer's parameters to a total (L2) norm of at most max_norm before
    ``optimizer.step()``, as ``clip_grad_norm_`` does: each gradient times min(1, max_norm / norm). A fused Adam
    divides the gradients by its ``grad_scale`` tensor (GradScaler's hook) in the pass it makes anyway, so there
    the scale max(1, norm / max_norm) is handed to it instead of multiplying every gradient first: one pass over
    the gradients less, 1.5 ms of a 55 ms PTB step (the parameters agree with clip_grad_norm_'s to float
    rounding). It is set, or cleared, on every call."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    if not (optimizer.defaults.get("fused") and hasattr(torch.nn.utils, "get_total_norm")):  # torch >= 2.6
        torch.nn.utils.clip_grad_norm_(params, max_norm)
        return
    grads = [p.grad for p in params if p.grad is not None]
    optimizer.grad_scale = (torch.clamp(torch.nn.utils.get_total_norm(grads).float() / max_norm, min=1.0)
                            if grads else None)


WSD_COOLDOWN = 0.2  # the fraction of the budget over which --lr-schedule wsd anneals (Hagele et al. 2024: 20%)


def lr_factor(schedule: str, progress: float) -> float:
    """The learning rate's multiplier at ``progress`` in [0, 1] of the training budget: constant 1; linear 1 - p,
    which under a fixed budget of steps or time beats step decay (Li et al. 2020, "Budgeted training");
    cosine (1 + cos(pi p)) / 2 (Loshchilov & Hutter 2017, without restarts); wsd ("warmup-stable-decay", the warm-up
    left to Adam) holds 1 and then falls linearly to 0 over the last WSD_COOLDOWN of the budget, which matches cosine
    while keeping the full rate for most of the run (Hu et al. 2024, MiniCPM; Hagele et al. 2024)."""
    p = min(max(progress, 0.0), 1.0)
    if schedule == "linear":
        return 1.0 - p
    if schedule == "wsd":
        return min(1.0, (1.0 - p) / WSD_COOLDOWN)
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * p))
    return 1.0


def _atomic_torch_save(obj: dict, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def batch_size_of(batch: Any) -> int:
    return batch.shape[0] if isinstance(batch, torch.Tensor) else len(batch)


class _LossForward(torch.nn.Module):
    """DistributedDataParallel hooks into forward(); a VAE's training objective is its loss() method."""

    def __init__(self, model: VAE):
        super().__init__()
        self.model = model

    def forward(self, batch, kl_weight: float, free_bits: float, generator):
        return self.model.loss(batch, kl_weight=kl_weight, free_bits=free_bits, generator=generator)


@torch.no_grad()
def validation_loss(model: VAE, data: TrainData, batch_size: int, precision: str, seed: int,
                    device: torch.device = torch.device("cpu")) -> dict[str, float]:
    """Mean per-item negative ELBO (KL weight 1), reconstruction and KL over ``data``, one posterior sample
    per item drawn with a fixed seed so that epochs compare like with like; also the mutual information
    and active units (He et al. 2019) and, for text, the perplexity exp(negative ELBO per token)."""
    was_training = model.training
    model.eval()
    generator = torch.Generator(device).manual_seed(seed)
    totals = {"loss": 0.0, "rec": 0.0, "kl": 0.0}
    count, tokens, means, mi, mi_weight = 0, 0, [], 0.0, 0

    for number, batch in enumerate(data.eval_batches(batch_size), start=1):
        if number % 5 == 0:
            trim()  # see vaekit.memory
        n = batch_size_of(batch)
        batch = to_device(batch, device)
        with autocast(precision, device):
            out = model.loss(batch, kl_weight=1.0, generator=generator)
        for key, value in out.items().items():
            totals[key] = totals.get(key, 0.0) + value * n
        count += n
        means.extend(out.posterior.mean.tolist())  # Python lists: see evaluate.evaluate on heap fragmentation
        if n > 1:
            mi += mutual_information(out.posterior, generator) * n
            mi_weight += n
        if out.tokens is not None:
            tokens += out.tokens
    model.train(was_training)
    metrics = {k: v / max(count, 1) for k, v in totals.items()}
    metrics["mutual_information"] = mi / max(mi_weight, 1)
    metrics["active_units"] = active_units(np.asarray(means))
    if tokens:
        metrics["perplexity"] = math.exp(min(totals["loss"] / tokens, 50.0))
    return metrics


class _SilentMonitor:
    """What ranks other than 0 log to: nothing."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


class Trainer:
    """Fits ``model`` on ``train_data``, validating on ``val_data`` each epoch, writing into ``run_dir``.

    The model gives ``loss(batch, kl_weight, free_bits, generator)``; it may give
    ``log_examples(monitor, batch, step, generator)`` to draw samples and reconstructions each epoch.
    """

    def __init__(self, model: VAE, train_data: TrainData, val_data: TrainData | None, config: TrainConfig,
                 run_dir: str | os.PathLike, *, progress: bool = False, log_every: int = 20,
                 tensorboard: bool = True):
        self.model = model
        self.train_data = train_data
        self.val_data = val_data
        self.config = config
        self.run_dir = Path(run_dir)
        self.progress = progress
        self.log_every = log_every
        self.tensorboard = tensorboard
        self.device = distributed.resolve_device(config.device)
        self.precision = resolve_precision(config.precision, self.device)
        distributed.init(self.device)
        self.rank, self.world_size = distributed.rank(), distributed.world_size()
        self.main = self.rank == 0
        self.progress = progress and self.main
        if config.batch_size * self.world_size > len(train_data):
            raise VaekitError(f"--batch-size {config.batch_size} is larger than the {len(train_data)} training items"
                              + (f" shared by {self.world_size} processes" if self.world_size > 1 else ""))
        # The data generator shuffles; under DDP every rank seeds it alike so that all plan the same epoch.
        # Noise (z draws, word dropout) comes from it too on one CPU process, else from a per-rank generator
        # on the device.
        self.generator = torch.Generator().manual_seed(config.seed)
        self.noise = (self.generator if self.world_size == 1 and self.device.type == "cpu"
                      else torch.Generator(self.device).manual_seed(config.seed + 7919 * (self.rank + 1)))
        torch.manual_seed(config.seed)
        model.to(self.device)
        self.forward = None  # built by fit() around the model it then holds
        self.scaler = torch.amp.GradScaler(self.device.type) if self.precision == "fp16" else None
        self.optimizer = make_optimizer(config, model.optimizer_groups(), self.device)
        self.scheduler = (torch.optim.lr_scheduler.ReduceLROnPlateau(self.optimizer, factor=config.lr_decay,
                                                                     patience=config.lr_patience)
                          if config.lr_decay < 1 and val_data is not None else None)
        self.step = 0
        self.epoch = 0  # epochs completed
        self.best_val: float | None = None
        self.epochs_since_best = 0
        self._started = time.perf_counter()  # reset by fit(): --max-minutes counts this process's training
        self._collapse_warned = False

    # --- checkpoints ------------------------------------------------------------------------
    def _write_config(self) -> None:
        """config.json gets the model and training sections; other sections (data, tokenizer) that the
        caller wrote before are kept. Rank 0 alone writes."""
        if not self.main:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        ours = {**self.model.config_dict(), "training": to_dict(self.config)}
        if self.world_size > 1:
            ours["distributed"] = {"world_size": self.world_size, "per_rank_batch_size": self.config.batch_size,
                                   "global_batch_size": self.config.batch_size * self.world_size,
                                   "backend": torch.distributed.get_backend()}
        update_config(self.run_dir, ours)

    def _save_resume_state(self) -> None:
        if not self.main:
            return
        _atomic_torch_save({
            "model": self.model.trained_state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "step": self.step,
            "epoch": self.epoch,
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            # one process on a GPU: its noise and the GPU's own generator (dropout) continue exactly on resume
            **({"noise": self.noise.get_state(), "device_rng": torch.cuda.get_rng_state(self.device)}
               if self.world_size == 1 and self.device.type == "cuda" else {}),
            "best_val": self.best_val,
            "epochs_since_best": self.epochs_since_best,
        }, self.run_dir / RESUME_NAME)

    def load_resume_state(self) -> None:
        path = self.run_dir / RESUME_NAME
        if not path.is_file():
            raise VaekitError(f"{path}: no resume state to continue from (was the run stopped before its first epoch ended?)")
        try:
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as exc:  # garbage makes the unpickler raise nearly anything (IndexError, UnicodeDecodeError...)
                raise ValueError(f"unreadable ({type(exc).__name__}: {exc})") from None
            if not isinstance(state, dict):
                raise ValueError(f"holds a {type(state).__name__}, not vaekit's resume state")
            self.model.load_trained_state(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            if self.scheduler is not None and state.get("scheduler"):
                self.scheduler.load_state_dict(state["scheduler"])
            self.step, self.epoch = int(state["step"]), int(state["epoch"])
        except (RuntimeError, KeyError, ValueError, TypeError, OSError, EOFError, pickle.UnpicklingError) as exc:
            reason = (f"missing {exc}" if isinstance(exc, KeyError) else str(exc).strip().splitlines()[0] if str(exc).strip()
                      else type(exc).__name__)
            raise VaekitError(f"{path}: not a resume state of this run ({reason[:200]})") from None
        self.generator.set_state(state["generator"])
        if "noise" in state and self.world_size == 1 and self.device.type == "cuda":
            self.noise.set_state(state["noise"])
            torch.cuda.set_rng_state(state["device_rng"], self.device)
        elif self.noise is not self.generator:  # per-rank noise continues from a seed that moves with the step
            self.noise.manual_seed(self.config.seed + 7919 * (self.rank + 1) + self.step)
        torch.set_rng_state(state["torch_rng"])
        self.best_val = state["best_val"]
        self.epochs_since_best = int(state["epochs_since_best"])

    # --- the loop ---------------------------------------------------------------------------
    def _build_forward(self) -> None:
        """The loss as a module: compiled with --compile, wrapped in DistributedDataParallel under torchrun
        (which broadcasts rank 0's weights, then averages gradients across ranks in every backward pass)."""
        self.model.to(self.device)
        forward = _LossForward(self.model)
        if self.config.compile:
            forward = torch.compile(forward, dynamic=True)
        if self.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel

            forward = DistributedDataParallel(forward, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.forward = forward

    def fit(self, resume: bool = False) -> TrainResult:
        cfg = self.config
        if resume:
            self.load_resume_state()
        reuse_freed_memory()  # every step frees and reallocates the same activations (see vaekit.memory)
        self._build_forward()
        self._write_config()
        monitor = (Monitor(self.run_dir, resume_step=self.step if resume else None, tensorboard=self.tensorboard)
                   if self.main else _SilentMonitor())
        if self.world_size > 1 and self.main:
            log.info("distributed: %d processes (%s), global batch size %d = %d per process", self.world_size,
                     torch.distributed.get_backend(), cfg.batch_size * self.world_size, cfg.batch_size)
            if self.progress:
                tqdm.write(f"distributed training on {self.world_size} processes "
                           f"({torch.distributed.get_backend()}): global batch size "
                           f"{cfg.batch_size * self.world_size} ({cfg.batch_size} per process)")
        batches_per_epoch = (self.train_data.num_train_batches(cfg.batch_size, world_size=self.world_size)
                             if self.world_size > 1 else self.train_data.num_train_batches(cfg.batch_size))
        total_steps = cfg.epochs * batches_per_epoch
        status, seen, busy = "finished", 0, 0.0
        self._started = time.perf_counter()
        self.model.train()
        try:
            while self.epoch < cfg.epochs:
                seen_epoch, busy_epoch = self._train_epoch(monitor, batches_per_epoch, total_steps)
                seen, busy = seen + seen_epoch, busy + busy_epoch
                self.epoch += 1
                stop = self._end_epoch(monitor, seen_epoch * self.world_size / max(busy_epoch, 1e-9))
                if stop:
                    status = "early-stopped"
                    break
                (time_used,) = distributed.max_over_ranks(self._time_used(), device=self.device)
                if time_used >= 1.0 and self.step >= cfg.min_steps and self.epoch < cfg.epochs:
                    status = "time-limit"
                    break
        except KeyboardInterrupt:
            status = "interrupted"
            log.warning("interrupted at step %d; the last checkpoint (epoch %d) is kept", self.step, self.epoch)
        finally:
            monitor.plot_curves(final=True)  # the curves up to the end, however the run ended
            monitor.close()
        return TrainResult(status, self.epoch, self.step, self.best_val, seen * self.world_size / max(busy, 1e-9))

    def _train_epoch(self, monitor: Monitor, batches_per_epoch: int, total_steps: int) -> tuple[int, float]:
        cfg = self.config
        budget = f" (stops after {cfg.max_minutes:g} min)" if cfg.max_minutes else ""  # the bar's estimate does not know
        bar = tqdm(total=batches_per_epoch, desc=f"epoch {self.epoch + 1}/{cfg.epochs}{budget}", unit="batch",
                   disable=not self.progress, leave=True, dynamic_ncols=True, mininterval=0.5)
        window = {"loss": 0.0, "rec": 0.0, "kl": 0.0}
        window_n, seen, done = 0, 0, 0
        start = time.perf_counter()
        try:
            sharding = {"rank": self.rank, "world_size": self.world_size} if self.world_size > 1 else {}
            for batch in self.train_data.train_batches(cfg.batch_size, self.generator, **sharding):
                weight = kl_weight(self.step, cfg, total_steps)
                batch = to_device(batch, self.device)
                with autocast(self.precision, self.device):
                    out = self.forward(batch, weight, cfg.free_bits, self.noise)
                loss_value = out.loss.item()
                # one all-reduce: every rank stops, fails and schedules its learning rate alike
                bad, time_used = distributed.max_over_ranks(float(not math.isfinite(loss_value)), self._time_used(),
                                                            device=self.device)
                late = time_used >= 1.0 and self.step + 1 >= cfg.min_steps
                if bad:
                    raise NonFiniteLossError(self.step + 1, self.epoch + 1, loss_value)
                self.optimizer.zero_grad(set_to_none=True)
                if self.scaler is not None:
                    self.scaler.scale(out.loss).backward()
                    self.scaler.unscale_(self.optimizer)
                else:
                    out.loss.backward()
                if cfg.grad_clip > 0:
                    if self.scaler is not None:  # GradScaler hands fused optimizers its own grad_scale
                        torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
                    else:
                        clip_gradients(self.optimizer, cfg.grad_clip)
                if cfg.lr_schedule != "constant":  # step, or time under --max-minutes, whichever is further on
                    factor = lr_factor(cfg.lr_schedule, max(self.step / max(total_steps, 1), time_used))
                    for group in self.optimizer.param_groups:
                        group["lr"] = cfg.lr * factor * group.get("lr_scale", 1.0)
                if self.scaler is not None:
                    self.scaler.step(self.optimizer)
                    self.scaler.update()
                else:
                    self.optimizer.step()
                self.step += 1
                seen += batch_size_of(batch)
                values = out.items()
                for key, value in values.items():  # models may add terms (a constraint loss) to the three
                    window[key] = window.get(key, 0.0) + value
                window_n += 1
                done += 1
                bar.update(1)
                last = done == batches_per_epoch or late
                if window_n == self.log_every or last:
                    means = {k: v / window_n for k, v in window.items()}
                    bar.set_postfix({k: f"{v:.2f}" for k, v in means.items()})
                    monitor.log("train", self.step, self.epoch + 1, {**means, "kl_weight": weight})
                    window = dict.fromkeys(window, 0.0)
                    window_n = 0
                if late:  # the epoch ends here (on every rank at once); it is validated and checkpointed as usual
                    break
        finally:
            bar.close()
        return seen, time.perf_counter() - start

    def _warn_if_collapsed(self, val: dict[str, float]) -> None:
        """Posterior collapse (Bowman et al. 2016; He et al. 2019): once the KL weight has warmed up, a KL under
        0.1 nats or no active unit means the decoder ignores z. Said once per run."""
        cfg = self.config
        warmed = kl_weight(self.step, cfg, self.step + 1) >= 0.99 * cfg.beta if cfg.kl_schedule != "cyclical" else self.epoch >= 2
        # the first epochs often start near KL 0 and climb out (the 8x8 digits did): judge from the third on
        settled = self.epoch >= min(3, cfg.epochs)
        if self._collapse_warned or not warmed or not settled or cfg.beta == 0 or not self.main:
            return
        if val["kl"] < 0.1 or val["active_units"] == 0:
            self._collapse_warned = True
            text = hasattr(self.model, "tokenizer")
            effect = "variations will not follow their input" if text else "reconstructions will not follow their input"
            remedies = "--free-bits 0.1-0.5, --word-dropout 0.3, --kl-schedule cyclical" if text else \
                "more epochs"
            message = (f"posterior collapse: validation KL is {val['kl']:.3f} nats with {val['active_units']} active units, "
                       f"so the decoder ignores z and {effect}; try {remedies} or a smaller --beta")
            log.warning(message)
            if self.progress:
                tqdm.write("warning: " + message)

    def _time_used(self) -> float:
        """The fraction of --max-minutes spent (0 without a limit)."""
        cfg = self.config
        return (time.perf_counter() - self._started) / (cfg.max_minutes * 60) if cfg.max_minutes > 0 else 0.0

    def _end_epoch(self, monitor: Monitor, items_per_second: float) -> bool:
        """Validate, log, keep the best weights, write the resume state. Returns True to stop early."""
        cfg = self.config
        if self.val_data is not None:
            # every rank validates alike (same data, same seed), so LR decay and early stopping agree
            val = validation_loss(self.model, self.val_data, max(cfg.batch_size, 256), self.precision, cfg.seed,
                                  self.device)
            if self.scheduler is not None:
                self.scheduler.step(val["loss"])
            lr = self.optimizer.param_groups[0]["lr"]
            monitor.log("val", self.step, self.epoch, {**val, "lr": lr, "train_items_per_s": items_per_second})
            improved = self.best_val is None or val["loss"] < self.best_val
            if improved:
                self.best_val, self.epochs_since_best = val["loss"], 0
            else:
                self.epochs_since_best += 1
            if self.progress:
                tqdm.write(f"epoch {self.epoch}: validation negative ELBO {val['loss']:.2f} nats "
                           f"(rec {val['rec']:.2f}, KL {val['kl']:.2f}, active units {val['active_units']})"
                           f"{'  best' if improved else ''}")
            self._warn_if_collapsed(val)
        else:
            improved = True
        if improved and self.main:
            self.model.save_weights(self.run_dir / WEIGHTS_NAME)
        self._save_resume_state()
        if self.main and getattr(self.model, "log_examples", None) is not None:
            data = self.val_data if self.val_data is not None else self.train_data
            first = next(iter(data.eval_batches(64)))
            # on the training device: generation follows the model's device (a CPU seed, the same draws anywhere)
            self.model.eval()
            with torch.no_grad():
                self.model.log_examples(monitor, first, self.step, torch.Generator().manual_seed(cfg.seed))
            self.model.train()
        monitor.plot_curves()
        monitor.flush()
        distributed.barrier()  # the checkpoint is complete before any rank goes on
        return cfg.early_stop > 0 and self.epochs_since_best >= cfg.early_stop


# --- the training pipeline of every modality ---------------------------------------------------------------
@dataclasses.dataclass
class Prepared:
    """What a modality's data step gives the pipeline: the model and its data, and what to do with the best model
    once training ends (the image path draws its plots), run while the run folder is still locked."""

    model: VAE
    train_data: TrainData
    val_data: TrainData | None
    finish: Callable[[VAE, TrainResult], None] | None = None


def run_training(out: str | Path, training: TrainConfig | None, prepare: Callable[..., Prepared], *,
                 resume: bool = False, overwrite: bool = False, epochs: int | None = None,
                 progress: bool = False) -> tuple[TrainResult, VAE]:
    """Train into run folder ``out``, for every modality (images.train_image, texts.train_text): resolve the device
    and precision before anything is written, lock the folder (runs.training_folder), make it ready (``--overwrite``
    clears it, ``resume`` keeps it), read the training settings (``resume``: the run's own, only the device,
    ``compile`` and ``epochs`` may change), then call the modality's data step ``prepare(training, saved,
    run_setup)`` (``saved``: the run's config.json on resume, else None; it calls ``run_setup.start()`` once its
    data checked out), fit, and return the result with the best model (the last one without validation)."""
    given = training or TrainConfig()
    device = distributed.resolve_device(given.device)
    distributed.init(device)
    resolve_precision(given.precision, device)  # a bad --precision fails before the folder is touched
    out = Path(out)
    with training_folder(out) as run_setup:
        distributed.on_main(lambda: prepare_run_dir(out, overwrite=overwrite, resume=resume))
        saved = None
        training = given
        if resume:
            saved = read_json(out / CONFIG_NAME)
            training = from_dict(TrainConfig, saved.get("training"), where=f"{out / CONFIG_NAME} \"training\"")
            # the machine may differ from the one the run started on
            training = dataclasses.replace(training, device=given.device, compile=given.compile)
        if epochs is not None:
            training = dataclasses.replace(training, epochs=epochs)
        prepared = prepare(training, saved, run_setup)
        result = Trainer(prepared.model, prepared.train_data, prepared.val_data, training, out,
                         progress=progress).fit(resume=resume)
        best = load(out) if (out / WEIGHTS_NAME).is_file() else prepared.model.cpu().eval()
        if prepared.finish is not None:
            prepared.finish(best, result)
        return result, best
