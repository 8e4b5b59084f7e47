"""Training of the compact model: degradations (degrade), data (data), losses (losses), the loop (loop).

Entry point: ``vsr train`` (vsr.cli.train); the recipe is ``configs/train_compact.yaml``.
"""
