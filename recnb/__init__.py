"""recnb: make heavy sequential recommenders light (AdaRec, DLLM2Rec) in notebooks."""

__version__ = "0.1.0"
