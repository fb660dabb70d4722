"""Distillation: AdaRec (search-guided) and DLLM2Rec (LLM teacher) losses and pipelines."""
