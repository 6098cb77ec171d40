"""ASGE benchmark suite: the ASGE method, the shared data layer and training engine."""
__version__ = "0.1.0"
