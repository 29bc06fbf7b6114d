"""``/metrics``, and the latency of every request (the counters are ``audience_authz.metrics``)."""

from __future__ import annotations

import os
import time

from flask import Flask, Response, g, request, request_started
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess

from audience_authz.metrics import MULTIPROC_ENV, REQUEST_SECONDS, initialise, labelled, policy_loaded, request_labels


def exposition() -> bytes:
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)


def register(app: Flask, policy) -> None:
    """``/metrics`` and the latency of every request; every known counter at zero."""
    policy_loaded(policy.version)
    initialise(policy.outcomes())

    def started(sender, **extra):
        g.metrics_started = time.perf_counter()

    request_started.connect(started, app, weak=False)

    @app.after_request
    def observe(response):
        started_at = g.get("metrics_started")
        if started_at is not None:
            route = request.url_rule.rule if request.url_rule is not None else None
            labelled(REQUEST_SECONDS, *request_labels(request.method, route, response.status_code)).observe(
                time.perf_counter() - started_at)
        return response

    @app.get("/metrics", summary="Prometheus metrics", doc_ui=False)
    def metrics():
        return Response(exposition(), content_type=CONTENT_TYPE_LATEST)
