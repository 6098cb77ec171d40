"""Operations tools beside the library (the library never imports them): `python -m tools.bench`
(throughput of the training step), `python -m tools.gpucheck` (the GPU session's one script)."""
