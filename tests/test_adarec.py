"""AdaRec distillation, the pipeline's summary, and the search/distill/adarec/bench CLI."""

import json

import pandas as pd
import pytest
import torch

from recnb.adarec.architecture import Architecture
from recnb.adarec.pipeline import (
    ROLES,
    DistillConfig,
    baseline_config,
    build_student,
    choose_default_beta,
    load_summary,
    run_pipeline,
    train_model,
)
from recnb.adarec.search import SearchConfig
from recnb.adarec.summary import story
from recnb.checkpoint import load_checkpoint, save_checkpoint
from recnb.cli import main
from recnb.data import synthetic_scene, train_windows
from recnb.errors import ConfigError
from recnb.kd import TeacherCache
from recnb.models import build_model
from recnb.train import TrainConfig

L = 12
OPS = ["zero", "skip", "avg_pool_k3", "conv_k3", "conv_k5"]
ARCH = {"cells": [{"nodes": [[{"op": "conv_k3", "input": 1}, {"op": "skip", "input": 0}],
                             [{"op": "avg_pool_k3", "input": 2}, {"op": "conv_k5", "input": 1}]]}]}


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: tiny tensors run on one thread


@pytest.fixture(scope="module")
def scene():
    return synthetic_scene(num_users=60, num_items=30, seq_len=16, seed=2)


@pytest.fixture(scope="module")
def teacher_path(scene, tmp_path_factory):
    torch.manual_seed(0)
    teacher = build_model("nextitnet", num_items=scene.num_items, max_len=L, embedding_size=12, num_blocks=2, layer_every=2)
    path = tmp_path_factory.mktemp("teacher") / "model.pt"
    save_checkpoint(path, teacher, scene)
    return path


def tiny_train(**kw):
    return TrainConfig(**{"epochs": 2, "batch_size": 32, "max_len": L, "device": "cpu", "progress": False, "patience": 5, **kw})


def test_a_sampled_loss_student_still_distils_the_whole_distribution(scene, teacher_path, tmp_path):
    """With the sampled softmax (the Amazon recipe) CE scores a few items, but KD compares the
    teacher's and the student's distributions over every item; measured with seen items masked."""
    teacher, _ = load_checkpoint(teacher_path)
    cache = TeacherCache(teacher, train_windows(scene, L))
    student = build_student(scene, Architecture.from_dict(ARCH), width=8, max_len=L)
    train = tiny_train(epochs=1, loss="sampled", negatives=8, batch_targets=64)
    m = train_model(scene, student, DistillConfig(width=8, train=train), cache, tmp_path, batches=(1,), exclude_seen=True)
    hist = pd.read_csv(tmp_path / "history.csv")
    assert m["exclude_seen"] and m["train"]["loss"] == "sampled" and (hist["kd"] > 0).all() and (hist["emd"] > 0).all()


def test_distilled_student_meets_the_model_contract(scene, teacher_path, tmp_path):
    teacher, _ = load_checkpoint(teacher_path)
    cache = TeacherCache(teacher, train_windows(scene, L))
    student = build_student(scene, Architecture.from_dict(ARCH), width=8, max_len=L)
    m = train_model(scene, student, DistillConfig(width=8, train=tiny_train()), cache, tmp_path, batches=(1, 4))
    assert cache.windows_computed == len(train_windows(scene, L))  # the teacher ran once per window
    assert m["teacher"] and m["params_no_embedding"] < m["params"] and m["flops"] > 0
    assert m["latency_cpu_b1_ms"] > 0 and m["latency_cpu_b4_ms"] > 0
    assert {"NDCG@5", "HR@5", "MRR@5", "NDCG@10"} <= set(m["test"]) and "NDCG@10" in m["test_sampled100"]
    hist = pd.read_csv(tmp_path / "history.csv")
    assert {"kd", "emd"} <= set(hist.columns) and (hist["kd"] > 0).all()
    loaded, _ = load_checkpoint(tmp_path / "model.pt")
    assert loaded.name == "student" and not any("distill_emd" in k for k in loaded.state_dict())
    assert loaded.architecture == Architecture.from_dict(ARCH)
    assert json.loads((tmp_path / "metrics.json").read_text())["params"] == loaded.num_params()
    # reordered windows would no longer match the teacher outputs cached per window
    with pytest.raises(ConfigError, match="reorder"):
        train_model(scene, student, DistillConfig(width=8, train=TrainConfig(epochs=1, reorder=0.2)), cache)


def test_baseline_config_matches_the_target_size():
    small = baseline_config(30_000, width=16)
    big = baseline_config(300_000, width=16)
    assert small["num_blocks"] < big["num_blocks"] and small["embedding_size"] == 16


def test_default_beta_is_the_best_validation_student_small_enough():
    def student(params, valid):
        return {"params_no_embedding": params, "valid": {"NDCG@10": valid}}

    students = {0.001: student(900, 0.09), 0.01: student(100, 0.07), 0.1: student(10, 0.06), 1.0: student(10, 0.065)}
    assert choose_default_beta(students, teacher_params_no_embedding=1000) == 0.01  # 0.001 is too big (> 1/8)
    assert choose_default_beta(students, 1000, max_param_ratio=1.0) == 0.001
    assert choose_default_beta({0.1: student(500, 0.1), 1.0: student(400, 0.01)}, 1000) == 1.0  # none small: smallest
    with pytest.raises(ConfigError):
        choose_default_beta({}, 1000)


def test_pipeline_writes_a_summary_with_every_role(scene, teacher_path, tmp_path):
    scfg = SearchConfig(width=8, num_cells=2, num_nodes=2, epochs=1, batch_size=32, max_len=L, device="cpu",
                        progress=False, primitives=OPS)
    dcfg = DistillConfig(width=8, train=tiny_train(epochs=1))
    summary = run_pipeline(scene, tmp_path, teacher=teacher_path, betas=(0.01, 1.0), seeds=2,
                           search_config=scfg, distill_config=dcfg, twins="default", batches=(1, 2), log=lambda s: None)
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(summary["rows"]))
    students = {r["beta"]: r for r in saved["rows"] if r["role"] == "student"}
    teacher = saved["rows"][0]
    assert saved["default_beta"] == choose_default_beta(students, teacher["params_no_embedding"])  # chosen on validation
    d = saved["default_beta"]
    per_beta = [[("student", b)] + ([("student_no_kd", b)] if b == d else []) for b in (0.01, 1.0)]
    assert [(r["role"], r["beta"]) for r in saved["rows"]] == [("teacher", None), *per_beta[0], *per_beta[1], ("baseline", None),
                                                              ("baseline_sasrec", None)]
    sasrec = saved["rows"][-1]
    assert sasrec["name"].startswith("sasrec-small-kd-") and sasrec["params_no_embedding"] > 0
    # the default student against its twin and both baselines, paired over the same test users
    assert set(saved["comparisons"]) == {"student_no_kd", "baseline", "baseline_sasrec"}
    for c in saved["comparisons"].values():
        assert c["users"] == scene.num_users and len(c["per_seed"]) == 2 and c["se"] > 0
        assert c["significant"] == (c["difference"] > 2 * c["se"])
    keys = {"name", "role", "beta", "default", "architecture", "params", "params_no_embedding", "flops",
            "latency_cpu_b1_ms", "latency_cpu_b2_ms", "test"}
    for r in saved["rows"]:
        assert keys <= set(r), r["name"]
        assert "NDCG@10" in r["test"] and "NDCG@10_std" in r["test"] and "MRR@5" in r["test"]
    defaults = [r["role"] for r in saved["rows"] if r["default"]]
    assert defaults == ["student", "student_no_kd"]
    assert all(r["architecture"] and (tmp_path / "search" / "beta_1" / "architecture.json").exists()
               for r in saved["rows"] if r["role"].startswith("student"))
    assert len(saved["rows"][1]["seeds"]) == 2
    from recnb.recommend import summary_checkpoint  # reads the folders the pipeline wrote

    assert all(summary_checkpoint(tmp_path, r).exists() for r in saved["rows"] if r["role"] in ("student", "student_no_kd"))
    csv = pd.read_csv(tmp_path / "summary.csv")
    assert len(csv) == 6 and "test_NDCG@10" in csv.columns and "valid_NDCG@10" in csv.columns
    assert len(load_summary(tmp_path)) == 6
    assert {"teacher_cache", "search_beta_0.01", "baseline"} <= set(saved["stages_seconds"])

    # twins for every beta, and the hand-made NextItNet without a teacher; finished pieces are reused
    again = run_pipeline(scene, tmp_path, teacher=teacher_path, betas=(0.01, 1.0), seeds=2, search_config=scfg,
                         distill_config=dcfg, twins="all", batches=(1, 2), log=lambda s: None)
    roles = [(r["role"], r["beta"]) for r in again["rows"]]
    assert roles == [("teacher", None), ("student", 0.01), ("student_no_kd", 0.01), ("student", 1.0),
                     ("student_no_kd", 1.0), ("baseline", None), ("baseline_sasrec", None), ("baseline_no_kd", None)]
    kd, no_kd = again["rows"][-3], again["rows"][-1]
    assert kd["params"] == no_kd["params"] and kd["test"] == saved["rows"][-2]["test"]  # the same model, reused
    assert again["rows"][1]["test"] == saved["rows"][1]["test"]
    assert {r["role"] for r in again["rows"]} <= set(ROLES)
    # a resumed run with settings that change finished pieces is refused, naming them
    longer = DistillConfig(width=8, train=tiny_train(epochs=3))
    with pytest.raises(ConfigError, match=r"distill\.train\.epochs"):
        run_pipeline(scene, tmp_path, teacher=teacher_path, betas=(0.01, 1.0), seeds=2, search_config=scfg,
                     distill_config=longer, twins="all", batches=(1, 2), log=lambda s: None)
    assert json.loads((tmp_path / "summary.json").read_text())["settings"]["distill"]["train"]["epochs"] == 1
    # a run written before a distillation setting existed resumes as if saved at its default
    settings = json.loads((tmp_path / "settings.json").read_text())
    del settings["distill"]["dropout"]
    (tmp_path / "settings.json").write_text(json.dumps(settings))
    assert run_pipeline(scene, tmp_path, teacher=teacher_path, betas=(0.01, 1.0), seeds=2, search_config=scfg,
                        distill_config=dcfg, twins="all", batches=(1, 2), log=lambda s: None)["rows"] == again["rows"]
    # the teacher is known by its content: a moved copy resumes, another model of its shape is refused
    import shutil

    moved = tmp_path.parent / f"{tmp_path.name}-moved-teacher.pt"
    shutil.copy(teacher_path, moved)
    assert run_pipeline(scene, tmp_path, teacher=moved, betas=(0.01, 1.0), seeds=2, search_config=scfg,
                        distill_config=dcfg, twins="all", batches=(1, 2), log=lambda s: None)["rows"] == again["rows"]
    other, _ = load_checkpoint(teacher_path)
    with torch.no_grad():
        next(other.parameters()).add_(0.01)
    save_checkpoint(moved, other, scene)
    with pytest.raises(ConfigError, match=r"teacher"):
        run_pipeline(scene, tmp_path, teacher=moved, betas=(0.01, 1.0), seeds=2, search_config=scfg,
                     distill_config=dcfg, twins="all", batches=(1, 2), log=lambda s: None)


def test_pipeline_chooses_each_students_dropout_on_its_twins_validation(scene, teacher_path, tmp_path):
    """With a dropout grid the twin trains at every value; its best validation NDCG@10 is
    the dropout of that beta's distilled students and twins (their checkpoints say so).
    ``baselines`` picks the hand-made students (here the SASRec only)."""
    scfg = SearchConfig(width=8, num_cells=2, num_nodes=2, epochs=1, batch_size=32, max_len=L, device="cpu",
                        progress=False, primitives=OPS)
    dcfg = DistillConfig(width=8, train=tiny_train(epochs=2))
    kw = {"teacher": teacher_path, "betas": (1.0,), "seeds": 1, "search_config": scfg, "distill_config": dcfg,
          "twins": "default", "baselines": ("sasrec",), "batches": (1,), "log": lambda s: None}
    summary = run_pipeline(scene, tmp_path, dropouts=(0.5, 0.0, 0.25), **kw)
    seed = dcfg.train.seed
    valid = {d: json.loads((tmp_path / "students" / "beta_1" / f"no_kd_dropout_{d:g}" / f"seed_{seed}" /
                            "metrics.json").read_text())["valid"]["NDCG@10"] for d in (0.0, 0.25, 0.5)}
    assert len(set(valid.values())) > 1  # the grid made a difference to choose from
    best = max(valid, key=lambda d: (valid[d], -d))
    assert summary["dropouts"] == {"1": best} and summary["dropout_valid"]["1"] == {f"{d:g}": v for d, v in valid.items()}
    for kind in ("kd", "no_kd"):
        assert load_checkpoint(tmp_path / "students" / "beta_1" / kind / f"seed_{seed}" / "model.pt")[0].config.dropout == best
    assert [r["dropout"] for r in summary["rows"] if r["role"].startswith("student")] == [best, best]
    assert [r["role"] for r in summary["rows"]] == ["teacher", "student", "student_no_kd", "baseline_sasrec"]
    assert set(summary["comparisons"]) == {"student_no_kd", "baseline_sasrec"}
    assert any("the twin's best on validation" in line for line in story(summary))
    # a resume with another grid is refused by name; a grid and a fixed dropout do not mix
    with pytest.raises(ConfigError, match="dropouts"):
        run_pipeline(scene, tmp_path, dropouts=(0.0, 0.5), **kw)
    with pytest.raises(ConfigError, match="not both"):
        run_pipeline(scene, tmp_path / "b", dropouts=(0.0, 0.5), **{**kw, "distill_config": DistillConfig(dropout=0.1)})
    with pytest.raises(ConfigError, match=r"\[0, 1\)"):
        run_pipeline(scene, tmp_path / "c", dropouts=(0.0, 1.0), **kw)
    with pytest.raises(ConfigError, match="baselines: choose among nextitnet, sasrec"):
        run_pipeline(scene, tmp_path / "d", **{**kw, "baselines": ("transformer",)})


# ----------------------------------------------------------------------------- CLI
def test_cli_search_distill_and_bench(scene, teacher_path, tmp_path, capsys, monkeypatch):
    import recnb.data

    monkeypatch.setattr(recnb.data, "load_scene", lambda name, data_dir=None, kcore=None, format=None: scene)
    common = ["--dataset", "synthetic", "--device", "cpu", "--quiet"]
    s = tmp_path / "s"
    assert main(["search", *common, "--teacher", str(teacher_path), "--beta", "0.5", "--out", str(s), "--epochs", "1",
                 "--width", "8", "--cells", "2", "--nodes", "2", "--max-len", str(L), "--ops", ",".join(OPS)]) == 0
    assert (s / "architecture.json").exists() and (s / "alphas.csv").exists()
    d = tmp_path / "d"
    assert main(["distill", *common, "--teacher", str(teacher_path), "--arch", str(s / "architecture.json"),
                 "--out", str(d), "--epochs", "1", "--max-len", str(L), "--latency-batch", "1", "--exclude-seen",
                 "--dropout", "0.1"]) == 0
    metrics = json.loads((d / "metrics.json").read_text())
    assert metrics["teacher"] and "latency_cpu_b1_ms" in metrics and "params" in metrics and metrics["exclude_seen"]
    assert load_checkpoint(d / "model.pt")[0].config.dropout == 0.1
    capsys.readouterr()
    assert main(["bench", "latency", "--model", str(d / "model.pt"), "--device", "cpu", "--batch", "1,3", "--repeats", "3"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["median_ms"]) == {"1", "3"} and out["name"] == "student" and out["median_ms"]["1"] > 0


class Killed(Exception):
    """Stands for a kill between two epochs."""


def test_a_killed_distill_resumes_to_the_numbers_of_an_unbroken_one(scene, teacher_path, tmp_path, capsys, monkeypatch):
    """`recnb distill --resume` continues from the per-epoch state (student, EMD map and layer
    weights, optimiser, dropout's random stream) to the weights and history of an unbroken run,
    and refuses a resume under other settings, naming them."""
    import recnb.data
    import recnb.train

    monkeypatch.setattr(recnb.data, "load_scene", lambda name, data_dir=None, kcore=None, format=None: scene)
    arch = Architecture.from_dict(ARCH).save(tmp_path / "arch.json")
    args = ["distill", "--dataset", "synthetic", "--device", "cpu", "--quiet", "--teacher", str(teacher_path), "--arch",
            str(arch), "--epochs", "3", "--max-len", str(L), "--latency-batch", "1", "--dropout", "0.2", "--width", "8"]
    assert main([*args, "--out", str(tmp_path / "straight")]) == 0

    train_epoch = recnb.train._Run.train_epoch

    def killed_at_epoch_2(run, epoch):
        if epoch == 2:
            raise Killed
        return train_epoch(run, epoch)

    monkeypatch.setattr(recnb.train._Run, "train_epoch", killed_at_epoch_2)
    with pytest.raises(Killed):
        main([*args, "--out", str(tmp_path / "killed")])
    trained = []

    def counted(run, epoch):
        trained.append(epoch)
        return train_epoch(run, epoch)

    monkeypatch.setattr(recnb.train._Run, "train_epoch", counted)
    assert (tmp_path / "killed" / "train_state.pt").exists() and not (tmp_path / "killed" / "metrics.json").exists()
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "killed"), "--temperature", "2", "--resume"]) == 2
    assert "distill.T" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "killed"), "--resume"]) == 0
    assert trained == [2]  # only the epoch the kill cut off

    histories = [pd.read_csv(tmp_path / d / "history.csv").drop(columns="seconds") for d in ("straight", "killed")]
    pd.testing.assert_frame_equal(*histories)
    straight, resumed = (load_checkpoint(tmp_path / d / "model.pt")[0].state_dict() for d in ("straight", "killed"))
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    assert not (tmp_path / "killed" / "train_state.pt").exists()
    # a folder that holds something else is not taken for a run to resume
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    assert main([*args, "--out", str(tmp_path / "other"), "--resume"]) == 2
    assert "settings.json" in capsys.readouterr().err and (tmp_path / "other" / "notes.txt").read_text() == "mine"


def test_cli_errors_name_the_field(scene, teacher_path, tmp_path, capsys, monkeypatch):
    import recnb.data

    monkeypatch.setattr(recnb.data, "load_scene", lambda name, data_dir=None, kcore=None, format=None: scene)
    bad = tmp_path / "bad.json"
    bad.write_text('{"cells": [{"nodes": [[{"op": "conv_k9", "input": 0}]]}]}')
    assert main(["distill", "--dataset", "x", "--no-teacher", "--arch", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "cells[0].nodes[0][0].op" in capsys.readouterr().err
    bad.write_text('{"cells": [')
    assert main(["distill", "--dataset", "x", "--no-teacher", "--arch", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "malformed JSON" in capsys.readouterr().err
    assert main(["adarec", "--dataset", "x", "--out", str(tmp_path / "a"), "--baselines", "sasrec,gru4rec"]) == 2
    assert "--baselines: choose among nextitnet, sasrec" in capsys.readouterr().err
    assert main(["search", "--dataset", "x", "--out", str(tmp_path / "s"), "--cost", "watts"]) == 2
    assert "cost" in capsys.readouterr().err
    assert main(["bench", "latency", "--model", str(tmp_path / "none.pt")]) == 2
    assert "no such checkpoint" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["gru4rec", "semantic_teacher"])
def test_teachers_of_any_contract_shape_distil(scene, tmp_path, kind):
    """GRU4Rec's states differ in width (64 / 128 / 64) and the semantic teacher ranks by
    distance, not a dot product: both teach through the contract (layer widths, score())."""
    from recnb.dllm2rec.teachers import build_semantic_teacher

    torch.manual_seed(0)
    if kind == "gru4rec":
        teacher = build_model("gru4rec", num_items=scene.num_items, max_len=L, embedding_size=8, hidden_size=16)
    else:
        teacher = build_semantic_teacher(scene, text=torch.randn(scene.num_items + 1, 12), max_len=L, hidden_size=8)
    cache = TeacherCache(teacher, train_windows(scene, L))
    assert cache.width == ([16, 8] if kind == "gru4rec" else [128, 8])  # the semantic teacher's GRU is 128 wide
    windows = train_windows(scene, L)
    mask = windows.targets[:2] > 0
    with torch.no_grad():
        expected = teacher.score(teacher(windows.inputs[:2])[-1])[mask]
    assert torch.allclose(cache.logits(torch.arange(2), mask), expected, atol=2e-2, rtol=1e-2)  # float16 cache
    student = build_student(scene, Architecture.from_dict(ARCH), width=8, max_len=L)
    m = train_model(scene, student, DistillConfig(width=8, train=tiny_train(epochs=1)), cache, tmp_path, batches=(1,))
    hist = pd.read_csv(tmp_path / "history.csv")
    assert (hist["emd"] > 0).all() and (hist["kd"] > 0).all() and m["teacher"]


def test_a_model_that_breaks_the_contract_is_refused():
    from recnb.models.base import check_contract

    class Ragged(torch.nn.Module):
        name = "ragged"

        def __init__(self):
            super().__init__()
            self.config = type("C", (), {"num_items": 5})()
            self.emb = torch.nn.Embedding(6, 4)

        def forward(self, seq):
            e = self.emb(seq)
            return [e, torch.cat([e, e], -1)]  # widths 4 and 8, declared equal

        def score(self, h):
            return h @ self.emb.weight.t()

    with pytest.raises(ConfigError, match="ragged: breaks the model contract"):
        check_contract(Ragged())


def test_story_says_what_distillation_bought_and_when_the_teacher_cannot_teach():
    from recnb.adarec.summary import story

    def row(role, ndcg, params, ms, default=False):
        return {"role": role, "name": role, "default": default, "test": {"NDCG@10": ndcg},
                "params_no_embedding": params, "latency_cpu_b1_ms": ms}

    summary = {"default_beta": 0.1, "rows": [row("teacher", 0.06, 800_000, 3.0), row("student", 0.058, 50_000, 0.5, True),
                                             row("student_no_kd", 0.052, 50_000, 0.5, True)],
               "comparisons": {"student_no_kd": {"users": 100, "se": 0.002, "significant": True}}}
    lines = story(summary)
    assert "97% of the teacher" in lines[1] and "6.2%" in lines[1] and "6.0x faster" in lines[1]
    assert "+0.0060" in lines[2] and "more than twice the SE" in lines[2] and len(lines) == 3
    summary["rows"][0]["test"]["NDCG@10"] = 0.05  # a teacher below the twin: said so
    assert "not better than the student's no-teacher twin" in story(summary)[-1]


def test_kd_over_sampled_items_is_full_kd_when_the_sample_covers_the_catalogue_and_trains():
    import torch

    from recnb.adarec.pipeline import DistillationLoss, DistillConfig
    from recnb.data import synthetic_scene, train_windows
    from recnb.errors import ConfigError
    from recnb.kd import TeacherCache
    from recnb.models import build_model

    scene = synthetic_scene(num_users=40, num_items=25, seq_len=12, seed=1)
    torch.manual_seed(0)
    teacher = build_model("sasrec", num_items=scene.num_items, hidden_size=16, max_len=10)
    student = build_model("sasrec", num_items=scene.num_items, hidden_size=8, num_layers=1, max_len=10)
    windows = train_windows(scene, 10)
    cache = TeacherCache(teacher, windows)
    index = torch.arange(6)
    batch = {"inputs": windows.inputs[index], "targets": windows.targets[index], "index": index,
             "negatives": torch.arange(1, scene.num_items + 1)}  # every item: the sample is the catalogue
    student.eval()
    states = student(batch["inputs"])
    full = DistillationLoss(cache, student, DistillConfig(emd=False))(student, batch, states, None)["kd"]
    sampled_loss = DistillationLoss(cache, student, DistillConfig(emd=False, kd_items="sampled"))
    sampled = sampled_loss(student, batch, states, None)["kd"]
    assert sampled.item() == pytest.approx(full.item(), rel=1e-5)
    sampled.backward()
    assert student.item_embedding.weight.grad.abs().sum() > 0
    few = {**batch, "negatives": torch.tensor([3, 5, 7])}  # a real sample: a different (cheaper) loss
    assert sampled_loss(student, few, student(batch["inputs"]), None)["kd"].item() != pytest.approx(full.item())
    with pytest.raises(ConfigError, match="kd_items"):
        DistillConfig(kd_items="some")


def test_kd_over_the_teachers_top_items_is_full_kd_when_k_covers_the_catalogue_and_trains():
    """--kd-items top: the teacher's best items of each position are found once (equal to topk
    of its logits); with k = every item the loss is full KD, and a student trains with it."""
    from recnb.adarec.pipeline import DistillationLoss, distillation_loss
    from recnb.train import fit

    scene = synthetic_scene(num_users=40, num_items=30, seq_len=25, seed=3)
    torch.manual_seed(0)
    teacher = build_model("sasrec", num_items=scene.num_items, max_len=20).eval()
    windows = train_windows(scene, 20)
    cache = TeacherCache(teacher, windows, dtype=torch.float32)
    index = torch.arange(6)
    mask = windows.targets[index] > 0
    full = cache.logits(index, mask)
    ids, vals = cache.top_logits(index, mask, 5)
    want_vals, want_ids = full[:, 1:].topk(5, dim=1)
    assert torch.equal(ids, want_ids + 1) and torch.allclose(vals, want_vals.half().float())
    student = build_model("sasrec", num_items=scene.num_items, max_len=20, hidden_size=16, num_layers=1)
    states = student(windows.inputs[index])
    batch = {"targets": windows.targets[index], "index": index}
    top = DistillationLoss(TeacherCache(teacher, windows), student, DistillConfig(emd=False, kd_items="top", top_k=30))
    every = DistillationLoss(TeacherCache(teacher, windows), student, DistillConfig(emd=False))
    got, want = top(student, batch, states, None)["kd"], every(student, batch, states, None)["kd"]
    assert torch.isclose(got, want, rtol=1e-3)
    few = DistillationLoss(cache, student, DistillConfig(emd=False, kd_items="top", top_k=3))(student, batch, states, None)["kd"]
    assert few < want  # a softmax over fewer items: less to match
    cfg = DistillConfig(emd=False, kd_items="top", top_k=8, train=TrainConfig(epochs=2, max_len=20, progress=False, lr=3e-3))
    res = fit(student, scene, cfg.train, extra_loss=distillation_loss(cache, student, cfg), windows=windows)
    assert res.history["kd"].iloc[-1] < res.history["kd"].iloc[0]


def test_online_teacher_reads_like_the_cache_and_fused_sampled_kd_trains_with_reorder():
    """OnlineTeacher runs the teacher on each batch as drawn: on unshuffled windows it gives the
    cache's outputs; with it, sampled KD (fused into the sampled loss at T=1) trains a student
    with the recipe's reorder augmentation on, and logs its KD term."""
    from recnb.adarec.pipeline import distillation_loss
    from recnb.kd import OnlineTeacher
    from recnb.train import Batches, fit

    scene = synthetic_scene(num_users=60, num_items=40, seq_len=25, seed=4)
    torch.manual_seed(0)
    teacher = build_model("sasrec", num_items=scene.num_items, max_len=20).eval()
    windows = train_windows(scene, 20)
    cache, online = TeacherCache(teacher, windows, dtype=torch.float32), OnlineTeacher(teacher)
    for idx, inp, tgt, offset, _ in Batches(windows, 16, 0, True).epoch(torch.Generator().manual_seed(0)):
        batch = {"inputs": inp, "targets": tgt, "offset": offset, "index": idx}
        mask = tgt > 0
        online.see(batch)
        assert torch.allclose(online.output(idx, mask), cache.output(idx, mask), atol=1e-5)
        assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(online.layers(idx, mask), cache.layers(idx, mask)))
    student = build_model("sasrec", num_items=scene.num_items, max_len=20, hidden_size=16, num_layers=1)
    cfg = DistillConfig(emd=False, kd_items="sampled", gamma=0.9, train=TrainConfig(  # KD weighted 9x: it must fall
        epochs=3, max_len=20, progress=False, lr=3e-3, loss="sampled", negatives=16, batch_targets=128, reorder=0.2))
    extra = distillation_loss(online, student, cfg)
    assert extra.fused
    res = fit(student, scene, cfg.train, extra_loss=extra)
    assert res.history["kd"].iloc[-1] < res.history["kd"].iloc[0] and (res.history["kd"] > 0).all()


def test_the_cache_runs_batches_cut_to_their_longest_history_into_the_packed_rows():
    """The teacher runs the windows shortest first, each batch without its all-padding columns;
    every packed row holds what the teacher gives on the whole window."""
    scene = synthetic_scene(num_users=60, num_items=40, seq_len=25, seed=4)
    torch.manual_seed(0)
    teacher = build_model("sasrec", num_items=scene.num_items, max_len=30, num_layers=2).eval()
    assert type(teacher).cuts_padding
    windows = train_windows(scene, 30)  # histories of 10-23 items: every batch has padding to cut
    cut = TeacherCache(teacher, windows, batch_size=8, dtype=torch.float32)
    teacher.cuts_padding = False  # the same teacher, run on whole windows in their order
    whole = TeacherCache(teacher, windows, batch_size=8, dtype=torch.float32)
    assert cut.windows_computed == whole.windows_computed == len(windows)
    assert cut.states.shape == whole.states.shape and torch.allclose(cut.states, whole.states, atol=1e-5)


def test_an_output_only_cache_reads_like_the_full_one_and_serves_a_student_trained_with_reorder():
    """The clean-teacher path: the teacher runs once over the context windows and only its scored
    output is kept (a fraction of the memory); a student trains on those windows with the
    recipe's reorder, reading the teacher's outputs of each window as it was before shuffling
    (the valid positions a batch reads do not move), and its KD term falls below its first epoch's."""
    from recnb.adarec.pipeline import distillation_loss
    from recnb.train import Batches, fit

    scene = synthetic_scene(num_users=60, num_items=40, seq_len=25, seed=4)
    torch.manual_seed(0)
    teacher = build_model("sasrec", num_items=scene.num_items, max_len=20, num_layers=2).eval()
    windows = train_windows(scene, 20, context=8)
    full = TeacherCache(teacher, windows, dtype=torch.float32)
    out = TeacherCache(teacher, windows, dtype=torch.float32, output_only=True)
    assert out.windows is windows and out.num_layers == 1 and out.nbytes() * full.num_layers == full.nbytes()
    for idx, _, tgt, _, _ in Batches(windows, 16, 0, True).epoch(torch.Generator().manual_seed(0)):
        assert torch.equal(out.output(idx, tgt > 0), full.output(idx, tgt > 0))
    with pytest.raises(ValueError, match="output_only"):
        out.layers(idx, tgt > 0)
    student = build_model("sasrec", num_items=scene.num_items, max_len=20, hidden_size=16, num_layers=1)
    cfg = DistillConfig(emd=False, kd_items="sampled", gamma=0.9, train=TrainConfig(
        epochs=3, max_len=20, context=8, progress=False, lr=3e-3, loss="sampled", negatives=16, batch_targets=128,
        reorder=0.2))
    extra = distillation_loss(out, student, cfg)
    res = fit(student, scene, cfg.train, extra_loss=extra, windows=out.windows)  # a misread row would raise
    assert res.history["kd"].iloc[1:].min() < res.history["kd"].iloc[0] and (res.history["kd"] > 0).all()


def test_a_teacher_the_pipeline_trains_early_stops_on_the_validation_it_is_measured_by(scene, tmp_path):
    """Under ``exclude_seen`` the pipeline's own teacher chooses its epoch on masked validation,
    as every model of the run is measured, not on the unmasked one."""
    from recnb.adarec.pipeline import _Pipeline

    run = _Pipeline(scene, tmp_path, SearchConfig(max_len=L, device="cpu", progress=False), DistillConfig(width=8),
                    1, ("cpu",), (1,), False, lambda s: None, None, True)
    run.prepare_teacher(None, tiny_train(epochs=1))
    trained = json.loads((tmp_path / "teacher" / "metrics.json").read_text())
    assert trained["exclude_seen"] is True
    assert run.teacher_metrics["valid"]["NDCG@10"] == pytest.approx(trained["valid"]["NDCG@10"])
