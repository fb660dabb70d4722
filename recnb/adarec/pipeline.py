"""AdaRec end to end: teacher, search per beta, distillation, twins, baseline, summary.

- :func:`distillation_loss`: the ``extra_loss`` that ``recnb.train.fit`` adds to CE for a
  student learning from a frozen teacher (prediction KD + EMD over cached teacher layers).
- :func:`train_model`: one student's run (:func:`recnb.runs.run_model`) with or without
  the teacher: train, evaluate, measure size, FLOPs and latency, write ``model.pt``,
  ``metrics.json``, ``history.csv``.
- :func:`run_pipeline`: the whole experiment, writing ``summary.csv`` and
  ``summary.json`` = ``{"rows": [...], ...}`` (one row per model, test metrics averaged
  over seeds).

``fit`` trains ``CE + extra``; with ``extra = g (KD + EMD)``, ``g = gamma / (1 - gamma)``,
this is the target-oriented loss ``(1 - gamma) CE + gamma (KD + EMD)`` scaled by
``1 / (1 - gamma)``, i.e. the same objective as in the search.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from recnb.adarec.architecture import Architecture
from recnb.adarec.search import SearchConfig, search
from recnb.adarec.student import Student
from recnb.adarec.summary import load_summary, student_folder, summary_frame
from recnb.checkpoint import changed_settings, load_checkpoint, model_digest, resolve_device, write_json
from recnb.data import Scene, load_scene, train_windows
from recnb.errors import ConfigError, check_fields
from recnb.evaluation import Evaluation, item_logits, user_ranks
from recnb.kd import EMDLoss, TeacherCache, kd_loss
from recnb.measure import COST_KEYS, model_flops
from recnb.metrics import paired_difference
from recnb.models import SeqRecModel, build_model
from recnb.runs import evaluate_and_measure, mean_over_seeds, run_model, train_and_report
from recnb.train import TrainConfig, seed_everything

# 16 residual blocks of width 128; dropout 0.2 in the residual branch keeps it from overfitting ml-100k
TEACHER_CONFIG = {"embedding_size": 128, "num_blocks": 8, "dilations": [1, 4], "layer_every": 2, "dropout": 0.2}
# How a missing teacher is trained, on top of the distillation's training settings: the reorder
# augmentation gave the best validation NDCG@10 of nine 16 x 128 teachers on ml-100k (docs/adarec.md).
TEACHER_TRAIN = {"reorder": 0.2}
ROLES = ("teacher", "student", "student_no_kd", "baseline", "baseline_no_kd", "baseline_sasrec")
BASELINES = ("nextitnet", "sasrec")  # the hand-made students of the default student's size


KD_ITEMS = ("all", "sampled", "top")


@dataclass
class DistillConfig:
    """How a derived student (or the baseline) learns from the frozen teacher."""

    gamma: float = 0.5
    T: float = 1.0
    emd: bool = True
    emd_update: str = "softmax"
    T_emd: float = 10.0
    width: int = 64
    dropout: float = 0.0
    # "all": KD over the whole catalogue; "sampled": with the sampled loss, over the items the
    # batch scores (its targets and shared negatives), at the cost of the sampled loss itself;
    # "top": over the teacher's ``top_k`` best items of each position, found once with its cache
    kd_items: str = "all"
    top_k: int = 100
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=30, batch_size=32, lr=1e-3, patience=5))

    # one line of help per field: the options of `recnb distill` and `recnb adarec` are generated from it
    HELP: ClassVar[dict] = {
        "gamma": "weight of KD against CE: the KD and EMD terms are weighted gamma / (1 - gamma)",
        "T": "KD temperature", "emd": "EMD distillation of the hidden states besides prediction-layer KD",
        "emd_update": "softmax, normalize or none: how the EMD layer weights are updated",
        "T_emd": "temperature of the softmax EMD layer-weight update", "width": "student width",
        "dropout": "dropout on a derived student's embeddings and cell outputs (its twin's too); 0 = none",
        "kd_items": "all (KD over every item), sampled (with the sampled loss: over the items it scores, "
                    "in its own pass at T 1) or top (over the teacher's --top-k best items of each position, found once)",
        "top_k": "items per position of --kd-items top",
    }

    def __post_init__(self):
        check_fields(self, {"T": "(0, inf)", "T_emd": "(0, inf)", "width": "[1, inf)", "dropout": "[0, 1)", "top_k": "[1, inf)"},
                     "distillation options")
        if not 0.0 <= self.gamma < 1.0:
            raise ConfigError(f"gamma must be in [0, 1) for distillation, got {self.gamma}")
        if self.kd_items not in KD_ITEMS:
            raise ConfigError(f"kd_items must be one of {', '.join(KD_ITEMS)}, got {self.kd_items!r}")


# ----------------------------------------------------------------------------- distillation
class DistillationLoss:
    """``extra_loss`` for ``fit``: ``g * KD`` and ``g * EMD`` (``g = gamma / (1 - gamma)``),
    logged per epoch as ``kd`` and ``emd``. With ``cfg.emd`` the learned map student ->
    teacher width is attached to the student as ``distill_emd`` so ``fit`` trains it;
    :meth:`finish` removes it when training ends (the model keeps its contract). The cache
    is packed by valid position, so batches cut of their leading padding read it as they are."""

    handles_padding_cut = True

    def __init__(self, cache: TeacherCache, student: SeqRecModel, cfg: DistillConfig):
        self.cache, self.T, self.g = cache, cfg.T, cfg.gamma / (1.0 - cfg.gamma)
        # KD over the batch's sampled items: both sides must score an item alone (a dot product)
        self.sampled = cfg.kd_items == "sampled" and cache.teacher.scores_by_product and student.scores_by_product
        # at temperature 1 the sampled KD runs inside the sampled loss's own pass (sampled_teacher)
        self.fused = self.sampled and cfg.T == 1.0
        self.top_k = cfg.top_k if cfg.kd_items == "top" else 0
        if self.top_k:
            cache.top(self.top_k)  # found once, before the clock of the first epoch
        self.emd = None
        if cfg.emd:
            device = next(student.parameters()).device
            n_student = len(student(torch.zeros(1, 2, dtype=torch.long, device=device))) - 1
            self.emd = EMDLoss(cache.num_layers, n_student, _width(student), cache.width, cfg.emd_update, cfg.T_emd)
            student.add_module("distill_emd", self.emd.to(device))

    def sampled_teacher(self, model, batch) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The teacher's scores of the batch's targets and shared negatives, for the sampled
        loss to distil in its own pass (``fit`` asks before the loss); None where it cannot."""
        negatives = batch.get("negatives")
        if not self.fused or negatives is None or negatives.dim() != 1:
            return None
        if hasattr(self.cache, "see"):
            self.cache.see(batch)
        mask = batch["targets"] > 0
        with torch.no_grad():
            h = self.cache.output(batch["index"], mask).to(negatives.device)
            w = self.cache.item_weights()
            return (h * w[batch["targets"][mask]]).sum(-1), h @ w[negatives].t()

    def __call__(self, model, batch, states, logits) -> dict:
        mask = batch["targets"] > 0
        negatives = batch.get("negatives")
        if hasattr(self.cache, "see"):
            self.cache.see(batch)
        if "kd_fused" in batch:  # computed by the sampled loss from sampled_teacher's scores
            out = {"kd": self.g * batch.pop("kd_fused")}
        elif self.top_k:
            out = {"kd": self.g * self.top_kd(model, batch, states, mask, logits)}
        elif logits is None and self.sampled and negatives is not None and negatives.dim() == 1:
            out = {"kd": self.g * self.sampled_kd(model, batch, states, mask, negatives)}
        else:
            if logits is None:  # a sampled or bce loss scored only some items: KD needs them all
                logits = item_logits(model, states[-1][mask])
            out = {"kd": self.g * kd_loss(logits, self.cache.logits(batch["index"], mask), self.T)}
        if self.emd is not None:
            out["emd"] = self.g * self.emd([s[mask] for s in states[1:]], self.cache.layers(batch["index"], mask))
            self.emd.update_weights()
        return out

    def sampled_kd(self, model, batch, states, mask, negatives) -> torch.Tensor:
        """KD over the items the sampled loss scores (the batch's targets and its shared
        negatives, each once): the teacher's and the student's softmax over those columns."""
        items = torch.unique(torch.cat([batch["targets"][mask], negatives]))
        student = states[-1][mask] @ model.item_weights()[items].t()
        return self.kd_over_columns(student, self.cache.logits(batch["index"], mask, items).to(student.device))

    def top_kd(self, model, batch, states, mask, logits) -> torch.Tensor:
        """KD over the teacher's best items of each position (its softmax over them against the
        student's): ``top_k`` columns a step, whatever the catalogue."""
        ids, teacher = self.cache.top_logits(batch["index"], mask, self.top_k)
        h = states[-1][mask]
        if logits is not None:
            student = logits.gather(1, ids)
        elif model.scores_by_product:
            student = torch.bmm(model.item_weights()[ids], h.unsqueeze(2)).squeeze(2)
        else:
            student = item_logits(model, h).gather(1, ids)
        return self.kd_over_columns(student, teacher)

    def kd_over_columns(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """:func:`kd_loss` over a few items' columns (both ``(P, n)``, the same items)."""
        pad = (1, 0)  # kd_loss leaves out column 0 (the padding id of full logits)
        return kd_loss(F.pad(student, pad), F.pad(teacher, pad), self.T)

    def finish(self, model: SeqRecModel) -> None:
        if hasattr(model, "distill_emd"):
            del model.distill_emd  # the map only serves training


def distillation_loss(cache: TeacherCache, student: SeqRecModel, cfg: DistillConfig) -> DistillationLoss:
    """The ``extra_loss`` of a student learning from ``cache``'s teacher (:class:`DistillationLoss`)."""
    return DistillationLoss(cache, student, cfg)


def _width(model: SeqRecModel) -> int:
    return model.item_embedding.weight.shape[1]


def measured(exclude_seen: bool = False) -> Evaluation:
    """How AdaRec measures every model (teacher, students, twins, baselines): full ranking, with
    sampled100 beside it (``test_sampled100``), each user's earlier items masked under
    ``exclude_seen``."""
    return Evaluation(exclude_seen=exclude_seen, also=("sampled100",))


def train_model(
    scene: Scene,
    model: SeqRecModel,
    cfg: DistillConfig,
    cache: TeacherCache | None = None,
    out: str | Path | None = None,
    devices=("cpu",),
    batches=(1, 256),
    reuse: bool = False,
    exclude_seen: bool = False,
) -> dict:
    """Train ``model`` from its current (fresh) weights with CE, plus KD + EMD when a
    teacher ``cache`` is given; evaluate on test (full ranking and sampled100; with
    ``exclude_seen`` the user's earlier items are masked); measure
    (:func:`recnb.runs.run_model`). With ``reuse`` and an existing ``out/metrics.json``,
    return that instead (and continue a killed run from its training state)."""
    if reuse and out is not None and (Path(out) / "metrics.json").exists():
        return run_model(scene, model, cfg.train, out, reuse=True)
    if cache is not None and cfg.train.reorder:
        raise ConfigError("reorder: cannot be combined with a teacher, whose cached outputs belong to the unshuffled windows")
    windows = train_windows(scene, cfg.train.max_len)
    extra = distillation_loss(cache, model, cfg) if cache is not None else None
    return run_model(scene, model, cfg.train, out, extra_loss=extra, windows=windows, info={"teacher": cache is not None},
                     evaluation=measured(exclude_seen),
                     latency=(tuple(devices), tuple(batches)), resume=reuse)


def build_student(scene: Scene, architecture: Architecture | str | Path, width: int = 64, max_len: int = 50, seed: int = 2020,
                  dropout: float = 0.0) -> Student:
    arch = architecture if isinstance(architecture, Architecture) else Architecture.load(architecture)
    seed_everything(seed)
    return Student.from_architecture(arch, scene.num_items, width, max_len, dropout)


def _closest_size(model: str, candidates, target_params: int) -> dict:
    """The first of ``candidates`` (model settings) whose non-embedding size is closest to ``target_params``."""
    return min(candidates, key=lambda cfg: abs(build_model(model, num_items=1, **cfg).num_params(embeddings=False)
                                               - target_params))


def sasrec_baseline_config(target_params: int, width: int = 64) -> dict:
    """A hand-made small SASRec at ``width`` whose non-embedding size is closest to
    ``target_params`` (1-4 blocks, feed-forward 1x-4x the width; ``"model": "sasrec"``)."""
    candidates = [{"hidden_size": width, "num_layers": layers, "inner_size": inner, "num_heads": 2 if width % 2 == 0 else 1}
                  for layers in range(1, 5) for inner in (width, 2 * width, 4 * width)]
    return {"model": "sasrec", **_closest_size("sasrec", candidates, target_params)}


def baseline_config(target_params: int, width: int = 64, dilations=(1, 4)) -> dict:
    """A hand-made small NextItNet at ``width`` whose non-embedding size is closest to
    ``target_params`` (whole repetitions of the dilation pattern; at least one)."""
    candidates = [{"embedding_size": width, "num_blocks": blocks, "dilations": list(dilations), "layer_every": 2}
                  for blocks in range(1, 17)]
    return _closest_size("nextitnet", candidates, target_params)


# ----------------------------------------------------------------------------- pipeline
def choose_default_beta(students: dict, teacher_params_no_embedding: int, max_param_ratio: float = 1 / 8) -> float:
    """The beta whose distilled student has the best mean validation NDCG@10 among those
    with at most ``max_param_ratio`` of the teacher's non-embedding parameters (the
    smallest student if none is that small). Validation, never test, picks it: the most
    accurate student that is small enough is what a user ships."""
    if not students:
        raise ConfigError("choose_default_beta: no students")
    small = {b: a for b, a in students.items() if a["params_no_embedding"] <= max_param_ratio * teacher_params_no_embedding}
    if not small:
        return min(students, key=lambda b: (students[b]["params_no_embedding"], b))
    return max(small, key=lambda b: (small[b]["valid"]["NDCG@10"], b))


def _row(name, role, beta, default, architecture, agg) -> dict:
    return {"name": name, "role": role, "beta": beta, "default": default, "architecture": architecture, **agg}


# ----------------------------------------------------------------------------- pieces and pools
class Pool(Protocol):
    """What runs the pipeline's independent pieces: ``[fn(shared, item) for item in items]``,
    in any order or place (``shared``: what every piece reads, sent once)."""

    def map(self, fn: Callable, items, shared: dict) -> list: ...


class InProcess:
    """The default :class:`Pool`: the pieces one after another in this process
    (``recnb.parallel.RayPool`` runs them as Ray tasks)."""

    def map(self, fn: Callable, items, shared: dict) -> list:
        return [fn(shared, item) for item in items]


@dataclass(frozen=True)
class Distillation:
    """One model for one seed, a piece a pool runs: a derived student (``architecture``) or
    a hand-made NextItNet (``baseline``: its config), with or without the teacher."""

    run_dir: Path
    seed: int
    use_teacher: bool
    architecture: Architecture | None = None
    baseline: dict | None = None
    dropout: float | None = None  # a derived student's, when not DistillConfig.dropout (a chosen one)


def _search_piece(shared: dict, beta: float) -> tuple[Architecture, float]:
    """One beta's search (read back when reusing a finished one), and its seconds."""
    t0 = time.perf_counter()
    sdir = shared["out"] / "search" / f"beta_{beta:g}"
    if shared["reuse"] and (sdir / "architecture.json").exists():
        return Architecture.load(sdir / "architecture.json"), time.perf_counter() - t0
    cache, cfg = shared["cache"], dataclasses.replace(shared["scfg"], beta=beta)
    arch = search(shared["scene"], cache.teacher, cfg, sdir, cache=cache, resume=shared["reuse"]).architecture
    return arch, time.perf_counter() - t0


def _distil_piece(shared: dict, job: Distillation) -> tuple[dict, float]:
    """One :class:`Distillation`: build its model from the seed, train it (:func:`train_model`);
    its metrics and seconds. Seeded here, it gives the same numbers in any process."""
    t0 = time.perf_counter()
    scene, dcfg = shared["scene"], shared["dcfg"]
    dropout = dcfg.dropout if job.dropout is None else job.dropout
    cfg = dataclasses.replace(dcfg, dropout=dropout, train=dataclasses.replace(dcfg.train, seed=job.seed))
    if job.architecture is not None:
        model = build_student(scene, job.architecture, dcfg.width, shared["max_len"], job.seed, dropout)
    else:
        seed_everything(job.seed)
        settings = dict(job.baseline)
        model = build_model(settings.pop("model", "nextitnet"), num_items=scene.num_items, max_len=shared["max_len"], **settings)
    metrics = train_model(scene, model, cfg, shared["cache"] if job.use_teacher else None,
                          job.run_dir / f"seed_{job.seed}", shared["devices"], shared["batches"], shared["reuse"],
                          shared["exclude_seen"])
    return metrics, time.perf_counter() - t0


def run_pipeline(
    scene: Scene | str,
    out_dir: str | Path,
    teacher: str | Path | None = None,
    betas=(0.01, 0.1, 1.0),
    default_beta: float | None = None,
    seeds: int = 3,
    search_config: SearchConfig | None = None,
    distill_config: DistillConfig | None = None,
    teacher_train: TrainConfig | None = None,
    twins: str = "all",
    baseline: bool = True,
    devices=None,
    batches=(1, 256),
    data_dir=None,
    reuse: bool = True,
    max_param_ratio: float = 1 / 8,
    log: Callable[[str], None] | None = print,
    pool: Pool | None = None,
    exclude_seen: bool = False,
    dropouts=None,
    baselines=BASELINES,
) -> dict:
    """Run AdaRec on one scene and write ``summary.csv`` / ``summary.json``.

    ``teacher`` is a checkpoint to reuse (else a NextItNet teacher of 16 residual blocks,
    width 128, is trained to ``out_dir/teacher``). One search per beta (``search/beta_*``);
    each derived student is distilled from scratch for each seed (``students/...``), its
    no-teacher twin too (``twins``: ``all`` betas, ``default`` only, or ``none``), and, unless
    not ``baseline``, the hand-made ``baselines`` of the default student's size learn with the
    same KD (with ``twins="all"`` the NextItNet without a teacher too: ``baseline_no_kd``). Without a
    ``default_beta`` the default student is chosen on validation (:func:`choose_default_beta`:
    the best validation NDCG@10 among students with at most ``max_param_ratio`` of the
    teacher's non-embedding parameters), before the twins are trained. With ``reuse``, finished
    pieces (``metrics.json``, ``architecture.json``) are read back. ``log=None`` keeps it quiet.

    ``pool`` runs the independent pieces (:class:`InProcess`, the default: one after another
    here; ``recnb.parallel.RayPool``: as Ray tasks) in three waves: the searches of all betas;
    the distilled students of all betas and seeds; then, once the default beta is chosen, the
    twins and the baselines of all seeds. Every piece seeds itself, so the numbers do not
    depend on the pool. ``exclude_seen`` masks each user's earlier items when measuring
    every model (the Amazon protocol). ``dropouts`` (e.g. ``(0, 0.1, 0.2, 0.3)``) chooses each
    beta's student dropout on its twin's validation (:meth:`_Pipeline.choose_dropouts`)."""
    betas, default_beta = _check_options(betas, default_beta, max_param_ratio, twins)
    dropouts, baselines = _check_dropouts(dropouts, distill_config), check_baselines(baselines) if baseline else ()
    scene = scene if isinstance(scene, Scene) else load_scene(scene, data_dir)
    run = _Pipeline(scene, Path(out_dir), search_config or SearchConfig(), distill_config or DistillConfig(), seeds,
                    tuple(devices) if devices else (("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)),
                    batches, reuse, log or (lambda message: None), pool or InProcess(), exclude_seen, dropouts)
    run.out.mkdir(parents=True, exist_ok=True)
    check_resume_settings(run.out / "settings.json", run.settings(teacher, teacher_train, max_param_ratio), reuse)
    run.prepare_teacher(teacher, teacher_train)
    run.search_all(betas)
    run.choose_dropouts(betas)
    rows, default_beta = run.student_rows(betas, default_beta, max_param_ratio, twins, baselines)
    summary = run.summary(rows, betas, default_beta, twins)
    summary["comparisons"] = run.comparisons(rows)
    write_json(run.out / "summary.json", summary)
    summary_frame(rows).to_csv(run.out / "summary.csv", index=False)
    return summary


def _check_dropouts(dropouts, distill_config: DistillConfig | None) -> tuple[float, ...]:
    dropouts = tuple(sorted({float(d) for d in dropouts})) if dropouts else ()
    if any(not 0.0 <= d < 1.0 for d in dropouts):
        raise ConfigError(f"dropouts: each must be in [0, 1), got {list(dropouts)}")
    if dropouts and distill_config is not None and distill_config.dropout:
        raise ConfigError("dropouts: give a list of dropouts to choose from or one distillation dropout, not both")
    return dropouts


def check_baselines(baselines, what: str = "baselines") -> tuple[str, ...]:
    """``baselines`` as a tuple, refused (naming ``what``) unless each is one of :data:`BASELINES`."""
    baselines = tuple(baselines)
    if not set(baselines) <= set(BASELINES):
        raise ConfigError(f"{what}: choose among {', '.join(BASELINES)}, got {', '.join(baselines)}")
    return baselines


def _check_options(betas, default_beta, max_param_ratio: float, twins: str) -> tuple[list[float], float | None]:
    betas = [float(b) for b in betas]
    if not betas:
        raise ConfigError("betas: give at least one value")
    default_beta = float(default_beta) if default_beta is not None else None
    if default_beta is not None and default_beta not in betas:
        raise ConfigError(f"default beta {default_beta} is not among --betas {betas}")
    if not 0.0 < max_param_ratio <= 1.0:
        raise ConfigError(f"max_param_ratio must be in (0, 1], got {max_param_ratio}")
    if twins not in ("all", "default", "none"):
        raise ConfigError(f"twins: expected all, default or none, got {twins!r}")
    return betas, default_beta


@dataclass
class _Pipeline:
    """What the stages of :func:`run_pipeline` share: settings, the teacher and its cache,
    the searched architectures and the seconds each stage took."""

    scene: Scene
    out: Path
    scfg: SearchConfig
    dcfg: DistillConfig
    seeds: int
    devices: tuple
    batches: tuple
    reuse: bool
    log: Callable[[str], None]
    pool: Pool
    exclude_seen: bool = False
    dropout_grid: tuple = ()
    stages: dict = field(default_factory=dict)
    teacher_path: Path | None = None
    teacher_model: SeqRecModel | None = None
    teacher_metrics: dict = field(default_factory=dict)
    cache: TeacherCache | None = None
    archs: dict = field(default_factory=dict)
    students: dict = field(default_factory=dict)
    default_beta: float | None = None
    baseline_dirs: dict = field(default_factory=dict)
    dropouts: dict = field(default_factory=dict)  # beta -> chosen dropout, with a dropout_grid
    dropout_valid: dict = field(default_factory=dict)  # beta -> {dropout: the twin's validation NDCG@10}

    def settings(self, teacher, teacher_train: TrainConfig | None, max_param_ratio: float) -> dict:
        """What a resumed run must share with the run it continues (``settings.json``)."""
        # the teacher by content (a moved copy resumes, another model of the same shape does not)
        identity = model_digest(load_checkpoint(teacher, scene=self.scene, what="--teacher")[0]) if teacher else None
        return {"dataset": self.scene.name, "teacher": identity, "teacher_path": str(teacher) if teacher else None,
                "teacher_train": dataclasses.asdict(teacher_train) if teacher_train else None,
                "search": self.scfg.to_dict(), "distill": dataclasses.asdict(self.dcfg), "max_param_ratio": max_param_ratio,
                **({"exclude_seen": True} if self.exclude_seen else {}),
                **({"dropouts": list(self.dropout_grid)} if self.dropout_grid else {})}

    def stage(self, name: str, t0: float | None = None, seconds: float | None = None) -> None:
        """Add the seconds since ``t0`` (or ``seconds``, a piece's own) to stage ``name``."""
        seconds = time.perf_counter() - t0 if seconds is None else seconds
        self.stages[name] = round(self.stages.get(name, 0.0) + seconds, 2)
        self.log(f"[adarec {self.scene.name}] {name}: {self.stages[name]:.1f}s")

    # 1. the teacher: trained unless given, evaluated, measured; then run once per training window
    def prepare_teacher(self, teacher: str | Path | None, teacher_train: TrainConfig | None) -> None:
        t0 = time.perf_counter()
        device = resolve_device(self.dcfg.train.device)
        self.teacher_path = Path(teacher) if teacher is not None else self.out / "teacher" / "model.pt"
        if teacher is None and not (self.reuse and self.teacher_path.exists()):
            tcfg = teacher_train or dataclasses.replace(self.dcfg.train, **TEACHER_TRAIN)
            # validated as everything else here is measured (masked under exclude_seen)
            train_and_report(self.scene, "nextitnet", dict(TEACHER_CONFIG), tcfg, self.out / "teacher",
                             exclude_seen=self.exclude_seen, resume=self.reuse)
        self.teacher_model, meta = load_checkpoint(self.teacher_path, device=str(device), scene=self.scene, what="--teacher")
        self.stage("teacher", t0)
        t0 = time.perf_counter()
        self.teacher_metrics = self._teacher_metrics(meta)
        self.teacher_model.to(device)
        self.stage("teacher_eval_and_latency", t0)
        t0 = time.perf_counter()
        self.cache = TeacherCache(self.teacher_model, train_windows(self.scene, self.scfg.max_len), device=device)
        self.stage("teacher_cache", t0)
        self.log(f"[adarec {self.scene.name}] teacher cache: {self.cache.windows_computed} windows, "
                 f"{self.cache.nbytes() / 2**20:.0f} MiB")

    def _teacher_metrics(self, meta: dict) -> dict:
        path = self.out / "teacher_metrics.json"
        if self.reuse and path.exists():
            tm = json.loads(path.read_text())
            tm["flops"] = model_flops(self.teacher_model)
        else:
            trained = (meta.get("extra") or {}).get("metrics", {})
            scores = evaluate_and_measure(self.teacher_model, self.scene, measured(self.exclude_seen),
                                          (self.devices, self.batches))
            tm = {"test": scores["test"], "test_sampled100": scores["test_sampled100"], "valid": scores["valid"],
                  **{k: v for k, v in scores.items() if k.startswith(COST_KEYS)}, "seed": trained.get("seed"),
                  "train_seconds": trained.get("train_seconds", float("nan")), "epochs": None}
        write_json(path, tm)
        return tm

    # 2. one search per beta, all in one wave
    def search_all(self, betas: list[float]) -> None:
        shared = {"scene": self.scene, "cache": self.cache, "scfg": self.scfg, "out": self.out, "reuse": self.reuse}
        for beta, (arch, seconds) in zip(betas, self.pool.map(_search_piece, betas, shared)):
            self.archs[beta] = arch
            self.stage(f"search_beta_{beta:g}", seconds=seconds)
            self.log(f"[adarec {self.scene.name}] beta={beta:g}: {arch.signature()} ({arch.params(self.scfg.width)} cell params)")

    # 2b. with a dropout grid: each beta's twin (first seed) at every dropout, all in one wave;
    #     the best on validation is that beta's dropout, for its students and its twins
    def choose_dropouts(self, betas: list[float]) -> None:
        """Instead of ``DistillConfig.dropout``: each beta's no-teacher twin trains at every
        dropout of the grid (first seed, ``students/beta_*/no_kd_dropout_*``), and the best
        validation NDCG@10 (ties: the smaller dropout) is given to its distilled students and
        its twins. The twin is then the strongest plain model of that architecture, so what
        distillation buys is not the twin overfitting."""
        if not self.dropout_grid:
            return
        seed = self.dcfg.train.seed
        groups = [(f"dropout_beta_{beta:g}_{d:g}",
                   [Distillation(self.student_dir(beta, False).with_name(f"no_kd_dropout_{d:g}"), seed, False,
                                 architecture=self.archs[beta], dropout=d)])
                  for beta in betas for d in self.dropout_grid]
        twins = self.distil(groups)
        for beta in betas:
            valid = {d: twins[f"dropout_beta_{beta:g}_{d:g}"]["valid"]["NDCG@10"] for d in self.dropout_grid}
            self.dropouts[beta] = max(self.dropout_grid, key=lambda d: (valid[d], -d))
            self.dropout_valid[beta] = valid
            self.log(f"[adarec {self.scene.name}] beta={beta:g}: dropout {self.dropouts[beta]:g}, the twin's best "
                     f"validation NDCG@10 ({', '.join(f'{d:g}: {v:.4f}' for d, v in valid.items())})")

    # 3. students with and without the teacher, per seed; the default beta, unless given,
    #    is chosen on validation among the students small enough (see choose_default_beta)
    def distil(self, groups: list[tuple[str, list[Distillation]]]) -> dict:
        """Every seed of every group in one wave; ``{stage name: row over the seeds}``."""
        shared = {"scene": self.scene, "cache": self.cache, "dcfg": self.dcfg, "max_len": self.scfg.max_len,
                  "devices": self.devices, "batches": self.batches, "reuse": self.reuse, "exclude_seen": self.exclude_seen}
        jobs = [job for _, group in groups for job in group]
        results = iter(self.pool.map(_distil_piece, jobs, shared))
        out = {}
        for name, group in groups:
            runs = [next(results) for _ in group]
            self.stage(name, seconds=sum(seconds for _, seconds in runs))
            out[name] = mean_over_seeds([metrics for metrics, _ in runs])
        return out

    def seeds_of(self, run_dir: Path, use_teacher: bool, **model) -> list[Distillation]:
        """One :class:`Distillation` per seed (``run_dir/seed_<seed>``)."""
        return [Distillation(run_dir, self.dcfg.train.seed + s, use_teacher, **model) for s in range(self.seeds)]

    def student_dir(self, beta: float, use_teacher: bool) -> Path:
        return student_folder(self.out, beta, use_teacher)

    def student_runs(self, beta: float, use_teacher: bool) -> tuple[str, list[Distillation]]:
        name = f"{'student' if use_teacher else 'student_no_kd'}_beta_{beta:g}"
        return name, self.seeds_of(self.student_dir(beta, use_teacher), use_teacher, architecture=self.archs[beta],
                                   dropout=self.dropouts.get(beta))

    def log_student(self, beta: float, use_teacher: bool, agg: dict) -> None:
        self.log(f"[adarec {self.scene.name}] student-beta{beta:g}{'' if use_teacher else '-no-kd'}: NDCG@10 "
                 f"{agg['test']['NDCG@10']:.4f} ± {agg['test']['NDCG@10_std']:.4f} (valid {agg['valid']['NDCG@10']:.4f})")

    def student_rows(self, betas: list[float], default_beta: float | None, max_param_ratio: float,
                     twins: str, baselines: tuple[str, ...]) -> tuple[list[dict], float]:
        """The teacher's row, then each beta's student (and its no-teacher twin), then the baseline(s)."""
        tm = self.teacher_metrics
        rows = [_row(f"{self.teacher_model.name}-teacher", "teacher", None, False, None, {
            **{k: v for k, v in tm.items() if k.startswith(COST_KEYS)},
            "test": {**tm["test"], **{f"{k}_std": 0.0 for k in tm["test"]}}, "test_sampled100": tm["test_sampled100"],
            "seeds": [tm.get("seed")], "train_seconds": tm.get("train_seconds"), "epochs": []})]
        kd = self.distil([self.student_runs(beta, True) for beta in betas])
        self.students = {beta: kd[f"student_beta_{beta:g}"] for beta in betas}
        for beta in betas:
            self.log_student(beta, True, self.students[beta])
        if default_beta is None:
            default_beta = choose_default_beta(self.students, tm["params_no_embedding"], max_param_ratio)
            self.log(f"[adarec {self.scene.name}] default beta {default_beta:g}: best validation NDCG@10 among students "
                     f"with <= {max_param_ratio:g} of the teacher's non-embedding parameters")
        self.default_beta = default_beta
        twin_betas = {"all": betas, "default": [default_beta], "none": []}[twins]
        baselines = self.baseline_runs(twins, baselines) if baselines else []
        last = self.distil([self.student_runs(beta, False) for beta in twin_betas] + [(n, g) for n, g, _ in baselines])
        for beta in twin_betas:
            self.log_student(beta, False, last[f"student_no_kd_beta_{beta:g}"])
        for beta in betas:
            arch_path = str(self.out / "search" / f"beta_{beta:g}" / "architecture.json")
            dropout = {"dropout": self.dropouts.get(beta, self.dcfg.dropout)}
            rows.append(_row(f"student-beta{beta:g}", "student", beta, beta == default_beta, arch_path,
                             {**self.students[beta], **dropout}))
            if beta in twin_betas:
                rows.append(_row(f"student-beta{beta:g}-no-kd", "student_no_kd", beta, beta == default_beta, arch_path,
                                 {**last[f"student_no_kd_beta_{beta:g}"], **dropout}))
        for name, _, label in baselines:
            agg = last[name]
            rows.append(_row(label, name, None, False, None, agg))
            self.log(f"[adarec {self.scene.name}] {label}: NDCG@10 {agg['test']['NDCG@10']:.4f}")
        return rows, default_beta

    # 4. a hand-made NextItNet and SASRec of the default student's size, same KD (and, with every twin,
    #    the NextItNet without)
    def baseline_runs(self, twins: str, kinds: tuple[str, ...]) -> list[tuple[str, list[Distillation], str]]:
        """``(role, seeds, row name)`` of the baselines of ``kinds`` and, with every twin, the NextItNet's
        no-teacher twin."""
        target = self.students[self.default_beta]["params_no_embedding"]
        scfg = sasrec_baseline_config(target, self.dcfg.width)
        shape = f"{scfg['num_layers']}x{scfg['hidden_size']}-ff{scfg['inner_size']}"
        self.baseline_dirs["baseline_sasrec"] = self.out / "baseline" / f"sasrec-{shape}"
        sasrec = ("baseline_sasrec", self.seeds_of(self.baseline_dirs["baseline_sasrec"], True, baseline=scfg),
                  f"sasrec-small-kd-{shape}")
        bcfg = baseline_config(target, self.dcfg.width)
        blocks = f"{bcfg['num_blocks'] * len(bcfg['dilations'])}blocks"
        out = []
        for kd in (True, False) if twins == "all" else (True,):  # does the teacher help a hand-made conv student too?
            run_dir = self.out / "baseline" / (blocks if kd else f"{blocks}-no-kd")  # keyed by size: reuse never mixes sizes
            self.baseline_dirs["baseline" if kd else "baseline_no_kd"] = run_dir
            out.append(("baseline" if kd else "baseline_no_kd", self.seeds_of(run_dir, kd, baseline=bcfg),
                        f"nextitnet-small-kd-{blocks}" if kd else f"nextitnet-small-{blocks}-no-kd"))
        return [run for run in (out[0], sasrec, *out[1:]) if ("sasrec" if run[0] == "baseline_sasrec" else "nextitnet") in kinds]

    # 5. the default student against its twin and each baseline, paired over the test users
    def comparisons(self, rows: list[dict]) -> dict:
        """``{role: paired_difference(default student, role)}`` for the default beta's twin and
        the baselines whose every seed left a ``model.pt`` here (a remote pool may keep them)."""
        t0 = time.perf_counter()
        dirs = {"student_no_kd": self.student_dir(self.default_beta, False), **self.baseline_dirs}
        present = {r["role"] for r in rows}
        student = self.seed_ranks(self.student_dir(self.default_beta, True))
        out = {}
        for role, run_dir in dirs.items():
            other = self.seed_ranks(run_dir) if role in present else None
            if student is not None and other is not None:
                out[role] = paired_difference(student, other)
        self.stage("comparisons", t0)
        return out

    def seed_ranks(self, run_dir: Path) -> list | None:
        """The test ranks of each seed's model in ``run_dir`` (None if one is missing)."""
        paths = [run_dir / f"seed_{self.dcfg.train.seed + s}" / "model.pt" for s in range(self.seeds)]
        if not all(p.exists() for p in paths):
            return None
        return [user_ranks(load_checkpoint(p)[0], self.scene, "test", measured(self.exclude_seen), max_len=self.scfg.max_len)
                for p in paths]

    def summary(self, rows: list[dict], betas: list[float], default_beta: float, twins: str) -> dict:
        scene, dcfg = self.scene, self.dcfg
        return {
            "rows": rows,
            "scene": {k: (float(v) if isinstance(v, (int, float, np.number)) else str(v)) for k, v in scene.describe().items()},
            "dataset": scene.name,
            "protocol": "full ranking (test_sampled100: 100 sampled negatives)",
            "exclude_seen": self.exclude_seen,
            "teacher": str(self.teacher_path),
            "betas": betas,
            "default_beta": default_beta,
            "architectures": {f"{b:g}": self.archs[b].signature() for b in betas},
            "dropouts": {f"{b:g}": self.dropouts.get(b, self.dcfg.dropout) for b in betas},
            **({"dropout_valid": {f"{b:g}": {f"{d:g}": v for d, v in self.dropout_valid[b].items()} for b in betas}}
               if self.dropout_valid else {}),
            "stages_seconds": self.stages,
            "hardware": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                         "torch_threads": torch.get_num_threads(),
                         "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
            "settings": {"search": self.scfg.to_dict(),
                         "distill": {**{k: v for k, v in dataclasses.asdict(dcfg).items() if k != "train"},
                                     "train": dataclasses.asdict(dcfg.train)}, "seeds": self.seeds, "twins": twins},
        }


# settings that change no finished piece: where it runs, how it reports, how long a run may take
_FREE_SETTINGS = ("device", "progress", "cost_device", "cache_dir", "teacher_path")


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def check_resume_settings(path: Path, settings: dict, reuse: bool) -> None:
    """A resumed run (a pipeline, ``recnb distill``) reuses what is on disk, so it must run with
    the settings that made it: changed ones are refused by name (start over with --force, or
    keep them). Then ``settings`` is written to ``path``."""
    settings = json.loads(json.dumps(settings))  # tuples -> lists, as read back
    if reuse and path.exists():
        # a distillation setting missing from an older run counts as saved at its default
        defaults = _flat(json.loads(json.dumps({"distill": dataclasses.asdict(DistillConfig())})))
        saved = {**defaults, **_flat(json.loads(path.read_text()))}
        changed = changed_settings(saved, _flat(settings), _FREE_SETTINGS)
        if changed:
            raise ConfigError(f"--resume: {path.parent} was run with other settings ({', '.join(changed)}); "
                              "resume with the same ones or start over with --force")
    write_json(path, settings)


__all__ = [
    "TEACHER_CONFIG",
    "TEACHER_TRAIN",
    "DistillConfig",
    "Distillation",
    "InProcess",
    "Pool",
    "baseline_config",
    "build_student",
    "check_baselines",
    "check_resume_settings",
    "choose_default_beta",
    "distillation_loss",
    "load_summary",
    "run_pipeline",
    "sasrec_baseline_config",
    "summary_frame",
    "train_model",
]
