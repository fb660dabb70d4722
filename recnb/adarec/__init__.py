"""AdaRec: search a light student's architecture per scene under a frozen teacher.

- :mod:`.ops`: the causal op registry (``OPS``, ``PRIMITIVES``) and op costs;
  :mod:`.architecture`: the found architecture as a JSON value and DARTS' derive rule.
- :mod:`.supernet`: every op on every edge, mixed by the alphas; :mod:`.student`: the
  derived network, rebuilt from an architecture without any search code.
- :mod:`.objective`: the cost-sensitive loss and the target-oriented total;
  :mod:`.search`: the bi-level (DARTS first-order) search and its history.
- :mod:`.pipeline`: teacher, one search per beta, distillation, twins, baseline, summary;
  :mod:`.summary`: the one reader of the ``summary.json`` a pipeline run writes.
"""
