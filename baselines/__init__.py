"""Baselines on the shared engine: FF, CwC-FF and BP (importing registers them)."""
from baselines import bp, cwc, ff  # noqa: F401  (the imports run @register_method)

__all__ = ["bp", "cwc", "ff"]
