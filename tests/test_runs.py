"""One run path: a plain run and a distillation run report the same keys and files, an extra
loss is told when training ends, a finished run is read back, and seeds average one way."""

import json

import pytest
import torch

import recnb.runs
from recnb.checkpoint import load_checkpoint
from recnb.data import synthetic_scene
from recnb.models import build_model
from recnb.runs import Evaluation, mean_over_seeds, run_model, train_and_report
from recnb.train import TrainConfig

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: tiny tensors run on one thread
L = 10
QUICK = TrainConfig(epochs=1, batch_size=32, max_len=L, progress=False, device="cpu")


@pytest.fixture(scope="module")
def scene():
    return synthetic_scene(num_users=40, num_items=25, seq_len=14, seed=4)


class Hook:
    """An extra loss that, like distillation, attaches a trainable module to the model."""

    def __init__(self, model):
        model.add_module("hook_map", torch.nn.Linear(2, 2))
        self.calls = 0
        self.finished = False

    def __call__(self, model, batch, states, logits):
        self.calls += 1
        return {"hook": 0.0 * model.hook_map.weight.sum()}

    def finish(self, model):
        del model.hook_map
        self.finished = True


def test_plain_and_distilled_runs_share_one_schema_and_layout(scene, tmp_path):
    plain = train_and_report(scene, "sasrec", {"hidden_size": 8, "num_layers": 1}, QUICK, tmp_path / "plain")
    torch.manual_seed(0)
    model = build_model("sasrec", num_items=scene.num_items, max_len=L, hidden_size=8, num_layers=1)
    hook = Hook(model)
    hooked = run_model(scene, model, QUICK, tmp_path / "hooked", extra_loss=hook, info={"teacher": True},
                       evaluation=Evaluation(also=("sampled100",)), latency=(("cpu",), (2,)))
    assert hook.calls > 0 and hook.finished and not hasattr(model, "hook_map")
    assert set(hooked) - set(plain) == {"teacher", "test_sampled100", "flops", "latency_cpu_b2_ms"}
    assert set(plain) <= set(hooked)
    for out, metrics in ((tmp_path / "plain", plain), (tmp_path / "hooked", hooked)):
        assert sorted(p.name for p in out.iterdir()) == ["history.csv", "metrics.json", "model.pt"]  # no train_state left
        assert json.loads((out / "metrics.json").read_text()) == json.loads(json.dumps(metrics))
    loaded, meta = load_checkpoint(tmp_path / "hooked" / "model.pt")
    assert not any("hook_map" in k for k in loaded.state_dict()) and meta["extra"]["metrics"]["teacher"] is True
    assert plain["train"]["epochs"] == 1 and plain["model"] == "sasrec" and 0.0 <= plain["test"]["NDCG@10"] <= 1.0


def test_a_finished_run_is_read_back_not_trained_again(scene, tmp_path, monkeypatch):
    first = train_and_report(scene, "gru4rec", {"embedding_size": 8, "hidden_size": 8}, QUICK, tmp_path)
    monkeypatch.setattr(recnb.runs, "fit", lambda *a, **k: pytest.fail("a finished run trained again"))
    model = build_model("gru4rec", num_items=scene.num_items, max_len=L, embedding_size=8, hidden_size=8)
    assert run_model(scene, model, QUICK, tmp_path, reuse=True) == json.loads(json.dumps(first))


def test_a_run_on_separate_test_data_measures_test_there(scene, tmp_path):
    other = synthetic_scene(num_users=40, num_items=25, seq_len=14, seed=5)
    torch.manual_seed(0)
    model = build_model("sasrec", num_items=scene.num_items, max_len=L, hidden_size=8, num_layers=1)
    m = run_model(scene, model, QUICK, evaluation=Evaluation(test_scene=other))
    from recnb.evaluation import evaluate
    from recnb.metrics import flatten

    assert m["test"] == flatten(evaluate(model, other, "test")) and m["valid"] == flatten(evaluate(model, scene, "valid"))


def test_mean_over_seeds_means_metrics_keeps_the_models_cost_and_lists_seeds():
    def run(seed, ndcg, epochs):
        return {"seed": seed, "epochs": epochs, "train_seconds": 2.0 * seed, "params": 100, "params_no_embedding": 40,
                "flops": 7.0, "latency_cpu_b1_ms": float(seed), "test": {"NDCG@10": ndcg}, "valid": {"NDCG@10": ndcg / 2},
                "test_sampled100": {"NDCG@10": 2 * ndcg}, "config": {"x": 1}}

    agg = mean_over_seeds([run(1, 0.2, 3), run(2, 0.4, 5)])
    assert agg["test"] == pytest.approx({"NDCG@10": 0.3, "NDCG@10_std": 0.1})
    assert agg["valid"] == pytest.approx({"NDCG@10": 0.15}) and agg["test_sampled100"] == pytest.approx({"NDCG@10": 0.6})
    assert (agg["params"], agg["params_no_embedding"], agg["flops"], agg["latency_cpu_b1_ms"]) == (100, 40, 7.0, 1.0)
    assert agg["seeds"] == [1, 2] and agg["epochs"] == [3, 5] and agg["train_seconds"] == 3.0 and "config" not in agg
