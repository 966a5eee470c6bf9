"""Run under torchrun by test_distributed.py: trains a tiny image VAE with the Trainer, then every rank
writes its own copy of the parameters so the test can compare them."""
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).parent))
from conftest import blobs, tiny_model  # noqa: E402

from vaekit import TrainConfig  # noqa: E402
from vaekit.data.images import ImageBatches, ImageDataset  # noqa: E402
from vaekit.train import Trainer  # noqa: E402


def main() -> None:
    out = Path(sys.argv[1])
    images = torch.from_numpy(blobs(96))[:, None]
    model = tiny_model()
    config = TrainConfig(epochs=4, batch_size=8, lr=3e-3, precision="fp32", device="cpu", seed=0)
    trainer = Trainer(model, ImageBatches(ImageDataset(images), "none"), None, config, out)
    result = trainer.fit()
    rank = dist.get_rank()
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(out / f"rank{rank}.safetensors"))
    print(f"rank {rank} of {dist.get_world_size()}: {result.status}, {result.step} steps", flush=True)


if __name__ == "__main__":
    main()
