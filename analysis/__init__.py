"""Results tree → pandas, seed aggregation, labels from the data, tables, Pareto frontiers and the
grid report.

Reads files only, through core.results (standard library; never torch, never the model code), and
never imports paper_figures (which builds on it). Entry points: `analysis.load.load_results`,
`analysis.aggregate.aggregate`, `analysis.data.GridData`, `analysis.report.write_grid_outputs` and
`python -m analysis`.
"""
