"""Serve a recnb model without recnb: ONNX or TorchScript graphs that answer top-k.

:class:`ScoringHead` wraps any recnb model (the four base models, an AdaRec ``student``,
a DLLM2Rec ``dllm2rec_student``) into a graph that takes a batch of left-padded histories
``(B, max_len)`` int64 (recnb item ids, 0 = padding, the most recent item last) and returns
either the top-k ``(item_ids, scores)`` or the full score vector. The batch axis is dynamic;
the length axis is fixed at the model's ``max_len``, because left padding is part of what the
models saw in training (SASRec's positions count slots of the window, a convolution's
padded positions carry states), so a shorter input would change the scores. Only the last
position is scored, and a DLLM2Rec student's summed item table is computed once at export
instead of on every call. :func:`export` writes the graph and, beside it, an id map
(``<file>.json``) so a server turns raw ids into recnb ids and back without recnb.

ONNX goes through ``torch.onnx.export``: the dynamo exporter first, the TorchScript-based
one where dynamo fails (AdaRec's single-head attention op is 3-D, which dynamo's
attention translation refuses); every file is checked with ``onnx.checker``, loaded by
onnxruntime and compared with the eager model on a batch of another size before it counts,
and the id map records which exporter made it.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import sys
import warnings
from pathlib import Path

import torch
from torch import nn

from recnb.errors import ConfigError, DataError
from recnb.files import check_writable, file_digest, json_digest, write_json_atomic
from recnb.models.base import SeqRecModel

FORMATS = ("onnx", "torchscript")
OUTPUTS = ("topk", "scores")
QUANTIZE = ("int8",)
FORMAT = "recnb-export/1"
INPUT = "history"
OUTPUT_NAMES = {"topk": ("item_ids", "scores"), "scores": ("scores",)}
OPSET = 18
PARITY_RTOL = 1e-4


def require(module: str, extra: str = "export"):
    """Import an optional dependency or say in one line which extra installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"{module} is not installed; install the '{extra}' extra: pip install 'recnb[{extra}]'") from None


def check_k(k: int, num_items: int, what: str = "--top-k") -> int:
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= num_items:
        raise ConfigError(f"{what}: must be between 1 and {num_items} (the catalogue), got {k!r}")
    return k


def inference_copy(model: SeqRecModel) -> SeqRecModel:
    """An eval-mode copy on CPU whose item table is a plain embedding: a DLLM2Rec student's
    ``collab + w * P(teacher)`` is summed here once, not on every call."""
    model = copy.deepcopy(model).cpu().eval()
    dllm2rec = sys.modules.get("recnb.dllm2rec.pipeline")  # loaded whenever such a model exists
    if dllm2rec is not None:
        for parent in list(model.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, dllm2rec.SummedItemEmbedding):
                    table = child.weight.detach().clone()
                    setattr(parent, name, nn.Embedding.from_pretrained(table, freeze=True, padding_idx=0))
    for p in model.parameters():
        p.requires_grad_(False)
    return model


class ScoringHead(nn.Module):
    """``history (B, max_len) int64 -> (item_ids (B, k) int64, scores (B, k))`` or
    ``scores (B, num_items + 1)``; padding (id 0) is never recommended (score ``-inf``), and
    with ``exclude_seen`` neither is any item of the input window."""

    def __init__(self, model: SeqRecModel, output: str = "topk", k: int = 10, exclude_seen: bool = False):
        super().__init__()
        if output not in OUTPUTS:
            raise ConfigError(f"--output: expected one of {', '.join(OUTPUTS)}, got {output!r}")
        self.model = inference_copy(model)
        self.output, self.exclude_seen = output, bool(exclude_seen)
        self.num_items, self.max_len, self.name = model.config.num_items, model.config.max_len, model.name
        self.k = check_k(k, self.num_items) if output == "topk" else None
        pad = torch.zeros(self.num_items + 1)
        pad[0] = float("-inf")
        self.register_buffer("pad", pad)

    def forward(self, history: torch.Tensor):
        scores = self.model.score(self.model.output(history)[:, -1])  # the last position only
        if self.exclude_seen:
            scores = scores.scatter(1, history, float("-inf"))
        if self.output == "scores":
            return scores + self.pad
        values, ids = scores[:, 1:].topk(self.k, dim=1)  # column 0 is padding: never a candidate
        return ids + 1, values

    def example(self, batch: int = 2, seed: int = 0) -> torch.Tensor:
        """Left-padded random histories of varied lengths (what the graph is traced on)."""
        g = torch.Generator().manual_seed(seed)
        seq = torch.randint(1, self.num_items + 1, (batch, self.max_len), generator=g)
        lengths = torch.randint(1, self.max_len + 1, (batch, 1), generator=g)
        return seq.masked_fill(torch.arange(self.max_len) < self.max_len - lengths, 0)


# ----------------------------------------------------------------------------- parity
def compare(head: ScoringHead, got, history: torch.Tensor, rtol: float = PARITY_RTOL) -> float:
    """Largest relative score difference between ``got`` (outputs of an exported graph as
    arrays or tensors) and the eager head on ``history``; raises if top-k ids differ where
    the eager scores are not tied."""
    with torch.no_grad():
        want = head(history)
    want = want if isinstance(want, tuple) else (want,)
    got = tuple(torch.as_tensor(g) for g in (got if isinstance(got, (tuple, list)) else (got,)))
    s_want, s_got = want[-1].float(), got[-1].float()
    finite = torch.isfinite(s_want)
    if s_got.shape != s_want.shape or not torch.equal(finite, torch.isfinite(s_got)):
        raise ValueError(f"exported scores have shape {tuple(s_got.shape)} or -inf where eager's {tuple(s_want.shape)} differ")
    scale = s_want[finite].abs().max().clamp_min(1e-12) if finite.any() else torch.tensor(1.0)
    err = float(((s_got - s_want)[finite].abs().max() / scale) if finite.any() else 0.0)
    if err > rtol:
        raise ValueError(f"exported scores differ from eager by {err:.2e} (relative), more than {rtol:g}")
    if head.output == "topk":
        ids_want, ids_got = want[0], got[0]
        gaps = (s_want[:, :-1] - s_want[:, 1:]).abs()
        tied = torch.zeros_like(ids_want, dtype=torch.bool)  # an item whose score equals a neighbour's
        tied[:, :-1] |= gaps <= rtol * scale
        tied[:, 1:] |= gaps <= rtol * scale
        if not torch.equal(ids_want[~tied], ids_got[~tied]):
            raise ValueError("exported top-k ids differ from eager where scores are not tied")
    return err


# ----------------------------------------------------------------------------- writers
@contextlib.contextmanager
def _quiet():
    """The exporters print progress and warnings meant for their developers."""
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(logging.NOTSET)


def onnx_session(path: str | Path, threads: int | None = None):
    ort = require("onnxruntime")
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _onnx_once(head: ScoringHead, path: Path, exporter: str) -> None:
    names = OUTPUT_NAMES[head.output]
    example = head.example(2)
    with _quiet():
        if exporter == "dynamo":
            torch.onnx.export(head, (example,), str(path), input_names=[INPUT], output_names=list(names), dynamo=True,
                              dynamic_shapes=({0: torch.export.Dim("batch", min=1)},), opset_version=OPSET,
                              external_data=False)
        else:
            axes = {n: {0: "batch"} for n in (INPUT, *names)}
            torch.onnx.export(head, (example,), str(path), input_names=[INPUT], output_names=list(names), dynamo=False,
                              dynamic_axes=axes, opset_version=17)
    onnx = require("onnx")
    onnx.checker.check_model(str(path))
    probe = head.example(5, seed=1)  # another batch size than the traced one
    compare(head, onnx_session(path).run(None, {INPUT: probe.numpy()}), probe)


def write_onnx(head: ScoringHead, path: str | Path) -> str:
    """Write ``head`` as ONNX, checked and verified; returns the exporter that worked."""
    require("onnx")
    require("onnxruntime")
    require("onnxscript")
    path = Path(path)
    reasons = []
    for exporter in ("dynamo", "torchscript"):
        try:
            _onnx_once(head, path, exporter)
            return exporter
        except ConfigError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure of one exporter means: try the next
            reasons.append(f"{exporter}: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}")
    path.unlink(missing_ok=True)
    raise ConfigError(f"{head.name}: no ONNX exporter could export it ({'; '.join(reasons)})")


def write_torchscript(head: ScoringHead, path: str | Path) -> str:
    """Trace ``head`` with ``torch.jit.trace`` (batch size stays free), verify, save."""
    with _quiet():
        traced = torch.jit.trace(head, (head.example(2),), check_trace=False)
    probe = head.example(5, seed=1)
    with torch.no_grad():
        compare(head, traced(probe), probe)
    with _quiet():
        torch.jit.save(traced, str(path))
    return "torch.jit.trace"


def quantize_int8(src: str | Path, dst: str | Path) -> None:
    """Dynamic int8 quantisation of every MatMul/Gemm weight (activations stay float)."""
    q = require("onnxruntime.quantization")
    with _quiet():
        q.quantize_dynamic(str(src), str(dst), weight_type=q.QuantType.QInt8)


# ----------------------------------------------------------------------------- the whole export
def idmap_path(path: str | Path) -> Path:
    """``model.onnx`` -> ``model.onnx.json`` (one map per graph, even beside a TorchScript twin)."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def _check_options(path: Path, format: str, quantize: str | None, force: bool) -> Path:
    """Refuse unknown formats, int8 outside ONNX and files that would be overwritten; the id map's path."""
    if format not in FORMATS:
        raise ConfigError(f"--format: expected one of {', '.join(FORMATS)}, got {format!r}")
    if quantize is not None and quantize not in QUANTIZE:
        raise ConfigError(f"--quantize: expected one of {', '.join(QUANTIZE)}, got {quantize!r}")
    if quantize and format != "onnx":
        raise ConfigError("--quantize int8 applies to --format onnx only")
    meta_path = idmap_path(path)
    for p in (path, meta_path):
        if p.exists() and not force:
            raise ConfigError(f"--out {p}: exists; pass --force to overwrite")
    return meta_path


def _item_ids(id_maps: dict, num_items: int) -> list[str]:
    """Raw item id per recnb id (index 0: padding); the recnb ids themselves without id maps."""
    item_ids = list(id_maps.get("item_ids") or ["<pad>"] + [str(i) for i in range(1, num_items + 1)])
    if len(item_ids) != num_items + 1:
        raise ConfigError(f"id maps hold {len(item_ids) - 1} items, the model {num_items}")
    return [str(i) for i in item_ids]


def _write_graph(head: ScoringHead, path: Path, format: str, quantize: str | None) -> str:
    """Write the verified graph (int8: through a float ONNX twin that is removed); the exporter used."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if format != "onnx":
        return write_torchscript(head, path)
    if not quantize:
        return write_onnx(head, path)
    fp32 = path.with_name(path.stem + ".fp32.tmp.onnx")
    exporter = write_onnx(head, fp32)
    try:
        quantize_int8(fp32, path)
    finally:
        fp32.unlink(missing_ok=True)
    return exporter


def _idmap(head: ScoringHead, path: Path, format: str, exporter: str, quantize: str | None, dataset: str | None,
           item_ids: list[str], titles) -> dict:
    """What a server needs beside the graph: its input and outputs, and the ids to map."""
    return {
        "format": FORMAT,
        "file": path.name,
        "graph": format,
        "exporter": exporter,
        "opset": OPSET if exporter == "dynamo" else (17 if format == "onnx" else None),
        "quantized": quantize,
        "model": head.name,
        "dataset": dataset,
        "num_items": head.num_items,
        "max_len": head.max_len,
        "input": {"name": INPUT, "dtype": "int64", "shape": ["batch", head.max_len],
                  "padding": "left, with 0; the most recent item last; longer histories keep their last max_len items"},
        "output": head.output,
        "outputs": list(OUTPUT_NAMES[head.output]),
        "k": head.k,
        "exclude_seen": head.exclude_seen,
        "item_ids": item_ids,
        "titles": titles,
    }


def export(
    model: SeqRecModel,
    path: str | Path,
    format: str = "onnx",
    output: str = "topk",
    k: int = 10,
    exclude_seen: bool = False,
    quantize: str | None = None,
    id_maps: dict | None = None,
    dataset: str | None = None,
    force: bool = False,
) -> dict:
    """Write ``model`` as a serving graph at ``path`` and its id map beside it; returns the id
    map's content. ``id_maps`` are a checkpoint's (``item_ids``, ``titles``); without them
    raw ids are the recnb ids. Refuses to overwrite either file unless ``force``; every
    check runs before anything is written."""
    path = Path(path)
    meta_path = _check_options(path, format, quantize, force)
    head = ScoringHead(model, output, k, exclude_seen)
    maps = id_maps or {}
    item_ids = _item_ids(maps, head.num_items)
    check_writable(path)  # last of the checks (it creates the folder): a folder without permission is said so
    exporter = _write_graph(head, path, format, quantize)
    info = _idmap(head, path, format, exporter, quantize, dataset, item_ids, maps.get("titles"))
    info["graph_sha256"] = file_digest(path)  # the graph it maps; load_idmap checks both
    info["digest"] = json_digest(info)
    write_json_atomic(meta_path, info, indent=None)
    return info


def load_idmap(path: str | Path) -> dict:
    """The id map written beside an exported graph (``path`` is the graph or the map)."""
    path = Path(path)
    meta = path if path.suffix == ".json" else idmap_path(path)
    if not meta.exists():
        raise ConfigError(f"{meta}: no id map beside the exported graph")
    try:
        info = json.loads(meta.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        info = None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise ConfigError(f"{meta}: not a recnb export id map")
    if "digest" in info and info["digest"] != json_digest(info):
        raise DataError(f"{meta}: fails its integrity check (its content no longer matches the digest written with it: "
                        "a damaged or edited id map); export again")
    graph = meta.with_name(str(info.get("file", "")))
    if info.get("graph_sha256") and graph.is_file() and file_digest(graph) != info["graph_sha256"]:
        raise DataError(f"{graph}: fails its integrity check (its SHA-256 differs from the one in {meta.name}: a "
                        "damaged or replaced graph); export again")
    return info


class Exported:
    """An exported graph with its id map, called like the head: ``Exported(path)(history)``
    returns numpy arrays (what a server holds, shown in Python for tests and notebooks)."""

    def __init__(self, path: str | Path, threads: int | None = None):
        self.path = Path(path)
        self.info = load_idmap(self.path)
        if self.info["graph"] == "onnx":
            self.session = onnx_session(self.path, threads)
            self.run = lambda history: self.session.run(None, {INPUT: history})
        else:
            with _quiet():
                module = torch.jit.load(str(self.path), map_location="cpu")

            def run(history):
                with torch.no_grad():
                    out = module(torch.as_tensor(history))
                return [t.numpy() for t in (out if isinstance(out, tuple) else (out,))]

            self.run = run

    def __call__(self, history) -> list:
        return self.run(torch.as_tensor(history, dtype=torch.long).numpy())


__all__ = [
    "FORMATS",
    "OUTPUTS",
    "Exported",
    "ScoringHead",
    "compare",
    "export",
    "idmap_path",
    "inference_copy",
    "load_idmap",
    "onnx_session",
    "quantize_int8",
    "write_onnx",
    "write_torchscript",
]
