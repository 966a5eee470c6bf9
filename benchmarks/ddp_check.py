"""Distributed data parallel on CUDA devices, for a machine with a GPU. Run under torchrun:

    python -m torch.distributed.run --standalone --nproc-per-node 2 benchmarks/ddp_check.py OUT [--backend gloo]

Trains the seed image VAE on MNIST with vaekit's own path (train_image, the Trainer, DistributedDataParallel)
on cuda:LOCAL_RANK, then checks that every rank ends with identical parameters and prints rank 0's figures as
JSON. vaekit joins NCCL on GPUs, and NCCL refuses two ranks on one GPU; --backend gloo lets two processes share
one GPU (gloo all-reduces CUDA tensors through the host), so a one-GPU machine still runs the DDP path.
"""
from __future__ import annotations

import argparse
import datetime
import json
import time
from pathlib import Path

import torch
import torch.distributed as dist

from vaekit import TrainConfig, distributed
from vaekit.data.images import load_images
from vaekit.images import train_image

from common import SHARED


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--backend", choices=["nccl", "gloo"], default="nccl")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--precision", default="bf16")
    args = parser.parse_args()

    def init(device: torch.device) -> None:  # vaekit's own, with the backend chosen here and no GPU-count check
        if not dist.is_initialized():
            torch.cuda.set_device(device)
            dist.init_process_group(backend=args.backend, timeout=datetime.timedelta(minutes=5))

    distributed.init = init
    start = time.perf_counter()
    run = train_image(load_images(SHARED / "mnist", split="train"), args.out, preset="seed", binarize="threshold",
                      training=TrainConfig(epochs=args.epochs, batch_size=128, precision=args.precision,
                                           device="cuda"), overwrite=True)
    wall = time.perf_counter() - start
    flat = torch.cat([p.detach().float().flatten() for p in run.model.parameters()]).cuda()
    low, high = flat.clone(), flat.clone()
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    identical = bool(torch.equal(low, high))
    if dist.get_rank() == 0:
        rows = [json.loads(line) for line in (args.out / "metrics.jsonl").read_text().splitlines()]
        train = [r["loss"] for r in rows if r["split"] == "train"]
        config = json.loads((args.out / "config.json").read_text())
        print(json.dumps({"bench": "ddp_cuda", "backend": args.backend, "world_size": dist.get_world_size(),
                          "device": torch.cuda.get_device_name(), "precision": args.precision,
                          "distributed": config.get("distributed"), "parameters_identical": identical,
                          "first_loss": round(train[0], 2), "last_loss": round(train[-1], 2),
                          "steps": rows[-1]["step"], "wall_s": round(wall, 1)}), flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
