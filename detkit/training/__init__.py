"""Training on Lightning: the LightningModule, its callbacks, weight transfer and the CLI.

Import from the modules (``detkit.training.module.DetectionModule``, ``detkit.training.ema.EMA``, ...):
this package imports nothing itself, so importing one of them does not load the others.
"""
