"""Paper-faithful, slow, obvious NumPy oracles (test-only). Written from the papers, not from vqdb's code:
explicit loops, nearest-centroid by argmin, one bit at a time."""
