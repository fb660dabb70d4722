"""DLLM2Rec: distil an LLM-style recommender into GRU4Rec/SASRec students.

- :mod:`.artifacts`: the teacher's files in the official code's formats (ranked lists,
  confidences, item embeddings), read and written with one clear line per broken file.
- :mod:`.teachers`: a BIGRec-shaped semantic teacher over item titles, and the artifacts of
  any recnb checkpoint.
- :mod:`.pipeline`: importance-aware ranking distillation, collaborative embedding
  distillation, the student and the teacher / distilled / baseline comparison.
"""
