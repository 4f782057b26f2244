"""Videos: lazy decoding (PyAV), frame sampling, object tracks built from keyframe masks and
propagation, per-track embeddings. Heavy imports (av, torch) stay inside the functions."""
