"""The training service: Lightning training from configs, tracked in MLflow.

``dlforge.train.fit.train(cfg)`` is the stage; ``fit(frozen)`` runs one rank.
"""
