"""Sequential models behind one contract (see :mod:`recnb.models.base`), and the registry
that maps a checkpoint's model name to its class.

The four base models and their ensemble register here; models defined by the methods above this layer (the
AdaRec ``student``, DLLM2Rec's semantic teacher and embedding-distilled student) register
themselves with :func:`register_model` when their module is imported, which ``import
recnb`` does, so the models layer never names the layers above it.
"""

from __future__ import annotations

from recnb.errors import ConfigError
from recnb.models.base import ModelConfig, SeqRecModel, check_contract
from recnb.models.caser import Caser
from recnb.models.ensemble import Ensemble
from recnb.models.gru4rec import GRU4Rec
from recnb.models.nextitnet import NextItNet
from recnb.models.sasrec import SASRec

REGISTRY: dict[str, type[SeqRecModel]] = {}
BASE_MODELS = ("sasrec", "gru4rec", "nextitnet", "caser")


def register_model(cls: type[SeqRecModel]) -> type[SeqRecModel]:
    """Make ``cls`` loadable by its ``name`` (usable as a class decorator)."""
    REGISTRY[cls.name] = cls
    return cls


for _cls in (SASRec, GRU4Rec, NextItNet, Caser, Ensemble):
    register_model(_cls)


def model_class(name: str) -> type[SeqRecModel]:
    if name not in REGISTRY:
        raise ConfigError(f"unknown model '{name}'; choose one of {', '.join(REGISTRY)}")
    return REGISTRY[name]


def build_model(name: str, **config) -> SeqRecModel:
    """``build_model("sasrec", num_items=scene.num_items, hidden_size=64)``: the model with its
    contract checked (:func:`recnb.models.base.check_contract`)."""
    cls = model_class(name)
    return check_contract(cls(cls.config_class.from_dict(config)))


def model_from_config(name: str, config: dict) -> SeqRecModel:
    return build_model(name, **config)


__all__ = ["BASE_MODELS", "REGISTRY", "ModelConfig", "SeqRecModel", "build_model", "check_contract", "model_class",
           "model_from_config", "register_model"]
