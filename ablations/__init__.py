"""Ablation grids: compose cells with Hydra, freeze them into the results tree, run or submit them.

`python ablations/launch.py grid=prune_sweep` plans the grid (expansion, exclusions, validation,
stable cell ids), skips finished cells and runs the rest inline, with a local submitit executor or
as SLURM job arrays. Imports hydra/submitit; `core` never imports this package.
"""
