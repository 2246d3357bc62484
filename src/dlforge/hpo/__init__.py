"""Hyperparameter optimisation: Optuna studies over the training config."""
