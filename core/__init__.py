"""Core model library: data, vision encoders, token reducers, connectors, fusion archs, training.

Depends on torch and numpy (PyAV and PyYAML lazily). Never imports hydra, submitit, wandb, pandas or
matplotlib at import time, so a GPU box with only torch can run and benchmark the model.
"""
