"""Benchmarks of vqdb against FAISS and rabitqlib on real data (never CI gates; results in ``bench/results/``)."""
