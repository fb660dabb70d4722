"""recnb: make heavy sequential recommenders light.

The public API, enough for a notebook or a script::

    import recnb
    scene = recnb.load_scene("ml-100k")
    model = recnb.build_model("sasrec", num_items=scene.num_items, **recnb.recipe_model_config("sasrec"))
    result = recnb.fit(model, scene, recnb.recipe("sasrec", epochs=5))
    print(recnb.evaluate(model, scene, "test"))

Names are imported on first use. Layers, lowest first (each imports only from the ones before it): ``errors``; ``data``,
``metrics``, ``models``; ``measure``, ``checkpoint``, ``evaluation``, ``train``, ``kd``, ``runs``; the methods
``adarec`` and ``dllm2rec``; ``analysis``, ``viz`` and ``widgets``; ``cli`` and ``commands``.
"""

# public name -> the module that defines it: imported on first use, so ``import recnb`` (and
# ``recnb --help``, ``import recnb.errors``) loads neither torch nor pandas until a name needs them
_EXPORTS = {
    "recnb.adarec.architecture": ("Architecture",),
    "recnb.adarec.pipeline": ("DistillConfig", "run_pipeline"),
    "recnb.adarec.search": ("SearchConfig", "search"),
    "recnb.adarec.student": ("Student",),
    "recnb.adarec.summary": ("load_summary",),
    "recnb.checkpoint": ("load_checkpoint", "save_checkpoint"),
    "recnb.data": ("Scene", "describe", "from_dataframe", "load_scene", "synthetic_scene"),
    "recnb.dllm2rec.pipeline": ("DLLM2RecConfig", "EmbeddingDistilledStudent", "run_dllm2rec"),
    "recnb.dllm2rec.teachers": ("SemanticTeacher", "build_semantic_teacher", "make_artifacts"),
    "recnb.errors": ("ConfigError", "DataError", "RecnbError", "TrainingDiverged"),
    "recnb.evaluation": ("Evaluation", "evaluate"),
    "recnb.measure": ("efficiency", "model_flops", "model_latency"),
    "recnb.models": ("BASE_MODELS", "build_model", "register_model"),
    "recnb.models.ensemble": ("Ensemble",),
    "recnb.recommend": ("Recommender",),
    "recnb.runs": ("mean_over_seeds", "run_model", "train_and_report"),
    "recnb.train": ("TrainConfig", "fit", "recipe", "recipe_model_config"),
}
_HOME = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name: str):
    import importlib

    if name in _HOME:
        value = getattr(importlib.import_module(_HOME[name]), name)
        globals()[name] = value  # looked up once
        return value
    raise AttributeError(f"module 'recnb' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_HOME))


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
    "Evaluation",
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
