"""Sequential models behind one contract (see :mod:`recnb.models.base`), and the registry
that maps a checkpoint's model name to its class.

The five base models and their ensemble register here; models defined by the methods above this layer (the
AdaRec ``student``, DLLM2Rec's semantic teacher and embedding-distilled student) register
themselves with :func:`register_model` when their module is imported, which
:func:`model_class` does the first time their name is asked for (``registry.DEFINED_ABOVE``).
"""

from __future__ import annotations

from recnb.models.base import ModelConfig, SeqRecModel, check_contract
from recnb.models.bsarec import BSARec
from recnb.models.caser import Caser
from recnb.models.ensemble import Ensemble
from recnb.models.gru4rec import GRU4Rec
from recnb.models.nextitnet import NextItNet
from recnb.models.registry import REGISTRY, build_model, model_class, register_model
from recnb.models.sasrec import SASRec

BASE_MODELS = ("sasrec", "bsarec", "gru4rec", "nextitnet", "caser")

for _cls in (SASRec, BSARec, GRU4Rec, NextItNet, Caser, Ensemble):
    register_model(_cls)

__all__ = ["BASE_MODELS", "REGISTRY", "ModelConfig", "SeqRecModel", "build_model", "check_contract", "model_class",
           "register_model"]
