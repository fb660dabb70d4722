"""The registry that maps a model name (what a checkpoint records) to its class.

The base models are registered by ``recnb.models``; the models the methods define above
this layer are listed here by module and imported the first time a name asks for them, so
loading an AdaRec student's checkpoint works without importing the method first."""

from __future__ import annotations

import importlib

import torch

from recnb.errors import ConfigError
from recnb.models.base import SeqRecModel, check_contract

REGISTRY: dict[str, type[SeqRecModel]] = {}
# name -> the module whose import registers it (with ``register_model``)
DEFINED_ABOVE = {"student": "recnb.adarec.student", "semantic_teacher": "recnb.dllm2rec.teachers",
                 "dllm2rec_student": "recnb.dllm2rec.pipeline"}


def register_model(cls: type[SeqRecModel]) -> type[SeqRecModel]:
    """Make ``cls`` loadable by its ``name`` (usable as a class decorator)."""
    REGISTRY[cls.name] = cls
    return cls


def model_class(name: str) -> type[SeqRecModel]:
    if name not in REGISTRY and name in DEFINED_ABOVE:
        importlib.import_module(DEFINED_ABOVE[name])
    if name not in REGISTRY:
        raise ConfigError(f"unknown model '{name}'; choose one of {', '.join(sorted(REGISTRY.keys() | DEFINED_ABOVE.keys()))}")
    return REGISTRY[name]


def build_model(name: str, seed: int | None = None, **config) -> SeqRecModel:
    """``build_model("sasrec", num_items=scene.num_items, hidden_size=64)``: the model with its
    contract checked (:func:`recnb.models.base.check_contract`). ``seed`` seeds torch before the
    weights are drawn, so the same seed gives the same initial model (``fit`` seeds only the
    training that follows: data order and dropout)."""
    cls = model_class(name)
    if seed is not None:
        torch.manual_seed(seed)
    return check_contract(cls(cls.config_class.from_dict(config)))
