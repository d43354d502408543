"""Core helpers at the bottom of vqdb's layers: bit packing (:mod:`.packing`) and the fast Walsh–Hadamard
transform (:mod:`.hadamard`), pure NumPy.

Layers import one way (``tests/test_layers.py`` enforces it)::

    core  <-  kernels  <-  quantizers  <-  index, kvcache  <-  server, rag, distributed, integrations

The core layer is this package plus the top-level leaf modules :mod:`vqdb.errors`, :mod:`vqdb.envs`,
:mod:`vqdb._validation` and :mod:`vqdb.testing` (public names that stay where users import them from);
none of them imports anything else of vqdb.
"""
