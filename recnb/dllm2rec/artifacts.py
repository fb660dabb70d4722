"""DLLM2Rec's interchange files, read and written exactly, and validated on load.

Teacher artifacts (the official code reads them from ``tocf/<dataset>/``):

- ``all_embeddings.pt``: a tensor ``(item_num, d)``, row i = item i, any width ``d``.
- ``myrank_train.txt``: ``(num_train_rows, top_n)`` item ids, best first.
- ``confidence_train.txt``: ``(num_train_rows, top_n)`` the matching distances, ascending.

The official data layout (``data/<dataset>/``): ``train_data.df`` (pandas pickle with
``seq`` = the last ``seq_size`` item ids right-padded with ``item_num``, ``len_seq``,
``next``), ``val_data.csv`` and ``test_data.csv`` (same columns, ``seq`` as a quoted list)
and ``data_statis.df`` (one row: ``seq_size``, ``item_num``).

Ids in these files are 0-based with padding ``item_num``; recnb's are 1-based with
padding 0. The conversion happens here and nowhere else: files hold official ids, every
object this module returns to recnb holds recnb ids.

Training-row order, for a recnb scene: users in scene order, and within a user the
training targets in chronological order (``seq[1]``, ..., ``seq[-3]``; the last two items
are validation and test). Row ``i`` of both text files belongs to training row ``i``.
:func:`export_scene` writes ``train_data.df`` in exactly this order, so a recnb scene
exported and its teacher files always line up.
"""

from __future__ import annotations

import ast
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from recnb.data import Scene, Windows
from recnb.errors import ConfigError, DataError
from recnb.files import atomic_write, file_digest, ids_digest, read_dataframe_pickle, write_json_atomic

EMBEDDINGS_FILE = "all_embeddings.pt"
RANKS_FILE = "myrank_train.txt"
CONFIDENCE_FILE = "confidence_train.txt"
TRAIN_FILE = "train_data.df"
VALID_FILE = "val_data.csv"
TEST_FILE = "test_data.csv"
STATS_FILE = "data_statis.df"
MANIFEST_FILE = "manifest.json"  # recnb's: the SHA-256 of every file beside it, the scene and teacher
MANIFEST_FORMAT = "recnb-artifacts/1"
SEQ_SIZE = 10  # the official history length


# ----------------------------------------------------------------------------- teacher files
def write_embeddings(path: str | Path, embeddings: torch.Tensor) -> Path:
    """``all_embeddings.pt``: a plain tensor ``(item_num, d)`` (what ``torch.load`` gives back)."""
    emb = torch.as_tensor(embeddings).detach().cpu().contiguous().clone()
    return atomic_write(path, lambda tmp: torch.save(emb, tmp))


def read_embeddings(path: str | Path, num_items: int | None = None) -> torch.Tensor:
    """The teacher's item embeddings as float32 ``(item_num, d)``; fp16 files (BIGRec) are fine."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file (the teacher's item embeddings)")
    try:
        emb = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise DataError(f"{path}: not a saved torch tensor ({type(exc).__name__}: {str(exc)[:80]})") from None
    if not torch.is_tensor(emb):
        raise DataError(f"{path}: holds a {type(emb).__name__}, expected a tensor (item_num, d)")
    if emb.dim() != 2:
        raise DataError(f"{path}: expected a 2-D tensor (item_num, d), got shape {tuple(emb.shape)}")
    if not emb.is_floating_point():
        raise DataError(f"{path}: expected floating-point embeddings, got {emb.dtype}")
    if num_items is not None and emb.shape[0] != num_items:
        raise DataError(f"{path}: has {emb.shape[0]} rows but the data has {num_items} items (one row per item)")
    emb = emb.float()
    bad = ~torch.isfinite(emb).all(1)
    if bad.any():
        raise DataError(f"{path}: {int(bad.sum())} row(s) hold NaN or inf, first at item {int(bad.nonzero()[0])}")
    return emb


def write_ranks(path: str | Path, ranks) -> Path:
    """``myrank_train.txt``: official (0-based) item ids, one row per training row, best first."""
    ranks = np.asarray(ranks, dtype=np.int64)
    return atomic_write(path, lambda tmp: np.savetxt(tmp, ranks, fmt="%d"))


def read_ranks(path: str | Path, num_items: int | None = None, num_rows: int | None = None) -> np.ndarray:
    """Official 0-based ids ``(num_train_rows, top_n)`` as int64, checked for range and count."""
    path = Path(path)
    values = _read_matrix(path, "item ids")
    if not np.isfinite(values).all():
        raise DataError(f"{path}: holds NaN or inf at row {int(np.nonzero(~np.isfinite(values).all(1))[0][0])}")
    if (values != np.round(values)).any():
        row = int(np.nonzero((values != np.round(values)).any(1))[0][0])
        raise DataError(f"{path}: row {row} holds a non-integer item id")
    ranks = values.astype(np.int64)
    lo, hi = int(ranks.min()), int(ranks.max())
    if lo < 0:
        raise DataError(f"{path}: item id {lo} is negative (ids are 0-based)")
    if num_items is not None and hi >= num_items:
        raise DataError(
            f"{path}: item id {hi} is out of range for {num_items} items (0-based ids 0..{num_items - 1})"
        )
    _check_rows(path, ranks, num_rows)
    return ranks


def write_confidence(path: str | Path, distances) -> Path:
    """``confidence_train.txt``: the teacher's distances, ascending per row (smaller = surer)."""
    distances = np.asarray(distances, dtype=np.float64)
    if not np.isfinite(distances).all():
        raise DataError(f"{path}: refused to write NaN or infinite distances (first at row "
                        f"{int(np.nonzero(~np.isfinite(distances).all(1))[0][0])}): the teacher's scores are not finite")
    return atomic_write(path, lambda tmp: np.savetxt(tmp, distances, fmt="%.8g"))


def read_confidence(path: str | Path, num_rows: int | None = None) -> np.ndarray:
    """Distances ``(num_train_rows, top_n)`` as float64, finite and ascending per row."""
    path = Path(path)
    values = _read_matrix(path, "distances")
    bad = ~np.isfinite(values).all(1)
    if bad.any():
        raise DataError(f"{path}: row {int(np.nonzero(bad)[0][0])} holds NaN or inf")
    desc = (np.diff(values, axis=1) < -1e-6 * (1 + np.abs(values[:, 1:]))).any(1)
    if desc.any():
        raise DataError(
            f"{path}: row {int(np.nonzero(desc)[0][0])} is not ascending "
            "(distances must be sorted best first, as the ranks are)"
        )
    _check_rows(path, values, num_rows)
    return values


def _read_matrix(path: Path, what: str) -> np.ndarray:
    if not path.exists():
        raise DataError(f"{path}: no such file (the teacher's {what})")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data": reported below
            values = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise DataError(f"{path}: not a whitespace-separated numeric matrix ({str(exc).splitlines()[0][:100]})") from None
    if values.size == 0:
        raise DataError(f"{path}: file is empty")
    return values


def _check_rows(path: Path, values: np.ndarray, num_rows: int | None) -> None:
    if num_rows is not None and values.shape[0] != num_rows:
        raise DataError(
            f"{path}: has {values.shape[0]} rows but the data has {num_rows} training rows "
            "(row i must belong to training row i)"
        )


@dataclass
class TeacherArtifacts:
    """What a teacher hands over, held in recnb ids (1-based; the files are 0-based)."""

    embeddings: torch.Tensor | None  # (num_items, d), row i-1 = recnb item i
    ranks: torch.Tensor | None  # (rows, top_n) recnb item ids, best first
    distances: torch.Tensor | None  # (rows, top_n) ascending
    path: Path | None = None
    info: dict = field(default_factory=dict)  # teacher.json beside the files, when present
    manifest: dict = field(default_factory=dict)  # manifest.json (recnb's artifacts), {} for others

    @property
    def num_rows(self) -> int:
        return 0 if self.ranks is None else self.ranks.shape[0]

    @property
    def top_n(self) -> int:
        return 0 if self.ranks is None else self.ranks.shape[1]


def save_artifacts(out: str | Path, embeddings=None, ranks=None, distances=None, scene: Scene | None = None,
                   teacher: str | None = None) -> Path:
    """Write the three teacher files; ``ranks`` in recnb ids (written 0-based); then the
    manifest (:func:`write_manifest`) with the ``scene`` and ``teacher`` they were made for."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if embeddings is not None:
        write_embeddings(out / EMBEDDINGS_FILE, embeddings)
    if ranks is not None:
        ranks = torch.as_tensor(ranks)
        if (ranks < 1).any():
            raise DataError("save_artifacts: ranks must hold recnb item ids (1..num_items)")
        write_ranks(out / RANKS_FILE, (ranks - 1).cpu().numpy())
    if distances is not None:
        write_confidence(out / CONFIDENCE_FILE, torch.as_tensor(distances).cpu().numpy())
    write_manifest(out, scene, teacher)
    return out


_LISTED = (EMBEDDINGS_FILE, RANKS_FILE, CONFIDENCE_FILE, "teacher.json", f"data/{TRAIN_FILE}", f"data/{VALID_FILE}",
           f"data/{TEST_FILE}", f"data/{STATS_FILE}")


def write_manifest(folder: str | Path, scene: Scene | None = None, teacher: str | None = None) -> Path:
    """``manifest.json``: the SHA-256 of every artifact file in ``folder``, the scene they
    were made on (name, item count, digest of its item ids) and the teacher's digest. Read
    back by :func:`check_manifest`: a damaged file is refused by name, another scene too."""
    folder = Path(folder)
    manifest = {"format": MANIFEST_FORMAT,
                "files": {name: file_digest(folder / name) for name in _LISTED if (folder / name).is_file()}}
    if scene is not None:
        manifest["scene"] = {"name": scene.name, "num_items": scene.num_items, "item_ids": ids_digest(scene.item_ids)}
    if teacher is not None:
        manifest["teacher"] = teacher
    return write_json_atomic(folder / MANIFEST_FILE, manifest)


def check_manifest(folder: str | Path, scene: Scene | None = None) -> dict:
    """The manifest of a recnb artifacts folder, every listed file checked against its
    SHA-256 and (with ``scene``) the scene's item ids against those the artifacts were made
    on; ``{}`` for a folder without one (the official release, other tools)."""
    import json

    path = Path(folder) / MANIFEST_FILE
    if not path.is_file():
        return {}
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        manifest = None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT \
            or not isinstance(manifest.get("files"), dict):
        raise DataError(f"{path}: not a recnb artifacts manifest (damaged?); make the artifacts again")
    for name, digest in manifest["files"].items():
        file = Path(folder) / name
        if name not in _LISTED:
            raise DataError(f"{path}: lists {name!r}, which is no artifacts file")
        if not file.is_file():
            raise DataError(f"{file}: missing, though {MANIFEST_FILE} lists it; make the artifacts again")
        if file_digest(file) != digest:
            raise DataError(f"{file}: fails its integrity check (its SHA-256 differs from the one in {MANIFEST_FILE}: "
                            "a damaged or edited file); make the artifacts again")
    made = manifest.get("scene") if isinstance(manifest.get("scene"), dict) else {}
    if scene is not None and made.get("item_ids") and made["item_ids"] != ids_digest(scene.item_ids):
        raise ConfigError(f"--artifacts {folder}: made on scene '{made.get('name')}', whose item ids differ from "
                          f"scene '{scene.name}' (artifacts belong to the scene they were made on)")
    return manifest


def load_artifacts(
    folder: str | Path,
    num_items: int | None = None,
    num_rows: int | None = None,
    ranking: bool = True,
    embeddings: bool = True,
    scene: Scene | None = None,
) -> TeacherArtifacts:
    """Read and validate a teacher folder; ``ranking``/``embeddings`` say which parts are needed
    (a part not needed is still read when present, so a broken file never goes unnoticed).
    A recnb folder's manifest is checked first (:func:`check_manifest`, with ``scene``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such artifacts folder")
    manifest = check_manifest(folder, scene)
    emb = ranks = dist = None
    if embeddings or (folder / EMBEDDINGS_FILE).exists():
        emb = read_embeddings(folder / EMBEDDINGS_FILE, num_items)
    if ranking or (folder / RANKS_FILE).exists() or (folder / CONFIDENCE_FILE).exists():
        r = read_ranks(folder / RANKS_FILE, num_items if num_items is not None else (None if emb is None else emb.shape[0]), num_rows)
        d = read_confidence(folder / CONFIDENCE_FILE, num_rows)
        if d.shape != r.shape:
            raise DataError(
                f"{folder / CONFIDENCE_FILE}: shape {d.shape} differs from {RANKS_FILE}'s {r.shape} "
                "(one distance per ranked item)"
            )
        ranks, dist = torch.as_tensor(r + 1), torch.as_tensor(d, dtype=torch.float32)
    info = {}
    if (folder / "teacher.json").exists():
        import json

        try:
            info = json.loads((folder / "teacher.json").read_text())
        except json.JSONDecodeError as exc:
            raise DataError(f"{folder / 'teacher.json'}:{exc.lineno}: malformed JSON ({exc.msg})") from None
        except UnicodeDecodeError:
            raise DataError(f"{folder / 'teacher.json'}: not a UTF-8 JSON text file") from None
        if not isinstance(info, dict):
            raise DataError(f"{folder / 'teacher.json'}: expected a JSON object, got a {type(info).__name__}")
    return TeacherArtifacts(emb, ranks, dist, folder, info, manifest)


# ----------------------------------------------------------------------------- training rows
@dataclass
class TrainRows:
    """Training row ``i`` <-> window ``window[i]``, position ``position[i]`` of recnb windows."""

    window: torch.Tensor  # (R,) long
    position: torch.Tensor  # (R,) long
    targets: torch.Tensor  # (R,) recnb item id of each row's target
    shape: tuple  # (W, L) of the windows

    def __len__(self) -> int:
        return len(self.window)

    def table(self, values: torch.Tensor, fill=0) -> torch.Tensor:
        """``(R, ...)`` per-row values -> ``(W, L, ...)`` per window position (``fill`` elsewhere)."""
        values = torch.as_tensor(values)
        out = torch.full((*self.shape, *values.shape[1:]), fill, dtype=values.dtype)
        out[self.window, self.position] = values
        return out

    def rows(self, table: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`table`: ``(W, L, ...)`` -> ``(R, ...)`` in row order."""
        return table[self.window, self.position]


def scene_rows(windows: Windows, scene: Scene | None = None) -> TrainRows:
    """Row order for a recnb scene: users in order, targets chronologically.

    ``train_windows`` lays each user's windows out contiguously from the most recent
    backwards, so (user, -window, position) sorts the rows chronologically. With ``scene``
    the result is checked against the scene's own training targets.
    """
    mask = windows.targets > 0
    w, p = mask.nonzero(as_tuple=True)
    users = windows.users[w]
    order = np.lexsort((p.numpy(), -w.numpy(), users.numpy()))
    order = torch.as_tensor(order)
    rows = TrainRows(w[order], p[order], windows.targets[w[order], p[order]], tuple(windows.inputs.shape))
    if scene is not None:
        expected = np.concatenate([s[1:-2] for s in scene.sequences if len(s) > 3] or [np.zeros(0, np.int64)])
        if len(expected) != len(rows) or not np.array_equal(expected, rows.targets.numpy()):
            raise DataError(
                f"scene '{scene.name}': windows do not hold each training target exactly once "
                "(were they cut from this scene?)"
            )
    return rows


def window_rows(windows: Windows) -> TrainRows:
    """Row order for windows with one target each, at the last position (official data)."""
    W, L = windows.inputs.shape
    pos = torch.full((W,), L - 1, dtype=torch.long)
    return TrainRows(torch.arange(W), pos, windows.targets[:, -1].clone(), (W, L))


# ----------------------------------------------------------------------------- official layout
@dataclass
class OfficialData:
    """The official data folder, in official ids (0-based, padding ``item_num``)."""

    train: pd.DataFrame  # columns seq (list of seq_size ids), len_seq, next; index = row labels 0..R-1
    valid: pd.DataFrame
    test: pd.DataFrame
    seq_size: int
    item_num: int
    path: Path | None = None

    def windows(self, max_len: int | None = None) -> Windows:
        """One recnb window per training row (row order = index label order), target at the
        last position, left-padded, recnb ids."""
        hist, nxt = _to_recnb(self.train, self.item_num, max_len or self.seq_size)
        targets = torch.zeros_like(hist)
        targets[:, -1] = nxt
        return Windows(hist, targets, torch.arange(len(hist)))

    def scene(self, split: str) -> Scene:
        """A scene whose leave-one-out ``split`` ("valid"/"test") reproduces the official rows:
        each row becomes one user whose history is the row's ``seq`` and whose held-out item
        is ``next`` (recnb's evaluator then runs on the official rows unchanged)."""
        if split not in ("valid", "test"):
            raise ConfigError(f"split must be 'valid' or 'test', got {split!r}")
        df = self.valid if split == "valid" else self.test
        seqs = []
        for seq, n, nxt in zip(df["seq"], df["len_seq"], df["next"]):
            hist = np.asarray(seq[:n], np.int64) + 1
            tail = [nxt + 1, nxt + 1] if split == "valid" else [nxt + 1]
            seqs.append(np.concatenate([hist, np.asarray(tail, np.int64)]))
        ids = ["<pad>"] + [str(i) for i in range(self.item_num)]
        name = f"{self.path.name if self.path else 'official'}-{split}"
        return Scene(name, seqs, ids, [str(i) for i in range(len(seqs))], None, {"source": str(self.path or "")})


def _to_recnb(df: pd.DataFrame, item_num: int, max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    hist = np.zeros((len(df), max_len), np.int64)
    for r, (seq, n) in enumerate(zip(df["seq"], df["len_seq"])):
        h = np.asarray(seq[:n], np.int64)[-max_len:] + 1
        if len(h):
            hist[r, max_len - len(h):] = h
    return torch.as_tensor(hist), torch.as_tensor(df["next"].to_numpy(np.int64) + 1)


def export_scene(scene: Scene, seq_size: int = SEQ_SIZE) -> OfficialData:
    """A recnb scene in the official layout: one training row per training target (users in
    order, chronologically), one validation and one test row per user."""
    pad = scene.num_items
    rows = {"train": [], "valid": [], "test": []}

    def row(history, target):
        h = [int(i) - 1 for i in history[-seq_size:]]
        return [h + [pad] * (seq_size - len(h)), len(h), int(target) - 1]

    for seq in scene.sequences:
        train = seq[:-2]
        for t in range(1, len(train)):
            rows["train"].append(row(train[:t], train[t]))
        rows["valid"].append(row(seq[:-2], seq[-2]))
        rows["test"].append(row(seq[:-1], seq[-1]))
    frames = {k: pd.DataFrame(v, columns=["seq", "len_seq", "next"]) for k, v in rows.items()}
    return OfficialData(frames["train"], frames["valid"], frames["test"], seq_size, scene.num_items)


def write_official(out: str | Path, data: OfficialData) -> Path:
    """Write ``train_data.df``, ``val_data.csv``, ``test_data.csv`` and ``data_statis.df``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / TRAIN_FILE, lambda tmp: data.train.to_pickle(tmp, compression=None))
    for df, name in ((data.valid, VALID_FILE), (data.test, TEST_FILE)):
        text = df.assign(seq=[str(list(map(int, s))) for s in df["seq"]])
        atomic_write(out / name, lambda tmp, text=text: text.to_csv(tmp, index=False))
    stats = pd.DataFrame({"seq_size": [data.seq_size], "item_num": [data.item_num]})
    atomic_write(out / STATS_FILE, lambda tmp: stats.to_pickle(tmp, compression=None))
    return out


def read_official(folder: str | Path) -> OfficialData:
    """Read and validate an official data folder (shapes, id range, padding, row labels)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such data folder")
    stats = read_frame(folder / STATS_FILE, ("seq_size", "item_num"))
    if len(stats) < 1:
        raise DataError(f"{folder / STATS_FILE}: holds no row")
    seq_size, item_num = int(stats["seq_size"].iloc[0]), int(stats["item_num"].iloc[0])
    if seq_size < 1 or item_num < 1:
        raise DataError(f"{folder / STATS_FILE}: seq_size {seq_size} and item_num {item_num} must be positive")
    train = read_frame(folder / TRAIN_FILE, ("seq", "len_seq", "next"))
    labels = np.asarray(train.index)
    if not np.array_equal(np.sort(labels), np.arange(len(train))):
        raise DataError(
            f"{folder / TRAIN_FILE}: index labels must be 0..{len(train) - 1} "
            "(row i of the teacher files belongs to the row labelled i)"
        )
    train = train.sort_index()
    frames = [_clean(train, folder / TRAIN_FILE, seq_size, item_num)]
    for name in (VALID_FILE, TEST_FILE):
        path = folder / name
        if not path.exists():
            raise DataError(f"{path}: no such file")
        try:
            df = pd.read_csv(path)
        except Exception as exc:  # noqa: BLE001
            raise DataError(f"{path}: not a readable CSV ({type(exc).__name__})") from None
        missing = {"seq", "len_seq", "next"} - set(df.columns)
        if missing:
            raise DataError(f"{path}: lacks column(s) {sorted(missing)}")
        frames.append(_clean(df, path, seq_size, item_num))
    return OfficialData(*frames, seq_size=seq_size, item_num=item_num, path=folder)


def read_frame(path: Path, columns) -> pd.DataFrame:
    """A pickled DataFrame of the official layout with ``columns``; nothing in it runs."""
    df = read_dataframe_pickle(path)
    missing = set(columns) - set(df.columns)
    if missing:
        raise DataError(f"{path}: lacks column(s) {sorted(missing)} (has {', '.join(map(str, df.columns))})")
    return df


def _clean(df: pd.DataFrame, path: Path, seq_size: int, item_num: int) -> pd.DataFrame:
    """Parse ``seq`` (list or quoted list), check lengths, ids and padding; ints throughout."""
    seqs, lens, nexts = [], [], []
    for r, (seq, n, nxt) in enumerate(zip(df["seq"], df["len_seq"], df["next"])):
        where = f"{path}: row {r}"
        if isinstance(seq, str):
            try:
                seq = ast.literal_eval(seq)
            except (ValueError, SyntaxError):
                raise DataError(f"{where}: seq {seq[:40]!r} is not a list of item ids") from None
        try:
            seq = [int(x) for x in seq]
            n, nxt_f = int(n), float(nxt)
        except (TypeError, ValueError):
            raise DataError(f"{where}: seq, len_seq and next must be numbers") from None
        if not np.isfinite(nxt_f) or nxt_f != int(nxt_f):
            raise DataError(f"{where}: next {nxt!r} is not an item id")
        nxt = int(nxt_f)
        if len(seq) != seq_size:
            raise DataError(f"{where}: seq has {len(seq)} ids, data_statis.df says seq_size {seq_size}")
        if not 0 <= n <= seq_size:
            raise DataError(f"{where}: len_seq {n} is outside 0..{seq_size}")
        real, padding = seq[:n], seq[n:]
        if any(not 0 <= i < item_num for i in real):
            raise DataError(f"{where}: item id out of range 0..{item_num - 1} in seq {seq}")
        if any(i != item_num for i in padding):
            raise DataError(f"{where}: positions after len_seq {n} must be the padding id {item_num}, got {seq}")
        if not 0 <= nxt < item_num:
            raise DataError(f"{where}: next {nxt} out of range 0..{item_num - 1}")
        seqs.append(seq)
        lens.append(n)
        nexts.append(nxt)
    return pd.DataFrame({"seq": seqs, "len_seq": lens, "next": nexts}, index=df.index)


def is_official_dir(path: str | Path) -> bool:
    path = Path(path)
    return path.is_dir() and (path / STATS_FILE).exists() and (path / TRAIN_FILE).exists()
