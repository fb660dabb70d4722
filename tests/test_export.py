"""Serving: ONNX / TorchScript graphs equal the eager model for every model kind, the id map
travels with them, Recommender and ``recnb recommend`` agree with ``evaluate``, bad input is
one line with exit code 2."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from test_cli import one_line_error  # tests/ is on the path under pytest

from recnb.adarec.student import Student
from recnb.checkpoint import save_checkpoint
from recnb.cli import main
from recnb.data import eval_inputs, load_scene, synthetic_scene
from recnb.dllm2rec.pipeline import DLLM2RecConfig, build_student
from recnb.errors import ConfigError
from recnb.evaluation import score_users, user_ranks
from recnb.export import ScoringHead, export, idmap_path
from recnb.models import build_model
from recnb.recommend import Recommender

pytest.importorskip("onnxruntime")
import onnxruntime as ort

L, N = 10, 30
pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: tiny tensors run on one thread

# every op family of the search space, attention included (the dynamo exporter refuses it:
# the export falls back to the TorchScript-based exporter, which must then be checked too)
ARCH = {"cells": [{"nodes": [[{"op": "conv_k3", "input": 1}, {"op": "self_attention", "input": 0}],
                             [{"op": "max_pool_k3", "input": 2}, {"op": "skip", "input": 1}]]},
                  {"nodes": [[{"op": "avg_pool_k3", "input": 1}, {"op": "dil_conv_k3_d2", "input": 0}]]}]}


def make(kind: str):
    torch.manual_seed(0)
    if kind == "student":
        return Student.from_architecture(ARCH, N, 16, L)
    if kind == "dllm2rec_student":
        return build_student("sasrec", N, L, {"hidden_size": 16}, torch.randn(N, 8), DLLM2RecConfig())
    if kind == "sasrec_lag":  # attention biased by lag: a float mask built from a parameter
        model = build_model("sasrec", num_items=N, max_len=L, hidden_size=16, positions="lag")
        torch.nn.init.normal_(model.lag_bias)
        return model
    small = {"sasrec": {"hidden_size": 16}, "bsarec": {"hidden_size": 16}, "gru4rec": {"embedding_size": 16, "hidden_size": 16},
             "nextitnet": {"embedding_size": 16, "num_blocks": 2}, "caser": {"embedding_size": 16}}[kind]
    return build_model(kind, num_items=N, max_len=L, **small)


KINDS = ("sasrec", "sasrec_lag", "bsarec", "gru4rec", "nextitnet", "caser", "student", "dllm2rec_student")


@pytest.fixture(scope="module")
def scene():
    return synthetic_scene(num_users=40, num_items=N, seq_len=16, seed=3)


@pytest.fixture(scope="module")
def histories(scene):
    return eval_inputs(scene, "test", L)[0]  # real left-padded histories, short ones included


def assert_same_topk(ids, scores, want_scores, k):
    """Scores within 1e-4 relative; the ids those of eager where eager's scores are not tied."""
    want = torch.as_tensor(want_scores).float().clone()
    want[:, 0] = float("-inf")
    w_val, w_ids = want.topk(k, dim=1)
    scale = w_val.abs().max()
    assert torch.allclose(torch.as_tensor(scores), w_val, rtol=0, atol=1e-4 * scale)
    gaps = (w_val[:, :-1] - w_val[:, 1:]).abs() <= 1e-4 * scale
    tied = torch.zeros_like(w_ids, dtype=torch.bool)
    tied[:, :-1] |= gaps
    tied[:, 1:] |= gaps
    assert (~tied).float().mean() > 0.5  # the check is not vacuous
    assert torch.equal(torch.as_tensor(ids)[~tied], w_ids[~tied])
    assert (torch.as_tensor(ids) > 0).all()  # padding is never recommended


# ----------------------------------------------------------------------------- parity
@pytest.mark.parametrize("kind", KINDS)
def test_onnx_and_torchscript_equal_the_eager_model(kind, histories, tmp_path):
    model = make(kind).eval()
    want = score_users(model, histories)  # what evaluate ranks with
    info = export(model, tmp_path / "m.onnx", "onnx", "topk", k=10)
    assert info["exporter"] == ("torchscript" if kind == "student" else "dynamo")
    ts = export(model, tmp_path / "m.pt", "torchscript", "scores")
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    scripted = torch.jit.load(str(tmp_path / "m.pt"))
    assert ts["output"] == "scores" and ts["k"] is None
    for rows in (slice(0, 1), slice(0, 7), slice(None)):  # batch sizes other than the traced one (2)
        h = histories[rows]
        ids, scores = session.run(None, {"history": h.numpy()})
        assert ids.shape == (len(h), 10) and ids.dtype == np.int64
        assert_same_topk(ids, scores, want[rows], 10)
        full = scripted(h)
        assert full.shape == (len(h), N + 1) and torch.isinf(full[:, 0]).all()
        assert torch.allclose(full[:, 1:], want[rows][:, 1:], rtol=0, atol=1e-4 * want[rows][:, 1:].abs().max())


def test_onnx_scores_output_and_seen_items_masked_in_the_graph(histories, tmp_path):
    model = make("caser").eval()
    export(model, tmp_path / "s.onnx", output="scores")
    export(model, tmp_path / "x.onnx", k=N - L, exclude_seen=True)
    scores = ort.InferenceSession(str(tmp_path / "s.onnx")).run(None, {"history": histories.numpy()})[0]
    want = score_users(model, histories)
    assert np.isneginf(scores[:, 0]).all()
    assert np.allclose(scores[:, 1:], want[:, 1:].numpy(), rtol=0, atol=1e-4 * float(want[:, 1:].abs().max()))
    ids, vals = ort.InferenceSession(str(tmp_path / "x.onnx")).run(None, {"history": histories.numpy()})
    assert np.isfinite(vals).all()  # at most L of the N items are seen: k = N - L are left
    for row, h in zip(ids, histories.numpy()):
        assert not set(h[h > 0].tolist()) & set(row.tolist())


def test_dllm2rec_item_table_is_summed_once_at_export():
    model = make("dllm2rec_student").eval()
    head = ScoringHead(model, "scores")
    assert not any("teacher" in n or "projector" in n for n, _ in head.named_buffers())  # folded into one table
    assert not any("projector" in n for n, _ in head.named_parameters())
    seq = torch.randint(1, N + 1, (3, L))
    assert torch.allclose(head(seq)[:, 1:], model.score(model.output(seq)[:, -1])[:, 1:], atol=1e-5)


def test_int8_quantised_graph_runs_and_keeps_float_scores(histories, tmp_path):
    import onnx

    model = make("sasrec").eval()
    info = export(model, tmp_path / "q.onnx", k=5, quantize="int8")
    assert info["quantized"] == "int8"
    ops = {n.op_type for n in onnx.load(str(tmp_path / "q.onnx")).graph.node}
    assert "DynamicQuantizeLinear" in ops or "MatMulInteger" in ops  # weights really are int8
    ids, scores = ort.InferenceSession(str(tmp_path / "q.onnx")).run(None, {"history": histories.numpy()})
    assert ids.shape == (len(histories), 5) and (ids >= 1).all() and (ids <= N).all()
    assert (np.diff(scores, axis=1) <= 0).all()
    with pytest.raises(ConfigError, match="onnx only"):
        export(model, tmp_path / "q.pt", "torchscript", quantize="int8")


def test_export_refuses_bad_id_maps_before_writing_anything(tmp_path):
    with pytest.raises(ConfigError, match=f"id maps hold 2 items, the model {N}"):
        export(make("sasrec"), tmp_path / "out" / "m.pt", "torchscript", id_maps={"item_ids": ["<pad>", "a", "b"]})
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- the CLI round trip
@pytest.fixture(scope="module")
def checkpoint(scene, tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    model = make("gru4rec")
    return save_checkpoint(path, model, scene)


def test_cli_export_round_trip_with_id_map(checkpoint, scene, histories, tmp_path, capsys):
    out = tmp_path / "serve" / "student.onnx"
    proc = subprocess.run([sys.executable, "-m", "recnb", "export", "--model", str(checkpoint), "--out", str(out),
                           "--top-k", "7"], check=False, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(idmap_path(out).read_text())
    assert idmap_path(out).name == "student.onnx.json"
    assert info["item_ids"] == [str(i) for i in scene.item_ids] and info["titles"] == scene.titles
    assert (info["model"], info["max_len"], info["k"], info["output"], info["dataset"]) == ("gru4rec", L, 7, "topk", scene.name)
    assert info["input"]["shape"] == ["batch", L] and info["outputs"] == ["item_ids", "scores"]
    # a server with the graph and the map alone: raw ids in, raw ids and titles out
    index = {raw: i for i, raw in enumerate(info["item_ids"]) if i}
    user_items = [info["item_ids"][i] for i in scene.sequences[5]]
    x = np.zeros((1, info["max_len"]), np.int64)
    x[0, -len(user_items[-L:]):] = [index[r] for r in user_items[-L:]]
    ids, scores = ort.InferenceSession(str(out)).run(None, {"history": x})
    rec = Recommender.load(checkpoint, scene).recommend(user_items, k=7)
    assert [info["item_ids"][i] for i in ids[0]] == rec["item"].tolist()
    assert [info["titles"][i] for i in ids[0]] == rec["title"].tolist()
    assert np.allclose(scores[0], rec["score"], atol=1e-5)
    assert main(["export", "--model", str(checkpoint), "--out", str(out), "--format", "torchscript"]) == 2  # no overwrite
    assert "--force" in capsys.readouterr().err


def test_an_edited_id_map_or_graph_fails_its_digest_and_an_unwritable_out_is_one_line(scene, tmp_path):
    """The id map carries its own digest and the graph's SHA-256: a server that loads a map
    edited by hand, or a graph replaced under it, is refused by name; an --out that cannot
    be written is said so before the export (it read "no ONNX exporter could export it")."""
    from recnb.errors import DataError
    from recnb.export import Exported, load_idmap

    model = build_model("gru4rec", num_items=N, max_len=L, hidden_size=8)
    path = tmp_path / "m.ts"
    export(model, path, format="torchscript", id_maps={"item_ids": scene.item_ids})
    assert load_idmap(path)["graph_sha256"] and Exported(path)(np.ones((1, L), np.int64))[0].shape == (1, 10)
    meta = idmap_path(path)
    good = meta.read_text()
    meta.write_text(good.replace(f'"{scene.item_ids[3]}"', '"swapped"', 1))
    with pytest.raises(DataError, match="m.ts.json: fails its integrity check"):
        load_idmap(path)
    meta.write_text(good)
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(DataError, match="m.ts: fails its integrity check"):
        Exported(path)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="cannot be written there"):
        export(model, blocker / "m.onnx")
    one_line_error(subprocess.run([sys.executable, "-m", "recnb", "export", "--model", str(tmp_path / "nope.pt"),
                                   "--out", str(blocker / "x.onnx")], check=False, capture_output=True, text=True), "nope.pt")


# ----------------------------------------------------------------------------- Recommender
def test_recommender_on_a_user_and_on_a_history(checkpoint, scene):
    rec = Recommender.load(checkpoint, scene)
    by_user = rec.recommend(scene.user_ids[3], k=5)
    raw = [scene.item_ids[i] for i in scene.sequences[3]]
    by_history = rec.recommend(raw, k=5)
    assert list(by_user.columns) == ["rank", "item", "title", "score"]
    pd.testing.assert_frame_equal(by_user, by_history)
    assert by_user["rank"].tolist() == [1, 2, 3, 4, 5] and by_user["score"].is_monotonic_decreasing
    unseen = rec.recommend(raw, k=5, exclude_seen=True)
    assert not set(unseen["item"]) & set(raw) and len(unseen) == 5
    with pytest.raises(ConfigError, match="unknown item id.*'nope'"):
        rec.recommend(raw + ["nope"])
    with pytest.raises(ConfigError, match="not a user"):
        rec.recommend("no-such-user")
    with pytest.raises(ConfigError, match="between 1 and 30"):
        rec.recommend(raw, k=N + 1)
    import recnb

    assert recnb.Recommender is Recommender


def test_recommend_all_agrees_with_evaluate_ranks(checkpoint, scene, tmp_path, capsys):
    k = 10
    assert main(["recommend", "--model", str(checkpoint), "--dataset", str(scene_file(scene, tmp_path)), "--all",
                 "--history", "test", "--top-k", str(k), "--out", str(tmp_path / "all.csv"), "--batch-size", "16",
                 "--quiet"]) == 0
    df = pd.read_csv(tmp_path / "all.csv", dtype={"user": str, "item": str})
    assert len(df) == scene.num_users * k and list(df.columns) == ["user", "rank", "item", "title", "score"]
    model = Recommender.load(checkpoint).model
    ranks = user_ranks(model, scene, "test")
    hist, target = eval_inputs(scene, "test", L)
    scores = score_users(model, hist)
    hits = 0
    for u, user in enumerate(scene.user_ids):
        items = df[df["user"] == str(user)].sort_values("rank")["item"].tolist()
        r, t = int(ranks[u]), scene.item_ids[int(target[u])]
        ties = int((scores[u] == scores[u, target[u]]).sum()) - 1
        if r < k:
            hits += 1
            assert r <= items.index(t) <= r + ties  # at position r unless tied
        elif r - ties >= k:
            assert t not in items
    assert hits > 0
    assert main(["recommend", "--model", str(checkpoint), "--dataset", str(scene_file(scene, tmp_path)),
                 "--users", f"{scene.user_ids[0]},{scene.user_ids[1]}", "--top-k", "3", "--exclude-seen",
                 "--out", str(tmp_path / "two.parquet")]) == 0
    two = pd.read_parquet(tmp_path / "two.parquet")
    assert two["user"].tolist() == [str(scene.user_ids[0])] * 3 + [str(scene.user_ids[1])] * 3
    assert not set(two["item"][:3]) & {scene.item_ids[i] for i in scene.sequences[0]}


def scene_file(scene, tmp_path):
    from recnb.data import write_atomic

    path = tmp_path / f"{scene.name}.inter"
    if not path.exists():
        write_atomic(scene, path)
    return path


# ----------------------------------------------------------------------------- bad input
def test_bad_input_is_one_line_and_exit_2(checkpoint, scene, tmp_path, capsys, monkeypatch):
    data = str(scene_file(scene, tmp_path))
    not_ckpt = tmp_path / "notes.pt"
    not_ckpt.write_text("not a checkpoint")
    state = tmp_path / "state.pt"
    torch.save({"format": "recnb-train-state/1", "epoch": 3}, state)
    cases = [
        (["recommend", "--model", checkpoint, "--dataset", data, "--users", "ghost", "--out", tmp_path / "g.csv"], "'ghost'"),
        (["recommend", "--model", checkpoint, "--dataset", data, "--all", "--top-k", "0", "--out", tmp_path / "z.csv"], "--top-k"),
        (["export", "--model", checkpoint, "--out", tmp_path / "big.onnx", "--top-k", str(N + 1)], "--top-k"),
        (["export", "--model", not_ckpt, "--out", tmp_path / "a.onnx"], "not a recnb checkpoint"),
        (["export", "--model", state, "--out", tmp_path / "b.onnx"], "not a recnb checkpoint"),
        (["export", "--model", checkpoint, "--out", tmp_path / "c.onnx", "--format", "tflite"], "--format"),
        (["recommend", "--model", checkpoint, "--dataset", "ml-1m", "--all", "--out", tmp_path / "d.csv"], "ml-1m"),
    ]
    for argv, needle in cases:
        assert main([str(a) for a in argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], err
    assert not list(tmp_path.glob("*.csv")) and not list(tmp_path.glob("*.onnx"))  # nothing half-written
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # the export extra is not installed
    assert main(["export", "--model", str(checkpoint), "--out", str(tmp_path / "e.onnx")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'recnb[export]'" in err[0], err
    # the same through a real process: no traceback
    proc = subprocess.run([sys.executable, "-m", "recnb", "recommend", "--model", str(checkpoint), "--dataset", data,
                           "--users", "ghost"], check=False, capture_output=True, text=True)
    one_line_error(proc, "ghost")


# ----------------------------------------------------------------------------- real data
@pytest.mark.slow
def test_ml100k_histories_parity(data_dir, tmp_path):
    scene = load_scene("ml-100k", data_dir)
    hist = eval_inputs(scene, "test", 50)[0]
    for kind, model in {"nextitnet": build_model("nextitnet", num_items=scene.num_items, max_len=50, num_blocks=2),
                        "student": Student.from_architecture(ARCH, scene.num_items, 32, 50)}.items():
        model.eval()
        want = score_users(model, hist)
        export(model, tmp_path / f"{kind}.onnx", k=10)
        ids, scores = ort.InferenceSession(str(tmp_path / f"{kind}.onnx")).run(None, {"history": hist.numpy()})
        assert_same_topk(ids, scores, want, 10)
