"""Results tree → pandas, seed aggregation, tables, Pareto frontiers and the grid report.

Reads files only (never imports core). Entry points: `analysis.load.load_results`,
`analysis.aggregate.aggregate`, `analysis.report.write_grid_outputs` and `python -m analysis`.
"""
