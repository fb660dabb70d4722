"""The one reader of an AdaRec run's ``summary.json`` (``{"rows": [...], ...}``, one row per
model): the CLI, the notebooks, the widgets and ``load_summary`` all read it here, so a moved
run folder or a missing file is handled once."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from recnb.adarec.architecture import Architecture
from recnb.errors import ConfigError
from recnb.files import read_json_file


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


__all__ = ["load_summary", "read_summary", "summary_file", "summary_frame"]
