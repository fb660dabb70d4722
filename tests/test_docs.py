"""The docs are about the product: no working-history narration, and the README's Python
example runs as written."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# numbered or relative working sessions ("the eleventh session", "this session's", "sessions 3-5");
# an onnxruntime InferenceSession / SessionOptions is a product word, not history
HISTORY = re.compile(r"(?<![A-Za-z])sessions?(?![A-Za-z])", re.IGNORECASE)
PRODUCT = re.compile(r"InferenceSession|SessionOptions|ort\.Session", re.IGNORECASE)


@pytest.mark.parametrize("path", DOCS, ids=[p.name for p in DOCS])
def test_docs_hold_no_working_history(path):
    hits = [f"{path.name}:{n}: {line.strip()[:100]}" for n, line in enumerate(path.read_text().splitlines(), 1)
            if HISTORY.search(PRODUCT.sub("", line))]
    assert not hits, "\n".join(hits)


def readme_python_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
    assert blocks, "README.md has no ```python example"
    return blocks[0]


@pytest.mark.slow
def test_readme_python_example_runs(data_dir, tmp_path):
    script = tmp_path / "example.py"
    script.write_text(readme_python_example())
    env = {**os.environ, "RECNB_DATA_DIR": str(data_dir), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "NDCG" in proc.stdout


def notebook_parameters(path: Path) -> set[str]:
    """The names the ``parameters`` cell of a notebook assigns (what papermill can set)."""
    import ast
    import json

    cells = json.loads(path.read_text())["cells"]
    source = next("".join(c["source"]) for c in cells if "parameters" in c.get("metadata", {}).get("tags", []))
    return {t.id for node in ast.parse(source).body if isinstance(node, (ast.Assign, ast.AnnAssign))
            for t in (node.targets if isinstance(node, ast.Assign) else [node.target]) if isinstance(t, ast.Name)}


def papermill_commands() -> list[tuple[str, str, list[str]]]:
    """Every ``papermill NOTEBOOK OUT -p NAME VALUE ...`` in README, docs and the notebooks'
    own text: (where, notebook file name, the names it sets)."""
    texts = [(p.name, p.read_text()) for p in DOCS]
    texts += [(p.name, p.read_text()) for p in sorted((ROOT / "notebooks").glob("*.ipynb"))]
    found = []
    for where, text in texts:
        for m in re.finditer(r"papermill\s+(\S*?(\d\d_\w+)\.ipynb)((?:\\\n|[^`\n])*)", text):
            found.append((where, m.group(2) + ".ipynb", re.findall(r"-p\s+(\w+)", m.group(3))))
    return found


def test_every_papermill_command_names_parameters_the_notebook_has():
    """papermill runs on silently with a name the notebook lacks (``-p EPOCHS 50`` trains 3
    epochs): every command the docs show must name parameters that exist."""
    commands = papermill_commands()
    assert len(commands) >= 5
    wrong = [f"{where}: {nb} has no parameter {name!r}" for where, nb, names in commands
             for name in names if name not in notebook_parameters(ROOT / "notebooks" / nb)]
    assert not wrong, "\n".join(wrong)


def test_rendered_tables_match_bench_results():
    """docs/benchmarks.md and the report regions of README/docs are what ``bench/report.py``
    renders from bench/results: a stale page fails here, naming the difference."""
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "report.py"), "--check"], capture_output=True,
                          text=True, cwd=ROOT, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_report_reads_files_only():
    """The renderer stays fast and light: no torch, no recnb, no training."""
    source = (ROOT / "bench" / "report.py").read_text()
    assert not re.search(r"^\s*(import|from)\s+(torch|recnb|numpy|pandas)\b", source, re.MULTILINE)


RESULT_PATH = re.compile(r"bench/results/[A-Za-z0-9_./-]*[A-Za-z0-9_/-]")


@pytest.mark.parametrize("path", DOCS, ids=[p.name for p in DOCS])
def test_every_named_result_file_exists(path):
    """Every ``bench/results/...`` a page names (as text or as a link) is in the repository."""
    text = path.read_text()
    missing = sorted({m.group(0) for m in RESULT_PATH.finditer(text) if not (ROOT / m.group(0)).exists()})
    assert not missing, f"{path.name} names files that are not in bench/results: {missing}"


OUTSIDE = re.compile(r"METHODS(\.md)?\b|\bthe spec\b|/work/|\.\./shared")


@pytest.mark.parametrize("path", DOCS, ids=[p.name for p in DOCS])
def test_docs_name_no_files_outside_the_repository(path):
    """No page points at files a user does not have (a methods file, a spec, a workspace path)."""
    lines = path.read_text().splitlines()
    hits = [f"{path.name}:{n}: {line.strip()[:100]}" for n, line in enumerate(lines, 1) if OUTSIDE.search(line)]
    assert not hits, "\n".join(hits)


def test_benchmarks_page_is_generated_from_its_template():
    text = (ROOT / "docs" / "benchmarks.md").read_text()
    assert text.startswith("<!-- Generated by `python bench/report.py`")
    assert (ROOT / "docs" / "benchmarks.template.md").exists()
