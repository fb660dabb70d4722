"""Data-parallel training under torchrun: two gloo processes train to the numbers of one
process with the same global batch, rank 0's checkpoint loads in one process, a killed
two-process run resumes to the unbroken run's numbers, and a bad launch environment is one
line with exit 2."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from recnb.checkpoint import load_checkpoint, read_torch_file
from recnb.cli import main
from recnb.data import synthetic_scene, write_atomic
from recnb.evaluation import evaluate

# dropout off: with it the ranks draw their own masks, equal in distribution only
ARGS = ["--model", "gru4rec", "--epochs", "2", "--batch-size", "15", "--embedding-size", "16", "--hidden-size", "16",
        "--dropout", "0", "--device", "cpu", "--quiet"]
# the two runs differ only in the order of float sums (the gradient all-reduce, a loss split in two)
WEIGHT_TOL, METRIC_TOL = 1e-5, 1e-3


@pytest.fixture(scope="module")
def scene_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ddp") / "syn.inter"
    write_atomic(synthetic_scene(121, 60, 20, seed=1), path)  # odd: the ranks score 61 and 60 users
    return path


def _torchrun(scene: Path, out: Path, *extra: str, wait: bool = True):
    """``torchrun --nproc-per-node 2 -m recnb train`` on ``scene`` with ARGS (then ``extra``)."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "recnb", "train", "--dataset", str(scene), *ARGS, *extra, "--out", str(out)]
    if wait:
        return subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=300)
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


@pytest.mark.skipif(not torch.distributed.is_available(), reason="this torch has no torch.distributed")
def test_two_processes_train_to_the_numbers_of_one_with_the_same_global_batch(scene_file, tmp_path):
    """With seen items masked (--exclude-seen), so the ranks' share of validation masks them too."""
    two = _torchrun(scene_file, tmp_path / "two", "--exclude-seen")
    assert two.returncode == 0, two.stderr[-2000:]
    assert two.stdout.count("(2 processes)") == 1  # rank 0 alone reports
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each torchrun process
    try:
        assert main(["train", "--dataset", str(scene_file), *ARGS, "--exclude-seen", "--out", str(tmp_path / "one")]) == 0
    finally:
        torch.set_num_threads(threads)
    one_m, two_m = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("one", "two"))
    assert one_m["best_epoch"] == two_m["best_epoch"] and one_m["exclude_seen"] and two_m["exclude_seen"]
    one_h, two_h = (pd.read_csv(tmp_path / d / "history.csv") for d in ("one", "two"))
    assert two_h["valid_NDCG@10"].tolist() == pytest.approx(one_h["valid_NDCG@10"].tolist(), abs=METRIC_TOL)
    for split in ("valid", "test"):
        for key, value in one_m[split].items():
            assert two_m[split][key] == pytest.approx(value, abs=METRIC_TOL), (split, key)
    one_w, two_w = (read_torch_file(tmp_path / d / "model.pt")["state_dict"] for d in ("one", "two"))
    assert max((one_w[k] - two_w[k]).abs().max().item() for k in one_w) < WEIGHT_TOL
    model, _ = load_checkpoint(tmp_path / "two" / "model.pt")  # rank 0's checkpoint, one process
    from recnb.data import load_scene

    valid = evaluate(model, load_scene(scene_file), "valid", exclude_seen=True)
    assert valid.loc[10, "NDCG"] == pytest.approx(two_m["valid"]["NDCG@10"], abs=1e-12)
    assert valid.loc[10, "NDCG"] == pytest.approx(two_h["valid_NDCG@10"].max(), abs=1e-12)  # validated masked
    assert not (tmp_path / "two" / "train_state.pt").exists()


@pytest.mark.parametrize("env, says", [
    ({"WORLD_SIZE": "two", "RANK": "0"}, "WORLD_SIZE='two'"),
    ({"WORLD_SIZE": "2", "RANK": "2"}, "RANK=2: must be in [0, WORLD_SIZE=2)"),
    ({"WORLD_SIZE": "0", "RANK": "0"}, "WORLD_SIZE=0: must be at least 1"),
])
def test_a_bad_launch_environment_is_one_line(scene_file, tmp_path, capsys, monkeypatch, env, says):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert main(["train", "--dataset", str(scene_file), *ARGS, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert says in err and len(err.splitlines()) == 1


def test_torchrun_without_torch_distributed_is_one_line(scene_file, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setattr(torch.distributed, "is_available", lambda: False)
    assert main(["train", "--dataset", str(scene_file), *ARGS, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "no torch.distributed" in err and len(err.splitlines()) == 1


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid``, from /proc (Linux)."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        out += children
        todo += children
    return out


@pytest.mark.skipif(not torch.distributed.is_available() or not Path("/proc").is_dir(),
                    reason="needs torch.distributed and /proc")
def test_a_killed_torchrun_resumes_to_the_numbers_of_an_unbroken_one(tmp_path):
    """Rank 0's per-epoch state carries a two-process run over a kill: resumed with
    --resume, it ends where the unbroken run ends (weights and metrics)."""
    import signal
    import time

    scene = tmp_path / "syn.inter"
    write_atomic(synthetic_scene(800, 60, 20, seed=2), scene)
    longer = ("--epochs", "4", "--batch-size", "64")  # epochs long enough to kill one in the middle
    straight = _torchrun(scene, tmp_path / "straight", *longer)
    assert straight.returncode == 0, straight.stderr[-2000:]
    run = _torchrun(scene, tmp_path / "killed", *longer, wait=False)
    state = tmp_path / "killed" / "train_state.pt"
    deadline = time.monotonic() + 240
    while not state.exists() and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    for pid in [*_descendants(run.pid), run.pid]:  # torchrun and its ranks (they run in sessions of their own)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    run.wait()
    assert state.exists(), "the run finished before it could be killed"
    assert not (tmp_path / "killed" / "metrics.json").exists()
    resumed = _torchrun(scene, tmp_path / "killed", *longer, "--resume")
    assert resumed.returncode == 0, [line for line in resumed.stderr.splitlines() if "recnb" in line or "rror" in line]
    a, b = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("straight", "killed"))
    assert a["best_epoch"] == b["best_epoch"] and a["valid"] == pytest.approx(b["valid"], abs=1e-9)
    wa, wb = (read_torch_file(tmp_path / d / "model.pt")["state_dict"] for d in ("straight", "killed"))
    assert max((wa[k] - wb[k]).abs().max().item() for k in wa) < 1e-6
