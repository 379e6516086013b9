"""Two "nodes" on loopback (gloo on CPU) pretrain to the very weights and history of one node with two processes.

The nodes are launched as docs/multinode.md says: torchrun's static rendezvous (`--node_rank`, `--master_addr`),
torchrun's c10d rendezvous, and `accelerate launch` with docs/accelerate-multinode.yaml. Each node runs the same
command in its own working folder with a relative `--output`, like two hosts with their own disks: only the node
holding global rank 0 may end up with a model folder, and it must be the one-node run's, bit for bit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import assert_same_training_result
from test_loop import _pretrain, _torchrun
from test_space import free_port
from test_train import REPO, write_dataset

YAML = REPO / "docs" / "accelerate-multinode.yaml"
ENV = {**os.environ, "PYTHONPATH": str(REPO), "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
EPOCH_2 = '{"epoch": 2, "step": 4,'  # the last epoch's record, printed by each node's first process
TIMEOUT_S = 900


def node_command(launcher: str, rank: int, port: int) -> list[str]:
    """Node `rank`'s launcher arguments (2 nodes x 1 process), up to the training script."""
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1"]
    if launcher == "torchrun-static":
        return [*torchrun, "--node_rank", str(rank), "--master_addr", "127.0.0.1", "--master_port", str(port)]
    if launcher == "torchrun-c10d":  # node ranks come from the rendezvous: either node may become rank 0
        return [*torchrun, "--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{port}", "--rdzv_id", "t"]
    # The docs' config file as is, with the values a loopback CPU run needs instead of the cluster's.
    return [
        sys.executable, "-m", "accelerate.commands.accelerate_cli", "launch", "--config_file", str(YAML),
        "--machine_rank", str(rank), "--num_processes", "2", "--main_process_ip", "127.0.0.1",
        "--main_process_port", str(port), "--mixed_precision", "no",
    ]  # fmt: skip


def run_side_by_side(commands: list[list[str]], folders: list[Path]) -> list[str]:
    """Start every node's command at once, each in its folder; the logs once all exit (any failure stops all)."""
    logs = [folder / "log.txt" for folder in folders]
    procs = []
    for command, folder, log in zip(commands, folders, logs):
        folder.mkdir()
        with log.open("w") as out:
            procs.append(subprocess.Popen(command, cwd=folder, env=ENV, stdout=out, stderr=subprocess.STDOUT))
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
            if any(p.poll() not in (None, 0) for p in procs):
                break  # the other node would wait for its peer until the rendezvous times out
            time.sleep(0.5)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    texts = [log.read_text() for log in logs]
    for rank, (p, text) in enumerate(zip(procs, texts)):
        assert p.returncode == 0, f"node {rank} exited with {p.returncode}:\n{text[-3000:]}"
    return texts


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("ds"))


@pytest.fixture(scope="module")
def one_node(dataset, tmp_path_factory) -> tuple[Path, float]:
    """The reference: one node, `torchrun --nproc_per_node 2`; its folder and wall seconds."""
    out = tmp_path_factory.mktemp("one_node") / "run"
    started = time.perf_counter()
    run = _torchrun(_pretrain(dataset, out))
    assert run.returncode == 0, run.stderr[-3000:]
    return out, time.perf_counter() - started


@pytest.mark.slow  # one 2-process reference and one 2-node run per launcher (~1 min each on an idle 2-core machine)
@pytest.mark.parametrize("launcher", ["torchrun-static", "torchrun-c10d", "accelerate"])
def test_two_nodes_on_loopback_pretrain_what_one_node_does(dataset, one_node, tmp_path, launcher) -> None:
    reference, one_node_seconds = one_node
    port = free_port()
    train_args = ["--", str(REPO / "train.py"), *_pretrain(dataset, Path("run"))]  # relative: each node's own
    if launcher == "accelerate":
        train_args = train_args[1:]  # `accelerate launch` takes the script right after its own flags
    nodes = [tmp_path / "node0", tmp_path / "node1"]
    started = time.perf_counter()
    logs = run_side_by_side([[*node_command(launcher, r, port), *train_args] for r in (0, 1)], nodes)
    seconds = time.perf_counter() - started
    print(f"{launcher}: 2 nodes x 1 process {seconds:.1f} s, 1 node x 2 processes {one_node_seconds:.1f} s")

    written = [node for node in nodes if (node / "run").exists()]
    # Global rank 0 alone writes; the other node trains and writes nothing (no folder: no checkpoints either).
    assert len(written) == 1, f"model folders on {written}"
    if launcher != "torchrun-c10d":
        assert written == [nodes[0]], "the node given rank 0 did not write the model"
    assert sum(log.count("publish: wrote model, card and train_results.json") for log in logs) == 1
    # Both nodes trained all 4 steps and evaluated the same model: each node's first process prints the record.
    records = [next(line for line in log.splitlines() if EPOCH_2 in line) for log in logs]
    assert records[0].split(EPOCH_2)[1] == records[1].split(EPOCH_2)[1]
    assert_same_training_result(reference, written[0] / "run")
    launch = json.loads((written[0] / "run" / "train_results.json").read_text())["launch"]
    assert launch["num_processes"] == 2 and launch["global_batch"] == 4
    assert launch["distributed_type"] == "MULTI_CPU"


def test_accelerate_multinode_config_loads_and_matches_the_docs() -> None:
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
    from accelerate.utils import DistributedType

    # What `accelerate launch --config_file` reads (a key it does not know is an error).
    config = load_config_from_file(str(YAML))
    assert isinstance(config, ClusterConfig) and config.distributed_type == DistributedType.MULTI_GPU
    assert (config.num_machines, config.machine_rank) == (2, 0)
    # Static rendezvous at main_process_ip: torchrun's --master_addr/--node_rank form.
    assert config.rdzv_backend == "static" and config.same_network
    # num_processes counts every process on every node: a whole number of GPUs per node, more than one.
    assert config.num_processes % config.num_machines == 0 and config.num_processes > config.num_machines
    assert config.main_process_ip and config.main_process_port
    docs = (REPO / "docs" / "multinode.md").read_text()
    # The guide's accelerate command passes the config's precision to train.py too (train.py decides it).
    assert f"--mixed-precision {config.mixed_precision}" in docs
    assert "--config_file docs/accelerate-multinode.yaml --machine_rank" in docs
