"""Checkpoints and the other torch files recnb writes: saved atomically with a digest of their
content, read without running code, refused in one line when damaged, misfit or not finite.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import re
from pathlib import Path

import numpy as np
import torch

from recnb.data import Scene
from recnb.errors import ConfigError, DataError
from recnb.files import atomic_write
from recnb.models import SeqRecModel, model_class

CHECKPOINT_FORMAT = 1


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: CUDA is not available on this machine")
    try:
        return torch.device(device)
    except RuntimeError:
        raise ConfigError(f"--device: unknown device {device!r} (use auto, cpu or cuda)") from None

def all_finite(tensors) -> bool:
    """True when no tensor holds a NaN or an infinity (one reduction per tensor)."""
    return all(bool(torch.isfinite(t).all()) for t in tensors)


def write_torch_file(path: str | Path, payload: dict) -> Path:
    """``torch.save`` of ``payload`` with its digest (:func:`payload_digest`) under
    ``"digest"``, written atomically: :func:`read_torch_file` refuses a file whose content no
    longer matches it (a flipped bit in a weight would otherwise score slightly differently)."""
    payload = {**payload, "digest": payload_digest(payload)}
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def payload_digest(value) -> str:
    """SHA-256 over a nested payload of dicts, lists, tensors and plain values: every tensor's
    dtype, shape and bytes, every other value's repr, keys in order (the key "digest" left out)."""
    h = hashlib.sha256()

    def feed(v):
        if isinstance(v, torch.Tensor):
            t = v.detach().cpu().contiguous()
            h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        elif isinstance(v, dict):
            h.update(b"{")
            for k in sorted(v, key=str):
                if k != "digest":
                    h.update(repr(k).encode())
                    feed(v[k])
            h.update(b"}")
        elif isinstance(v, (list, tuple)):
            h.update(b"[")
            for x in v:
                feed(x)
            h.update(b"]")
        else:
            h.update(repr(v).encode())

    feed(value)
    return h.hexdigest()


def model_digest(model) -> str:
    """A model's identity by content: SHA-256 of its name, config and weights (the same for the
    model in memory and the checkpoint it came from, whatever the file's path or metadata).
    Resumable states record their teacher's, so a resume with another teacher is refused."""
    return payload_digest({"model": model.name, "config": model.config.to_dict(),
                           "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}})


def read_torch_file(path: str | Path, what: str = "recnb checkpoint"):
    """``torch.load`` of a file recnb wrote, on CPU, with ``weights_only=True``: tensors and
    plain values (dict, list, str, numbers, numpy scalars) only, so a crafted file cannot run
    code while it is read. A missing, unreadable or code-carrying file is one ``DataError``
    line naming it, never a pickle traceback; so is a file whose digest (written by
    :func:`write_torch_file`) no longer matches its content."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such {what.removeprefix('recnb ')}")
    try:
        with torch.serialization.safe_globals(_NUMPY_SCALARS):
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        needs = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if needs is None:  # not a pickle of plain values at all
            raise DataError(f"{path}: not a {what} (unreadable as one)") from None
        raise DataError(f"{path}: refused to load as a {what}: it asks to import {needs.group(1)} (files are read "
                        "with weights_only, so a file cannot run code)") from None
    except OSError as exc:  # permissions, a folder: say so, not "not a checkpoint"
        raise DataError(f"{path}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same one-line error
        raise DataError(f"{path}: not a {what} ({type(exc).__name__})") from None
    if isinstance(payload, dict) and "digest" in payload and payload["digest"] != payload_digest(payload):
        raise DataError(f"{path}: fails its integrity check (its content no longer matches the digest written with it: "
                        "a damaged or edited file); use another copy or train again")
    return payload


# numpy scalars and dtypes are data: metrics computed with numpy may hold them
_NUMPY_SCALARS = [np._core.multiarray.scalar if hasattr(np, "_core") else np.core.multiarray.scalar, np.dtype,
                  *(type(np.dtype(t)) for t in ("float64", "float32", "int64", "int32", "bool"))]

def changed_settings(saved: dict, now: dict, free=()) -> list[str]:
    """Names whose value differs between ``saved`` and ``now`` (either side may lack one),
    except those in ``free`` (a dotted name counts by its last part): what a resume refuses."""
    return sorted(k for k in saved.keys() | now.keys()
                  if k not in free and k.rsplit(".", 1)[-1] not in free and saved.get(k) != now.get(k))

def save_checkpoint(path: str | Path, model: SeqRecModel, scene: Scene | None = None, extra: dict | None = None) -> Path:
    """One file with model name, config, weights and the scene's id maps."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "model": model.name,
        "config": model.config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "dataset": scene.name if scene else None,
        "id_maps": scene.id_maps() if scene else None,
        "scene": dict(scene.meta) if scene else None,  # how it was built (source, kcore): rebuilt the same way
        "extra": extra or {},
    }
    return write_torch_file(path, payload)  # never a half-written checkpoint, and its digest inside


def load_checkpoint(path: str | Path, device: str = "cpu", scene: Scene | None = None,
                    what: str = "--model") -> tuple[SeqRecModel, dict]:
    """A ready model (eval mode) and the checkpoint's metadata (dataset, id maps, scene
    settings, extra). With ``scene``, a model trained on other items is refused
    (:func:`check_compatible`): every command that takes a checkpoint passes its scene."""
    model, meta = model_from_checkpoint(read_torch_file(path), path, device)
    if scene is not None:
        check_compatible(model, meta, scene, path, what)
    return model, meta


def check_compatible(model: SeqRecModel, meta: dict, scene: Scene, path, what: str = "--model") -> None:
    """The checkpoint's item ids must be the scene's, or every score is meaningless."""
    maps = meta.get("id_maps") or {}
    if maps.get("item_ids") and list(maps["item_ids"]) != list(scene.item_ids):
        built = (meta.get("scene") or {}).get("kcore")
        hint = f" (it was built with kcore {built})" if built else ""
        raise ConfigError(f"{what} {path}: trained on '{meta.get('dataset')}'{hint}, whose item ids differ from "
                          f"scene '{scene.name}'")
    if model.config.num_items != scene.num_items:
        raise ConfigError(f"{what} {path}: has {model.config.num_items} items, scene '{scene.name}' has {scene.num_items}")


def model_from_checkpoint(payload, path: str | Path, device: str = "cpu", cls=None) -> tuple[SeqRecModel, dict]:
    """The model and metadata held by a checkpoint already read (``read_torch_file``);
    ``cls`` overrides the registry lookup of ``payload["model"]`` (models defined outside
    ``recnb.models``)."""
    if not isinstance(payload, dict) or "model" not in payload or "state_dict" not in payload:
        raise DataError(f"{path}: not a recnb checkpoint (no model name or weights)")
    cls = cls or model_class(payload["model"])
    model = cls(cls.config_class.from_dict(payload["config"]))
    try:
        model.load_state_dict(payload["state_dict"])
    except (RuntimeError, TypeError, AttributeError) as exc:  # missing, extra or misshapen tensors
        first = str(exc).strip().splitlines()
        detail = next((ln.strip() for ln in first[1:] if ln.strip()), first[0] if first else "")
        raise DataError(f"{path}: its weights do not fit its {payload['model']} config ({detail[:160]})") from None
    if not all_finite(model.state_dict().values()):
        raise DataError(f"{path}: holds NaN or infinite weights; it cannot score (a diverged run?)")
    model.to(resolve_device(device)).eval()
    return model, {k: payload.get(k) for k in ("dataset", "id_maps", "scene", "extra")}


def write_json(path: str | Path, obj) -> None:
    Path(path).write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")
