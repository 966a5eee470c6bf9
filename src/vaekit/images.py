"""Image workflows: train a run folder, and use a trained model (sample, reconstruct, interpolate, plot,
encode, evaluate). The ``vaekit`` CLI calls exactly these functions."""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from . import runs
from . import viz
from . import distributed
from .config import TrainConfig, from_dict, read_json
from .data.images import BINARIZE, ImageDataset, load_images, model_batches, pixels
from .errors import VaekitError
from .evaluate import evaluate
from .models.image import PRESETS, ImageVAE, ImageVAEConfig
from .runs import CONFIG_NAME, data_of_resumed_run, update_config
from .train import Prepared, TrainResult, run_training

log = logging.getLogger(__name__)


@dataclasses.dataclass
class ImageRun:
    run_dir: Path
    result: TrainResult
    model: ImageVAE


def train_image(data: str | Path | ImageDataset, out: str | Path, *, preset: str = "default",
                model_overrides: dict | None = None, training: TrainConfig | None = None,
                binarize: str = "none", resize: str | None = None, resume: bool = False,
                overwrite: bool = False, progress: bool = False, epochs: int | None = None,
                conditional: bool = False) -> ImageRun:
    """Train an ImageVAE into run folder ``out``; with ``conditional``, a conditional VAE on the images'
    class labels (class sub-folders, IDX label files, an .npz's ``y``).

    Everything is validated (the folder, the data, the model and training settings) before anything is
    written. With ``resume`` the settings come from the run's config.json; only ``epochs`` may change.
    """
    def prepare(training: TrainConfig, saved: dict | None, run_setup) -> Prepared:
        return _prepare_images(data, out, training, saved, run_setup, preset=preset, model_overrides=model_overrides,
                               binarize=binarize, resize=resize, conditional=conditional)

    out = Path(out)
    result, best = run_training(out, training, prepare, resume=resume, overwrite=overwrite, epochs=epochs,
                                progress=progress)
    return ImageRun(out, result, best)


def _prepare_images(data, out: Path, training: TrainConfig, saved: dict | None, run_setup, *, preset, model_overrides,
                    binarize, resize, conditional) -> Prepared:
    """The image data step of train.run_training: the images, the model, and the plots drawn at the end."""
    resume = saved is not None
    if resume:
        model_config = from_dict(ImageVAEConfig, saved.get("model"), where=f"{out / CONFIG_NAME} \"model\"")
        data_info = saved.get("data", {})
        binarize, resize = data_info.get("binarize", "none"), data_info.get("resize")
        data = data_of_resumed_run(data, data_info.get("path"), out)
    if binarize not in BINARIZE:
        raise VaekitError(f"--binarize {binarize!r}: choose {', '.join(BINARIZE)}")
    dataset = data if isinstance(data, ImageDataset) else load_images(data, resize=resize, split="train")
    train_set, val_set = dataset.split(training.val_fraction, training.seed)
    c, h, w = dataset.shape
    if not resume:
        if preset not in PRESETS:
            raise VaekitError(f"--preset {preset!r}: choose from {', '.join(PRESETS)}")
        label_names = ()
        if conditional:
            if dataset.labels is None:
                raise VaekitError(f"{dataset.source}: --conditional needs class labels (class sub-folders, an IDX "
                                  "labels file, or labels under 'y' in an .npz); these images have none")
            label_names = tuple(dataset.label_names)
        model_config = ImageVAEConfig(**{**PRESETS[preset], **(model_overrides or {}),
                                         "in_channels": c, "height": h, "width": w, "label_names": label_names})
    elif (model_config.in_channels, model_config.height, model_config.width) != (c, h, w):
        raise VaekitError(f"{dataset.source}: images are {c}x{h}x{w} (c, h, w) but the run was trained on "
                          f"{model_config.in_channels}x{model_config.height}x{model_config.width}")
    # the initial weights come from the seed too: PyTorch seeds its default generator at random in each
    # process, so two runs with the same --seed started from different weights (the text path seeds likewise)
    torch.manual_seed(training.seed)
    model = ImageVAE(model_config)
    train_batches = model_batches(model, train_set, binarize, training.seed)
    val_batches = model_batches(model, val_set, binarize, training.seed) if val_set is not None else None
    if not resume:
        distributed.on_main(lambda: _start_run(run_setup, out, {
            "path": dataset.source or None,
            "resize": resize,
            "binarize": binarize,
            "shape": [c, h, w],
            "train_items": len(train_set),
            "val_items": len(val_set) if val_set is not None else 0,
            "label_names": dataset.label_names,
        }))

    def finish(best: ImageVAE, result: TrainResult) -> None:
        if result.epochs > 0 and distributed.is_main():
            finish_plots(best, val_set or train_set, dataset, binarize, out, seed=training.seed)

    return Prepared(model, train_batches, val_batches, finish)


def _start_run(run_setup, out: Path, data: dict) -> None:
    run_setup.start()
    update_config(out, {"data": data})


def finish_plots(model: ImageVAE, held_out: ImageDataset, everything: ImageDataset, binarize: str, run_dir: Path,
                 seed: int = 0) -> None:
    """The best model's samples, reconstructions (of held-out images) and latent plot (of all images, at
    most 5,000) in run_dir/plots."""
    from .monitor import Monitor

    batches = model_batches(model, held_out, binarize, seed)
    monitor = Monitor(run_dir, metrics=False, tensorboard=False)
    with torch.no_grad():
        model.log_examples(monitor, batches.fixed()[:64], 0, torch.Generator().manual_seed(seed))
    latent_plot(model, everything, run_dir / runs.PLOTS_DIR / "latent.png", binarize=binarize, seed=seed)


def run_binarize(run_dir: str | Path) -> str:
    """The binarization a run was trained with ("none" for a plain save_pretrained folder)."""
    raw = read_json(Path(run_dir) / CONFIG_NAME)
    return (raw.get("data") or {}).get("binarize", "none")


def sample_grid(model: ImageVAE, n: int, out: str | Path, seed: int = 0, temperature: float = 1.0,
                label: str | None = None) -> Path:
    """Decode n prior samples; .png writes a grid, .npy/.npz the float array (n, c, h, w). A conditional
    model draws them as ``label``, or without one a row per label (n rounded up to fill the rows)."""
    if n < 1:
        raise VaekitError(f"-n {n}: must be at least 1")
    generator = torch.Generator().manual_seed(seed)
    if model.conditional and label is None:
        classes = model.config.num_labels
        per_row = -(-n // classes)
        images = model.sample(per_row * classes, generator=generator, temperature=temperature)
        return write_images(images, out, nrow=per_row, scale=viz.auto_scale(model.config.height))
    images = model.sample(n, generator=generator, temperature=temperature, label=label)
    return write_images(images, out, nrow=int(np.ceil(np.sqrt(n))), scale=viz.auto_scale(model.config.height))


def write_images(images: torch.Tensor, out: str | Path, nrow: int, scale: int) -> Path:
    """``images`` (n, c, h, w) to ``out``: a PNG grid of ``nrow`` a row, or the array itself as .npy/.npz."""
    out = Path(out)
    images = images.detach().float().cpu()  # from wherever the model decoded them
    if out.suffix == ".npy":
        np.save(out, images.numpy())
        return out
    if out.suffix == ".npz":
        np.savez_compressed(out, images=images.numpy())
        return out
    if out.suffix.lower() != ".png":
        raise VaekitError(f"--out {out}: use a .png, .npy or .npz file name")
    return viz.save_png(viz.image_grid(images, nrow=nrow, scale=scale), out)


def checked_indices(data: ImageDataset, indices: Sequence[int]) -> list[int]:
    """``indices`` into ``data``; one out of range is an error naming it and the range."""
    for i in indices:
        if not 0 <= i < len(data):
            raise VaekitError(f"--index {i}: out of range; the data holds {len(data)} images (0 to {len(data) - 1})")
    return list(indices)


def reconstruct_grid(model: ImageVAE, data: ImageDataset, out: str | Path, n: int = 32,
                     indices: Sequence[int] = (), binarize: str | None = None, seed: int = 0,
                     label: str | None = None) -> Path:
    """Images (odd columns) beside their reconstructions from the posterior mean (even columns); with
    ``label`` a conditional model redraws each image as that class."""
    batches = model_batches(model, data, binarize, seed)
    chosen = checked_indices(data, indices) if indices else list(range(min(n, len(data))))
    x = batches.fixed()[chosen]
    pairs = torch.stack([pixels(x).float(), model.reconstruct(x, label=label).cpu()], dim=1).flatten(0, 1)
    return write_images(pairs, out, nrow=min(16, len(pairs)), scale=viz.auto_scale(model.config.height))


def interpolate_grid(model: ImageVAE, data: ImageDataset, indices: Sequence[int], out: str | Path,
                     steps: int = 10, binarize: str | None = None, seed: int = 0) -> Path:
    """One row per consecutive pair of indices: decoded points between their posterior means."""
    if len(indices) < 2:
        raise VaekitError("--index: give at least two images to interpolate between")
    if steps < 2:
        raise VaekitError(f"--steps {steps}: must be at least 2")
    batches = model_batches(model, data, binarize, seed)
    chosen = checked_indices(data, indices)
    x = batches.fixed()
    rows = [model.interpolate(x[a:a + 1], x[b:b + 1], steps) for a, b in zip(chosen[:-1], chosen[1:])]
    return write_images(torch.cat(rows), out, nrow=steps, scale=viz.auto_scale(model.config.height))


def manifold_picture(model: ImageVAE, size: int = 15, label: str | None = None) -> np.ndarray:
    """For a 2-D latent: decode a size x size grid at the Gaussian's quantiles (Kingma & Welling 2014, fig. 4);
    a conditional model draws it as ``label`` (default: its first label)."""
    q = torch.special.ndtri(torch.linspace(0.05, 0.95, size, device=model.device))  # N(0, 1) quantiles
    z = torch.stack(torch.meshgrid(q, q.flip(0), indexing="xy"), dim=-1).reshape(-1, 2)  # rows: z2 high to low
    with torch.no_grad():
        images = model.decode_as(z, label)
    return viz.image_grid(images, nrow=size, padding=1, scale=viz.auto_scale(model.config.height) // 2 or 1)


def latent_plot(model: ImageVAE, data: ImageDataset, out: str | Path, binarize: str | None = None,
                seed: int = 0, max_items: int = 5000) -> Path:
    """Posterior means coloured by label; for a 2-D latent also the decoded manifold."""
    if len(data) > max_items:
        data = data.subset(torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:max_items])
    from .items import image_items
    from .latent import encode_items, plot_latent

    codes = encode_items(model, image_items(model, data, binarize, seed))
    manifold = manifold_picture(model) if model.latent_dim == 2 else None
    return plot_latent(codes["mean"], data.labels, data.label_names, out, manifold=manifold,
                       title=f"posterior means of {len(data)} images")


def evaluate_images(model: ImageVAE, data: ImageDataset, iw_samples: int = 100, binarize: str | None = None,
                    seed: int = 0, precision: str = "fp32", progress: bool = False) -> dict:
    """Negative ELBO, reconstruction, KL, importance-weighted NLL, MI and active units, nats per image.
    With "dynamic" binarization the data are binarized stochastically once, with ``seed``."""
    if iw_samples < 1:
        raise VaekitError(f"--iw-samples {iw_samples}: must be at least 1")
    batches = model_batches(model, data, binarize, seed)
    report = evaluate(model, batches.eval_batches(500), iw_samples=iw_samples, seed=seed, precision=precision,
                      progress=progress, total=len(data))
    report.update({"data": data.source, "binarize": binarize or "none", "seed": seed, "precision": precision})
    return report
