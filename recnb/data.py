"""Scenes: reading interaction logs, preprocessing them, and cutting them into windows.

A *scene* is one recommendation setting with its own data. Every reader produces the same
long table ``(user, item, timestamp)``; :func:`build_scene` turns it into per-user
chronological sequences of item ids ``1..num_items`` (0 is padding), keeping the maps back
to the raw ids and the item titles.
"""

from __future__ import annotations

import hashlib
import io
import os
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from recnb.errors import ConfigError, DataError

# the S3-Rec / ICLRec Amazon files (5-core, one line per user), under ``<data dir>/amazon/``
AMAZON_FILES = {"beauty": "Beauty.txt", "sports": "Sports_and_Outdoors.txt"}
KNOWN_DATASETS = ("ml-100k", "wikipedia", *AMAZON_FILES)
ML100K_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
ML100K_MD5 = "0e33842e24a9c977be4e0107933c0723"
MIN_INTERACTIONS = 3  # leave-one-out needs a training item, a validation and a test item


# ----------------------------------------------------------------------------- readers
# Whitespace-separated text formats, told apart by the file itself (see _text_format)
TEXT_FORMATS = ("user-item", "user-item-timestamp", "user-items")
_ASCII_SPACE = np.array([9, 10, 11, 12, 13, 32], np.uint8)


def read_movielens(folder: str | Path) -> tuple[pd.DataFrame, dict]:
    """MovieLens-100K: ``u.data`` (tab separated user, item, rating, time), titles in ``u.item``."""
    folder = Path(folder)
    path = folder / "u.data"
    tokens, line_of, starts = _tokens(path)
    counts = np.diff(starts)
    _check_counts(path, line_of, starts, counts >= 4, "expected 4 fields (user item rating timestamp)")
    df = pd.DataFrame({"user": tokens[starts[:-1]], "item": tokens[starts[:-1] + 1]})
    for col, name in ((2, "rating"), (3, "timestamp")):
        df[name] = _numbers(tokens[starts[:-1] + col], path, line_of[starts[:-1]], name)
    titles = {}
    item_file = folder / "u.item"
    if item_file.exists():
        with open(item_file, encoding="latin-1") as fh:  # GroupLens ships the titles in latin-1
            for n, line in enumerate(fh, 1):
                parts = line.rstrip("\n").split("|")
                if len(parts) < 2:
                    raise DataError(f"{item_file}:{n}: expected 'id|title|...', got {line.strip()[:60]!r}")
                titles[parts[0]] = parts[1]
    return df[["user", "item", "timestamp"]], titles


def read_text(path: str | Path, format: str | None = None) -> tuple[pd.DataFrame, dict]:
    """Whitespace-separated ids, one of :data:`TEXT_FORMATS`: ``user item`` pairs in time
    order (SASRec's files), ``user item timestamp``, or one line per user ``user item item
    ...`` in time order (the S3-Rec / ICLRec Amazon files). ``format=None`` tells them apart
    from the file and refuses a file that could be either."""
    path = Path(path)
    if format is not None and format not in TEXT_FORMATS:
        raise DataError(f"{path}: format must be one of {', '.join(TEXT_FORMATS)}, got {format!r}")
    tokens, line_of, starts = _tokens(path)
    counts = np.diff(starts)
    if len(counts) == 0:
        raise DataError(f"{path}: empty file")
    _refuse_header(path, tokens, counts)
    format = format or _text_format(path, tokens[starts[:-1]], counts, line_of, starts)
    if format == "user-items":
        _check_counts(path, line_of, starts, counts >= 2, "expected 'user item item ...' (at least 2 fields)")
        users = np.repeat(tokens[starts[:-1]], counts - 1)
        is_user = np.zeros(len(tokens), bool)
        is_user[starts[:-1]] = True
        df = pd.DataFrame({"user": users, "item": tokens[~is_user]})
        df["timestamp"] = np.arange(len(df), dtype=np.int64)  # file order is the time order
        return df, {}
    width = 2 if format == "user-item" else 3
    _check_counts(path, line_of, starts, counts == width,
                  f"expected {width} fields ({'user item' if width == 2 else 'user item timestamp'})")
    table = tokens.reshape(-1, width)
    df = pd.DataFrame({"user": table[:, 0], "item": table[:, 1]})
    if width == 3:
        df["timestamp"] = _numbers(table[:, 2], path, line_of[starts[:-1]], "timestamp")
    else:
        df["timestamp"] = np.arange(len(df), dtype=np.int64)  # file order is the time order
    return df, {}


read_sasrec_txt = read_text  # the name of the ``user item`` reader before other text formats


def _text_format(path: Path, users: np.ndarray, counts: np.ndarray, line_of, starts) -> str:
    repeat = len(pd.unique(users)) < len(users)
    lo, hi = int(counts.min()), int(counts.max())
    how = f"say which with --data-format (format= in load_scene): one of {', '.join(TEXT_FORMATS)}"
    if lo == hi == 2:
        return "user-item"
    if lo == hi == 3:
        if repeat:
            return "user-item-timestamp"  # one line per user never repeats a user
        raise DataError(f"{path}: every line has 3 fields and no user repeats: 'user item timestamp' or "
                        f"'user item item'? {how}")
    if not repeat and lo >= 2:
        return "user-items"
    if repeat:
        line = int(line_of[starts[:-1][counts != 2][0]])
        raise DataError(f"{path}:{line}: lines have {lo} to {hi} fields and users repeat: neither 'user item' "
                        f"pairs nor one line per user ({how})")
    _check_counts(path, line_of, starts, counts >= 2, "expected 2 fields (user item) or more (user item item ...)")
    raise AssertionError("unreachable")  # pragma: no cover


def _tokens(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every whitespace-separated token of a UTF-8 text file as a string array, the line
    number of each token, and where each non-empty line's tokens start (``starts[-1]`` =
    number of tokens). Vectorised: no Python work per line."""
    raw = _read_utf8(path)
    b = np.frombuffer(raw, np.uint8)
    space = np.isin(b, _ASCII_SPACE)
    begin = np.flatnonzero(~space & np.concatenate([[True], space[:-1]]))
    newlines = np.flatnonzero(b == 10)
    line_of = np.searchsorted(newlines, begin) + 1  # 1-based line of each token
    parts = raw.split()
    if b.size and b.max() >= 128:
        tokens = np.array([t.decode("utf-8") for t in parts], dtype=object)
    else:
        tokens = np.array(parts, dtype=bytes).astype(str).astype(object) if parts else np.zeros(0, object)
    del parts
    first = np.flatnonzero(np.concatenate([[True], line_of[1:] != line_of[:-1]])) if len(line_of) else np.zeros(0, int)
    starts = np.append(first, len(tokens))
    return tokens, line_of, starts


def _read_utf8(path: Path) -> bytes:
    """The file's bytes, refused (file, line, byte offset) where they are not UTF-8."""
    _require(path)
    raw = path.read_bytes()
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DataError(f"{path}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})") from None
    return raw


def _check_counts(path: Path, line_of, starts, ok: np.ndarray, what: str) -> None:
    if not ok.all():
        bad = int(np.flatnonzero(~ok)[0])
        n = int(starts[bad + 1] - starts[bad])
        raise DataError(f"{path}:{int(line_of[starts[bad]])}: {what}, got {n} field{'s' * (n != 1)}")


def _refuse_header(path: Path, tokens: np.ndarray, counts: np.ndarray) -> None:
    """A first line of words above lines of numbers is a header: refused, never read as a user."""
    first = tokens[: counts[0]]
    if len(counts) > 1 and not any(t.isdigit() for t in first) and all(t.isdigit() for t in tokens[counts[0]: counts[0] + 50]):
        raise DataError(f"{path}:1: looks like a header ({' '.join(first)[:60]!r}); recnb reads text files "
                        "without one: delete the line")


def _numbers(column, path: Path, row_lines, what: str) -> np.ndarray:
    """A column of numbers, refused at the first cell that is not one (file and line), never
    read as text (whose order is 1, 10, 2)."""
    values = pd.to_numeric(pd.Series(column), errors="coerce").to_numpy(np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        raise DataError(f"{path}:{int(row_lines[bad[0]])}: {what} {str(column[bad[0]])!r} is not a number")
    return values


def read_atomic(path: str | Path) -> tuple[pd.DataFrame, dict]:
    """RecBole atomic files: ``x.inter`` with typed header (``user_id:token item_id:token
    timestamp:float``), titles from a sibling ``x.item`` when it exists."""
    path = Path(path)
    _read_utf8(path)  # non-UTF-8 bytes: refused with file and line, never replaced
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
            for value, what in zip(row, ("user_id", "item_id")):
                if not value.strip():
                    raise DataError(f"{path}:{n}: empty {what} token")
            if has_time:
                row[2] = _numbers([row[2]], path, [n], "timestamp")[0]
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


def write_atomic(scene: Scene, path: str | Path) -> None:
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


def from_dataframe(df: pd.DataFrame, name: str = "dataframe", titles: dict | None = None, **kw) -> Scene:
    """A scene from a DataFrame with columns ``user``, ``item`` and (optional) ``timestamp``."""
    missing = {"user", "item"} - set(df.columns)
    if missing:
        raise DataError(f"DataFrame for scene '{name}' lacks column(s) {sorted(missing)}")
    df = checked_interactions(df, lambda i: f"DataFrame for scene '{name}', row {df.index[i]!r}")
    return build_scene(df, name=name, titles={str(k): v for k, v in (titles or {}).items()}, **kw)


def _require(path: Path) -> None:
    """A file that is there and readable; otherwise one line (permissions, a folder) instead
    of an OSError traceback from the reader."""
    if not path.exists():
        raise DataError(f"{path}: no such file")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or type(exc).__name__})") from None


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
    """Chronological order (stable on ties), optional k-core, re-index items from 1 in order
    of first appearance in time, users in natural order (2 before 10). Array operations
    throughout: no Python work per interaction."""
    df = df[["user", "item", "timestamp"]]
    given_users, given_rows = df["user"].nunique(), len(df)
    if kcore:
        df = _kcore(df.astype({"user": str, "item": str}), kcore)
    users, raw_users = pd.factorize(df["user"].astype(str).to_numpy())
    items, raw_items = pd.factorize(df["item"].astype(str).to_numpy())
    keep = np.bincount(users, minlength=len(raw_users))[users] >= min_interactions
    if not keep.any():
        where = f"{source}: " if source else f"scene '{name}': "
        raise DataError(
            f"{where}no user has at least {min_interactions} interactions; leave-one-out needs "
            "a training, a validation and a test item per user"
        )
    order = np.argsort(df["timestamp"].to_numpy()[keep], kind="stable")  # ties keep file order
    users, items = users[keep][order], items[keep][order]
    # item ids in order of first appearance in time: deterministic and readable
    item_order = _first_appearance(items)
    item_id = np.empty(len(raw_items), np.int64)
    item_id[item_order] = np.arange(1, len(item_order) + 1)
    seen_users = _first_appearance(users)
    user_rank = np.full(len(raw_users), -1, np.int64)
    user_order = seen_users[_natural_order(raw_users[seen_users])]
    user_rank[user_order] = np.arange(len(user_order))
    by_user = np.argsort(user_rank[users], kind="stable")  # each user's items stay in time order
    flat = item_id[items[by_user]]
    lengths = np.bincount(user_rank[users], minlength=len(user_order))
    sequences = np.split(flat, np.cumsum(lengths)[:-1])
    raw_item_list = [str(x) for x in raw_items[item_order]]
    title_list = None
    if titles:
        title_list = ["<pad>"] + [titles.get(raw, raw) for raw in raw_item_list]
    return Scene(
        name=name,
        sequences=sequences,
        item_ids=["<pad>"] + raw_item_list,
        user_ids=[str(x) for x in raw_users[user_order]],
        titles=title_list,
        meta={"source": source, "kcore": kcore,
              # what the filters left out (k-core, then users too short for leave-one-out), so a run can say it
              "dropped": {"users": int(given_users - len(user_order)), "interactions": int(given_rows - len(flat)),
                          "min_interactions": min_interactions}},
    )


def _first_appearance(codes: np.ndarray) -> np.ndarray:
    """The distinct codes in order of first appearance."""
    uniq, first = np.unique(codes, return_index=True)
    return uniq[np.argsort(first, kind="stable")]


def _natural_order(names: np.ndarray) -> np.ndarray:
    """Indices sorting ``names`` naturally: all-digit names by value first, then the others
    as text; ties keep their order (the same order as ``sorted(key=_natural_key)``)."""
    names = pd.Series(names, dtype=object).astype(str)
    digits = names.str.fullmatch(r"[0-9]+").to_numpy(bool)
    numeric = np.flatnonzero(digits)
    if len(numeric) and names[digits].str.len().max() > 18:  # beyond int64: the slow exact way
        return np.array(sorted(range(len(names)), key=lambda i: _natural_key(names.iloc[i])), dtype=np.int64)
    values = names[digits].astype(np.int64).to_numpy()
    text = np.flatnonzero(~digits)
    return np.concatenate([numeric[np.argsort(values, kind="stable")],
                           text[np.argsort(names.to_numpy()[text].astype(str), kind="stable")]]).astype(np.int64)


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
            "users_dropped": int(scene.meta.get("dropped", {}).get("users", 0)),
        },
        name=scene.name,
    )


# ----------------------------------------------------------------------------- resolving names
def cache_root() -> Path:
    """recnb's one cache folder: ``$RECNB_CACHE``, else ``~/.cache/recnb`` (downloads, text
    embeddings, measured op latencies)."""
    return Path(os.environ.get("RECNB_CACHE", Path.home() / ".cache" / "recnb"))


def data_dirs(explicit: str | Path | None = None) -> list[Path]:
    """Where recnb looks for data, in order: explicit path, ``RECNB_DATA_DIR``, the user cache."""
    dirs = []
    if explicit:
        dirs.append(Path(explicit))
    if os.environ.get("RECNB_DATA_DIR"):
        dirs.append(Path(os.environ["RECNB_DATA_DIR"]))
    dirs.append(cache_root())
    return dirs


def load_scene(name_or_path: str | Path, data_dir: str | Path | None = None, kcore: int | None = None,
               format: str | None = None) -> Scene:
    """Load a known dataset by name or any supported file/folder by path. ``format`` (one of
    :data:`TEXT_FORMATS`) says how to read a text file that could be read two ways."""
    if kcore is not None and (isinstance(kcore, bool) or not isinstance(kcore, int) or kcore < 1):
        raise ConfigError(f"kcore: expected a whole number of at least 1 (or None), got {kcore!r}")
    target = str(name_or_path)
    path = Path(target)
    if path.exists():
        return _load_path(path, kcore, format=format)
    if target not in KNOWN_DATASETS:
        raise DataError(
            f"unknown dataset '{target}': not a file or folder, and not one of {', '.join(KNOWN_DATASETS)}"
        )
    tried = []
    for root in data_dirs(data_dir):
        if target in AMAZON_FILES:  # the S3-Rec / ICLRec files: one line per user
            candidate = root / "amazon" / AMAZON_FILES[target]
            tried.append(str(candidate))
            if candidate.exists():
                return _load_path(candidate, kcore, name=target, format="user-items")
            continue
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
    where = f"amazon/{AMAZON_FILES[target]}" if target in AMAZON_FILES else f"{target}/"
    raise DataError(
        f"dataset '{target}' not found; looked in {', '.join(tried)}; {reason}. "
        f"Point RECNB_DATA_DIR (or --data-dir) at a folder holding '{where}'."
    )


def read_table(path: str | Path) -> pd.DataFrame:
    """A CSV or parquet table with columns ``user``, ``item`` and (optional) ``timestamp``.
    Ids are read as text (never ``9.0``); an empty id or a timestamp that is not a number
    is refused with its line (CSV) or row (parquet)."""
    path = Path(path)
    if path.suffix == ".parquet":
        _require(path)
        try:
            df = pd.read_parquet(path)
        except ImportError:
            raise DataError(f"{path}: reading parquet needs pyarrow: pip install 'recnb[parquet]'") from None
        except Exception as exc:  # noqa: BLE001 - a damaged file is one line, whatever the engine raises
            raise DataError(f"{path}: not a readable parquet file ({type(exc).__name__})") from None
        where, first = "row ", 0
    else:
        raw = _read_utf8(path)
        try:  # every cell as text: numeric-looking ids stay as written, empty cells stay empty
            df = pd.read_csv(io.BytesIO(raw), dtype=str, keep_default_na=False, skip_blank_lines=False)
        except pd.errors.EmptyDataError:
            raise DataError(f"{path}: empty file (expected a header line 'user,item[,timestamp]')") from None
        except pd.errors.ParserError as exc:
            raise DataError(f"{path}: malformed CSV ({str(exc).strip().splitlines()[-1]})") from None
        df = df[(df != "").any(axis=1)]  # blank lines; the index keeps the line numbers (header = line 1)
        where, first = "", 2
    missing = {"user", "item"} - set(df.columns)
    if missing:
        raise DataError(f"{path}: lacks column(s) {sorted(missing)} (found {', '.join(map(str, df.columns))})")

    return checked_interactions(df, lambda i: f"{path}:{where}{int(df.index[i]) + first}")


def checked_interactions(df: pd.DataFrame, place) -> pd.DataFrame:
    """``user``, ``item`` (as text) and ``timestamp`` (numbers; row order where absent) of a
    table, refused at the first empty or missing id or timestamp that is not a finite number
    with one line naming it (``place(i)``: where row ``i`` is, file and line or DataFrame row)."""
    for col in ("user", "item"):
        empty = df[col].isna().to_numpy() | (df[col].astype(str).str.strip() == "").to_numpy()
        if empty.any():
            raise DataError(f"{place(int(np.flatnonzero(empty)[0]))}: empty {col} cell")
    out = pd.DataFrame({"user": df["user"].astype(str).to_numpy(), "item": df["item"].astype(str).to_numpy()})
    if "timestamp" in df.columns:
        stamps = df["timestamp"]
        if pd.api.types.is_datetime64_any_dtype(stamps):  # datetimes in their order (nanoseconds); NaT is missing
            values = np.where(stamps.isna().to_numpy(), np.nan,
                              stamps.to_numpy(dtype="datetime64[ns]").astype(np.int64).astype(np.float64))
        else:
            values = pd.to_numeric(stamps, errors="coerce").to_numpy(np.float64)
        bad = np.flatnonzero(~np.isfinite(values))
        if len(bad):  # never sorted as text, whose order is 1, 10, 11, 2
            raise DataError(f"{place(int(bad[0]))}: timestamp {str(stamps.iloc[bad[0]])!r} is not a number")
        out["timestamp"] = values
    else:
        out["timestamp"] = np.arange(len(out), dtype=np.int64)
    return out


def _load_path(path: Path, kcore, name: str | None = None, format: str | None = None) -> Scene:
    if path.is_dir():
        if (path / "u.data").exists():
            df, titles = read_movielens(path)
        elif (path / "wikipedia.txt").exists():
            return _load_path(path / "wikipedia.txt", kcore, name, format)
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
    elif path.suffix in (".csv", ".parquet"):
        df, titles = read_table(path), {}
    elif path.suffix in (".pkl", ".pickle"):
        raise DataError(f"{path}: recnb does not read pickle files (opening one runs whatever code it holds); "
                        "save the table as .csv or .parquet")
    else:
        df, titles = read_text(path, format)
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
    flat, offsets, lengths = _flat(scene)
    T = np.maximum(lengths - 2, 0)  # the training part: all but the last two items
    stride = max_len - context
    count = np.where(T > 1, 1 + np.maximum(0, -(-(T - max_len - 1) // stride)), 0)
    users = np.repeat(np.arange(len(T)), count)
    k = np.arange(len(users)) - np.repeat(np.cumsum(count) - count, count)  # 0 = the most recent window
    end = T[users] - k * stride
    start = np.maximum(0, end - max_len - 1)
    pad = max_len - (end - start - 1)
    col = np.arange(max_len)
    real = col >= pad[:, None]
    src_idx = np.where(real, (offsets[users] + start - pad)[:, None] + col, 0)
    inputs = np.where(real, flat[src_idx], 0)
    targets = np.where(real, flat[np.minimum(src_idx + 1, len(flat) - 1)], 0)
    # the oldest window keeps all its targets; the others mask the ``context`` they overlap by
    targets[(start > 0)[:, None] & (col < (pad + context)[:, None])] = 0
    return Windows(torch.as_tensor(inputs, dtype=torch.long), torch.as_tensor(targets, dtype=torch.long),
                   torch.as_tensor(users, dtype=torch.long))


def _flat(scene: Scene) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All sequences end to end, where each starts, and their lengths."""
    lengths = np.array([len(s) for s in scene.sequences], np.int64)
    flat = np.concatenate(scene.sequences).astype(np.int64) if len(lengths) else np.zeros(1, np.int64)
    return flat, np.cumsum(lengths) - lengths, lengths


def _histories(scene: Scene, cut: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Each user's items before the last ``cut``, the most recent ``width`` of them,
    left-padded to ``(users, width)``; and the items at ``len - cut``."""
    flat, offsets, lengths = _flat(scene)
    n = np.minimum(lengths - cut, width)
    col = np.arange(width)
    real = col >= (width - n)[:, None]
    idx = (offsets + lengths - cut - width)[:, None] + col
    hist = np.where(real, flat[np.where(real, idx, 0)], 0)
    return hist, flat[offsets + lengths - cut]


def eval_inputs(scene: Scene, split: str, max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded histories and targets for leave-one-out ``valid`` or ``test``."""
    if split not in ("valid", "test"):
        raise ConfigError(f"split must be 'valid' or 'test', got {split!r}")
    hist, target = _histories(scene, 2 if split == "valid" else 1, max_len)
    return torch.as_tensor(hist), torch.as_tensor(target)


def seen_matrix(scene: Scene, split: str, users=None) -> torch.Tensor:
    """Every item each user (of ``users``, indices) had before the evaluated target, left-padded
    with 0 to the longest such history: ``scatter`` it into scores to mask seen items in one step."""
    cut = 2 if split == "valid" else 1
    sub = scene if users is None else Scene(scene.name, [scene.sequences[int(u)] for u in users], scene.item_ids, [])
    width = max((len(s) - cut for s in sub.sequences), default=0)
    return torch.as_tensor(_histories(sub, cut, max(1, width))[0])


def seen_items(scene: Scene, split: str) -> list[np.ndarray]:
    """Items each user interacted with before the evaluated target (for ``exclude_seen``)."""
    cut = 2 if split == "valid" else 1
    return [np.unique(s[: len(s) - cut]) for s in scene.sequences]
