"""``recnb frontier``: the fronts and budgets it reads from the runs, the runs it trains,
resumes and measures, and the input it refuses."""

import dataclasses
import json
import math
import subprocess
import sys

import pandas as pd
import pytest
import torch

from recnb.data import synthetic_scene, write_atomic
from recnb.frontier import budgets, model_name, pareto_names

CMD = [sys.executable, "-m", "recnb"]


def frame_of(rows):
    return pd.DataFrame(rows, columns=["role", "name", "seed", "latency_cpu_b1_ms", "test_NDCG@10"])


def test_each_side_has_its_own_front_and_budgets_compare_them():
    frame = frame_of([
        ("plain", "p-fast", 1, 1.0, 0.040), ("plain", "p-fast", 2, 1.0, 0.042),  # mean 0.041
        ("plain", "p-slow-worse", 1, 2.0, 0.039),  # slower and worse: off the front
        ("plain", "p-slow", 1, 3.0, 0.050),
        ("student", "s-fast", 1, 0.9, 0.045), ("adarec", "a-mid", 1, 2.5, 0.044),  # a-mid: slower than s-fast, worse
        ("student", "s-slow", 1, 2.9, 0.060), ("teacher", "teacher", None, 9.0, 0.070)])
    assert pareto_names(frame) == {"p-fast", "p-slow", "s-fast", "s-slow"}
    table = budgets(frame)
    assert list(table["budget_ms"]) == [1.0, 2.0, 3.0]
    assert list(table["plain"]) == ["p-fast", "p-fast", "p-slow"]  # at 2 ms the faster model is still the best
    assert list(table["student"]) == ["s-fast", "s-fast", "s-slow"]
    assert table["gain"].iloc[0] == pytest.approx(0.045 / 0.041 - 1)
    assert table["gain"].iloc[2] == pytest.approx(0.060 / 0.050 - 1)
    none_fast = budgets(frame[frame["name"] != "s-fast"])
    assert pd.isna(none_fast["student"].iloc[0]) and math.isnan(none_fast["gain"].iloc[0])


def test_model_names_say_the_grid_settings():
    assert model_name({"model": "sasrec", "hidden_size": 32, "num_layers": 1, "max_len": 20}) == "sasrec-h32-l1-w20"
    assert model_name({"model": "bsarec", "max_len": 50, "lr_decay": "cosine", "epochs": 60}) == "bsarec-w50-cosine-ep60"
    assert model_name({"model": "bsarec", "lr_decay": "cosine", "epochs": 60, "patience": 60}) == "bsarec-cosine-ep60-p60"


def test_a_grid_entry_sets_its_training_options_over_the_recipe():
    """Training options in a grid entry (a ``recnb train --config`` file's names) go over the
    recipe for that entry's runs; the frontier's --epochs still caps them; options the frontier
    sets for every run, or that no model or training has, are refused naming the entry."""
    import recnb
    from recnb import frontier

    spec = {"model": "bsarec", "hidden_size": 64, "max_len": 50, "lr_decay": "cosine", "epochs": 60}
    cfg = frontier.FrontierConfig(grid=(spec,), betas=())
    model, options = frontier._split(spec)
    assert model == {"hidden_size": 64, "max_len": 50} and options == {"lr_decay": "cosine", "epochs": 60, "max_len": 50}
    train = frontier._train_config("bsarec", "large-sparse", 50, 7, cfg, False, options)
    assert (train.lr_decay, train.epochs, train.seed, train.negatives) == ("cosine", 60, 7, 4096)  # the recipe under it
    assert frontier._train_config("bsarec", "large-sparse", 50, 7, dataclasses.replace(cfg, epochs=3), False, options).epochs == 3
    for bad, match in (({**spec, "seed": 1}, "grid entry 0: seed is the frontier's"),
                       ({**spec, "lr_decays": "cosine"}, "grid entry 0: unknown option.*'lr_decays'")):
        with pytest.raises(recnb.ConfigError, match=match):
            frontier.FrontierConfig(grid=(bad,))


@pytest.fixture(scope="module")
def scene_and_teacher(tmp_path_factory):
    import recnb

    folder = tmp_path_factory.mktemp("frontier")
    scene_path = folder / "toy.inter"
    write_atomic(synthetic_scene(num_users=80, num_items=40, seq_len=15, seed=3), scene_path)
    scene = recnb.load_scene(str(scene_path))
    teacher = recnb.build_model("sasrec", num_items=scene.num_items, hidden_size=32, max_len=10)
    recnb.fit(teacher, scene, recnb.recipe("sasrec", epochs=2, max_len=10, progress=False))
    recnb.save_checkpoint(folder / "teacher.pt", teacher, scene)
    return scene_path, folder / "teacher.pt"


def test_frontier_trains_plain_models_and_students_then_resumes_without_training(scene_and_teacher, tmp_path, monkeypatch):
    import recnb
    from recnb import frontier

    scene_path, teacher = scene_and_teacher
    scene = recnb.load_scene(str(scene_path))
    cfg = frontier.FrontierConfig(
        seeds=(1, 2), grid=({"model": "sasrec", "hidden_size": 16, "num_layers": 1, "max_len": 10},
                            {"model": "gru4rec", "embedding_size": 16, "hidden_size": 16, "max_len": 10}),
        betas=(0.1,), student_width=16, student_max_len=10, epochs=1, search_epochs=1, latency_rounds=2,
        latency_repeats=2, onnx=False)
    frame = frontier.run_frontier(scene, teacher, tmp_path, cfg, log=lambda _: None)
    assert list(frame.columns) == list(frontier.COLUMNS)
    assert frame.groupby("role").size().to_dict() == {"teacher": 1, "plain": 4, "student": 4, "adarec": 2}
    assert frame["test_NDCG@10"].between(0, 1).all() and (frame["latency_cpu_b1_ms"] > 0).all()
    # a model's latency is one measurement for all its seeds; each side has a front
    assert frame.groupby("name")["latency_cpu_b1_ms"].nunique().max() == 1
    twins = frame[frame["role"].isin(("plain", "student"))].assign(net=lambda f: f["name"].str.removesuffix("+kd"))
    assert twins.groupby("net")["latency_cpu_b1_ms"].nunique().max() == 1  # a distilled model shares its twin's
    assert frame[frame["role"] == "plain"]["pareto"].any() and frame[frame["role"] != "plain"]["pareto"].any()
    table = pd.read_csv(tmp_path / "budgets.csv")  # per budget, with the paired difference over test users
    assert {"plain", "student", "gain", "paired_diff", "paired_se", "every_seed", "significant"} <= set(table.columns)
    assert (table.loc[table["student"].notna(), "paired_se"] > 0).all() and (tmp_path / "plain" / "sasrec-h16-l1-w10" / "seed_1" / "ranks.pt").exists()
    written = pd.read_csv(tmp_path / "frontier.csv")
    assert len(written) == len(frame)
    assert json.loads((tmp_path / "frontier.json").read_text())["data"]  # the figure, as plotly JSON
    settings = json.loads((tmp_path / "settings.json").read_text())  # which teacher: its file and its content
    assert settings["teacher"] == str(teacher) and len(settings["teacher_digest"]) >= 16

    monkeypatch.setattr(frontier, "run_model", lambda *a, **k: pytest.fail("a finished run trained again"))
    monkeypatch.setattr(frontier, "search", lambda *a, **k: pytest.fail("a finished search ran again"))
    monkeypatch.setattr(frontier, "TeacherCache", lambda *a, **k: pytest.fail("the teacher ran again for finished runs"))
    again = frontier.run_frontier(scene, teacher, tmp_path, cfg, log=lambda _: None)
    cols = ["name", "role", "seed", "test_NDCG@10"]
    pd.testing.assert_frame_equal(again[cols], frame[cols])

    # finished runs are reused only under the teacher that made them (by content)
    other, _ = recnb.load_checkpoint(teacher)
    with torch.no_grad():
        next(other.parameters()).add_(0.01)
    recnb.save_checkpoint(tmp_path.parent / "other-teacher.pt", other, scene)
    with pytest.raises(recnb.ConfigError, match="another teacher"):
        frontier.run_frontier(scene, tmp_path.parent / "other-teacher.pt", tmp_path, cfg, log=lambda _: None)


def test_cli_frontier_writes_its_table_and_refuses_bad_input_in_one_line(scene_and_teacher, tmp_path):
    scene_path, teacher = scene_and_teacher
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps({"models": [{"model": "sasrec", "hidden_size": 16, "num_layers": 1, "max_len": 10}]}))
    out = tmp_path / "out"
    base = ["frontier", "--dataset", scene_path, "--teacher", teacher, "--seeds", "1", "--betas", "none",
            "--epochs", "1", "--no-onnx"]
    proc = subprocess.run(CMD + [str(a) for a in base + ["--grid", grid, "--out", out]], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "plain sasrec-h16-l1-w10" in proc.stdout and (out / "frontier.csv").exists()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"models": [{"model": "transformer"}]}))
    for extra, needle in (([ "--grid", bad], "grid entry 0"), (["--grid", grid, "--seeds", "x"], "--seeds"),
                          (["--grid", grid, "--out", out], "not empty"),
                          (["--grid", grid, "--online-teacher", "--clean-teacher"], "choose one")):
        args = base + extra + (["--out", tmp_path / "other"] if "--out" not in extra else [])
        proc = subprocess.run(CMD + [str(a) for a in args], capture_output=True, text=True, check=False)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and needle in proc.stderr, proc.stderr


def test_the_verdict_says_when_the_teacher_does_not_beat_the_best_plain_model():
    from recnb.frontier import verdict

    frame = frame_of([("teacher", "teacher", None, 5.0, 0.050), ("plain", "p", 1, 1.0, 0.055), ("plain", "q", 1, 1.0, 0.040)])
    assert "does not beat the best plain model, p (0.0550)" in verdict(frame)
    frame.loc[0, "test_NDCG@10"] = 0.066
    assert "beats the best plain model, p (0.0550), by +20.0%" in verdict(frame)


def test_cli_distillation_options_are_distill_configs_fields():
    """The frontier's distillation flags come from DistillConfig: each reaches the config, and
    a flag not given keeps DistillConfig's default."""
    from recnb.adarec.pipeline import DistillConfig
    from recnb.cli import build_parser
    from recnb.commands.frontier import config

    base = ["frontier", "--dataset", "d", "--teacher", "t.pt", "--out", "o"]
    given = config(build_parser().parse_args(base + ["--kd-items", "top", "--top-k", "7", "--gamma", "0.2", "--no-emd",
                                                     "--temperature", "2"])).distill
    assert (given.kd_items, given.top_k, given.gamma, given.emd, given.T) == ("top", 7, 0.2, False, 2.0)
    assert config(build_parser().parse_args(base)).distill == DistillConfig()


def test_plain_runs_of_recnb_train_are_taken_as_the_frontiers_plain_runs(scene_and_teacher, tmp_path):
    """A ``recnb train`` run with the grid entry's settings is the frontier's plain run: it is
    placed, not trained again; a run of other settings is refused naming its file, one of
    another seed is left out."""
    import recnb
    from recnb import frontier

    scene_path, teacher = scene_and_teacher
    scene = recnb.load_scene(str(scene_path))
    run = tmp_path / "trained"
    proc = subprocess.run(CMD + ["train", "--dataset", str(scene_path), "--model", "sasrec", "--hidden-size", "16",
                                 "--num-layers", "1", "--max-len", "10", "--epochs", "1", "--seed", "1", "--out", str(run)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    spec = {"model": "sasrec", "hidden_size": 16, "num_layers": 1, "max_len": 10}
    cfg = frontier.FrontierConfig(seeds=(1,), grid=(spec,), betas=(), epochs=1, onnx=False)
    placed = frontier.adopt_plain_runs(scene, [run / "model.pt"], tmp_path / "fr", cfg, log=lambda _: None)
    assert placed == [tmp_path / "fr" / "plain" / "sasrec-h16-l1-w10" / "seed_1"]
    assert json.loads((placed[0] / "metrics.json").read_text())["test"] == json.loads((run / "metrics.json").read_text())["test"]
    assert frontier.adopt_plain_runs(scene, [run / "model.pt"], tmp_path / "fr", cfg, log=lambda _: None) == []  # already there

    other_seed = frontier.FrontierConfig(seeds=(2,), grid=(spec,), betas=(), epochs=1, onnx=False)
    assert frontier.adopt_plain_runs(scene, [run / "model.pt"], tmp_path / "fr2", other_seed, log=lambda _: None) == []
    for changed in (frontier.FrontierConfig(seeds=(1,), grid=({**spec, "hidden_size": 32},), betas=(), epochs=1),  # another model
                    frontier.FrontierConfig(seeds=(1,), grid=(spec,), betas=(), epochs=2),  # another training
                    frontier.FrontierConfig(seeds=(1,), grid=({**spec, "lr_decay": "cosine"},), betas=(), epochs=1)):
        with pytest.raises(recnb.ConfigError, match=f"plain run {run / 'model.pt'}: matches no grid entry"):
            frontier.adopt_plain_runs(scene, [run / "model.pt"], tmp_path / "fr3", changed, log=lambda _: None)
    with pytest.raises(recnb.ConfigError, match="exclude_seen"):
        frontier.adopt_plain_runs(scene, [run / "model.pt"], tmp_path / "fr3",
                                  dataclasses.replace(cfg, exclude_seen=True), log=lambda _: None)

    from recnb.cli import build_parser
    from recnb.commands.frontier import config

    args = build_parser().parse_args(["frontier", "--dataset", "d", "--teacher", "t.pt", "--out", "o", "--plain-runs", f"{tmp_path}/train*"])
    assert config(args).plain_runs == (run / "model.pt",)  # a folder pattern names the runs' checkpoints

    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps({"models": [spec]}))
    out = tmp_path / "cli"
    proc = subprocess.run(CMD + [str(a) for a in ["frontier", "--dataset", scene_path, "--teacher", teacher, "--grid", grid, "--seeds", "1",
                                                  "--betas", "none", "--epochs", "1", "--no-onnx", "--plain-runs", run, "--out", out]],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    plain = pd.read_csv(out / "frontier.csv").query("role == 'plain'")
    assert plain["test_NDCG@10"].tolist() == [json.loads((run / "metrics.json").read_text())["test"]["NDCG@10"]]
    assert json.loads((out / "settings.json").read_text())["plain_runs"] == [str(run / "model.pt")]


def test_a_clean_teacher_runs_once_and_its_students_keep_the_recipes_reorder(scene_and_teacher, tmp_path, monkeypatch):
    """``clean_teacher``: one cache over the recipe's context windows, output only (no EMD),
    built once for both seeds; the distilled runs train on those windows with the recipe's
    reorder. It and ``online_teacher`` are refused together."""
    import recnb
    from recnb import frontier

    scene_path, teacher = scene_and_teacher
    scene = recnb.load_scene(str(scene_path))
    built = []
    real = frontier.TeacherCache

    def counted(*a, **k):
        built.append(k)
        return real(*a, **k)

    monkeypatch.setattr(frontier, "TeacherCache", counted)
    spec = {"model": "sasrec", "hidden_size": 16, "num_layers": 1, "max_len": 10}
    distill = dataclasses.replace(frontier.FrontierConfig().distill, emd=False, kd_items="sampled")
    cfg = frontier.FrontierConfig(seeds=(1, 2), grid=(spec,), betas=(), epochs=1, onnx=False, latency_rounds=1,
                                  latency_repeats=1, clean_teacher=True, distill=distill)
    frame = frontier.run_frontier(scene, teacher, tmp_path, cfg, log=lambda _: None)
    assert built == [{"output_only": True}] and len(frame.query("role == 'student'")) == 2
    for seed in (1, 2):
        train = json.loads((tmp_path / "student" / "sasrec-h16-l1-w10" / f"seed_{seed}" / "metrics.json").read_text())["train"]
        plain = json.loads((tmp_path / "plain" / "sasrec-h16-l1-w10" / f"seed_{seed}" / "metrics.json").read_text())["train"]
        assert train["reorder"] == plain["reorder"] and train["context"] == plain["context"] > 0
    # where the recipe shuffles (Amazon-like scenes), a clean-teacher student does too; under the default cache it does not
    assert frontier._train_config("sasrec", "large-sparse", 50, 1, cfg, distilled=True).reorder == 0.2
    assert frontier._train_config("sasrec", "large-sparse", 50, 1, frontier.FrontierConfig(), distilled=True).reorder == 0
    with pytest.raises(recnb.ConfigError, match="choose one"):
        frontier.FrontierConfig(online_teacher=True, clean_teacher=True)
