"""Distillation: AdaRec (search-guided) and DLLM2Rec (LLM teacher) losses and pipelines.

AdaRec: :mod:`recnb.distill.losses` (prediction KD, EMD layer mapping, cost loss, the
cached teacher) and :mod:`recnb.distill.adarec` (distil a searched student, the whole
pipeline and its summary). Submodules import lazily.
"""
