"""Bundles: the typed manifest (schema.py, manifest.py), the bundle on disk (bundle.py), checkpoint files
(checkpoints.py), ONNX export (export.py) and where official weights come from (weights.py)."""
