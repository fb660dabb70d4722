"""The tutorial notebooks run as tests.

1. papermill executes every notebook at the small parameters written in its ``parameters``
   cell; the executed copies are kept under ``ci-artifacts/notebooks/`` (``RECNB_CI_ARTIFACTS``
   moves the root) for CI to publish.
2. ``pytest --nbval-lax`` then runs the stored notebooks and compares the outputs of the
   cells tagged ``nbval-check-output`` (the kept full-scale tables, the user's scene
   statistics, the teacher's file layout) with the outputs stored in the notebook.

The stored notebooks keep the outputs of the checked cells and of the cells tagged
``kept-result`` (figures and tables read from ``bench/results``), so a user who opens a
notebook sees the full-scale results at once; every other output (the small run's) is
stripped. Plotly figures are stored as their JSON only (no bundled plotly.js: JupyterLab
renders them with its plotly extension), and no widget view is stored (its state is not
saved, so it could only show an error). After changing a notebook, refresh them from the
executed copies::

    python -m pytest tests/test_notebooks.py          # writes ci-artifacts/notebooks/
    python tests/test_notebooks.py --refresh           # copies kept and checked outputs back, strips the rest

A parameter papermill is asked to set must exist in the notebook's ``parameters`` cell:
:func:`execute` refuses an unknown name, and the notebooks themselves stop on one
(``recnb.viz.setup_notebook``), since papermill would run on with the default.
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
KEPT_TAG = "kept-result"
MAX_BYTES = 1_000_000
PLOTLY = "application/vnd.plotly.v1+json"
WIDGET = "application/vnd.jupyter.widget-view+json"


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


def kept(cell) -> bool:
    """Outputs stored with the notebook: checked cells and the kept full-scale results."""
    return checked(cell) or KEPT_TAG in cell.get("metadata", {}).get("tags", [])


def parameter_names(path: Path) -> set[str]:
    """The names the notebook's ``parameters`` cell assigns."""
    from recnb.viz.common import assigned_names

    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", []))
    return assigned_names(cell.source)


def execute(path: Path, out: Path, parameters: dict | None = None, **kwargs):
    """papermill with strict parameters: an unknown name is an error, not a silent default."""
    import papermill

    unknown = sorted(set(parameters or {}) - parameter_names(path))
    if unknown:
        raise ValueError(f"{path.name} has no parameter {', '.join(map(repr, unknown))} "
                         f"(it has {', '.join(sorted(parameter_names(path)))})")
    return papermill.execute_notebook(str(path), str(out), parameters=parameters or {}, **kwargs)


def store_output(output) -> dict | None:
    """What the stored notebook keeps of one output: plotly figures as JSON only (the bundled
    plotly.js and its HTML dropped), no widget views, no stderr; None drops the output."""
    if output.get("output_type") == "stream" and output.get("name") == "stderr":
        return None
    data = output.get("data")
    if data is None:
        return output
    if WIDGET in data:
        return None
    if PLOTLY in data:
        output["data"] = {k: v for k, v in data.items() if k in (PLOTLY, "text/plain")}
        return output
    html = data.get("text/html", "")
    if set(data) <= {"text/html", "text/plain"} and "<script" in html and "plotly" in html.lower():
        return None  # the plotly.js loader the notebook renderer emits once
    return output


# ----------------------------------------------------------------------------- fast checks on the stored files
def test_all_four_notebooks_exist():
    names = [p.name for p in NOTEBOOKS]
    for prefix in ("01_teacher_inspection", "02_architecture_search", "03_distillation_results", "04_llm_distillation"):
        assert f"{prefix}.ipynb" in names, f"missing notebooks/{prefix}.ipynb (found {names})"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_stored_notebook_is_small_and_clean(path):
    """Under 1 MB, a first code cell tagged ``parameters``, at least one checked cell and one
    kept full-scale figure, outputs only where they are kept or checked, figures as plotly
    JSON (no bundled plotly.js), no widget view, no error, no stderr, no progress bar."""
    assert path.stat().st_size < MAX_BYTES, f"{path.name} is {path.stat().st_size:,} bytes"
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", []), f"{path.name}: first code cell is not tagged 'parameters'"
    assert "full:" in code[0].source, f"{path.name}: parameters cell does not give the full-scale values"
    assert any(checked(c) for c in code), f"{path.name}: no cell tagged {CHECK_TAG}"
    figures = [o for c in code for o in c.outputs if PLOTLY in o.get("data", {})]
    assert figures, f"{path.name}: no kept full-scale figure is stored (a user opening it would see none)"
    for n, c in enumerate(code):
        if not kept(c):
            assert not c.outputs, f"{path.name}: code cell {n} keeps outputs of the small run"
            continue
        assert c.outputs, f"{path.name}: kept code cell {n} has no stored output"
        for o in c.outputs:
            assert o.get("output_type") != "error", f"{path.name}: cell {n} stores an error"
            assert o.get("name") != "stderr", f"{path.name}: cell {n} stores stderr"
            data = o.get("data", {})
            assert WIDGET not in data, f"{path.name}: cell {n} stores a widget view without its state"
            assert "<script" not in data.get("text/html", ""), f"{path.name}: cell {n} stores a script (plotly.js?)"


def test_unknown_parameter_is_refused(tmp_path):
    """papermill runs on with a name the notebook lacks; the harness refuses it."""
    pytest.importorskip("papermill")
    with pytest.raises(ValueError, match="has no parameter 'EPOCHS'"):
        execute(NOTEBOOKS[0], tmp_path / "out.ipynb", {"EPOCHS": 50})


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_opens_with_questions_and_ends_with_the_command(path):
    """The first cell says what the notebook answers; the last says what to take away and the
    full-scale command; every output the user sees is followed by words."""
    nb = nbformat.read(path, as_version=4)
    assert nb.cells[0].cell_type == "markdown" and "answers" in nb.cells[0].source
    assert nb.cells[-1].cell_type == "markdown" and "take away" in nb.cells[-1].source.lower()
    assert "```bash" in nb.cells[-1].source
    for n, (c, nxt) in enumerate(zip(nb.cells, nb.cells[1:])):
        if c.cell_type == "code" and shows_something(c.source):
            said = nxt.cell_type == "markdown" or "results.say(" in c.source
            assert said, f"{path.name}: cell {n} shows an output with no words after it"


def shows_something(source: str) -> bool:
    """Whether a cell ends with an expression JupyterLab shows (a figure, a table, a widget)."""
    import ast

    body = ast.parse(source).body
    last = body[-1] if body else None
    if not isinstance(last, ast.Expr):
        return False
    call = last.value
    name = getattr(getattr(call, "func", None), "id", getattr(getattr(call, "func", None), "attr", ""))
    return name not in ("print", "setup_notebook", "set_num_threads")


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
    pytest.importorskip("papermill")
    out = artifact_dir() / path.name
    out.parent.mkdir(parents=True, exist_ok=True)
    env = kernel_env(data_dir)
    old = dict(os.environ)
    os.environ.update(env)  # papermill starts the kernel with this process's environment
    try:
        start = time.perf_counter()
        execute(path, out, cwd=str(NOTEBOOK_DIR), kernel_name="python3", progress_bar=False, log_output=False)
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
    proc = subprocess.run(cmd, cwd=ROOT, env=kernel_env(data_dir), capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"nbval failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-2000:]}"


# ----------------------------------------------------------------------------- refreshing stored outputs
def refresh(executed: Path, stored: Path) -> None:
    """Copy the kept and checked cells' outputs (and execution counts) from an executed copy
    into the stored notebook (through :func:`store_output`) and strip every other output,
    execution count and widget state."""
    run = nbformat.read(executed, as_version=4)
    nb = nbformat.read(stored, as_version=4)
    run_cells = {c.get("id"): c for c in run.cells}
    for c in nb.cells:
        if c.cell_type != "code":
            continue
        c.execution_count = None
        c.outputs = []
        c.metadata.pop("execution", None)
        if kept(c):
            src = run_cells.get(c.get("id"))
            if src is None:
                raise SystemExit(f"{executed}: no cell {c.get('id')} (re-run the notebook first)")
            # nbval refuses a reference cell with outputs but no execution count: keep the run's
            c.execution_count = src.execution_count
            c.outputs = [o for o in map(store_output, src.outputs) if o is not None]
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
