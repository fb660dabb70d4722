"""Top-k recommendations from a recnb checkpoint, in the user's own ids and titles.

``Recommender.load("runs/x/model.pt", dataset="ml-100k").recommend("42", k=10)`` answers for
a user of the scene; ``.recommend(["50", "181", "1"])`` for any history of raw item ids.
:meth:`Recommender.recommend_all` writes every user's top-k to CSV or parquet chunk by
chunk, so memory stays flat however many users there are.

Which history a user's answer comes from: ``"full"`` (every interaction: what a deployed
system recommends next) or ``"test"`` / ``"valid"`` (the history ``recnb evaluate`` scores
the test / validation item from, so its ranks can be checked against the top-k).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from recnb.adarec.summary import read_summary, student_folder, summary_file
from recnb.errors import ConfigError, DataError
from recnb.export import Exported, ScoringHead, check_k, export
from recnb.models.base import SeqRecModel

HISTORIES = ("full", "valid", "test")
TABLE_SUFFIXES = (".csv", ".parquet")


def pad_histories(histories: list, max_len: int) -> torch.Tensor:
    """recnb-id histories -> ``(B, max_len)`` int64, left-padded with 0, last items kept."""
    out = torch.zeros(len(histories), max_len, dtype=torch.long)
    for b, h in enumerate(histories):
        h = np.asarray(h, dtype=np.int64)[-max_len:]
        if len(h):
            out[b, max_len - len(h):] = torch.tensor(h)
    return out


class Recommender:
    """A model with the id maps of its scene; the scene (for users' histories) is optional."""

    def __init__(self, model: SeqRecModel, id_maps: dict | None = None, scene=None, device: str = "cpu"):
        from recnb.checkpoint import resolve_device

        if not isinstance(model, SeqRecModel):
            raise ConfigError(f"Recommender: expected a recnb model (or Recommender.load(path)), got {type(model).__name__}")
        self.device = resolve_device(device)
        self.model = model
        self.head = ScoringHead(model, output="scores").to(self.device)
        n = model.config.num_items
        maps = id_maps or (scene.id_maps() if scene is not None else {})
        self.checkpoint_maps = {"item_ids": maps.get("item_ids")}  # None: the checkpoint named no items
        self.item_ids = [str(i) for i in (maps.get("item_ids") or ["<pad>"] + [str(i) for i in range(1, n + 1)])]
        if len(self.item_ids) != n + 1:
            raise ConfigError(f"id maps hold {len(self.item_ids) - 1} items, the model {n}")
        self.titles = maps.get("titles")
        self.item_index = {raw: i for i, raw in enumerate(self.item_ids) if i}
        self.scene = None
        if scene is not None:
            self.use_scene(scene)

    @classmethod
    def load(cls, path: str | Path, dataset=None, data_dir=None, device: str = "cpu") -> Recommender:
        """From a ``model.pt``; ``dataset`` (a name, path or :class:`~recnb.data.Scene`) gives
        the users' histories and must hold the checkpoint's items."""
        from recnb.checkpoint import load_checkpoint
        from recnb.data import Scene, load_scene

        model, meta = load_checkpoint(path, "cpu")
        scene = None
        if dataset is not None:  # a name or path is built as the model's scene was (its --kcore)
            kcore = (meta.get("scene") or {}).get("kcore")
            scene = dataset if isinstance(dataset, Scene) else load_scene(dataset, data_dir, kcore=kcore)
        rec = cls(model, meta.get("id_maps"), device=device)
        rec.path, rec.meta = Path(path), meta
        if scene is not None:
            rec.use_scene(scene, path)
        return rec

    def use_scene(self, scene, where="model") -> Recommender:
        from recnb.checkpoint import check_compatible

        meta = getattr(self, "meta", None) or {}  # a loaded checkpoint's: its dataset and kcore name the mismatch
        check_compatible(self.model, {**meta, "id_maps": self.checkpoint_maps}, scene, where)
        self.scene = scene
        self.user_index = {str(u): i for i, u in enumerate(scene.user_ids)}
        if self.titles is None:
            self.titles = scene.titles
        return self

    @property
    def num_items(self) -> int:
        return self.model.config.num_items

    # ------------------------------------------------------------------ ids
    def encode(self, history) -> np.ndarray:
        """Raw item ids -> recnb ids; an unknown item is one error line naming it."""
        history = [str(x) for x in history]
        unknown = [x for x in history if x not in self.item_index]
        if unknown:
            more = f" (and {len(unknown) - 3} more)" if len(unknown) > 3 else ""
            raise ConfigError(f"history: unknown item id(s) {', '.join(map(repr, unknown[:3]))}{more}; "
                              f"the model knows {self.num_items} items")
        return np.array([self.item_index[x] for x in history], dtype=np.int64)

    def user_history(self, user, history: str = "full") -> np.ndarray:
        """The recnb ids of a user's interactions (all, or up to the valid/test item)."""
        if self.scene is None:
            raise ConfigError("recommending for a user needs the scene: Recommender.load(path, dataset=...)")
        if history not in HISTORIES:
            raise ConfigError(f"history: expected one of {', '.join(HISTORIES)}, got {history!r}")
        u = self.user_index.get(str(user))
        if u is None:
            dropped = (self.scene.meta or {}).get("dropped") or {}
            note = (f"; {dropped['users']:,} users of the data were left out when it was read (fewer than "
                    f"{dropped['min_interactions']} interactions{', or the k-core' if self.scene.meta.get('kcore') else ''})"
                    if dropped.get("users") else "")
            raise ConfigError(f"user {user!r}: not a user of '{self.scene.name}' ({self.scene.num_users} users{note})")
        seq = self.scene.sequences[u]
        cut = {"full": 0, "valid": 2, "test": 1}[history]
        return seq[: len(seq) - cut]

    # ------------------------------------------------------------------ scoring
    @torch.no_grad()
    def top_k(self, histories: list, k: int = 10, exclude_seen: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """``(ids, scores)`` ``(B, k)`` for recnb-id histories; a masked item scores ``-inf``."""
        check_k(k, self.num_items, "k")
        scores = self.head(pad_histories(histories, self.model.config.max_len).to(self.device))
        if exclude_seen:  # the whole history, not only its last max_len items
            rows = torch.cat([torch.full((len(h),), b, dtype=torch.long) for b, h in enumerate(histories)])
            cols = torch.from_numpy(np.concatenate([np.asarray(h, dtype=np.int64) for h in histories]))
            scores[rows.to(self.device), cols.to(self.device)] = float("-inf")
        values, ids = scores.topk(k, dim=1)
        return ids.cpu(), values.cpu()

    def table(self, users: list, ids: np.ndarray, values: np.ndarray) -> pd.DataFrame:
        """``user, rank, item, [title,] score`` rows from ``(B, k)`` recnb ids and scores;
        masked items (``-inf``: fewer than k left) are not recommendations and are dropped."""
        ids, values = np.asarray(ids), np.asarray(values)
        keep = np.isfinite(values)
        picked = ids[keep]
        df = pd.DataFrame({
            "user": np.repeat(np.asarray(users, dtype=object), ids.shape[1]).reshape(ids.shape)[keep],
            "rank": np.cumsum(keep, axis=1)[keep],
            "item": np.asarray(self.item_ids, dtype=object)[picked],
        })
        if self.titles is not None:
            df["title"] = np.asarray(self.titles, dtype=object)[picked]
        df["score"] = values[keep].astype(np.float64)
        return df

    def recommend(self, history_or_user, k: int = 10, exclude_seen: bool = False, history: str = "full") -> pd.DataFrame:
        """Top-k as a DataFrame (``rank``, ``item`` raw id, ``title`` where known, ``score``).
        A list of raw item ids is a history; a single id is a user of the scene."""
        if isinstance(history_or_user, (str, int, np.integer)):
            seq = self.user_history(history_or_user, history)
        else:
            seq = self.encode(history_or_user)
        ids, values = self.top_k([seq], k, exclude_seen)
        return self.table([None], ids.numpy(), values.numpy()).drop(columns="user")

    def recommend_all(
        self,
        out: str | Path,
        users=None,
        k: int = 10,
        exclude_seen: bool = False,
        history: str = "full",
        batch_size: int = 256,
        progress: bool = True,
        force: bool = False,
    ) -> int:
        """Write ``user, rank, item, [title,] score`` for ``users`` (default: every user of
        the scene) to ``out`` (.csv or .parquet), ``batch_size`` users at a time. Returns the
        number of rows written."""
        from tqdm.auto import tqdm

        out = Path(out)
        if out.suffix not in TABLE_SUFFIXES:
            raise ConfigError(f"--out {out}: expected a .csv or .parquet file")
        if out.exists() and not force:
            raise ConfigError(f"--out {out}: exists; pass --force to overwrite")
        check_k(k, self.num_items)
        if self.scene is None:
            raise ConfigError("recommend_all needs the scene: Recommender.load(path, dataset=...)")
        users = list(self.scene.user_ids) if users is None else [str(u) for u in users]
        for u in users:
            self.user_history(u, history)  # every user checked before anything is written
        writer = _TableWriter(out)
        rows = 0
        try:
            with tqdm(total=len(users), unit="user", disable=not progress, desc="recommend") as bar:
                for start in range(0, len(users), batch_size):
                    chunk = users[start : start + batch_size]
                    ids, values = self.top_k([self.user_history(u, history) for u in chunk], k, exclude_seen)
                    table = self.table(chunk, ids.numpy(), values.numpy())
                    writer.write(table)
                    rows += len(table)
                    bar.update(len(chunk))
        except BaseException:
            writer.close()
            out.unlink(missing_ok=True)
            raise
        writer.close()
        return rows


class _TableWriter:
    """Append DataFrames to one CSV or parquet file (a parquet row group per chunk)."""

    def __init__(self, path: Path):
        self.path, self.first, self.parquet = path, True, None
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".parquet":
            from recnb.export import require

            self.pa = require("pyarrow")
            self.pq = require("pyarrow.parquet")
        elif path.exists():
            path.unlink()

    def write(self, df: pd.DataFrame) -> None:
        if self.path.suffix == ".csv":
            df.to_csv(self.path, mode="w" if self.first else "a", header=self.first, index=False)
        else:
            table = self.pa.Table.from_pandas(df, preserve_index=False)
            if self.parquet is None:
                self.parquet = self.pq.ParquetWriter(str(self.path), table.schema)
            self.parquet.write_table(table)
        self.first = False

    def close(self) -> None:
        if self.parquet is not None:
            self.parquet.close()
            self.parquet = None


# ----------------------------------------------------------------------------- notebooks
def summary_checkpoint(summary_path: str | Path, row: dict) -> Path:
    """The ``model.pt`` behind a row of an AdaRec ``summary.json`` (or its folder): the
    teacher, or a student with or without the teacher (its first seed)."""
    summary_path = summary_file(summary_path)
    root = summary_path.parent
    if row.get("role") == "teacher":
        return Path(read_summary(summary_path)["teacher"])
    if row.get("role") not in ("student", "student_no_kd"):
        raise ConfigError(f"row {row.get('name')!r}: only the teacher's and students' checkpoints are located")
    path = student_folder(root, row["beta"], row["role"] == "student", row["seeds"][0]) / "model.pt"
    if not path.exists():
        raise DataError(f"{path}: no such checkpoint for row {row.get('name')!r}")
    return path


def side_by_side(summary_path: str | Path, row: dict, scene, user=None, k: int = 10, export_dir: str | Path = "export") -> pd.DataFrame:
    """Export the student of ``row`` (ONNX where onnxruntime is installed, else TorchScript),
    run one user's full history through the exported graph, and set its top-k beside the
    eager teacher's (``rank``, then ``student_*`` and ``teacher_*`` item, title, score)."""
    student = Recommender.load(summary_checkpoint(summary_path, row), scene)
    teacher = Recommender.load(summary_checkpoint(summary_path, {"role": "teacher"}), scene)
    user = scene.user_ids[0] if user is None else user
    fmt = "onnx" if all(_importable(m) for m in ("onnx", "onnxruntime", "onnxscript")) else "torchscript"
    path = Path(export_dir) / f"{row['name']}.{'onnx' if fmt == 'onnx' else 'pt'}"
    export(student.model, path, fmt, "topk", k, id_maps={"item_ids": student.item_ids, "titles": student.titles},
           dataset=scene.name, force=True)
    graph = Exported(path)
    ids, values = graph(pad_histories([student.user_history(user)], graph.info["max_len"]))
    left = student.table([user], ids, values).drop(columns="user").add_prefix("student_").rename(columns={"student_rank": "rank"})
    right = teacher.recommend(user, k).drop(columns="rank").add_prefix("teacher_")
    df = pd.concat([left, right], axis=1)
    df.attrs.update(user=str(user), graph=str(path), format=fmt, exporter=graph.info["exporter"])
    return df


def _importable(module: str) -> bool:
    import importlib

    try:
        importlib.import_module(module)
        return True
    except ImportError:
        return False


__all__ = ["HISTORIES", "Recommender", "pad_histories", "side_by_side", "summary_checkpoint"]
