"""Distributed data parallel on 2 CPU processes with gloo, launched by torchrun (issue 6)."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import blobs

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
ENV_THREADS = {"OMP_NUM_THREADS": "1"}


def torchrun(*args, timeout=300):
    import os

    return subprocess.run([*TORCHRUN, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **ENV_THREADS})


def test_ranks_keep_identical_parameters_and_the_loss_falls(tmp_path):
    result = torchrun(Path(__file__).parent / "ddp_worker.py", tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "rank 0 of 2" in result.stdout and "rank 1 of 2" in result.stdout
    zero, one = load_file(tmp_path / "rank0.safetensors"), load_file(tmp_path / "rank1.safetensors")
    assert zero.keys() == one.keys()
    for name in zero:
        assert torch.equal(zero[name], one[name]), name
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if r["split"] == "train"]
    assert losses[-1] < losses[0]
    config = json.loads((tmp_path / "config.json").read_text())
    # 96 images, 48 per rank, 8 per rank and step: 6 steps an epoch, global batch 16
    assert config["distributed"] == {"world_size": 2, "per_rank_batch_size": 8, "global_batch_size": 16,
                                     "backend": "gloo"}
    assert rows[-1]["step"] == 24


def test_cli_under_torchrun_writes_one_run_and_resumes(tmp_path):
    data = tmp_path / "tiny.npz"
    np.savez(data, x=blobs(80), y=np.arange(80) % 3)
    out = tmp_path / "run"
    common = ["--quiet", "--precision", "fp32", "--device", "cpu"]
    result = torchrun("-m", "vaekit", "train", "image", "--data", data, "--out", out, "--epochs", 2, "--batch-size", 8,
                      "--latent-dim", 2, *common)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("finished after 2 epochs") == 1  # rank 0 alone reports
    for name in ("config.json", "model.safetensors", "resume.pt", "metrics.jsonl", "plots/curves.png"):
        assert (out / name).exists(), name
    steps = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["step"]
    result = torchrun("-m", "vaekit", "train", "image", "--out", out, "--resume", "--epochs", 3, "--quiet",
                      "--device", "cpu")
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["step"] == steps * 3 // 2
    # a bad flag fails on every rank with the one-line error, not a hang
    result = torchrun("-m", "vaekit", "train", "image", "--data", tmp_path / "missing.npz", "--out", tmp_path / "x",
                      *common, timeout=120)
    assert result.returncode != 0 and "error: " in result.stderr


def test_two_nodes_meet_through_the_c10d_rendezvous(tmp_path):
    """The README's multi-node command, as two single-process "machines" on this one: each torchrun joins the
    c10d rendezvous at an endpoint, the rendezvous assigns the global ranks, and whichever node got rank 0 alone
    reports and writes the (shared) run folder."""
    import os
    import socket

    data = tmp_path / "tiny.npz"
    np.savez(data, x=blobs(80), y=np.arange(80) % 3)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
               "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "vaekit-test",
               "-m", "vaekit", "train", "image", "--data", str(data), "--out", str(tmp_path / "run"), "--epochs", "2",
               "--batch-size", "8", "--latent-dim", "2", "--quiet", "--precision", "fp32", "--device", "cpu"]
    nodes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, **ENV_THREADS}) for _ in range(2)]
    results = [node.communicate(timeout=300) for node in nodes]
    for node, (_, err) in zip(nodes, results):
        assert node.returncode == 0, err[-3000:]
    assert sum(out.count("finished after 2 epochs") for out, _ in results) == 1
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["distributed"]["world_size"] == 2 and config["distributed"]["global_batch_size"] == 16
    assert (tmp_path / "run" / "model.safetensors").is_file() and (tmp_path / "run" / "resume.pt").is_file()


@pytest.mark.parametrize("output", [[], ["--output", "adaptive", "--adaptive-cutoffs", "8,38"]], ids=["softmax", "adaptive"])
def test_text_training_under_torchrun(tmp_path, output):
    """Adaptive: small batches leave a cluster without targets in some steps, which DDP must not see as unused."""
    from conftest import two_topic_sentences

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(two_topic_sentences() * 2) + "\n")
    out = tmp_path / "run"
    result = torchrun("-m", "vaekit", "train", "text", "--data", corpus, "--out", out, "--epochs", 2, "--embedding-dim",
                      16, "--hidden", 16, "--latent-dim", 4, "--batch-size", 8, "--quiet", "--precision", "fp32",
                      "--device", "cpu", *output)
    assert result.returncode == 0, result.stderr[-3000:]
    config = json.loads((out / "config.json").read_text())
    assert config["distributed"]["global_batch_size"] == 16 and (out / "data" / "train.ids.npy").is_file()
    import vaekit

    assert vaekit.load(out).vary("the old cat sat on the red mat.", n=2, seed=0) is not None


def test_more_processes_than_gpus_is_a_clear_error(monkeypatch):
    """NCCL refuses two ranks on one GPU with a cryptic message; vaekit says what to change before joining."""
    from vaekit import distributed
    from vaekit.errors import VaekitError

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(VaekitError, match="2 processes on this machine, which has 1 CUDA GPU; .*--nproc-per-node 1"):
        distributed.init(torch.device("cuda", 0))
