"""AdaRec's search: causal op registry with costs (:mod:`.ops`), the architecture value
and DARTS derive rule (:mod:`.architecture`), the supernet (:mod:`.supernet`), the derived
student (:mod:`.student`) and the bi-level searcher (:mod:`.searcher`).

Submodules import lazily; e.g. ``from recnb.search.searcher import search, SearchConfig``.
"""
