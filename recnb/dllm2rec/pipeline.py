"""DLLM2Rec (Cui et al., RecSys 2024): distil a (LLM-shaped) teacher into a sequential student.

Two channels, each switchable:

- importance-aware ranking distillation: for each training row the teacher's top-K
  candidates ``c_1..c_K`` get a weight mixing position (``exp(-k/lambda)``), confidence
  (``exp(-d_k)``, d = the teacher's distance) and consistency (1 when ``c_k`` is also in
  the student's current top-K); ``L_RD = sum_k w_k BCE(s(c_k) positive, s(neg) negative)``
  and ``L = L_rec + lam * L_RD``;
- collaborative embedding distillation: the student's item table becomes
  ``e_collab + ed_weight * P(e_teacher)``, P a learned projector, teacher embeddings frozen,
  the same summed table used at the input and for scoring.

The DROS loss (distributionally robust, as in the reference students) is an option.
The student trains on recnb's windows (every training target once per epoch); teacher
outputs are looked up per batch through :class:`~recnb.dllm2rec.artifacts.TrainRows`.
Model selection is early stopping on validation NDCG@10 only; test is evaluated once.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from recnb.checkpoint import save_checkpoint, write_json
from recnb.data import Scene, Windows, train_windows
from recnb.dllm2rec.artifacts import (
    TRAIN_FILE,
    OfficialData,
    TeacherArtifacts,
    TrainRows,
    read_frame,
    scene_rows,
    window_rows,
)
from recnb.errors import ConfigError, DataError, check_fields
from recnb.evaluation import Evaluation, item_logits
from recnb.models import build_model, model_class, register_model
from recnb.models.base import ModelConfig, SeqRecModel
from recnb.runs import mean_over_seeds, run_model
from recnb.train import TrainConfig

STUDENTS = ("sasrec", "gru4rec", "dros")  # dros = SASRec trained with the DROS loss


@dataclass
class DLLM2RecConfig:
    """Distillation options: the reference values of the paper's code, except ``lam``.

    ``lam`` is 2, chosen on validation NDCG@10 among 0.4 / 0.8 (the reference) / 2 for
    both students on ml-100k with full-softmax students (docs/dllm2rec.md)."""

    ranking: bool = True  # importance-aware ranking distillation
    embedding: bool = True  # collaborative embedding distillation
    position: bool = True
    confidence: bool = True
    consistency: bool = True
    lam: float = 2.0
    candidate_topk: int = 10
    gamma_position: float = 0.3
    gamma_confidence: float = 0.5
    gamma_consistency: float = 0.1
    position_lambda: float = 1.0
    ed_weight: float = 0.2
    projector: str = "linear"  # "linear" (as the official code) or "mlp"
    dros_alpha: float = 0.0  # weight of the DROS term (0 = off)
    dros_beta: float = 1.0

    # one line of help per field: the options of `recnb dllm2rec` are generated from it
    HELP: ClassVar[dict] = {
        "ranking": "importance-aware ranking distillation", "embedding": "collaborative embedding distillation",
        "position": "position part of the ranking distillation's importance weights",
        "confidence": "confidence part of the ranking distillation's importance weights",
        "consistency": "consistency part of the ranking distillation's importance weights",
        "lam": "weight of ranking distillation (2 chosen on ml-100k validation; the reference is 0.8)",
        "candidate_topk": "teacher candidates per training row the ranking distillation uses",
        "gamma_position": "weight of the position part of the importance weights",
        "gamma_confidence": "weight of the confidence part of the importance weights",
        "gamma_consistency": "weight of the consistency part of the importance weights",
        "position_lambda": "position weight softmax(-rank / this) over the candidates",
        "ed_weight": "weight of the projected teacher embeddings in the student's item table",
        "projector": "linear or mlp: maps the teacher's embeddings to the student's width",
        "dros_alpha": "weight of the DROS term (0 = off)", "dros_beta": "DROS temperature",
    }

    def __post_init__(self):
        check_fields(self, {k: "[0, inf)" for k in ("lam", "ed_weight", "gamma_position", "gamma_confidence",
                                                    "gamma_consistency", "dros_alpha")}, "DLLM2Rec options")
        if self.projector not in ("linear", "mlp"):
            raise ConfigError(f"projector must be linear or mlp, got {self.projector!r}")
        if self.candidate_topk < 1:
            raise ConfigError(f"candidate_topk must be at least 1, got {self.candidate_topk}")
        for name in ("lam", "ed_weight", "gamma_position", "gamma_confidence", "gamma_consistency", "dros_alpha"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be non-negative, got {getattr(self, name)}")
        if self.position_lambda <= 0 or self.dros_beta <= 0:
            raise ConfigError("position_lambda and dros_beta must be positive")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------- ranking distillation
def importance_weights(
    candidates: torch.Tensor,
    distances: torch.Tensor,
    student_top: torch.Tensor | None = None,
    position: bool = True,
    confidence: bool = True,
    consistency: bool = True,
    gamma_position: float = 0.3,
    gamma_confidence: float = 0.5,
    gamma_consistency: float = 0.1,
    position_lambda: float = 1.0,
    return_parts: bool = False,
):
    """Per-candidate weights ``(P, K)`` summing to 1 per row.

    ``candidates`` (P, K) teacher's items best first, ``distances`` (P, K) ascending,
    ``student_top`` (P, K') the student's current top items (for consistency). A switched-off
    part contributes nothing; with all three off the weights are uniform. With
    ``return_parts`` also returns ``{"position", "confidence", "consistency"}`` (each (P, K),
    before the gammas) for inspection.
    """
    P, K = candidates.shape
    device = candidates.device
    k = torch.arange(1, K + 1, dtype=torch.float32, device=device)
    w_pos = torch.softmax(-k / position_lambda, 0).expand(P, K)
    w_conf = torch.softmax(-distances.float(), dim=1)  # exp(-d) normalised over the K candidates
    if student_top is not None:
        w_cons = (candidates.unsqueeze(2) == student_top.unsqueeze(1)).any(2).float()
    else:
        w_cons = torch.zeros(P, K, device=device)
    total = torch.zeros(P, K, device=device)
    if position:
        total = total + gamma_position * w_pos
    if confidence:
        total = total + gamma_confidence * w_conf
    if consistency:
        total = total + gamma_consistency * w_cons
    s = total.sum(1, keepdim=True)
    w = torch.where(s > 0, total / s.clamp_min(1e-12), torch.full_like(total, 1.0 / K))
    if return_parts:
        return w, {"position": w_pos, "confidence": w_conf, "consistency": w_cons}
    return w


def ranking_distillation_loss(
    scores: torch.Tensor, candidates: torch.Tensor, negatives: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """``mean_rows sum_k w_k [BCE(s(c_k), 1) + BCE(s(neg), 0)]`` with one negative per row."""
    return weighted_pair_bce(scores.gather(1, candidates), scores.gather(1, negatives.view(-1, 1)), weights)


def weighted_pair_bce(pos: torch.Tensor, neg: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The ranking distillation loss from the candidates' scores ``pos`` (P, K) and each row's
    negative's score ``neg`` (P, 1): what :func:`ranking_distillation_loss` gathers from full scores."""
    per = F.softplus(-pos.float()) + F.softplus(neg.float())  # -log sigmoid(pos) - log(1 - sigmoid(neg))
    return (weights * per).sum(1).mean()


def propensity(targets: torch.Tensor, num_items: int) -> torch.Tensor:
    """DROS's item weights: ``((count + 1) / sum) ** 0.05`` over training targets (0 for padding)."""
    counts = torch.bincount(targets[targets > 0].flatten(), minlength=num_items + 1).double()
    ps = counts[1:] + 1
    ps = (ps / ps.sum()) ** 0.05
    return torch.cat([torch.zeros(1, dtype=ps.dtype), ps]).float()


def dros_loss(scores: torch.Tensor, targets: torch.Tensor, ps: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """DROS (Yang et al., 2023) as in the reference code:
    ``log(sum_j exp(ps_j s_j^2 / b) - exp(ps_t s_t^2 / b) + exp(ps_t (s_t - 1)^2 / b))``, mean
    over rows; column 0 (padding) excluded. Computed with a stable log-sum-exp."""
    s = scores[:, 1:].float()
    p = ps[1:].to(s.device)
    a = p * s * s / beta
    t = targets - 1
    s_t = s.gather(1, t.view(-1, 1))
    b_t = p[t].view(-1, 1) * (s_t - 1) ** 2 / beta
    a = a.scatter(1, t.view(-1, 1), b_t)  # replace the target's term by its "positive" term
    return torch.logsumexp(a, dim=1).mean()


@torch.no_grad()
def explain_row(
    task: DistillTask,
    artifacts: TeacherArtifacts,
    row: int,
    student: SeqRecModel | None = None,
    cfg: DLLM2RecConfig | None = None,
    titles: list | None = None,
) -> pd.DataFrame:
    """One training row's teacher candidates with their three weight parts and the final
    weight (consistency against ``student``'s current top-K, none without a student)."""
    cfg = cfg or DLLM2RecConfig()
    if not 0 <= row < len(task.rows):
        raise ConfigError(f"row must be in 0..{len(task.rows) - 1}, got {row}")
    K = min(cfg.candidate_topk, artifacts.top_n)
    cand, dist = artifacts.ranks[row : row + 1, :K], artifacts.distances[row : row + 1, :K]
    top = None
    if student is not None:
        student.eval()
        w, p = int(task.rows.window[row]), int(task.rows.position[row])
        seq = task.windows.inputs[w : w + 1].to(next(student.parameters()).device)
        scores = student.score(student.output(seq)[0, p]).float().cpu()
        scores[0] = float("-inf")
        top = scores.topk(K).indices.view(1, -1)
    weights, parts = importance_weights(cand, dist, top, cfg.position, cfg.confidence, cfg.consistency,
                                        cfg.gamma_position, cfg.gamma_confidence, cfg.gamma_consistency,
                                        cfg.position_lambda, return_parts=True)
    df = pd.DataFrame({
        "rank": range(1, K + 1),
        "item": cand[0].tolist(),
        "distance": dist[0].tolist(),
        "position": parts["position"][0].tolist(),
        "confidence": parts["confidence"][0].tolist(),
        "consistency": parts["consistency"][0].tolist(),
        "weight": weights[0].tolist(),
    })
    if titles is not None:
        df.insert(2, "title", [titles[i] for i in df["item"]])
    df.attrs["target"] = int(task.rows.targets[row])
    return df


# ----------------------------------------------------------------------------- embedding distillation
class SummedItemEmbedding(nn.Module):
    """``collab + ed_weight * P(teacher)``, row 0 (padding) kept at zero; looks like an
    ``nn.Embedding`` to the student (``.weight``, ``.embedding_dim``, called on ids)."""

    def __init__(self, collab: torch.Tensor, teacher_dim: int, ed_weight: float, projector: str = "linear"):
        super().__init__()
        n, d = collab.shape
        self.collab = nn.Parameter(collab.detach().clone())
        self.register_buffer("teacher", torch.zeros(n, teacher_dim))  # frozen: never a parameter
        if projector == "linear":
            self.projector = nn.Linear(teacher_dim, d)
        else:
            self.projector = nn.Sequential(nn.Linear(teacher_dim, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
        for m in self.projector.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        self.ed_weight = ed_weight
        self.register_buffer("row_mask", torch.cat([torch.zeros(1, 1), torch.ones(n - 1, 1)]))
        self.embedding_dim = d

    def set_teacher(self, embeddings: torch.Tensor) -> None:
        """``embeddings`` ``(num_items, d_teacher)``, row i-1 = recnb item i."""
        if embeddings.shape != (self.teacher.shape[0] - 1, self.teacher.shape[1]):
            raise DataError(
                f"teacher embeddings have shape {tuple(embeddings.shape)}, "
                f"expected ({self.teacher.shape[0] - 1}, {self.teacher.shape[1]})"
            )
        self.teacher[1:] = embeddings.to(self.teacher)
        self.teacher[0] = 0

    @property
    def weight(self) -> torch.Tensor:
        return (self.collab + self.ed_weight * self.projector(self.teacher)) * self.row_mask

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.weight)


@dataclass
class EmbeddingDistilledStudentConfig(ModelConfig):
    student: str = "sasrec"
    student_config: dict = field(default_factory=dict)
    teacher_dim: int = 384
    ed_weight: float = 0.2
    projector: str = "linear"


@register_model
class EmbeddingDistilledStudent(SeqRecModel):
    """A foundation student whose item table is ``collab + ed_weight * P(teacher)``.

    The student's own code runs unchanged: its ``item_embedding`` is replaced by a
    :class:`SummedItemEmbedding`, so the input and the tied scoring both use the sum.
    Checkpoints hold the teacher table (a buffer), so the model reloads on its own.
    """

    name = "dllm2rec_student"
    config_class = EmbeddingDistilledStudentConfig

    def __init__(self, config: EmbeddingDistilledStudentConfig):
        super().__init__(config)
        base_cfg = {**config.student_config, "num_items": config.num_items, "max_len": config.max_len}
        self.base = build_model(config.student, **base_cfg)
        old = self.base.item_embedding
        self.base.item_embedding = SummedItemEmbedding(old.weight, config.teacher_dim, config.ed_weight, config.projector)

    @property
    def item_embedding(self) -> SummedItemEmbedding:
        return self.base.item_embedding

    def set_teacher(self, embeddings: torch.Tensor) -> EmbeddingDistilledStudent:
        self.base.item_embedding.set_teacher(embeddings)
        return self

    @property
    def cuts_padding(self) -> bool:  # as its student: a cut batch keeps SASRec's numbers
        return self.base.cuts_padding

    def forward(self, seq: torch.Tensor, offset: int = 0) -> list[torch.Tensor]:
        return self.base(seq, offset=offset) if offset else self.base(seq)

    def item_weights(self) -> torch.Tensor:
        return self.base.item_weights()

    def score(self, h: torch.Tensor) -> torch.Tensor:
        return self.base.score(h)


# ----------------------------------------------------------------------------- the training loss
class DLLM2RecLoss:
    """``extra_loss`` for :func:`recnb.train.fit`: ``lam * L_RD`` (+ ``alpha * L_DROS``).

    Teacher candidates and distances are laid out once as ``(W, L, K)`` tables over the
    windows and gathered per batch through ``batch["index"]`` from column ``batch["offset"]``
    (a batch cut of its leading padding).
    """

    handles_padding_cut = True

    def __init__(self, cfg: DLLM2RecConfig, rows: TrainRows, artifacts: TeacherArtifacts | None,
                 ps: torch.Tensor | None = None, seed: int = 0):
        self.cfg = cfg
        self.ps = ps
        self.cand = self.dist = None
        if cfg.ranking and cfg.lam > 0:
            if artifacts is None or artifacts.ranks is None:
                raise ConfigError("ranking distillation needs the teacher's myrank_train.txt and confidence_train.txt")
            K = min(cfg.candidate_topk, artifacts.top_n)
            self.cand = rows.table(artifacts.ranks[:, :K])
            self.dist = rows.table(artifacts.distances[:, :K])
        self.gen = torch.Generator().manual_seed(seed)

    def _to(self, device):
        if self.cand is not None and self.cand.device != device:
            self.cand, self.dist = self.cand.to(device), self.dist.to(device)
            self.gen = torch.Generator(device=device).manual_seed(int(torch.randint(0, 2**31, (1,), generator=self.gen)))

    @staticmethod
    def _student_top(model: SeqRecModel, h: torch.Tensor, logits: torch.Tensor | None, k: int) -> torch.Tensor:
        """The student's current top-``k`` items at each valid position (for the consistency
        weight): from the loss's full logits when there are some, else scored once without
        a gradient, since a top-k is not differentiable anyway."""
        if logits is not None:
            return logits.detach().topk(k, dim=1).indices
        with torch.no_grad():
            return item_logits(model, h.detach()).topk(k, dim=1).indices

    def __call__(self, model: SeqRecModel, batch: dict, states: list, logits: torch.Tensor | None) -> dict:
        mask = batch["targets"] > 0
        device = batch["targets"].device
        self._to(device)
        h = states[-1][mask]
        if logits is None and self.ps is not None:  # DROS reads every item's score
            logits = item_logits(model, h)
        out = {}
        if self.cand is not None:
            idx, off = batch["index"], batch.get("offset", 0)
            cand, dist = self.cand[idx, off:][mask], self.dist[idx, off:][mask]
            if "negatives" in batch and batch["negatives"].shape == batch["targets"].shape:  # bce: one per position
                neg = batch["negatives"][mask]
            else:
                neg = torch.randint(1, model.config.num_items + 1, (len(cand),), generator=self.gen, device=device)
                tgt = batch["targets"][mask]
                neg = torch.where(neg == tgt, neg % model.config.num_items + 1, neg)
            student_top = None
            if self.cfg.consistency:
                student_top = self._student_top(model, h, logits, cand.shape[1])
            c = self.cfg
            w = importance_weights(cand, dist, student_top, c.position, c.confidence, c.consistency,
                                   c.gamma_position, c.gamma_confidence, c.gamma_consistency, c.position_lambda)
            if logits is not None:
                out["rd"] = c.lam * ranking_distillation_loss(logits, cand, neg, w)
            else:  # sampled or bce: score only the K candidates and the negative, so the gradient is sparse
                items = model.item_weights()[torch.cat([cand, neg.view(-1, 1)], 1)]  # (P, K + 1, d)
                scores = (h.unsqueeze(1) * items).sum(-1)
                out["rd"] = c.lam * weighted_pair_bce(scores[:, :-1], scores[:, -1:], w)
        if self.cfg.dros_alpha > 0 and self.ps is not None:
            full = torch.cat([torch.zeros_like(logits[:, :1]), logits[:, 1:]], 1)
            out["dros"] = self.cfg.dros_alpha * dros_loss(full, batch["targets"][mask], self.ps, self.cfg.dros_beta)
        return out


# ----------------------------------------------------------------------------- tasks
@dataclass
class DistillTask:
    """Where a student trains and is measured: a recnb scene or an official data folder."""

    name: str
    num_items: int
    windows: Windows
    rows: TrainRows
    valid_scene: Scene  # fit validates on its "valid" split
    test_scene: Scene  # measured once on its "test" split
    official_targets: np.ndarray | None = None  # rows' targets in official ids, for checking files
    exclude_seen: bool = False  # mask each user's earlier items when measuring (the Amazon protocol)

    @classmethod
    def from_scene(cls, scene: Scene, max_len: int = 50, context: int = 0, exclude_seen: bool = False) -> DistillTask:
        windows = train_windows(scene, max_len, context) if context else train_windows(scene, max_len)
        return cls(scene.name, scene.num_items, windows, scene_rows(windows, scene), scene, scene, exclude_seen=exclude_seen)

    @property
    def evaluation(self) -> Evaluation:
        """How a student validates on ``valid_scene`` and is measured (test on ``test_scene``)."""
        return Evaluation(exclude_seen=self.exclude_seen, test_scene=self.test_scene)

    @classmethod
    def from_official(cls, data: OfficialData, max_len: int | None = None) -> DistillTask:
        windows = data.windows(max_len or data.seq_size)
        name = data.path.name if data.path else "official"
        return cls(name, data.item_num, windows, window_rows(windows), data.scene("valid"), data.scene("test"))

    def check(self, art: TeacherArtifacts) -> None:
        """Artifacts must fit this task: row count, item count, and (when the artifacts carry
        the scene they were made for) the same training targets in the same order."""
        where = art.path or "artifacts"
        if art.ranks is not None:
            if art.num_rows != len(self.rows):
                raise DataError(
                    f"{where}: myrank_train.txt has {art.num_rows} rows but '{self.name}' has "
                    f"{len(self.rows)} training rows (artifacts made for other data?)"
                )
            if int(art.ranks.max()) > self.num_items:
                raise DataError(f"{where}: item id {int(art.ranks.max()) - 1} out of range for {self.num_items} items")
        if art.embeddings is not None and art.embeddings.shape[0] != self.num_items:
            raise DataError(
                f"{where}: all_embeddings.pt has {art.embeddings.shape[0]} rows but '{self.name}' has {self.num_items} items"
            )
        data_file = Path(art.path) / "data" / TRAIN_FILE if art.path else None
        if data_file is not None and data_file.exists():
            nxt = read_frame(data_file, ("next",)).sort_index()["next"].to_numpy(np.int64) + 1
            if len(nxt) != len(self.rows) or not np.array_equal(nxt, self.rows.targets.numpy()):
                raise DataError(
                    f"{data_file}: the artifacts' training rows are not this scene's "
                    f"('{self.name}'): targets differ in value or order"
                )


# ----------------------------------------------------------------------------- students
def build_student(name: str, num_items: int, max_len: int, student_config: dict | None = None,
                  teacher: torch.Tensor | None = None, cfg: DLLM2RecConfig | None = None) -> SeqRecModel:
    """A foundation student (``dros`` = SASRec); with ``teacher`` embeddings and
    ``cfg.embedding`` it is wrapped for embedding distillation."""
    if name not in STUDENTS:
        raise ConfigError(f"--student: unknown student '{name}'; choose one of {', '.join(STUDENTS)}")
    base = "sasrec" if name == "dros" else name
    student_config = dict(student_config or {})
    model_class(base).config_class.from_dict({**student_config, "num_items": num_items, "max_len": max_len})
    if teacher is not None and cfg is not None and cfg.embedding and cfg.ed_weight > 0:
        conf = EmbeddingDistilledStudentConfig(
            num_items=num_items, max_len=max_len, student=base, student_config=student_config,
            teacher_dim=int(teacher.shape[1]), ed_weight=cfg.ed_weight, projector=cfg.projector,
        )
        return EmbeddingDistilledStudent(conf).set_teacher(teacher)
    return build_model(base, **student_config, num_items=num_items, max_len=max_len)


def train_student(
    task: DistillTask,
    student: str = "sasrec",
    artifacts: TeacherArtifacts | None = None,
    train: TrainConfig | None = None,
    cfg: DLLM2RecConfig | None = None,
    student_config: dict | None = None,
    distill: bool = True,
) -> tuple[SeqRecModel, dict]:
    """Train one student (with the teacher when ``distill``, else the plain baseline under the
    same budget) and measure it (:func:`recnb.runs.run_model`). Returns the model and its results."""
    train = train or TrainConfig()
    cfg = cfg or DLLM2RecConfig()
    if student == "dros" and cfg.dros_alpha == 0:
        cfg = dataclasses.replace(cfg, dros_alpha=1.0)
    if not distill:
        cfg = dataclasses.replace(cfg, ranking=False, embedding=False)
    teacher_emb = artifacts.embeddings if (artifacts is not None and cfg.embedding) else None
    if cfg.embedding and distill and teacher_emb is None:
        raise ConfigError("embedding distillation needs the teacher's all_embeddings.pt (or pass --no-embedding)")
    torch.manual_seed(train.seed)
    model = build_student(student, task.num_items, task.windows.inputs.shape[1], student_config, teacher_emb, cfg)
    ps = propensity(task.windows.targets, task.num_items) if cfg.dros_alpha > 0 else None
    loss = DLLM2RecLoss(cfg, task.rows, artifacts if cfg.ranking else None, ps, seed=train.seed)
    needs_loss = loss.cand is not None or ps is not None
    metrics = run_model(task.valid_scene, model, train, extra_loss=loss if needs_loss else None, windows=task.windows,
                        evaluation=task.evaluation, latency=(("cpu",), (256,)))
    return model, metrics


def task_of(data: Scene | OfficialData | DistillTask, train: TrainConfig, exclude_seen: bool = False) -> DistillTask:
    """Where the students of :func:`run_dllm2rec` train: ``data`` as a :class:`DistillTask`."""
    if isinstance(data, DistillTask):
        return data
    if isinstance(data, OfficialData):
        return DistillTask.from_official(data, train.max_len)
    return DistillTask.from_scene(data, train.max_len, getattr(train, "context", 0), exclude_seen)


def run_dllm2rec(
    data: Scene | OfficialData | DistillTask,
    artifacts: TeacherArtifacts,
    student: str = "sasrec",
    seeds=(2020, 2021, 2022),
    train: TrainConfig | None = None,
    cfg: DLLM2RecConfig | None = None,
    student_config: dict | None = None,
    out: str | Path | None = None,
    baseline: bool = True,
    log=print,
    exclude_seen: bool = False,
) -> dict:
    """Distilled and baseline students over ``seeds`` (same budget), plus the teacher's report.

    Returns ``{"teacher", "distilled", "baseline", "gain", "config"}``; metrics are means over
    seeds (:func:`recnb.runs.mean_over_seeds`); ``exclude_seen`` masks each user's earlier items
    when measuring (a scene's task). With ``out``: ``student.pt`` (the distilled student of the
    seed with the best validation NDCG@10) and ``metrics.json``.
    """
    train = train or TrainConfig(progress=False)
    cfg = cfg or DLLM2RecConfig()
    task = task_of(data, train, exclude_seen)
    task.check(artifacts)
    runs, best = _train_all(task, artifacts, student, seeds, train, cfg, student_config, baseline, log)
    result = {
        "dataset": task.name,
        "student": student,
        "protocol": "full",
        "exclude_seen": task.exclude_seen,
        "teacher": dict(artifacts.info.get("report", {}), **{k: v for k, v in artifacts.info.items() if k != "report"}),
        "distilled": mean_over_seeds(runs["distilled"]),
        "baseline": mean_over_seeds(runs["baseline"]) if baseline else None,
        "config": {"dllm2rec": cfg.to_dict(), "train": {k: v for k, v in dataclasses.asdict(train).items() if k != "seed"}},
        "per_seed": runs,
    }
    if baseline:
        result["gain"] = {
            k: relative_gain(result["distilled"]["test"][k], result["baseline"]["test"][k])
            for k in ("NDCG@10", "HR@10", "NDCG@20", "HR@20")
        }
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        best_model, best_valid = best
        save_checkpoint(out / "student.pt", best_model, task.valid_scene if task.valid_scene is task.test_scene else None,
                        extra={"dllm2rec": cfg.to_dict(), "valid_NDCG@10": best_valid})
        write_json(out / "metrics.json", result)
    return result


def _train_all(task, artifacts, student, seeds, train, cfg, student_config, baseline, log) -> tuple[dict, tuple]:
    """Every seed's distilled (and baseline) student; and the distilled one with the best
    validation NDCG@10, with that score."""
    runs = {"distilled": [], "baseline": []}
    best_model, best_valid = None, -1.0
    for seed in seeds:
        tc = dataclasses.replace(train, seed=seed)
        for kind in ("distilled", "baseline") if baseline else ("distilled",):
            start = time.perf_counter()
            model, m = train_student(task, student, artifacts, tc, cfg, student_config, distill=kind == "distilled")
            runs[kind].append(m)
            if log:
                log(f"{student} {kind} seed {seed}: test NDCG@10 {m['test']['NDCG@10']:.4f} HR@10 "
                    f"{m['test']['HR@10']:.4f} (valid {m['valid']['NDCG@10']:.4f}, {m['epochs']} epochs, "
                    f"{time.perf_counter() - start:.0f}s)")
            if kind == "distilled" and m["valid"]["NDCG@10"] > best_valid:
                best_model, best_valid = copy.deepcopy(model).cpu(), m["valid"]["NDCG@10"]
    return runs, (best_model, best_valid)


def relative_gain(new: float, old: float) -> float:
    return float("nan") if old == 0 else (new - old) / old


__all__ = [
    "STUDENTS",
    "DLLM2RecConfig",
    "DLLM2RecLoss",
    "DistillTask",
    "EmbeddingDistilledStudent",
    "SummedItemEmbedding",
    "build_student",
    "dros_loss",
    "explain_row",
    "importance_weights",
    "propensity",
    "ranking_distillation_loss",
    "relative_gain",
    "run_dllm2rec",
    "task_of",
    "train_student",
    "weighted_pair_bce",
]
