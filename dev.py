#!/usr/bin/env python3
"""Set-up and the two everyday jobs, with nothing but Python and pip on the machine.

    python3 dev.py main    # create/fill .venv, then run the main job (a time-boxed frontier on Amazon Beauty)
    python3 dev.py test    # create/fill .venv, then run the whole test suite

The virtual environment lives in ``.venv`` (``RECNB_VENV`` overrides). torch: a torch the
calling Python already has is kept (the venv then sees system packages); otherwise the CPU
build ``torch==2.13.0`` is installed first, so no multi-GB CUDA build is pulled by accident.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("RECNB_VENV", ROOT / ".venv"))
PY = VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
STAMP = VENV / ".recnb-installed"
TORCH_PIN = "torch==2.13.0"


def sh(*cmd, **kw) -> None:
    print("+", " ".join(map(str, cmd)), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, **kw)


def setup() -> None:
    """Create and fill the venv; re-run only when pyproject.toml changed."""
    if STAMP.exists() and STAMP.stat().st_mtime >= (ROOT / "pyproject.toml").stat().st_mtime:
        return
    start = time.time()
    has_torch = importlib.util.find_spec("torch") is not None
    if not PY.exists():
        args = [sys.executable, "-m", "venv", VENV] + (["--system-site-packages"] if has_torch else [])
        sh(*args)
    pip = [PY, "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    probe = subprocess.run([str(PY), "-c", "import torch"], check=False, capture_output=True)
    if probe.returncode != 0:
        sh(*pip, TORCH_PIN)
    sh(*pip, "-e", f"{ROOT}[all]")
    STAMP.write_text(time.strftime("%Y-%m-%d %H:%M:%S"))
    print(f"environment ready in {time.time() - start:.0f}s: {VENV}", flush=True)


def env() -> dict:
    e = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    shared = ROOT.parent / "shared" / "data"
    if "RECNB_DATA_DIR" not in e and shared.exists():
        e["RECNB_DATA_DIR"] = str(shared)
    return e


# the main job's model: a SASRec at the latency a user would serve (one layer, window 20),
# plain and distilled with the same training seconds, so the table shows whether distillation pays
MAIN_GRID = {"models": [{"model": "sasrec", "hidden_size": 64, "num_layers": 1, "max_len": 20}]}


def main_job(extra: list[str]) -> None:
    """A time-boxed frontier (about 15 minutes on 2 CPU cores): a teacher trained for 4
    minutes, then a one-layer SASRec trained for 2.5 minutes plain and as long with KD over the
    sampled items in the loss's own pass, the teacher run on each batch (``--online-teacher``:
    the student keeps the recipe's reorder and context windows), their batch-1 latency and test
    NDCG@10 side by side. On Amazon Beauty where its file is found (its licence forbids a
    download), else on MovieLens-100K."""
    import json

    e = env()
    data = Path(e.get("RECNB_DATA_DIR", Path.home() / ".cache" / "recnb"))
    dataset = "beauty" if (data / "amazon" / "Beauty.txt").exists() else "ml-100k"
    if dataset != "beauty":
        print(f"Amazon Beauty is not under {data} (RECNB_DATA_DIR): running on ml-100k instead", flush=True)
    out = ROOT / "runs" / time.strftime(f"frontier-{dataset}-%Y%m%d-%H%M%S")
    out.mkdir(parents=True)
    (out / "grid.json").write_text(json.dumps(MAIN_GRID))
    masked = ["--exclude-seen"] if dataset == "beauty" else []
    sh(PY, "-m", "recnb", "train", "--dataset", dataset, "--model", "sasrec", "--hidden-size", "128", *masked,
       "--time-budget", "240", "--quiet", "--out", out / "teacher", env=e, cwd=ROOT)
    sh(PY, "-m", "recnb", "frontier", "--dataset", dataset, "--teacher", out / "teacher" / "model.pt",
       "--out", out / "frontier", "--grid", out / "grid.json", "--seeds", "2020", "--betas", "none",
       "--time-budget", "150", "--kd-items", "sampled", "--no-emd", "--online-teacher", *masked, *extra, env=e, cwd=ROOT)
    print("the kept full-scale Beauty frontiers (no time limit), under the 3-SASRec ensemble and under the 15-run\n"
          "ensemble (where the distilled BSARec beats its plain twin): bench/results/frontier/beauty,\n"
          "bench/results/frontier/beauty-families and docs/frontier.md", flush=True)


def test_job(extra: list[str]) -> None:
    """The whole suite; on two or more cores in two pytest-xdist workers, each test file kept in
    one worker (its module fixtures and order), unless the arguments choose (``-n 0``: serial)."""
    workers = []
    probe = subprocess.run([str(PY), "-c", "import xdist"], capture_output=True, check=False)
    if probe.returncode == 0 and (os.cpu_count() or 1) >= 2 and not any(a.startswith("-n") for a in extra):
        workers = ["-n", "2", "--dist", "loadfile"]
    sh(PY, "-m", "pytest", "tests", *workers, *extra, env=env(), cwd=ROOT)


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in ("setup", "main", "test"):
        sys.exit("usage: python3 dev.py setup|main|test [extra arguments]")
    job, rest = sys.argv[1], sys.argv[2:]
    try:
        setup()
        {"setup": lambda _: None, "main": main_job, "test": test_job}[job](rest)
    except subprocess.CalledProcessError as exc:
        sys.exit(exc.returncode)
