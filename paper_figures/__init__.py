"""Paper figures from a results tree (via analysis); `python -m paper_figures` regenerates all."""
