"""The command line: outputs, bad input as one line with exit code 2, no overwrite."""

import json
import subprocess
import sys

import pytest

from recnb.data import synthetic_scene, write_atomic

CMD = [sys.executable, "-m", "recnb"]


def run(*args, cwd=None):
    return subprocess.run(CMD + [str(a) for a in args], capture_output=True, text=True, cwd=cwd, check=False)


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


def test_a_users_own_amazon_shaped_file_gets_the_large_sparse_recipe_and_says_why(tmp_path):
    """The recipe follows the scene's statistics: a file of any name with a large catalogue
    and short histories trains as the Amazon scenes do, and metrics.json says which rule fired."""
    import numpy as np

    rng = np.random.default_rng(0)
    path = tmp_path / "my_category.txt"
    path.write_text("".join(f"u{u} " + " ".join(f"i{i}" for i in rng.choice(6000, int(rng.integers(4, 8)), replace=False))
                            + "\n" for u in range(3000)))
    out = tmp_path / "run"
    proc = run("train", "--dataset", path, "--data-format", "user-items", "--model", "sasrec", "--epochs", "1",
               "--negatives", "64", "--hidden-size", "8", "--out", out, "--quiet", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["recipe"]["kind"] == "large-sparse" and "median history" in metrics["recipe"]["rule"]
    assert metrics["train"]["loss"] == "sampled" and metrics["train"]["batch_targets"] > 0
    assert metrics["train"]["negatives"] == 64 and metrics["recipe"]["flags"] == ["epochs", "negatives"]  # flags win
    assert metrics["dropped"] == {"users": 0, "interactions": 0, "min_interactions": 3}


def test_ensemble_serves_trained_models_as_one_and_never_overwrites_them(inter, tmp_path):
    import torch

    from recnb.checkpoint import save_checkpoint
    from recnb.data import load_scene
    from recnb.models import build_model

    scene = load_scene(inter)
    for seed in (1, 2):  # two members of the scene (their training does not matter here)
        torch.manual_seed(seed)
        save_checkpoint(tmp_path / f"r{seed}" / "model.pt", build_model("sasrec", num_items=scene.num_items, max_len=10,
                                                                        hidden_size=16), scene)
    proc = run("ensemble", "--models", f"{tmp_path / 'r1'},{tmp_path / 'r2' / 'model.pt'}", "--dataset", inter,
               "--out", tmp_path / "ens")
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((tmp_path / "ens" / "metrics.json").read_text())
    assert metrics["model"] == "ensemble" and len(metrics["members"]) == 2
    ev = run("evaluate", "--model", tmp_path / "ens" / "model.pt", "--dataset", inter)
    assert json.loads(ev.stdout)["metrics"]["NDCG@10"] == pytest.approx(metrics["test"]["NDCG@10"], abs=1e-9)
    kept = (tmp_path / "r1" / "model.pt").read_bytes()
    one_line_error(run("ensemble", "--models", f"{tmp_path / 'r1'},{tmp_path / 'r2'}", "--dataset", inter,
                       "--out", tmp_path / "r1", "--force"), "holds one of the --models")
    assert (tmp_path / "r1" / "model.pt").read_bytes() == kept
    one_line_error(run("ensemble", "--models", tmp_path / "r1", "--dataset", inter, "--out", tmp_path / "e1"),
                   "at least two")
    one_line_error(run("ensemble", "--models", f"{tmp_path / 'r1'},{tmp_path / 'r2'}", "--weights", "1", "--dataset", inter,
                       "--out", tmp_path / "e2"), "--weights: give 2 numbers")


def test_ensemble_models_take_folders_files_and_patterns(tmp_path):
    """``--models 'runs/*/new-seed*'`` names every matching run, sorted; a pattern that matches
    nothing is an error naming it, not an ensemble of fewer members."""
    from recnb.commands.common import checkpoint_paths
    from recnb.errors import ConfigError

    for name in ("b-seed2", "a-seed1", "b-seed1"):
        (tmp_path / name).mkdir()
    (tmp_path / "c.pt").write_bytes(b"")
    got = checkpoint_paths(f"{tmp_path}/*-seed1,{tmp_path / 'b-seed2'},{tmp_path / 'c.pt'}", "--models")
    assert got == [tmp_path / "a-seed1" / "model.pt", tmp_path / "b-seed1" / "model.pt", tmp_path / "b-seed2" / "model.pt",
                   tmp_path / "c.pt"]
    with pytest.raises(ConfigError, match="--models: .* matches no file"):
        checkpoint_paths(f"{tmp_path}/z*", "--models")


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


# ----------------------------------------------------------------------------- options from the configs
COMMON = {"--dataset", "--data-dir", "--data-format", "--out", "--force", "--device", "--seed", "--quiet"}
HAND_WRITTEN = {  # options that are no config field (the rest must be generated)
    "search": COMMON | {"--teacher", "--resume", "--search-config"},
    "distill": COMMON | {"--arch", "--teacher", "--no-teacher", "--latency-batch", "--exclude-seen", "--resume"},
    "adarec": COMMON | {"--teacher", "--betas", "--default-beta", "--seeds", "--twins", "--no-baseline", "--resume",
                        "--latency-batch", "--search-config", "--parallel", "--address", "--resources-per-trial",
                        "--exclude-seen", "--dropouts", "--baselines"},
    "dllm2rec": COMMON | {"--artifacts", "--student", "--seeds", "--no-baseline", "--exclude-seen"},
    "teacher-artifacts": COMMON | {"--teacher", "--top-n", "--exclude-seen"},
}
REQUIRED = {"search": [], "distill": ["--arch", "a.json", "--no-teacher"], "adarec": [],
            "dllm2rec": ["--artifacts", "a"], "teacher-artifacts": ["--teacher", "semantic"]}


def option_specs(command: str) -> list:
    """``(config class, defaults instance, fields set otherwise, renamed options, prefix, built config)``
    per group of a command: what the generated options must match, written out by hand here."""
    from recnb.adarec.pipeline import DistillConfig
    from recnb.adarec.search import SearchConfig
    from recnb.commands import adarec, distill, dllm2rec, search, teacher_artifacts
    from recnb.dllm2rec.pipeline import DLLM2RecConfig
    from recnb.dllm2rec.teachers import SemanticTeacherConfig
    from recnb.train import TrainConfig

    run = {"device", "seed", "progress"}
    kd = {"T": "--temperature", "T_emd": "--temperature-emd"}
    search_spec = (SearchConfig, SearchConfig(), run, {**kd, "num_cells": "--cells", "num_nodes": "--nodes",
                                                       "primitives": "--ops"}, "", search.configs)
    return {
        "search": [search_spec],
        "distill": [(DistillConfig, DistillConfig(), {"train"}, kd, "", distill.configs),
                    (TrainConfig, DistillConfig().train, run, {}, "", lambda a: distill.configs(a).train)],
        # --betas sets the searches' beta, one search each: no --beta
        "adarec": [(search_spec[0], search_spec[1], search_spec[2] | {"beta"}, *search_spec[3:5], lambda a: adarec.configs(a)[0]),
                   (DistillConfig, DistillConfig(), {"train"}, {"T": "--distill-temperature", "width": "--student-width",
                    "T_emd": "--distill-temperature-emd"}, "distill-", lambda a: adarec.configs(a)[1]),
                   (TrainConfig, DistillConfig().train, run | {"max_len"}, {"time_budget": "--time-budget"}, "distill-",
                    lambda a: adarec.configs(a)[1].train)],
        "dllm2rec": [(DLLM2RecConfig, DLLM2RecConfig(), set(), {}, "", lambda a: dllm2rec.configs(a)[0]),
                     (TrainConfig, TrainConfig(), run, {}, "", lambda a: dllm2rec.configs(a)[1])],
        "teacher-artifacts": [
            (SemanticTeacherConfig, SemanticTeacherConfig(backbone="gru"), {"num_items", "max_len", "text_dim"}, {}, "",
             lambda a: SemanticTeacherConfig(**teacher_artifacts.settings(a)[0])),
            (TrainConfig, TrainConfig(**teacher_artifacts.TRAINING), run, {}, "",
             lambda a: TrainConfig(**teacher_artifacts.settings(a)[1]))],
    }[command]


def command_parser(command: str):
    from recnb.cli import build_parser

    parser = build_parser()
    return parser, next(a for a in parser._actions if a.dest == "command").choices[command]


@pytest.mark.parametrize("command", list(HAND_WRITTEN))
def test_config_options_are_generated_from_the_dataclasses(command):
    """Every field of a command's configs is an option whose help is the field's HELP and names
    the default the command uses; every other option is one of the few hand-written ones."""
    import dataclasses

    from recnb.commands.common import show

    _, sub = command_parser(command)
    options = {o: a for a in sub._actions for o in a.option_strings if o not in ("-h", "--help", "--help-all")}
    generated = set()
    for cls, defaults, skip, rename, prefix, _ in option_specs(command):
        for f in dataclasses.fields(cls):
            if f.name in skip:
                continue
            option = rename.get(f.name, f"--{prefix}{f.name.replace('_', '-')}")
            assert option in options, f"{command}: {cls.__name__}.{f.name} has no option {option}"
            action = options[option]
            assert action.help.startswith(cls.HELP[f.name].split(" --")[0]), (command, option)
            assert f"default {show(getattr(defaults, f.name))}" in action.help, (command, option, action.help)
            generated |= set(action.option_strings)
    assert set(options) - generated == HAND_WRITTEN[command]


def _other_value(f, default):
    """A valid value of field ``f`` unlike ``default``, and how the command line writes it."""
    choices = {"loss": "bce", "lr_decay": "cosine", "relaxation": "gumbel", "cost": "flops", "emd_update": "normalize",
               "projector": "mlp", "backbone": "attention", "primitives": ["skip", "conv_k3"], "cost_device": "cuda",
               "cache_dir": "cache", "encoder": "enc", "positions": "first_item", "kd_items": "sampled"}
    if f.name in choices:
        value = choices[f.name]
    elif isinstance(default, bool):
        value = not default
    elif isinstance(default, int):
        value = default + 1
    elif default is None:
        value = 2.0
    else:
        value = default / 2 if default else 0.5
    return value, ",".join(value) if isinstance(value, list) else str(value)


@pytest.mark.parametrize("command", list(HAND_WRITTEN))
def test_each_option_reaches_its_config_field(command):
    """Set one option at a time: the config the command builds changes in that field, so a
    generated option cannot be left unwired."""
    import dataclasses

    parser, _ = command_parser(command)
    base = [command, "--dataset", "x", "--out", "o", *REQUIRED[command]]
    for cls, defaults, skip, rename, prefix, built in option_specs(command):
        for f in dataclasses.fields(cls):
            if f.name in skip:
                continue
            option = rename.get(f.name, f"--{prefix}{f.name.replace('_', '-')}")
            value, text = _other_value(f, getattr(defaults, f.name))
            argv = [option if value else f"--no-{option[2:]}"] if isinstance(value, bool) else [option, text]
            got = getattr(built(parser.parse_args(base + argv)), f.name)
            assert got == value, (command, argv, got)


def test_a_command_line_without_options_builds_the_config_defaults():
    """The CLI's defaults are the dataclasses' (DistillConfig's training settings for the
    students, build_semantic_teacher's for the semantic teacher, the student's recipe for
    DLLM2Rec's students and twins), so the CLI cannot drift."""
    import torch

    from recnb.adarec.pipeline import DistillConfig
    from recnb.adarec.search import SearchConfig
    from recnb.commands import adarec, distill, dllm2rec, search, teacher_artifacts
    from recnb.dllm2rec.pipeline import DLLM2RecConfig
    from recnb.dllm2rec.teachers import build_semantic_teacher, teacher_recipe
    from recnb.train import recipe

    parser, _ = command_parser("search")

    def parse(command, *more):
        return parser.parse_args([command, "--dataset", "x", "--out", "o", *REQUIRED[command], *more])

    assert search.configs(parse("search")) == SearchConfig()
    assert distill.configs(parse("distill")) == DistillConfig()
    assert adarec.configs(parse("adarec")) == (SearchConfig(), DistillConfig())
    assert dllm2rec.configs(parse("dllm2rec")) == (DLLM2RecConfig(), recipe("sasrec"))  # the twin trains as recnb train
    assert dllm2rec.configs(parse("dllm2rec", "--student", "gru4rec"), "large-sparse")[1] == recipe("gru4rec", "large-sparse")
    assert dllm2rec.configs(parse("dllm2rec"), "large-sparse")[1] == recipe("sasrec", "large-sparse")
    assert dllm2rec.configs(parse("dllm2rec", "--student", "dros"))[0] == DLLM2RecConfig(dros_alpha=1.0)
    model, train = teacher_artifacts.settings(parse("teacher-artifacts"))
    scene = synthetic_scene(num_users=20, num_items=15, seq_len=8, seed=1)
    text = torch.randn(scene.num_items + 1, 12)
    reference = build_semantic_teacher(scene, text=text)
    built = build_semantic_teacher(scene, text=text, **model)
    assert built.config == reference.config
    assert teacher_recipe(built, **train) == teacher_recipe(reference, **teacher_artifacts.TRAINING)


def test_every_option_of_every_command_has_help_and_names_its_default():
    import argparse

    from recnb.cli import build_parser

    def parsers(parser, name="recnb"):
        yield name, parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub_name, sub in action.choices.items():
                    yield from parsers(sub, f"{name} {sub_name}")

    checked = 0
    for name, parser in parsers(build_parser()):
        formatter = parser._get_formatter()
        for action in parser._actions:
            if not action.option_strings or action.default is argparse.SUPPRESS:
                continue
            text = formatter._get_help_string(action)
            assert text and text.strip(), f"{name} {action.option_strings[0]}: no help"
            if action.default not in (None, False):
                assert f"default {action.default}" in text, f"{name} {action.option_strings[0]}: {text}"
            checked += 1
    assert checked > 200


RANKING = {  # each command that ranks, with the least it parses
    "train": ["--dataset", "x", "--out", "o", "--model", "sasrec"],
    "evaluate": ["--model", "m.pt", "--dataset", "x"],
    "ensemble": ["--models", "a,b", "--dataset", "x", "--out", "o"],
    "frontier": ["--dataset", "x", "--teacher", "t.pt", "--out", "o"],
    "distill": ["--dataset", "x", "--out", "o", "--arch", "a.json", "--no-teacher"],
    "adarec": ["--dataset", "x", "--out", "o"],
    "dllm2rec": ["--dataset", "x", "--out", "o", "--artifacts", "a"],
    "teacher-artifacts": ["--dataset", "x", "--out", "o", "--teacher", "semantic"],
    "export": ["--model", "m.pt", "--out", "o.onnx"],
    "recommend": ["--model", "m.pt", "--dataset", "x", "--all"],
}


def test_every_command_that_ranks_takes_its_evaluation_options_from_one_function():
    """``--protocol`` and ``--exclude-seen`` are generated from ``Evaluation.HELP``
    (``add_evaluation_args``), written by hand in no command, and read back as one Evaluation
    (``evaluation_of``): their names, defaults and help cannot differ between commands."""
    import importlib
    import inspect

    from recnb.cli import COMMANDS
    from recnb.commands.common import evaluation_of
    from recnb.errors import ConfigError
    from recnb.evaluation import Evaluation

    parser, _ = command_parser("train")
    subs = next(a for a in parser._actions if a.dest == "command").choices
    options = {name: {o: a for a in sub._actions for o in a.option_strings} for name, sub in subs.items()}
    assert {name for name, o in options.items() if "--exclude-seen" in o} == set(RANKING)
    assert {name for name, o in options.items() if "--protocol" in o} == {"train", "evaluate", "ensemble"}
    for name in COMMANDS:
        source = inspect.getsource(importlib.import_module(f"recnb.commands.{name.replace('-', '_')}"))
        assert '"--exclude-seen"' not in source and '"--protocol"' not in source, name
    flags = {"protocol": ["--protocol", "sampled100"], "exclude_seen": ["--exclude-seen"]}
    for name, base in RANKING.items():
        given = [f for f in Evaluation.HELP if "--" + f.replace("_", "-") in options[name]]
        for field in given:
            action = options[name]["--" + field.replace("_", "-")]
            assert action.help == Evaluation.HELP[field] and action.default == getattr(Evaluation(), field), name
        assert evaluation_of(parser.parse_args([name, *base])) == Evaluation()
        args = parser.parse_args([name, *base, *(x for f in given for x in flags[f])])
        assert evaluation_of(args) == Evaluation("sampled100" if "protocol" in given else "full", exclude_seen=True)
    with pytest.raises(ConfigError, match="--protocol: expected full or sampled100, got 'sampled5'"):
        evaluation_of(parser.parse_args(["evaluate", *RANKING["evaluate"], "--protocol", "sampled5"]))


def test_none_sets_an_optional_field_and_a_bad_value_is_one_line(capsys):
    from recnb.cli import main
    from recnb.commands import search
    from recnb.commands.train import split_options

    parser, _ = command_parser("search")
    args = parser.parse_args(["search", "--dataset", "x", "--out", "o", "--max-steps", "none"])
    assert search.configs(args).max_steps is None  # a full pass per epoch
    args = parser.parse_args(["train", "--dataset", "x", "--out", "o", "--model", "sasrec", "--clip", "None",
                              "--time-budget", "60"])
    assert split_options("sasrec", args) == ({}, {"clip": None, "time_budget": 60.0})
    with pytest.raises(SystemExit) as exc:
        main(["search", "--dataset", "x", "--out", "o", "--max-steps", "many"])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(err.splitlines()) == 1 and "--max-steps: invalid int value: 'many'" in err


def test_an_ambiguous_text_file_is_read_as_data_format_says(tmp_path):
    """Three fields per line and no repeated user: 'user item timestamp' or one line per user?
    The CLI refuses to guess and names --data-format; with it, the file is read that way (here
    40 users of 2 items each, which leave-one-out then refuses by name)."""
    f = tmp_path / "three.txt"
    f.write_text("".join(f"u{u} {u % 7 + 1} {u % 5 + 1}\n" for u in range(40)))
    base = ["train", "--dataset", f, "--model", "gru4rec", "--epochs", "1", "--quiet", "--device", "cpu"]
    one_line_error(run(*base, "--out", tmp_path / "a"), "three.txt", "--data-format")
    one_line_error(run(*base, "--data-format", "user-items", "--out", tmp_path / "b"), "three.txt",
                   "no user has at least 3 interactions")
    one_line_error(run(*base, "--data-format", "pairs", "--out", tmp_path / "c"), "--data-format", "invalid choice")


def test_one_writer_per_output_folder_and_never_over_an_input(inter, tmp_path):
    """A second run (even with --force) meets the lock of a live one, naming its pid; the lock
    of a killed run is recognised as stale; --out never holds a file the run reads."""
    import socket

    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / ".recnb-lock").write_text(f"{holder.pid} {socket.gethostname()}")
        one_line_error(run("train", "--dataset", inter, "--model", "sasrec", "--epochs", "1", "--out", out, "--force"),
                       f"pid {holder.pid}")
    finally:
        holder.kill()
        holder.wait()
    proc = run("train", "--dataset", inter, "--model", "sasrec", "--epochs", "1", "--max-len", "10", "--out", out,
               "--force", "--quiet")  # the holder is gone: a stale lock
    assert proc.returncode == 0, proc.stderr
    assert not (out / ".recnb-lock").exists()  # released at exit
    kept = (out / "model.pt").read_bytes()
    one_line_error(run("teacher-artifacts", "--dataset", inter, "--teacher", out / "model.pt", "--out", out, "--force"),
                   "holds the --teacher")
    assert (out / "model.pt").read_bytes() == kept


@pytest.mark.parametrize("command", ["train", "search", "distill", "adarec", "teacher-artifacts", "dllm2rec"])
def test_help_lists_what_a_user_needs_first_and_help_all_the_rest(command, capsys):
    from recnb.cli import main

    def shown(flag):
        with pytest.raises(SystemExit) as done:
            main([command, flag])
        assert done.value.code == 0
        text = capsys.readouterr().out
        return text, {line.split()[0].rstrip(",") for line in text.splitlines() if line.startswith("  -")}

    short, first = shown("--help")
    full, every = shown("--help-all")
    assert len(first) <= 23, f"recnb {command} --help lists {len(first)} options"
    assert first < every and "--help-all lists them" in short and "--help-all lists them" not in full
    _, sub = command_parser(command)
    assert every == {a.option_strings[0] for a in sub._actions if a.option_strings}


def test_recnb_help_and_the_errors_module_load_neither_torch_nor_pandas():
    code = ("import sys, io, contextlib\nfrom recnb.cli import main\nimport recnb.errors\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n    try:\n        main(['--help'])\n    except SystemExit:\n        pass\n"
            "print(sorted(m for m in ('torch', 'pandas', 'numpy', 'ot') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_public_names_load_on_first_use():
    import recnb

    assert set(recnb.__all__) <= set(dir(recnb))
    for name in recnb.__all__:
        assert getattr(recnb, name) is not None, name
    with pytest.raises(AttributeError):
        recnb.no_such_name  # noqa: B018
