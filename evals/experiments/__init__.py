"""One-off research sweeps behind the defaults and the README's figures (not supported tools:
``evals`` holds the harness and the benchmarks). Each is ``python -m evals.experiments.NAME``."""
