"""s3slower benchmarks: `python -m bench` (or `make bench`) runs them all and
prints one table of figures, targets and whether each is met.  See
docs/performance.md for what each figure means and how it was produced."""
