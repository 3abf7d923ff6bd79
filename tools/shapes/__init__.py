"""How the built-in world's shipped weights were made: pretraining, decoder fine-tune, evaluation, the oracle.

Not installed with the package; run from the repository root, e.g. ``python -m tools.shapes.pretrain --help``.
"""
