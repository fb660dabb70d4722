"""The one reader of an AdaRec run's ``summary.json`` (``{"rows": [...], ...}``, one row per
model): the CLI, the notebooks, the widgets and ``load_summary`` all read it here, so a moved
run folder or a missing file is handled once."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from recnb.adarec.architecture import Architecture
from recnb.errors import ConfigError
from recnb.files import read_json_file


def student_folder(root: str | Path, beta: float, use_teacher: bool, seed: int | None = None) -> Path:
    """Where ``recnb adarec`` keeps the students of ``beta`` (distilled or their no-teacher
    twins), or one seed's run of them: the one spelling of the pipeline's folder layout."""
    folder = Path(root) / "students" / f"beta_{float(beta):g}" / ("kd" if use_teacher else "no_kd")
    return folder if seed is None else folder / f"seed_{seed}"


def summary_file(path: str | Path) -> Path:
    """``path`` itself, or the ``summary.json`` inside it when it is a folder; one clear line
    when there is none."""
    path = Path(path)
    path = path / "summary.json" if path.is_dir() else path
    if not path.is_file():
        raise ConfigError(f"{path}: no such summary (run `recnb adarec` or the pipeline cell first)")
    return path


def _architecture_path(written: str, summary: Path) -> Path:
    """An architecture path as written, else the same ``search/beta_x/architecture.json``
    under the summary's folder (the run folder was moved or copied)."""
    path = Path(written)
    return path if path.exists() else summary.parent / Path(*path.parts[-3:])


def read_summary(path: str | Path, inline: bool = False) -> dict:
    """The summary (a ``summary.json`` or its folder) with each row's architecture path
    resolved; ``inline=True`` reads each architecture into its JSON value instead, so
    widgets and figures need no further file access."""
    file = summary_file(path)
    summary = read_json_file(file, "summary")
    if not isinstance(summary.get("rows"), list):
        raise ConfigError(f"summary {file}: no list of rows (not written by `recnb adarec`?)")
    for row in summary["rows"]:
        if isinstance(row.get("architecture"), str):
            arch = _architecture_path(row["architecture"], file)
            row["architecture"] = Architecture.load(arch).to_dict() if inline else str(arch)
    return summary


def summary_frame(rows: list[dict]) -> pd.DataFrame:
    """Rows flattened for CSV: ``test`` becomes ``test_<metric>`` columns."""
    flat = []
    for r in rows:
        f = {k: v for k, v in r.items() if k not in ("test", "valid", "test_sampled100", "seeds", "epochs")}
        f.update({f"test_{k}": v for k, v in r["test"].items()})
        f.update({f"valid_{k}": v for k, v in r.get("valid", {}).items()})
        f.update({f"sampled100_{k}": v for k, v in r.get("test_sampled100", {}).items()})
        f["seeds"] = len(r.get("seeds", []))
        flat.append(f)
    return pd.DataFrame(flat)


def load_summary(path: str | Path) -> pd.DataFrame:
    """A pipeline run's summary (its folder or ``summary.json``) as a flat DataFrame, one row per model."""
    return summary_frame(read_summary(path)["rows"])


def story(summary: dict) -> list[str]:
    """What a run shows, in a few lines: the teacher, the default student (its size, speed
    and accuracy against the teacher's), its no-teacher twin and what distillation bought
    (paired over test users when the run compared them), and whether the teacher had
    anything to teach: a teacher below the twin cannot show the method's claim."""
    rows = summary["rows"]
    teacher = next(r for r in rows if r["role"] == "teacher")
    student = next((r for r in rows if r["role"] == "student" and r["default"]), None)
    if student is None:
        return []
    twin = next((r for r in rows if r["role"] == "student_no_kd" and r["default"]), None)
    t, s = teacher["test"]["NDCG@10"], student["test"]["NDCG@10"]
    speed = teacher.get("latency_cpu_b1_ms", float("nan")) / student.get("latency_cpu_b1_ms", float("nan"))
    size = student["params_no_embedding"] / teacher["params_no_embedding"]
    lines = [f"teacher {teacher['name']}: test NDCG@10 {t:.4f}",
             (f"default student (beta {summary['default_beta']:g}): {s:.4f} = {s / t:.0%} of the teacher, "
              f"{size:.1%} of its non-embedding parameters, {speed:.1f}x faster on the CPU for one user")]
    tried = summary.get("dropout_valid", {}).get(f"{summary['default_beta']:g}")
    if tried:
        lines.append(f"its dropout {student['dropout']:g} (and its twin's) is the twin's best on validation among "
                     f"{', '.join(tried)}")
    if twin is not None:
        w = twin["test"]["NDCG@10"]
        bought = f"distillation bought {s - w:+.4f} NDCG@10 over the no-teacher twin ({w:.4f})"
        c = summary.get("comparisons", {}).get("student_no_kd")
        if c:
            bought += (f"; paired over {c['users']} test users: SE {c['se']:.4f}, "
                       f"{'more' if c['significant'] else 'not more'} than twice the SE")
        lines.append(bought)
        if t <= w:
            lines.append("the teacher is not better than the student's no-teacher twin, so it has little to teach "
                         "here (too short a teacher run, or a scene where a small model suffices): "
                         "docs/adarec.md shows a run where the teacher is stronger")
    return lines


__all__ = ["load_summary", "read_summary", "story", "summary_file", "summary_frame"]
