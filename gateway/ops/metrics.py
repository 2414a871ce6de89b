"""Prometheus metrics of the gateway (served at ``/metrics``)."""

from prometheus_client import Counter, Gauge, Histogram

# Sub-millisecond buckets: the gateway's own overhead is meant to stay under 2 ms.
_OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1)
_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

REQUESTS = Counter(
    "obliviate_requests_total", "Requests answered, by route and HTTP status.", ["route", "status"]
)
LATENCY = Histogram(
    "obliviate_request_duration_seconds",
    "Time from request arrival to the last byte sent.",
    ["route"],
    buckets=_LATENCY_BUCKETS,
)
TTFT = Histogram(
    "obliviate_time_to_first_token_seconds",
    "Streaming: time from request arrival to the first chunk sent.",
    ["route"],
    buckets=_LATENCY_BUCKETS,
)
OVERHEAD = Histogram(
    "obliviate_overhead_seconds",
    "Time spent in the gateway itself, outside the upstream call.",
    ["route"],
    buckets=_OVERHEAD_BUCKETS,
)
ARM_REQUESTS = Counter(
    "obliviate_arm_requests_total", "Generation requests by the arm that served them.", ["arm"]
)
UPSTREAM_ERRORS = Counter(
    "obliviate_upstream_errors_total",
    "Failures talking to vLLM: connect, connection_reset (sent again on a new connection), "
    "status (5xx), stream (broke mid-stream).",
    ["kind"],
)
ENGINE_CALLS_DROPPED = Counter(
    "obliviate_engine_calls_dropped_total",
    "Engine calls started beside the suppression check and dropped by it (blocked, or sent "
    "again with a guard note or in-model controls): engine work spent on nothing.",
)
ENGINE_READY = Gauge("obliviate_engine_ready", "1 while the vLLM engine answers, else 0.")
ENGINE_RESTARTS = Counter("obliviate_engine_restarts_total", "Restarts of the embedded vLLM.")
FORGET_INDEX_REQUESTS = Gauge(
    "obliviate_forget_index_requests", "Forget requests the matcher enforces (its index)."
)
TASK_FAILURES = Counter(
    "obliviate_background_task_failures_total",
    "Rounds of a background loop (index sync, removal runner, artifact builds) that raised.",
    ["task"],
)
TASK_FAILING = Gauge(
    "obliviate_background_task_failing",
    "1 while a background loop's last round failed (it is retried with backoff), else 0.",
    ["task"],
)
AUDITS = Counter("obliviate_audits_total", "Evidence audits recorded, per arm.", ["arm"])
AUDITS_FAILED = Counter(
    "obliviate_audits_failed_total",
    "Evidence audits that failed before recording, per arm.",
    ["arm"],
)
AUDIT_LEAK_RATE = Gauge(
    "obliviate_audit_leak_rate",
    "Leak rate of the last audit this replica recorded, per arm.",
    ["arm"],
)
