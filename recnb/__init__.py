"""recnb: make heavy sequential recommenders light.

The public API, enough for a notebook or a script::

    import recnb
    scene = recnb.load_scene("ml-100k")
    model = recnb.build_model("sasrec", num_items=scene.num_items, **recnb.recipe_model_config("sasrec"))
    result = recnb.fit(model, scene, recnb.recipe("sasrec", epochs=5))
    print(recnb.evaluate(model, scene, "test"))

Layers, lowest first (each imports only from the ones before it): ``errors``; ``data``,
``metrics``, ``models``; ``measure``, ``train``, ``kd``, ``runs``; the methods
``adarec`` and ``dllm2rec``; ``analysis``, ``viz`` and ``widgets``; ``cli`` and ``commands``.
"""

from recnb.adarec.architecture import Architecture
from recnb.adarec.pipeline import DistillConfig, run_pipeline
from recnb.adarec.search import SearchConfig, search
from recnb.adarec.student import Student
from recnb.adarec.summary import load_summary
from recnb.data import Scene, describe, from_dataframe, load_scene, synthetic_scene
from recnb.dllm2rec.pipeline import DLLM2RecConfig, EmbeddingDistilledStudent, run_dllm2rec
from recnb.dllm2rec.teachers import SemanticTeacher, build_semantic_teacher, make_artifacts
from recnb.errors import ConfigError, DataError, RecnbError, TrainingDiverged
from recnb.measure import efficiency, model_flops, model_latency
from recnb.models import BASE_MODELS, build_model, register_model
from recnb.models.ensemble import Ensemble
from recnb.recommend import Recommender
from recnb.runs import mean_over_seeds, run_model, train_and_report
from recnb.train import (
    TrainConfig,
    evaluate,
    fit,
    load_checkpoint,
    recipe,
    recipe_model_config,
    save_checkpoint,
)

__version__ = "0.1.0"

__all__ = [
    "BASE_MODELS",
    "Architecture",
    "ConfigError",
    "DLLM2RecConfig",
    "DataError",
    "DistillConfig",
    "EmbeddingDistilledStudent",
    "Ensemble",
    "RecnbError",
    "Recommender",
    "Scene",
    "SearchConfig",
    "SemanticTeacher",
    "Student",
    "TrainConfig",
    "TrainingDiverged",
    "__version__",
    "build_model",
    "build_semantic_teacher",
    "describe",
    "efficiency",
    "evaluate",
    "fit",
    "from_dataframe",
    "load_checkpoint",
    "load_scene",
    "load_summary",
    "make_artifacts",
    "mean_over_seeds",
    "model_flops",
    "model_latency",
    "recipe",
    "recipe_model_config",
    "register_model",
    "run_dllm2rec",
    "run_model",
    "run_pipeline",
    "save_checkpoint",
    "search",
    "synthetic_scene",
    "train_and_report",
]
