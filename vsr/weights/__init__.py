"""Weights: files to tensors (imports no model): store (cache, download, sha256), formats (safetensors, the official pickles), safe_load (no code from a file)."""
