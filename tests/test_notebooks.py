"""The tutorial notebooks run as tests.

1. papermill executes every notebook at the small parameters written in its ``parameters``
   cell; the executed copies are kept under ``ci-artifacts/notebooks/`` (``RECNB_CI_ARTIFACTS``
   moves the root) for CI to publish.
2. ``pytest --nbval-lax`` then runs the stored notebooks and compares the outputs of the
   cells tagged ``nbval-check-output`` (scene statistics, schemas, table columns) with the
   outputs stored in the notebook.

The stored notebooks keep only those checked outputs. After changing a notebook, refresh
them from the executed copies::

    python -m pytest tests/test_notebooks.py          # writes ci-artifacts/notebooks/
    python tests/test_notebooks.py --refresh           # copies checked outputs back, strips the rest
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
CHECK_TAG = "nbval-check-output"
MAX_BYTES = 1_000_000


def artifact_dir() -> Path:
    return Path(os.environ.get("RECNB_CI_ARTIFACTS", ROOT / "ci-artifacts")) / "notebooks"


def kernel_env(data_dir: Path) -> dict:
    """The kernel sees the data, never the network (offline encoder), and one thread less
    than it would grab on a shared CI machine."""
    env = dict(os.environ, RECNB_DATA_DIR=str(data_dir), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def checked(cell) -> bool:
    return CHECK_TAG in cell.get("metadata", {}).get("tags", [])


# ----------------------------------------------------------------------------- fast checks on the stored files
def test_all_four_notebooks_exist():
    names = [p.name for p in NOTEBOOKS]
    for prefix in ("01_teacher_inspection", "02_architecture_search", "03_distillation_results", "04_llm_distillation"):
        assert f"{prefix}.ipynb" in names, f"missing notebooks/{prefix}.ipynb (found {names})"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_stored_notebook_is_small_and_clean(path):
    """Under 1 MB, a first code cell tagged ``parameters``, outputs only where nbval checks
    them, and at least one checked cell."""
    assert path.stat().st_size < MAX_BYTES, f"{path.name} is {path.stat().st_size:,} bytes"
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", []), f"{path.name}: first code cell is not tagged 'parameters'"
    assert "full:" in code[0].source, f"{path.name}: parameters cell does not give the full-scale values"
    assert any(checked(c) for c in code), f"{path.name}: no cell tagged {CHECK_TAG}"
    for n, c in enumerate(code):
        if not checked(c):
            assert not c.outputs, f"{path.name}: code cell {n} keeps outputs nbval does not check"
        else:
            assert c.outputs, f"{path.name}: checked code cell {n} has no stored output to compare with"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_cells_hold_little_logic(path):
    """Logic lives in recnb: no code cell (but the parameters) longer than a dozen lines, no
    function or class defined."""
    nb = nbformat.read(path, as_version=4)
    for n, c in enumerate(c for c in nb.cells if c.cell_type == "code"):
        if "parameters" in c.metadata.get("tags", []):
            assert not any(ln.lstrip().startswith(("def ", "class ", "for ", "if ")) for ln in c.source.splitlines())
            continue
        lines = [ln for ln in c.source.splitlines() if ln.strip() and not ln.strip().startswith("#")]
        assert len(lines) <= 12, f"{path.name}: code cell {n} has {len(lines)} lines"
        assert not any(ln.lstrip().startswith(("def ", "class ")) for ln in lines), (
            f"{path.name}: cell {n} defines code"
        )


# ----------------------------------------------------------------------------- execution
@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_with_papermill(path, data_dir):
    papermill = pytest.importorskip("papermill")
    out = artifact_dir() / path.name
    out.parent.mkdir(parents=True, exist_ok=True)
    env = kernel_env(data_dir)
    old = dict(os.environ)
    os.environ.update(env)  # papermill starts the kernel with this process's environment
    try:
        start = time.perf_counter()
        papermill.execute_notebook(
            str(path), str(out), cwd=str(NOTEBOOK_DIR), kernel_name="python3", progress_bar=False, log_output=False
        )
    finally:
        os.environ.clear()
        os.environ.update(old)
    seconds = time.perf_counter() - start
    (out.parent / f"{path.stem}.seconds").write_text(f"{seconds:.1f}\n")
    nb = nbformat.read(out, as_version=4)
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"{path.name}: {errors[0].ename}: {errors[0].evalue}"


@pytest.mark.slow
def test_checked_outputs_with_nbval(data_dir):
    """``pytest --nbval-lax`` over the stored notebooks: cells tagged nbval-check-output must
    reproduce their stored output; every cell must run without error."""
    pytest.importorskip("nbval")
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "--nbval-lax",
        "-p",
        "no:cacheprovider",
        "-q",
        "--nbval-cell-timeout",
        "600",
        *map(str, NOTEBOOKS),
    ]
    proc = subprocess.run(cmd, cwd=ROOT, env=kernel_env(data_dir), capture_output=True, text=True)
    assert proc.returncode == 0, f"nbval failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-2000:]}"


# ----------------------------------------------------------------------------- refreshing stored outputs
def refresh(executed: Path, stored: Path) -> None:
    """Copy the checked cells' outputs (and execution counts) from an executed copy into the
    stored notebook and strip every other output, execution count and widget state."""
    run = nbformat.read(executed, as_version=4)
    nb = nbformat.read(stored, as_version=4)
    run_cells = {c.get("id"): c for c in run.cells}
    for c in nb.cells:
        if c.cell_type != "code":
            continue
        c.execution_count = None
        c.outputs = []
        c.metadata.pop("execution", None)
        if checked(c):
            src = run_cells.get(c.get("id"))
            if src is None:
                raise SystemExit(f"{executed}: no cell {c.get('id')} (re-run the notebook first)")
            # nbval refuses a reference cell with outputs but no execution count: keep the run's
            c.execution_count = src.execution_count
            c.outputs = [o for o in src.outputs if o.get("output_type") != "stream" or o.get("name") != "stderr"]
    nb.metadata.pop("widgets", None)
    nb.metadata.pop("papermill", None)
    nbformat.write(nb, stored)


if __name__ == "__main__":
    if sys.argv[1:] != ["--refresh"]:
        sys.exit("usage: python tests/test_notebooks.py --refresh")
    for path in NOTEBOOKS:
        executed = artifact_dir() / path.name
        if not executed.exists():
            sys.exit(f"{executed}: not there; run `pytest tests/test_notebooks.py` first")
        refresh(executed, path)
        print(f"{path.name}: {path.stat().st_size:,} bytes")
