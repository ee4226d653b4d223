"""The counters and histograms that intake and delivery update (Prometheus, multiprocess mode).

Each process writes its own files under PROMETHEUS_MULTIPROC_DIR (set by the settings); /metrics
adds them up. Figures that live in the database (queue depth, propagation, paused gateways) are
read at scrape time instead, by the operations app.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

# From a fast local relay to a slow remote MX with TLS: milliseconds to a minute.
_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

DELIVERY_ATTEMPTS = Counter(
    "sendgate_delivery_attempts",
    "Delivery attempts, by route and outcome (sent, deferred, failed).",
    ["route", "outcome"],
)
DELIVERY_SECONDS = Histogram(
    "sendgate_delivery_attempt_seconds",
    "Time one delivery attempt took at the server, connecting included when it opened one.",
    ["route"],
    buckets=_SECONDS,
)
SUBMIT_SECONDS = Histogram(
    "sendgate_submit_seconds",
    "SMTP submission: from the end of DATA to the 250 reply (the database commit included).",
    buckets=_SECONDS,
)
AUTH_FAILURES = Counter(
    "sendgate_submission_auth_failures", "Failed SMTP submission logins (wrong or locked)."
)
