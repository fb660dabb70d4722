#!/usr/bin/env python3
"""Set-up and the two everyday jobs, with nothing but Python and pip on the machine.

    python3 dev.py main    # create/fill .venv, then run the main job (AdaRec pipeline, small settings)
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
    probe = subprocess.run([str(PY), "-c", "import torch"], capture_output=True)
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


def main_job(extra: list[str]) -> None:
    out = ROOT / "runs" / time.strftime("adarec-ml-100k-%Y%m%d-%H%M%S")
    small = ["--betas", "0.1,1", "--seeds", "1", "--twins", "default", "--distill-epochs", "5", "--time-budget", "90"]
    sh(PY, "-m", "recnb", "adarec", "--dataset", "ml-100k", "--out", out, *small, *extra, env=env(), cwd=ROOT)


def test_job(extra: list[str]) -> None:
    sh(PY, "-m", "pytest", "tests", *extra, env=env(), cwd=ROOT)


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in ("setup", "main", "test"):
        sys.exit("usage: python3 dev.py setup|main|test [extra arguments]")
    job, rest = sys.argv[1], sys.argv[2:]
    try:
        setup()
        {"setup": lambda _: None, "main": main_job, "test": test_job}[job](rest)
    except subprocess.CalledProcessError as exc:
        sys.exit(exc.returncode)
