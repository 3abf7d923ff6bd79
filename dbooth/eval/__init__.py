"""Measuring what a run learned: DreamBench's metrics on real models, and the checkpoint they pick.

``metrics`` holds the maths (pure functions on embeddings), ``encoders`` loads DINO and CLIP,
``judges`` scores samples with them (or with the built-in oracle), ``prompts`` the DreamBench prompt
lists, ``checkpoints`` rebuilds a pipeline at a saved step, ``pick`` chooses the best checkpoint,
``report`` saves the image grids the run page shows and ``evaluate`` ties them together for ``dbooth eval``
(``dbooth.training.early_stop`` uses the judges and the rule during training).
"""
