"""Cell-runner infrastructure: logging, checkpoints, LR schedule, DDP and seeding.

Import the submodules directly (e.g. `from core.training.checkpoint import save_checkpoint`).
"""
