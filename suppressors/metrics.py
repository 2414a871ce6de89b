"""Prometheus metrics of the suppression layers (exported by the gateway's ``/metrics``)."""

from prometheus_client import Counter, Histogram

LAYER_SECONDS = Histogram(
    "obliviate_layer_duration_seconds",
    "Time a layer spent on one request before generation.",
    ["layer"],
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25),
)
MATCH_SECONDS = Histogram(
    "obliviate_matcher_duration_seconds",
    "Time the matcher spent on one conversation.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
)
BLOCKS = Counter(
    "obliviate_blocks_total",
    "Requests blocked, by layer and stage (input/output).",
    ["layer", "stage"],
)
FAILURES = Counter(
    "obliviate_suppression_failures_total",
    "Checks that raised (matcher, embedder, index or a layer), by stage (input/output).",
    ["stage"],
)
