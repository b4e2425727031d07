"""`python -m paper_figures`: see paper_figures.make_all."""

from paper_figures.make_all import main

raise SystemExit(main())
