"""Sequential models behind one contract (see :mod:`recnb.models.base`).

The registry maps a name to ``module:Class``; entries import lazily so that the searched
``student`` (built from :mod:`recnb.search`) loads from a checkpoint like any other model
without the models layer importing the search code.
"""

from __future__ import annotations

import importlib

from recnb.errors import ConfigError
from recnb.models.base import ModelConfig, SeqRecModel

REGISTRY = {
    "sasrec": "recnb.models.sasrec:SASRec",
    "gru4rec": "recnb.models.gru4rec:GRU4Rec",
    "nextitnet": "recnb.models.nextitnet:NextItNet",
    "caser": "recnb.models.caser:Caser",
    "student": "recnb.search.student:Student",
    "semantic_teacher": "recnb.distill.teachers:SemanticTeacher",
    "dllm2rec_student": "recnb.distill.dllm2rec:EmbeddingDistilledStudent",
}
BASE_MODELS = ("sasrec", "gru4rec", "nextitnet", "caser")


def model_class(name: str) -> type[SeqRecModel]:
    if name not in REGISTRY:
        raise ConfigError(f"unknown model '{name}'; choose one of {', '.join(REGISTRY)}")
    module, cls = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)


def build_model(name: str, **config) -> SeqRecModel:
    """``build_model("sasrec", num_items=1682, hidden_size=64)``."""
    cls = model_class(name)
    return cls(cls.config_class.from_dict(config))


def model_from_config(name: str, config: dict) -> SeqRecModel:
    return build_model(name, **config)


__all__ = ["REGISTRY", "BASE_MODELS", "ModelConfig", "SeqRecModel", "build_model", "model_class", "model_from_config"]
