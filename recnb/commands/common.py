"""Arguments and helpers shared by several commands."""

from __future__ import annotations

from pathlib import Path

from recnb.errors import ConfigError


def add_data_args(p) -> None:
    p.add_argument("--dataset", required=True, help="known name (ml-100k, wikipedia, beauty, sports) or a file/folder path")
    p.add_argument("--data-dir", default=None, help="folder holding datasets (else RECNB_DATA_DIR, then ~/.cache/recnb)")


def add_run_args(p) -> None:
    p.add_argument("--out", required=True, help="output directory (never overwritten without --force)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output directory")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    p.add_argument("--seed", type=int, default=2020, help="seed of weights, data order and dropout (default 2020)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def prepare_out_dir(path: str | Path, force: bool, resume: bool = False) -> Path:
    """Create ``path``; refuse a non-empty one unless ``force`` (or ``resume``) says so."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--out {path}: exists and is not a directory")
    if path.exists() and any(path.iterdir()) and not (force or resume):
        raise ConfigError(f"--out {path}: directory exists and is not empty; pass --force to overwrite")
    path.mkdir(parents=True, exist_ok=True)
    return path


def parse_list(text: str, kind=float, what: str = "list") -> list:
    try:
        return [kind(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"{what}: expected comma-separated numbers, got {text!r}") from None
