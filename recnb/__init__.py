"""recnb: make heavy sequential recommenders light (AdaRec, DLLM2Rec) in notebooks."""

__version__ = "0.1.0"


def __getattr__(name: str):
    """``recnb.Recommender`` without importing torch at ``import recnb``."""
    if name == "Recommender":
        from recnb.recommend import Recommender

        return Recommender
    raise AttributeError(f"module 'recnb' has no attribute {name!r}")
