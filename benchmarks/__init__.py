"""koji-adjutant benchmarks (run with `make bench`)."""
