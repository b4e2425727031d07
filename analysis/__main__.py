"""`python -m analysis`: see analysis.cli (figures too: `python -m paper_figures.report`)."""

from analysis.cli import main

raise SystemExit(main())
