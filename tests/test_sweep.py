"""recnb sweep: Ray Tune trials give the numbers of the same runs one by one, a killed
sweep resumes without rerunning finished trials, and bad input is one line with exit 2."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from recnb.cli import main
from recnb.data import synthetic_scene, write_atomic
from recnb.sweep import grid_points, load_results, run_trial

GRID = {"model": "gru4rec", "epochs": 2, "embedding_size": 16, "hidden_size": 16, "lr": [1e-3, 3e-3], "seed": [1, 2]}
SAME = ("valid_NDCG@10", "valid_HR@10", "valid_MRR@20", "test_NDCG@10", "test_HR@20", "params", "best_epoch", "epochs_trained")


@pytest.fixture(scope="module")
def ray_address():
    """One local Ray for the module (its start-up is the slow part on 2 cores); sweeps in this
    process use it, a sweep in a subprocess joins it with --address."""
    ray = pytest.importorskip("ray", reason="Ray Tune is not installed (pip install recnb[sweep])")
    for attempt in range(3):  # Ray gives its raylet 30 s to register: a loaded 2-core machine can miss that
        try:
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=True, logging_level="ERROR")
            break
        except Exception as e:
            ray.shutdown()
            if "timed out during startup" not in str(e) or attempt == 2:
                raise
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def scene_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sweep") / "syn.inter"
    write_atomic(synthetic_scene(120, 60, 20, seed=1), path)
    return path


@pytest.fixture(scope="module")
def grid_file(scene_file) -> Path:
    path = scene_file.with_name("grid.json")
    path.write_text(json.dumps(GRID))
    return path


@pytest.fixture(scope="module")
def one_by_one(scene_file, tmp_path_factory) -> pd.DataFrame:
    """The four configurations run in this process, one after another, on one thread (as a trial)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path_factory.mktemp("seq")
        rows = [run_trial("train", p, str(scene_file), out / str(i)) for i, p in enumerate(grid_points(GRID))]
    finally:
        torch.set_num_threads(threads)
    return pd.DataFrame(rows)


def _by_config(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.set_index(["lr", "seed"]).sort_index()


def _sweep(scene_file, grid_file, out, *extra) -> list[str]:
    return [sys.executable, "-m", "recnb", "sweep", "--dataset", str(scene_file), "--grid", str(grid_file),
            "--out", str(out), *extra]


def test_sweep_gives_the_numbers_of_the_runs_one_by_one(ray_address, scene_file, grid_file, one_by_one, tmp_path, capsys):
    assert main(["sweep", "--dataset", str(scene_file), "--grid", str(grid_file), "--max-concurrent", "2",
                 "--resources-per-trial", "cpu=1,gpu=0", "--out", str(tmp_path / "sw")]) == 0
    printed = capsys.readouterr().out
    frame = load_results(tmp_path / "sw")
    assert len(frame) == 4 and frame["valid_NDCG@10"].is_monotonic_decreasing  # best validation first
    assert f"{frame['valid_NDCG@10'].iloc[0]:.4f}" in printed
    pd.testing.assert_frame_equal(_by_config(frame)[list(SAME)], _by_config(one_by_one)[list(SAME)], check_dtype=False)
    assert len(pd.read_csv(tmp_path / "sw" / "results.csv")) == 4


def test_a_killed_sweep_resumes_without_rerunning_finished_trials(ray_address, scene_file, grid_file, one_by_one, tmp_path):
    out = tmp_path / "sw"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen(_sweep(scene_file, grid_file, out, "--max-concurrent", "1", "--address", ray_address), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # stop once two trials wrote their results (one at a time, so the first has surely finished);
    # the deadline is generous: on a loaded machine starting Ray and two trials takes minutes
    deadline = time.time() + 600
    while len(list(out.glob("runs/*/metrics.json"))) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)  # Ctrl-C in the middle of the sweep
    proc.wait(60)
    from ray.tune import ExperimentAnalysis

    # what the experiment left on disk says was finished: those trials must not run again
    finished = {t.trial_id for t in ExperimentAnalysis(str(out / "tune")).trials if t.status == "TERMINATED"}
    assert 1 <= len(finished) < 4, "the sweep was to be stopped after some, not all, trials"
    assert main(["sweep", "--dataset", str(scene_file), "--grid", str(grid_file), "--out", str(out)]) == 0  # resumes
    attempts = {p.parent.name: len(p.read_text().splitlines()) for p in out.glob("runs/*/attempts.log")}
    assert len(attempts) == 4
    assert all(attempts[t] == 1 for t in finished)  # finished trials never ran again
    frame = pd.read_parquet(out / "results.parquet")
    pd.testing.assert_frame_equal(_by_config(frame)[list(SAME)], _by_config(one_by_one)[list(SAME)], check_dtype=False)


@pytest.mark.parametrize("content, says", [
    ("{\"model\": \"gru4rec\",\n \"lr\": [0.001,}", "grid.json:2: malformed JSON"),
    (json.dumps({"model": "gru4rec", "lrr": [0.001]}), "unknown key(s) lrr"),
    (json.dumps({"model": "gru4rec", "lr": ["fast"]}), "'lr' must be float/int, got \"fast\""),
    (json.dumps({"model": "gru4rec", "loss": "hinge"}), "loss must be one of"),
    (json.dumps({"model": "gru4rec", "seed": []}), "'seed' is an empty list"),
    (json.dumps({"lr": [0.001]}), "'model' is required"),
])
def test_a_bad_grid_is_one_line_with_exit_2(tmp_path, capsys, content, says, monkeypatch):
    monkeypatch.setattr("recnb.sweep.run_sweep", lambda *a, **k: pytest.fail("a bad grid started a sweep"))
    grid = tmp_path / "grid.json"
    grid.write_text(content)
    code = main(["sweep", "--dataset", "ml-100k", "--grid", str(grid), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and says in err and len(err.strip().splitlines()) == 1 and str(grid) in err


def test_without_ray_the_sweep_names_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails as if not installed
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps(GRID))
    assert main(["sweep", "--dataset", "ml-100k", "--grid", str(grid), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "pip install recnb[sweep]" in err and len(err.splitlines()) == 1



def test_an_adarec_trial_is_the_pipelines_student_for_that_beta_and_seed(scene_file, tmp_path):
    """The ``adarec`` objective (search with beta, distil with seed) gives the numbers that
    ``run_pipeline`` reports for the same (beta, seed) student."""
    from recnb.adarec.pipeline import DistillConfig, run_pipeline
    from recnb.adarec.search import SearchConfig
    from recnb.data import load_scene
    from recnb.runs import train_and_report
    from recnb.train import TrainConfig

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        scene = load_scene(scene_file)
        teacher_cfg = TrainConfig(epochs=1, max_len=12, progress=False)
        train_and_report(scene, "nextitnet", {"embedding_size": 16, "num_blocks": 1, "dilations": [1, 2]}, teacher_cfg,
                         tmp_path / "teacher")
        point = {"beta": 0.1, "seed": 7, "teacher": str(tmp_path / "teacher" / "model.pt"), "max_len": 12, "search_epochs": 2,
                 "search_max_steps": 3, "search_width": 8, "distill_epochs": 2, "student_width": 8}
        row = run_trial("adarec", point, str(scene_file), tmp_path / "trial")
        scfg = SearchConfig(beta=0.1, epochs=2, max_steps=3, width=8, max_len=12, seed=2020, progress=False)
        dcfg = DistillConfig(width=8, train=TrainConfig(epochs=2, batch_size=32, lr=1e-3, patience=5, max_len=12, seed=7,
                                                        progress=False))
        run_pipeline(scene, tmp_path / "pipe", point["teacher"], [0.1], None, 1, scfg, dcfg, twins="none", baseline=False,
                     batches=(1,), log=None)
    finally:
        torch.set_num_threads(threads)
    seq = json.loads((tmp_path / "pipe" / "students" / "beta_0.1" / "kd" / "seed_7" / "metrics.json").read_text())
    assert row["params"] == seq["params"] and row["epochs_trained"] == seq["epochs"]
    assert {k: row[f"valid_{k}"] for k in seq["valid"]} == seq["valid"]
    assert {k: row[f"test_{k}"] for k in seq["test"]} == seq["test"]


# ----------------------------------------------------------------------------- recnb adarec --parallel ray
TIMING = ("latency_", "train_seconds", "architecture")  # clocks, and paths inside each run's own --out


@pytest.fixture(scope="module")
def adarec_teacher(scene_file, tmp_path_factory) -> Path:
    from recnb.checkpoint import save_checkpoint
    from recnb.data import load_scene
    from recnb.models import build_model

    torch.manual_seed(0)
    scene = load_scene(scene_file)
    teacher = build_model("nextitnet", num_items=scene.num_items, max_len=12, embedding_size=12,
                          num_blocks=2, layer_every=2)
    path = tmp_path_factory.mktemp("teacher") / "model.pt"
    save_checkpoint(path, teacher, scene)
    return path


def _adarec(scene_file, teacher, out, *extra) -> list[str]:
    return ["adarec", "--dataset", str(scene_file), "--teacher", str(teacher), "--betas", "0.01,1", "--seeds", "2",
            "--twins", "default", "--epochs", "2", "--max-steps", "3", "--width", "8", "--max-len", "12",
            "--student-width", "8", "--distill-epochs", "2", "--latency-batch", "1", "--device", "cpu", "--quiet",
            "--out", str(out), *extra]


def _numbers(out: Path) -> list[dict]:
    rows = json.loads((out / "summary.json").read_text())["rows"]
    return [{k: v for k, v in r.items() if not k.startswith(TIMING)} for r in rows]


def test_adarec_on_ray_gives_the_numbers_of_the_sequential_run(ray_address, scene_file, adarec_teacher, tmp_path):
    """Searches and distillations as Ray tasks (2 at a time, one thread each) give every metric
    of the sequential run on one thread, bit for bit; a resumed run recomputes nothing."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(_adarec(scene_file, adarec_teacher, tmp_path / "seq")) == 0
    finally:
        torch.set_num_threads(threads)
    assert main(_adarec(scene_file, adarec_teacher, tmp_path / "ray", "--parallel", "ray", "--address", ray_address,
                        "--resources-per-trial", "cpu=1,gpu=0")) == 0
    seq, par = _numbers(tmp_path / "seq"), _numbers(tmp_path / "ray")
    assert [r["role"] for r in par] == ["teacher", "student", "student", "student_no_kd", "baseline", "baseline_sasrec"]
    assert all(len(r["seeds"]) == 2 for r in par[1:])
    assert par == seq
    # resumed on Ray, every piece is read back: the same numbers, no model file rewritten
    models = {p: p.stat().st_mtime_ns for p in (tmp_path / "ray").rglob("model.pt")}
    assert len(models) == 2 * 5 and main(_adarec(scene_file, adarec_teacher, tmp_path / "ray", "--parallel", "ray",
                                                   "--address", ray_address, "--resume")) == 0
    assert _numbers(tmp_path / "ray") == seq
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "ray").rglob("model.pt")} == models


@pytest.mark.parametrize("extra, says", [
    (["--parallel", "dask"], "--parallel: expected none or ray, got 'dask'"),
    (["--address", "auto"], "--address: only with --parallel ray"),
    (["--parallel", "ray", "--resources-per-trial", "cpu=x"], "--resources-per-trial: cpu must be a number"),
])
def test_bad_parallel_options_are_one_line_with_exit_2(scene_file, adarec_teacher, tmp_path, capsys, extra, says):
    assert main(_adarec(scene_file, adarec_teacher, tmp_path / "o", *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert says in err and len(err.splitlines()) == 1 and not (tmp_path / "o").exists()


def test_adarec_on_ray_with_a_cuda_teacher_needs_gpu_tasks(scene_file, adarec_teacher, tmp_path, capsys, monkeypatch):
    """The teacher cache is sent to the tasks on the driver's device: CUDA tensors cannot reach
    a task without a GPU, so that is refused before anything runs."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    args = [a for a in _adarec(scene_file, adarec_teacher, tmp_path / "o", "--parallel", "ray") if a not in ("--device", "cpu")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "gpu=0 gives the Ray tasks no GPU" in err and "--device cpu" in err and len(err.splitlines()) == 1


def test_adarec_on_ray_without_ray_names_the_extra(scene_file, adarec_teacher, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    assert main(_adarec(scene_file, adarec_teacher, tmp_path / "o", "--parallel", "ray")) == 2
    err = capsys.readouterr().err.strip()
    assert "pip install recnb[sweep]" in err and len(err.splitlines()) == 1


def test_an_adarec_trial_runs_with_recnb_adarec_settings_where_the_grid_sets_none():
    import dataclasses

    from recnb.adarec.pipeline import DistillConfig
    from recnb.adarec.search import SearchConfig
    from recnb.sweep import adarec_defaults, adarec_trial_configs

    scfg, dcfg = adarec_trial_configs({**adarec_defaults(), "beta": 0.1, "teacher": "t.pt"})
    assert scfg == dataclasses.replace(SearchConfig(), beta=0.1, progress=False)
    assert dcfg == dataclasses.replace(DistillConfig(), train=dataclasses.replace(DistillConfig().train, progress=False))
    scfg, dcfg = adarec_trial_configs({**adarec_defaults(), "beta": 1, "distill_lr": 0.01, "search_width": 16, "max_len": 20})
    assert (scfg.width, scfg.max_len, dcfg.train.lr, dcfg.train.max_len) == (16, 20, 0.01, 20)
