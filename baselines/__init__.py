"""Baselines on the shared engine: FF (`ff`), CwC-FF (`cwc`) and BP (`bp`); asge.methods loads them."""
