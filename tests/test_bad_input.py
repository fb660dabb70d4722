"""Bad input through the CLI: exit code 2, one line naming the option, file or epoch, no
traceback; and the cases that used to pass silently (collapsed models, crafted checkpoints,
teachers from another scene, k-core scenes)."""

import json
import os
import subprocess
import sys

import pytest
import torch

from recnb.checkpoint import load_checkpoint, save_checkpoint
from recnb.data import synthetic_scene, write_atomic
from recnb.errors import ConfigError, DataError
from recnb.evaluation import evaluate
from recnb.models import build_model

CMD = [sys.executable, "-m", "recnb"]


def run(*args, env=None):
    return subprocess.run(CMD + [str(a) for a in args], check=False, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


def one_line_error(proc, *needles):
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def scene():
    return synthetic_scene(num_users=60, num_items=30, seq_len=15, seed=4)


@pytest.fixture(scope="module")
def inter(scene, tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "toy.inter"
    write_atomic(scene, path)
    return path


@pytest.fixture(scope="module")
def other_inter(tmp_path_factory):
    """Another scene with the same number of items (30) but other item ids."""
    other = synthetic_scene(num_users=60, num_items=30, seq_len=15, seed=5)
    other.item_ids = ["<pad>"] + [f"x{i}" for i in other.item_ids[1:]]
    path = tmp_path_factory.mktemp("other") / "other.inter"
    write_atomic(other, path)
    return path


@pytest.fixture(scope="module")
def checkpoint(scene, tmp_path_factory):
    torch.manual_seed(0)
    model = build_model("nextitnet", num_items=scene.num_items, max_len=10, embedding_size=8, num_blocks=1)
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    save_checkpoint(path, model, scene)
    return path


TRAIN = ["train", "--model", "sasrec", "--epochs", "1", "--max-len", "10", "--quiet", "--device", "cpu"]
BAD_TRAIN_OPTIONS = [
    (["--lr", "nan"], "lr"), (["--lr", "-1"], "lr"), (["--lr", "0"], "lr"), (["--lr", "inf"], "lr"),
    (["--weight-decay", "-1"], "weight_decay"), (["--dropout", "2"], "dropout"), (["--hidden-size", "0"], "hidden_size"),
    (["--patience", "-1"], "patience"), (["--epoch", "3"], "--epoch"), (["--num-heads", "3"], "num_heads"),
]


@pytest.mark.parametrize("flags,needle", BAD_TRAIN_OPTIONS, ids=[" ".join(f) for f, _ in BAD_TRAIN_OPTIONS])
def test_bad_train_options_are_one_line(inter, tmp_path, flags, needle):
    one_line_error(run(*TRAIN, "--dataset", inter, "--out", tmp_path / "o", *flags), needle)
    assert not (tmp_path / "o" / "model.pt").exists()


BAD_NEXTITNET = [(["--dilations", "a,b"], "--dilations"), (["--kernel-size", "0"], "kernel_size"),
                 (["--num-blocks", "0"], "num_blocks"), (["--dilations", "0"], "dilations")]


@pytest.mark.parametrize("flags,needle", BAD_NEXTITNET, ids=[" ".join(f) for f, _ in BAD_NEXTITNET])
def test_bad_model_options_are_one_line(inter, tmp_path, flags, needle):
    one_line_error(run("train", "--model", "nextitnet", "--epochs", "1", "--dataset", inter, "--out", tmp_path / "o",
                       "--quiet", *flags), needle)


@pytest.mark.parametrize("content,needle", [('{"batch_size": "two"}', "batch_size"), ("[1, 2]", "JSON object"),
                                            ('{"dropout": [0.1]}', "dropout")])
def test_config_values_of_the_wrong_type(inter, tmp_path, content, needle):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(content)
    one_line_error(run(*TRAIN, "--dataset", inter, "--out", tmp_path / "o", "--config", cfg), needle)


def test_binary_arch_file_and_bench_options(inter, checkpoint, tmp_path):
    arch = tmp_path / "arch.json"
    arch.write_bytes(bytes(range(256)) * 4)
    one_line_error(run("distill", "--dataset", inter, "--no-teacher", "--arch", arch, "--out", tmp_path / "d"), str(arch))
    one_line_error(run("bench", "latency", "--model", checkpoint, "--threads", "-2"), "--threads")
    one_line_error(run("bench", "latency", "--model", checkpoint, "--seq-len", "0"), "--seq-len")


def test_collapsed_training_stops_naming_the_epoch(inter, tmp_path):
    """A learning rate that blows the weights up used to finish with HR = NDCG = 1.0."""
    out = tmp_path / "o"
    line = one_line_error(run(*TRAIN, "--epochs", "3", "--dataset", inter, "--out", out, "--lr", "1e30"),
                          "diverged in epoch 0")
    assert not (out / "model.pt").exists() and not (out / "metrics.json").exists()
    assert "lower --lr" in line


def test_teacher_from_another_scene_is_refused(inter, other_inter, checkpoint, tmp_path):
    ev = run("evaluate", "--model", checkpoint, "--dataset", other_inter)
    one_line_error(ev, "item ids differ")
    one_line_error(run("search", "--dataset", other_inter, "--teacher", checkpoint, "--out", tmp_path / "s",
                       "--epochs", "1", "--max-len", "10"), "--teacher", "item ids differ")
    arch = tmp_path / "a.json"
    arch.write_text(json.dumps({"cells": [{"nodes": [[{"op": "skip", "input": 0}, {"op": "skip", "input": 1}]]}]}))
    one_line_error(run("distill", "--dataset", other_inter, "--teacher", checkpoint, "--arch", arch, "--out",
                       tmp_path / "d", "--max-len", "10"), "--teacher", "item ids differ")


def test_kcore_model_evaluates_on_the_same_kcore_scene(inter, tmp_path):
    out = tmp_path / "k"
    proc = run(*TRAIN, "--dataset", inter, "--out", out, "--kcore", "5", "--hidden-size", "8")
    assert proc.returncode == 0, proc.stderr
    ev = run("evaluate", "--model", out / "model.pt", "--dataset", inter)
    assert ev.returncode == 0, ev.stderr
    test = json.loads((out / "metrics.json").read_text())["test"]["NDCG@10"]
    assert json.loads(ev.stdout)["metrics"]["NDCG@10"] == pytest.approx(test, abs=1e-9)


class _Payload:
    """Unpickling this object would create the marker file: a checkpoint must never run it."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


def test_crafted_checkpoint_is_refused_and_its_payload_never_runs(scene, checkpoint, tmp_path):
    marker = tmp_path / "PWNED"
    payload = torch.load(checkpoint, weights_only=True)
    payload["extra"] = {"x": _Payload(marker)}
    evil = tmp_path / "evil.pt"
    torch.save(payload, evil)
    with pytest.raises(DataError, match="refused"):
        load_checkpoint(evil)
    one_line_error(run("evaluate", "--model", evil, "--dataset", "ml-100k"), str(evil), "refused")
    assert not marker.exists()
    model, _ = load_checkpoint(checkpoint)  # a plain recnb checkpoint still loads
    assert model.name == "nextitnet"


def test_unknown_encoder_fails_at_once_offline(inter, tmp_path):
    import time

    start = time.perf_counter()
    proc = run("teacher-artifacts", "--dataset", inter, "--teacher", "semantic", "--encoder", "no-such/encoder-xyz",
               "--out", tmp_path / "a", env={"HF_HUB_OFFLINE": "1"})
    pytest.importorskip("sentence_transformers")
    one_line_error(proc, "no-such/encoder-xyz", "offline")
    assert time.perf_counter() - start < 60  # hub retries took over a minute


def test_python_api_errors_are_recnb_errors(scene):
    with pytest.raises(ConfigError, match=r"num_items=scene\.num_items"):
        build_model("gru4rec")
    model = build_model("gru4rec", num_items=scene.num_items, max_len=10)
    with pytest.raises(ConfigError, match="split"):
        evaluate(model, scene, split="train")


def test_wrong_types_and_values_through_the_api_are_one_line_recnb_errors(scene, tmp_path):
    import recnb

    model = build_model("gru4rec", num_items=scene.num_items, max_len=10)
    cases = [
        (lambda: recnb.fit(model, scene, {"epochs": 1, "bogus": 2}), "unknown field"),
        (lambda: recnb.fit(model, scene, 3), "TrainConfig or a dict"),
        (lambda: recnb.fit(model, "ml-100k", {"epochs": 1}), "expected a recnb Scene"),
        (lambda: evaluate(build_model("gru4rec", num_items=scene.num_items - 1), scene), "built for"),
        (lambda: evaluate(model, scene, ks=[0]), "positive whole cut-offs"),
        (lambda: evaluate(model, scene, ks="10"), "positive whole cut-offs"),
        (lambda: recnb.Recommender("x"), "expected a recnb model"),
        (lambda: recnb.load_scene("ml-100k", kcore="5"), "kcore"),
        (lambda: recnb.recipe("sasrec", seed=-1), "seed must be in"),
    ]
    for call, needle in cases:
        with pytest.raises(recnb.RecnbError, match=needle):
            call()
    assert list(evaluate(model, scene, ks=10).index) == [10]  # one cut-off as an int is fine
    tiny = recnb.from_dataframe(__import__("pandas").DataFrame({"user": ["a"] * 3, "item": ["x"] * 3}))
    with pytest.raises(ConfigError, match="nothing to rank"):
        evaluate(build_model("gru4rec", num_items=1, max_len=10), tiny)
    with pytest.warns(UserWarning, match="at or above the catalogue size"):
        evaluate(model, scene, ks=(5, scene.num_items))


def test_checkpoints_whose_weights_do_not_fit_or_are_not_finite_are_refused(inter, checkpoint, tmp_path):
    payload = torch.load(checkpoint, weights_only=True)
    payload.pop("digest", None)  # crafted files: no digest to fail, the content itself is refused
    shapes = dict(payload, state_dict={k: v[:-1] if v.dim() else v for k, v in payload["state_dict"].items()})
    torch.save(shapes, tmp_path / "shapes.pt")
    nan = {k: v.clone() for k, v in payload["state_dict"].items()}
    next(v for v in nan.values() if v.is_floating_point()).view(-1)[0] = float("nan")
    torch.save(dict(payload, state_dict=nan), tmp_path / "nan.pt")
    with pytest.raises(DataError, match="do not fit its"):
        load_checkpoint(tmp_path / "shapes.pt")
    with pytest.raises(DataError, match="NaN or infinite weights"):
        load_checkpoint(tmp_path / "nan.pt")
    for args in (["evaluate", "--model", tmp_path / "nan.pt", "--dataset", inter],
                 ["export", "--model", tmp_path / "shapes.pt", "--format", "torchscript", "--out", tmp_path / "x.ts"]):
        one_line_error(run(*args), "nan.pt" if "nan.pt" in str(args) else "shapes.pt")
    assert not (tmp_path / "x.ts").exists()


def test_a_damaged_checkpoint_or_training_state_fails_its_digest(scene, tmp_path):
    """Files recnb writes carry a digest of their content: a flipped bit in a weight is refused
    by name instead of scoring slightly differently; a file without one (older) still loads."""
    from recnb.checkpoint import read_torch_file, write_torch_file
    from recnb.train import TrainConfig, fit

    model = build_model("sasrec", num_items=scene.num_items, max_len=10, hidden_size=8, num_heads=1)
    path = save_checkpoint(tmp_path / "model.pt", model, scene)
    state = tmp_path / "state.pt"
    fit(model, scene, TrainConfig(epochs=1, max_len=10, progress=False), state=state)
    for good in (path, state):
        payload = read_torch_file(good)
        weights = payload["state_dict"] if "state_dict" in payload else payload["model"]
        name = next(k for k, v in weights.items() if v.is_floating_point() and v.numel() > 4)
        weights[name].view(-1)[3] += 1e-3  # one weight moved
        torch.save(payload, tmp_path / "damaged.pt")  # the old digest kept
        with pytest.raises(DataError, match="fails its integrity check"):
            read_torch_file(tmp_path / "damaged.pt")
    del payload["digest"]
    torch.save(payload, tmp_path / "older.pt")
    assert "model" in read_torch_file(tmp_path / "older.pt")
    write_torch_file(tmp_path / "again.pt", payload)
    assert read_torch_file(tmp_path / "again.pt")["digest"]
    torch.save(read_torch_file(tmp_path / "again.pt") | {"epoch": 99}, state)  # an edited state
    with pytest.raises(DataError, match="fails its integrity check"):
        fit(model, scene, TrainConfig(epochs=2, max_len=10, progress=False), state=state)


def test_a_file_size_limit_is_one_line_and_leaves_no_tmp(inter, tmp_path):
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    out = tmp_path / "run"
    proc = subprocess.run(CMD + ["train", "--dataset", str(inter), "--model", "sasrec", "--epochs", "1",
                                 "--out", str(out), "--quiet"], capture_output=True, text=True, preexec_fn=limit,
                          timeout=300, check=False)
    one_line_error(proc, "could not be written")
    assert not list(out.glob("*.tmp"))


def test_resumes_check_the_teacher_by_content_not_by_path(inter, checkpoint, scene, tmp_path):
    """`distill --resume` compared the teacher's path (a copy was refused, another teacher at
    the same path accepted); `search --resume` did not record its teacher at all."""
    import shutil

    copy = shutil.copy(checkpoint, tmp_path / "copy.pt")
    torch.manual_seed(7)  # same shape, other weights
    save_checkpoint(tmp_path / "other.pt", build_model("nextitnet", num_items=scene.num_items, max_len=10,
                                                       embedding_size=8, num_blocks=1), scene)
    torch.manual_seed(7)  # another shape
    save_checkpoint(tmp_path / "wide.pt", build_model("nextitnet", num_items=scene.num_items, max_len=10,
                                                      embedding_size=16, num_blocks=1), scene)
    arch = tmp_path / "a.json"
    arch.write_text(json.dumps({"cells": [{"nodes": [[{"op": "skip", "input": 0}, {"op": "skip", "input": 1}]]}]}))
    distill = ["distill", "--dataset", inter, "--arch", arch, "--out", tmp_path / "d", "--epochs", "1", "--max-len", "10",
               "--width", "8", "--latency-batch", "1", "--quiet", "--device", "cpu"]
    assert run(*distill, "--teacher", checkpoint).returncode == 0
    assert run(*distill, "--teacher", copy, "--resume").returncode == 0  # the same teacher elsewhere
    one_line_error(run(*distill, "--teacher", tmp_path / "other.pt", "--resume"), "--resume", "teacher")
    search = ["search", "--dataset", inter, "--out", tmp_path / "s", "--epochs", "1", "--max-len", "10", "--width", "8",
              "--cells", "1", "--nodes", "2", "--quiet", "--device", "cpu"]
    assert run(*search, "--teacher", checkpoint).returncode == 0
    assert run(*search, "--teacher", copy, "--resume").returncode == 0
    for other in ("other.pt", "wide.pt"):
        one_line_error(run(*search, "--teacher", tmp_path / other, "--resume"), "--resume", "another teacher")


def test_dllm2rec_refuses_artifacts_of_another_scene_with_as_many_items(inter, other_inter, checkpoint, tmp_path):
    art = tmp_path / "art"
    proc = run("teacher-artifacts", "--dataset", inter, "--teacher", checkpoint, "--top-n", "5", "--out", art, "--quiet")
    assert proc.returncode == 0, proc.stderr
    one_line_error(run("dllm2rec", "--dataset", other_inter, "--artifacts", art, "--student", "gru4rec", "--seeds", "1",
                       "--epochs", "1", "--max-len", "10", "--out", tmp_path / "r", "--quiet"), "item ids differ")
    (art / "myrank_train.txt").write_text((art / "myrank_train.txt").read_text().replace("1", "2", 1))
    one_line_error(run("dllm2rec", "--dataset", inter, "--artifacts", art, "--student", "gru4rec", "--seeds", "1",
                       "--epochs", "1", "--max-len", "10", "--out", tmp_path / "r2", "--quiet"),
                   "myrank_train.txt", "integrity check")


def test_environment_errors_are_one_line_before_the_work(inter, checkpoint, tmp_path):
    """An absurd batch, a model that is a folder, an --out under a file, --seeds 0: one line
    each (they were tracebacks, or came after the search had run)."""
    one_line_error(run("bench", "latency", "--model", checkpoint, "--batch", "100000000"), "--batch 100000000",
                   "does not fit")
    (tmp_path / "dir.pt").mkdir()
    one_line_error(run("evaluate", "--model", tmp_path / "dir.pt", "--dataset", inter), "dir.pt", "cannot be read")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    one_line_error(run("recommend", "--model", checkpoint, "--dataset", inter, "--all", "--out", blocker / "r.csv"),
                   "r.csv", "cannot be written")
    one_line_error(run("adarec", "--dataset", inter, "--out", tmp_path / "a", "--seeds", "0"), "--seeds")
    assert not (tmp_path / "a").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_an_unreadable_dataset_or_model_is_one_line(inter, checkpoint, tmp_path):
    import shutil

    for src in (inter, checkpoint):
        dst = shutil.copy(src, tmp_path / src.name)
        os.chmod(dst, 0)
        args = ("--model", dst, "--dataset", inter) if src == checkpoint else ("--model", checkpoint, "--dataset", dst)
        one_line_error(run("evaluate", *args), src.name, "cannot be read")


def test_recommend_uses_a_kcore_model_on_its_kcore_scene(tmp_path):
    """`recommend` built the scene without the model's --kcore and refused it ("trained on 'None'")."""
    sparse = synthetic_scene(num_users=60, num_items=120, seq_len=12, seed=4)
    path = tmp_path / "sparse.inter"
    write_atomic(sparse, path)
    out = tmp_path / "k"
    proc = run(*TRAIN, "--dataset", path, "--out", out, "--kcore", "2", "--hidden-size", "8")
    assert proc.returncode == 0, proc.stderr
    model, meta = load_checkpoint(out / "model.pt")
    assert model.config.num_items < sparse.num_items  # the k-core dropped items
    user = meta["id_maps"]["user_ids"][0] if meta["id_maps"].get("user_ids") else sparse.user_ids[0]
    rec = run("recommend", "--model", out / "model.pt", "--dataset", path, "--users", user, "--top-k", "3")
    assert rec.returncode == 0, rec.stderr
    assert len(rec.stdout.strip().splitlines()) == 4  # a header and three items
