"""Scenes: reading interaction logs, preprocessing them, and cutting them into windows.

A *scene* is one recommendation setting with its own data. Every reader produces the same
long table ``(user, item, timestamp)``; :func:`build_scene` turns it into per-user
chronological sequences of item ids ``1..num_items`` (0 is padding), keeping the maps back
to the raw ids and the item titles.
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from recnb.errors import ConfigError, DataError

KNOWN_DATASETS = ("ml-100k", "wikipedia")
ML100K_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
ML100K_MD5 = "0e33842e24a9c977be4e0107933c0723"
MIN_INTERACTIONS = 3  # leave-one-out needs a training item, a validation and a test item


# ----------------------------------------------------------------------------- readers
def read_movielens(folder: str | Path) -> tuple[pd.DataFrame, dict]:
    """MovieLens-100K: ``u.data`` (tab separated user, item, rating, time), titles in ``u.item``."""
    folder = Path(folder)
    path = folder / "u.data"
    rows = _read_columns(path, sep="\t", names=("user", "item", "rating", "timestamp"), numeric=(2, 3))
    df = pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"])
    titles = {}
    item_file = folder / "u.item"
    if item_file.exists():
        with open(item_file, encoding="latin-1") as fh:
            for n, line in enumerate(fh, 1):
                parts = line.rstrip("\n").split("|")
                if len(parts) < 2:
                    raise DataError(f"{item_file}:{n}: expected 'id|title|...', got {line.strip()[:60]!r}")
                titles[parts[0]] = parts[1]
    return df[["user", "item", "timestamp"]], titles


def read_sasrec_txt(path: str | Path) -> tuple[pd.DataFrame, dict]:
    """SASRec-style text: one ``user item`` pair per line, already in chronological order."""
    path = Path(path)
    rows = _read_columns(path, sep=None, names=("user", "item"))
    df = pd.DataFrame(rows, columns=["user", "item"])
    df["timestamp"] = np.arange(len(df), dtype=np.int64)  # file order is the time order
    return df, {}


def read_atomic(path: str | Path) -> tuple[pd.DataFrame, dict]:
    """RecBole atomic files: ``x.inter`` with typed header (``user_id:token item_id:token
    timestamp:float``), titles from a sibling ``x.item`` when it exists."""
    path = Path(path)
    _require(path)
    with open(path, encoding="utf-8") as fh:
        header = fh.readline().rstrip("\n").split("\t")
        fields = [h.split(":")[0] for h in header]
        for need in ("user_id", "item_id"):
            if need not in fields:
                raise DataError(f"{path}:1: header has no '{need}' field (found {', '.join(fields)})")
        cols = [fields.index("user_id"), fields.index("item_id")]
        has_time = "timestamp" in fields
        if has_time:
            cols.append(fields.index("timestamp"))
        rows = []
        for n, line in enumerate(fh, 2):
            if not line.strip():
                continue
            parts = line.rstrip("\n").split("\t")
            if len(parts) != len(fields):
                raise DataError(f"{path}:{n}: expected {len(fields)} tab-separated fields, got {len(parts)}")
            row = [parts[c] for c in cols]
            if has_time:
                row[2] = _number(row[2], path, n, "timestamp")
            rows.append(row)
    df = pd.DataFrame(rows, columns=["user", "item", "timestamp"][: len(cols)])
    if not has_time:
        df["timestamp"] = np.arange(len(df))
    titles = {}
    item_path = path.with_suffix(".item")
    if item_path.exists():
        items = pd.read_csv(item_path, sep="\t", dtype=str)
        items.columns = [c.split(":")[0] for c in items.columns]
        title_col = next((c for c in ("movie_title", "title", "item_name") if c in items.columns), None)
        if title_col and "item_id" in items.columns:
            titles = dict(zip(items["item_id"], items[title_col].fillna("")))
    return df, titles


def write_atomic(scene: "Scene", path: str | Path) -> None:
    """Write a scene as RecBole atomic files (``.inter`` and, with titles, ``.item``)."""
    path = Path(path)
    users, items, times = [], [], []
    for u, seq in enumerate(scene.sequences):
        users += [scene.user_ids[u]] * len(seq)
        items += [scene.item_ids[i] for i in seq]
        times += list(range(len(seq)))
    pd.DataFrame({"user_id:token": users, "item_id:token": items, "timestamp:float": times}).to_csv(
        path, sep="\t", index=False
    )
    if scene.titles:
        pd.DataFrame(
            {"item_id:token": scene.item_ids[1:], "movie_title:token_seq": scene.titles[1:]}
        ).to_csv(path.with_suffix(".item"), sep="\t", index=False)


def from_dataframe(df: pd.DataFrame, name: str = "dataframe", titles: dict | None = None, **kw) -> "Scene":
    """A scene from a DataFrame with columns ``user``, ``item`` and (optional) ``timestamp``."""
    missing = {"user", "item"} - set(df.columns)
    if missing:
        raise DataError(f"DataFrame for scene '{name}' lacks column(s) {sorted(missing)}")
    df = df.copy()
    if "timestamp" not in df.columns:
        df["timestamp"] = np.arange(len(df))
    df["user"], df["item"] = df["user"].astype(str), df["item"].astype(str)
    return build_scene(df, name=name, titles={str(k): v for k, v in (titles or {}).items()}, **kw)


def _read_columns(path: Path, sep, names, numeric=()) -> list:
    _require(path)
    rows = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            parts = line.split(sep)
            if len(parts) < len(names):
                raise DataError(
                    f"{path}:{n}: expected {len(names)} fields ({' '.join(names)}), got {line.strip()[:60]!r}"
                )
            row = parts[: len(names)]
            for c in numeric:
                row[c] = _number(row[c], path, n, names[c])
            rows.append([p.strip() if isinstance(p, str) else p for p in row])
    return rows


def _number(text: str, path: Path, line: int, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise DataError(f"{path}:{line}: {what} {text.strip()!r} is not a number") from None


def _require(path: Path) -> None:
    if not path.exists():
        raise DataError(f"{path}: no such file")


# ----------------------------------------------------------------------------- scene
@dataclass
class Scene:
    """Per-user chronological item sequences with ids from 1 (0 = padding)."""

    name: str
    sequences: list  # list of int64 numpy arrays, one per user
    item_ids: list  # recnb id -> raw item id (index 0 = "<pad>")
    user_ids: list  # user index -> raw user id
    titles: list | None = None  # recnb id -> title, when the source has titles
    meta: dict = field(default_factory=dict)

    @property
    def num_items(self) -> int:
        return len(self.item_ids) - 1

    @property
    def num_users(self) -> int:
        return len(self.sequences)

    def title(self, item: int) -> str:
        return self.titles[item] if self.titles else str(self.item_ids[item])

    def id_maps(self) -> dict:
        return {"item_ids": list(self.item_ids), "user_ids": list(self.user_ids), "titles": self.titles}

    def describe(self) -> pd.Series:
        return describe(self)


def build_scene(
    df: pd.DataFrame,
    name: str,
    titles: dict | None = None,
    kcore: int | None = None,
    min_interactions: int = MIN_INTERACTIONS,
    source: str = "",
) -> Scene:
    """Chronological order (stable on ties), optional k-core, re-index items from 1."""
    df = df[["user", "item", "timestamp"]].copy()
    df["user"], df["item"] = df["user"].astype(str), df["item"].astype(str)
    if kcore:
        df = _kcore(df, kcore)
    counts = df.groupby("user", sort=False).size()
    df = df[df["user"].isin(counts[counts >= min_interactions].index)]
    if df.empty:
        where = f"{source}: " if source else f"scene '{name}': "
        raise DataError(
            f"{where}no user has at least {min_interactions} interactions; leave-one-out needs "
            "a training, a validation and a test item per user"
        )
    df = df.reset_index(drop=True)
    df["_order"] = np.arange(len(df))
    df = df.sort_values(["timestamp", "_order"], kind="stable")
    # item ids in order of first appearance in time: deterministic and readable
    raw_items = pd.unique(df["item"])
    item_index = {raw: i + 1 for i, raw in enumerate(raw_items)}
    df["iid"] = df["item"].map(item_index).astype(np.int64)
    user_order = sorted(pd.unique(df["user"]), key=_natural_key)
    groups = {u: g["iid"].to_numpy() for u, g in df.groupby("user", sort=False)}
    sequences = [groups[u] for u in user_order]
    title_list = None
    if titles:
        title_list = ["<pad>"] + [titles.get(raw, str(raw)) for raw in raw_items]
    return Scene(
        name=name,
        sequences=sequences,
        item_ids=["<pad>"] + list(raw_items),
        user_ids=list(user_order),
        titles=title_list,
        meta={"source": source, "kcore": kcore},
    )


def _natural_key(s: str):
    return (0, int(s), "") if s.isdigit() else (1, 0, s)


def _kcore(df: pd.DataFrame, k: int) -> pd.DataFrame:
    while True:
        u = df.groupby("user")["item"].transform("size")
        i = df.groupby("item")["user"].transform("size")
        keep = (u >= k) & (i >= k)
        if keep.all():
            return df
        df = df[keep]


def describe(scene: Scene) -> pd.Series:
    """Scene statistics that tell scenes apart (sizes, lengths, density, repeats, Gini)."""
    lengths = np.array([len(s) for s in scene.sequences])
    inter = int(lengths.sum())
    repeats = sum(len(s) - len(np.unique(s)) for s in scene.sequences)
    pop = np.bincount(np.concatenate(scene.sequences), minlength=scene.num_items + 1)[1:]
    pop = np.sort(pop)
    n = len(pop)
    gini = float((2 * np.arange(1, n + 1) - n - 1).dot(pop) / (n * pop.sum())) if pop.sum() else 0.0
    return pd.Series(
        {
            "users": scene.num_users,
            "items": scene.num_items,
            "interactions": inter,
            "seq_len_mean": round(float(lengths.mean()), 2),
            "seq_len_median": float(np.median(lengths)),
            "seq_len_p90": float(np.percentile(lengths, 90)),
            "density": round(inter / (scene.num_users * scene.num_items), 5),
            "repeat_ratio": round(repeats / inter, 4),
            "popularity_gini": round(gini, 4),
        },
        name=scene.name,
    )


# ----------------------------------------------------------------------------- resolving names
def data_dirs(explicit: str | Path | None = None) -> list[Path]:
    """Where recnb looks for data, in order: explicit path, ``RECNB_DATA_DIR``, the user cache."""
    dirs = []
    if explicit:
        dirs.append(Path(explicit))
    if os.environ.get("RECNB_DATA_DIR"):
        dirs.append(Path(os.environ["RECNB_DATA_DIR"]))
    dirs.append(Path(os.environ.get("RECNB_CACHE", Path.home() / ".cache" / "recnb")))
    return dirs


def load_scene(name_or_path: str | Path, data_dir: str | Path | None = None, kcore: int | None = None) -> Scene:
    """Load a known dataset by name or any supported file/folder by path."""
    target = str(name_or_path)
    path = Path(target)
    if path.exists():
        return _load_path(path, kcore)
    if target not in KNOWN_DATASETS:
        raise DataError(
            f"unknown dataset '{target}': not a file or folder, and not one of {', '.join(KNOWN_DATASETS)}"
        )
    tried = []
    for root in data_dirs(data_dir):
        candidate = root / target
        tried.append(str(candidate))
        if target == "ml-100k" and (candidate / "u.data").exists():
            return _load_path(candidate, kcore, name=target)
        if target == "wikipedia" and (candidate / "wikipedia.txt").exists():
            return _load_path(candidate / "wikipedia.txt", kcore, name=target)
    if target == "ml-100k":
        cache = data_dirs(None)[-1]
        try:
            return _load_path(download_movielens(cache), kcore, name=target)
        except OSError as exc:
            reason = f"download failed ({exc})"
    else:
        reason = "no official download for it"
    raise DataError(
        f"dataset '{target}' not found; looked in {', '.join(tried)}; {reason}. "
        f"Point RECNB_DATA_DIR (or --data-dir) at a folder holding '{target}/'."
    )


def _load_path(path: Path, kcore, name: str | None = None) -> Scene:
    if path.is_dir():
        if (path / "u.data").exists():
            df, titles = read_movielens(path)
        elif (path / "wikipedia.txt").exists():
            return _load_path(path / "wikipedia.txt", kcore, name)
        else:
            inters = sorted(path.glob("*.inter"))
            if not inters:
                raise DataError(f"{path}: folder holds no u.data, *.inter or wikipedia.txt")
            df, titles = read_atomic(inters[0])
            path = inters[0]
    elif path.name == "u.data":
        return _load_path(path.parent, kcore, name)
    elif path.suffix == ".inter":
        df, titles = read_atomic(path)
    elif path.suffix in (".csv", ".parquet", ".pkl"):
        df = pd.read_parquet(path) if path.suffix == ".parquet" else (
            pd.read_pickle(path) if path.suffix == ".pkl" else pd.read_csv(path)
        )
        missing = {"user", "item"} - set(df.columns)
        if missing:
            raise DataError(f"{path}: lacks column(s) {sorted(missing)}")
        if "timestamp" not in df.columns:
            df["timestamp"] = np.arange(len(df))
        titles = {}
    else:
        df, titles = read_sasrec_txt(path)
    return build_scene(df, name=name or path.stem, titles=titles, kcore=kcore, source=str(path))


def download_movielens(cache: Path) -> Path:
    """Fetch the official GroupLens archive (progress bar, MD5 check) into the cache."""
    from tqdm.auto import tqdm

    cache.mkdir(parents=True, exist_ok=True)
    archive = cache / "ml-100k.zip"
    with urllib.request.urlopen(ML100K_URL, timeout=30) as resp, open(archive, "wb") as out:
        total = int(resp.headers.get("Content-Length", 0))
        with tqdm(total=total, unit="B", unit_scale=True, desc="ml-100k") as bar:
            while chunk := resp.read(1 << 16):
                out.write(chunk)
                bar.update(len(chunk))
    digest = hashlib.md5(archive.read_bytes()).hexdigest()
    if digest != ML100K_MD5:
        archive.unlink()
        raise DataError(f"{ML100K_URL}: checksum {digest} differs from the published {ML100K_MD5}")
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(cache)
    return cache / "ml-100k"


def synthetic_scene(num_users: int = 200, num_items: int = 100, seq_len: int = 30, seed: int = 0) -> Scene:
    """A seeded scene with learnable sequential structure: each item mostly leads to one of
    a few successors, so a causal model beats popularity. For fast tests."""
    rng = np.random.default_rng(seed)
    successors = rng.integers(1, num_items + 1, size=(num_items + 1, 3))
    seqs = []
    for _ in range(num_users):
        n = int(rng.integers(max(MIN_INTERACTIONS, seq_len // 2), seq_len + 1))
        s = [int(rng.integers(1, num_items + 1))]
        for _ in range(n - 1):
            nxt = successors[s[-1], rng.integers(0, 3)] if rng.random() < 0.8 else rng.integers(1, num_items + 1)
            s.append(int(nxt))
        seqs.append(s)
    rows = [(str(u), str(i), t) for u, s in enumerate(seqs) for t, i in enumerate(s)]
    df = pd.DataFrame(rows, columns=["user", "item", "timestamp"])
    titles = {str(i): f"item {i}" for i in range(1, num_items + 1)}
    return build_scene(df, name=f"synthetic-{seed}", titles=titles)


# ----------------------------------------------------------------------------- windows
@dataclass
class Windows:
    """Training windows: ``inputs[w, p]`` predicts ``targets[w, p]``; 0 marks padding.

    Every training target of every user appears in exactly one window, so one pass over
    the windows is one epoch, and each window runs through the network once.
    """

    inputs: torch.Tensor  # (W, L) long, left-padded
    targets: torch.Tensor  # (W, L) long, 0 where there is no target
    users: torch.Tensor  # (W,) user index of each window

    def __len__(self) -> int:
        return self.inputs.shape[0]


def train_windows(scene: Scene, max_len: int, context: int = 0) -> Windows:
    """Cut each user's training part (all but the last two items) into ``max_len`` windows,
    from the most recent backwards, so targets never repeat across windows.

    ``context`` > 0 makes windows overlap by that many positions whose targets are masked
    (they belong to the previous window): every target then sees at least ``context``
    earlier items, at ``max_len / (max_len - context)`` times the compute."""
    if not 0 <= context < max_len:
        raise ConfigError(f"context must be in [0, max_len), got {context}")
    ins, tgts, users = [], [], []
    for u, seq in enumerate(scene.sequences):
        train = seq[:-2]
        end = len(train)
        while end > 1:
            start = max(0, end - max_len - 1)
            chunk = train[start:end]
            inp, tgt = chunk[:-1], chunk[1:].copy()
            first_new = 0 if start == 0 else context  # the oldest window keeps all its targets
            tgt[:first_new] = 0
            pad = max_len - len(inp)
            ins.append(np.concatenate([np.zeros(pad, np.int64), inp]))
            tgts.append(np.concatenate([np.zeros(pad, np.int64), tgt]))
            users.append(u)
            if start == 0:
                break
            end = start + 1 + context  # the next window's targets end where this one's begin
    return Windows(
        torch.as_tensor(np.stack(ins)) if ins else torch.zeros(0, max_len, dtype=torch.long),
        torch.as_tensor(np.stack(tgts)) if tgts else torch.zeros(0, max_len, dtype=torch.long),
        torch.as_tensor(users, dtype=torch.long),
    )


def eval_inputs(scene: Scene, split: str, max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded histories and targets for leave-one-out ``valid`` or ``test``."""
    if split not in ("valid", "test"):
        raise ConfigError(f"split must be 'valid' or 'test', got {split!r}")
    cut = 2 if split == "valid" else 1
    hist = np.zeros((scene.num_users, max_len), np.int64)
    target = np.zeros(scene.num_users, np.int64)
    for u, seq in enumerate(scene.sequences):
        h = seq[: len(seq) - cut][-max_len:]
        hist[u, max_len - len(h):] = h
        target[u] = seq[len(seq) - cut]
    return torch.as_tensor(hist), torch.as_tensor(target)


def seen_items(scene: Scene, split: str) -> list[np.ndarray]:
    """Items each user interacted with before the evaluated target (for ``exclude_seen``)."""
    cut = 2 if split == "valid" else 1
    return [np.unique(s[: len(s) - cut]) for s in scene.sequences]
