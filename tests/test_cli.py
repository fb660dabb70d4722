"""The command line: outputs, bad input as one line with exit code 2, no overwrite."""

import json
import subprocess
import sys

import pytest

from recnb.data import synthetic_scene, write_atomic

CMD = [sys.executable, "-m", "recnb"]


def run(*args, cwd=None):
    return subprocess.run(CMD + [str(a) for a in args], capture_output=True, text=True, cwd=cwd)


@pytest.fixture(scope="module")
def inter(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "toy.inter"
    write_atomic(synthetic_scene(num_users=60, num_items=30, seq_len=15, seed=4), path)
    return path


def one_line_error(proc, *needles):
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def test_train_writes_checkpoint_and_metrics_then_evaluate(inter, tmp_path):
    out = tmp_path / "run"
    proc = run("train", "--dataset", inter, "--model", "sasrec", "--epochs", "2", "--max-len", "10",
               "--hidden-size", "32", "--out", out, "--quiet", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("dataset", "model", "protocol", "test", "valid", "params", "params_no_embedding", "epochs",
                "best_epoch", "train_seconds", "seconds_to_best", "device"):
        assert key in metrics
    assert set(metrics["test"]) >= {"NDCG@10", "HR@10", "MRR@10", "NDCG@5", "HR@20"}
    assert metrics["config"]["hidden_size"] == 32
    ev = run("evaluate", "--model", out / "model.pt", "--dataset", inter)
    assert ev.returncode == 0, ev.stderr
    assert json.loads(ev.stdout)["metrics"]["NDCG@10"] == pytest.approx(metrics["test"]["NDCG@10"], abs=1e-9)
    again = run("train", "--dataset", inter, "--model", "sasrec", "--epochs", "1", "--out", out)
    one_line_error(again, "--force")
    assert not (out / "train_state.pt").exists()  # kept per epoch for --resume, gone once the run finished
    one_line_error(run("train", "--dataset", inter, "--model", "sasrec", "--resume", "--out", out), "train_state.pt")
    assert json.loads((out / "metrics.json").read_text()) == metrics  # untouched


def test_config_file_and_sampled_protocol(inter, tmp_path):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"embedding_size": 16, "hidden_size": 24, "epochs": 1, "max_len": 8, "ema": 0.9}))
    proc = run("train", "--dataset", inter, "--model", "gru4rec", "--config", cfg, "--protocol", "sampled100",
               "--out", tmp_path / "g", "--quiet")
    assert proc.returncode == 0, proc.stderr
    m = json.loads((tmp_path / "g" / "metrics.json").read_text())
    assert m["protocol"] == "sampled100" and m["config"]["hidden_size"] == 24 and m["epochs"] == 1
    assert m["train"]["ema"] == 0.9 and m["train"]["max_len"] == 8 and m["train"]["batch_size"] == 32  # recipe + file


def test_bad_input_is_one_clear_line(inter, tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("1 2\n1 3\noops\n")
    one_line_error(run("train", "--dataset", bad, "--model", "sasrec", "--out", tmp_path / "a"), "bad.txt:3")
    one_line_error(run("train", "--dataset", "no-such-set", "--model", "sasrec", "--out", tmp_path / "b"),
                   "unknown dataset 'no-such-set'")
    few = tmp_path / "few.txt"
    few.write_text("1 1\n1 2\n2 2\n")
    one_line_error(run("train", "--dataset", few, "--model", "sasrec", "--out", tmp_path / "c"), "few.txt", "at least 3")
    one_line_error(run("train", "--dataset", inter, "--model", "bert4rec", "--out", tmp_path / "d"), "--model", "bert4rec")
    one_line_error(run("train", "--dataset", inter, "--model", "sasrec", "--frobnicate", "1", "--out", tmp_path / "e"),
                   "--frobnicate")
    one_line_error(run("train", "--dataset", inter, "--model", "sasrec", "--protocol", "sampled5", "--out", tmp_path / "f"),
                   "--protocol")
    one_line_error(run("train", "--dataset", inter, "--model", "gru4rec", "--num-heads", "4", "--out", tmp_path / "g"),
                   "--num-heads")
    one_line_error(run("train", "--dataset", inter, "--model", "gru4rec", "--ema", "1.5", "--out", tmp_path / "i"),
                   "ema must be in [0, 1)")
    cfg = tmp_path / "c.json"
    cfg.write_text('{"hidden_size": 3,')
    one_line_error(run("train", "--dataset", inter, "--model", "sasrec", "--config", cfg, "--out", tmp_path / "h"), "c.json")
    one_line_error(run("evaluate", "--model", tmp_path / "none.pt", "--dataset", inter), "none.pt")


@pytest.mark.parametrize("model", ["sasrec", "gru4rec", "nextitnet"])
def test_cli_trains_with_the_settings_the_benchmark_reports(inter, tmp_path, model):
    """`recnb train` and bench/train_eval.py take model and training settings from the one
    recipe: the README's numbers are what the CLI trains."""
    import dataclasses
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("train_eval", Path(__file__).parents[1] / "bench" / "train_eval.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    proc = run("train", "--dataset", inter, "--model", model, "--epochs", "1", "--device", "cpu", "--seed", "2021",
               "--out", tmp_path / "r", "--quiet")
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    model_cfg, cfg = bench.settings(model, 2021, "cpu", 1, None)
    expected = {**dataclasses.asdict(cfg), "progress": False}
    assert {**metrics["train"], "progress": False} == expected
    built = {k: v for k, v in metrics["config"].items() if k in model_cfg}
    assert built == model_cfg
    if model == "nextitnet":
        assert metrics["config"]["dropout"] == 0.3  # the recipe's, not the model's default 0.0


def test_train_flags_are_generated_from_the_config_dataclasses():
    """Every TrainConfig and model field is a `train` option with help and its default, so
    flags, help and defaults cannot drift from the code."""
    import dataclasses

    from recnb.cli import build_parser
    from recnb.commands.train import NOT_FLAGS
    from recnb.models import BASE_MODELS, model_class
    from recnb.train import TrainConfig

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    train = sub.choices["train"]
    flags = {a.dest: a for a in train._actions if a.option_strings}
    expected = {f.name for f in dataclasses.fields(TrainConfig)} - set(NOT_FLAGS)
    for name in BASE_MODELS:
        expected |= {f.name for f in dataclasses.fields(model_class(name).config_class)} - {"num_items"}
    assert expected <= set(flags)
    for name, action in flags.items():
        assert action.help and action.help.strip(), name
        if name in expected:
            assert "default" in action.help, name
    assert "nextitnet 0.3" in flags["dropout"].help and "sasrec 0.003" in flags["lr"].help
