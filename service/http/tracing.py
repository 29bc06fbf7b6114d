"""Tracing of requests (W3C Trace Context, OpenTelemetry), off unless configured.

With ``AUDIENCE_AUTHZ_OTLP_ENDPOINT`` set, ``install`` sets up the OpenTelemetry SDK (the
``[tracing]`` extra): a tracer provider sampling ``trace_sample_ratio`` of the traces begun
here (a caller's ``traceparent`` decides for its own: ``ParentBased``) and a batching
OTLP/HTTP exporter, which sends from a thread of its own, never on the request path. Each
request then gets a server span, the child of the caller's ``traceparent``/``tracestate``
when it sends valid ones (invalid ones are ignored: a new trace begins), and the answer
carries a ``traceresponse`` header (W3C Trace Context Level 2) naming that span, so a
caller that sent none still learns its trace id. The decision and each SQL statement
open child spans (``spans.py``); the access line and the decision-log row carry the trace id.

Off (the default), nothing is set up and nothing is connected: no span, no header, no
work per request. The service makes no outgoing call; one it makes would pass the context
on with ``opentelemetry.propagate.inject`` on its headers.
"""

from __future__ import annotations

import logging
from importlib import metadata

from flask import Flask, g, request, request_finished, request_started, request_tearing_down
from opentelemetry import context, trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from audience_authz import spans
from audience_authz.config import Settings

TRACERESPONSE_HEADER = "traceresponse"
EXPORT_PATH = "/v1/traces"
log = logging.getLogger("audience_authz")
_propagator = TraceContextTextMapPropagator()  # traceparent and tracestate, nothing else


class TracingUnavailable(RuntimeError):
    """Tracing is configured but the SDK (the [tracing] extra) is not installed."""


def register(app: Flask, settings: Settings) -> None:
    """Trace this app's requests when an OTLP endpoint is configured; else do nothing."""
    if not settings.otlp_endpoint:
        return
    check_available(settings)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    endpoint = settings.otlp_endpoint.rstrip("/")
    if not endpoint.endswith(EXPORT_PATH):
        endpoint += EXPORT_PATH
    install(app, settings, OTLPSpanExporter(endpoint=endpoint))
    log.info("tracing: spans exported to %s", endpoint)


def check_available(settings: Settings) -> None:
    """Refuse tracing configured without the SDK (``serve`` asks before it forks)."""
    if not settings.otlp_endpoint:
        return
    try:
        import opentelemetry.exporter.otlp.proto.http.trace_exporter  # noqa: F401
        import opentelemetry.sdk.trace  # noqa: F401
    except ImportError:
        raise TracingUnavailable("AUDIENCE_AUTHZ_OTLP_ENDPOINT is set but the OpenTelemetry SDK is not installed:"
                                 " pip install 'audience-authz[tracing]'") from None


def install(app: Flask, settings: Settings, exporter, *, batch: bool = True):
    """Trace ``app``'s requests into ``exporter`` (an SDK ``SpanExporter``); returns the
    tracer provider. The provider becomes the process's global one, which the engine's and
    the store's spans use: once per process (OpenTelemetry refuses to replace it)."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    resource = Resource.create({"service.name": settings.otel_service_name,
                                "service.version": metadata.version("audience-authz")})
    provider = TracerProvider(
        resource=resource,
        sampler=ParentBased(TraceIdRatioBased(settings.trace_sample_ratio)))
    # batched: the export happens on the processor's thread (after a fork, it starts anew)
    provider.add_span_processor(BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    connect(app, provider)
    return provider


def connect(app: Flask, provider) -> None:
    """Trace ``app``'s requests with ``provider``'s tracer (``install`` does; a test that
    traces the session's app for a while connects and disconnects)."""
    disconnect(app)
    app.extensions["tracing"] = _Hooks(app, provider.get_tracer("audience_authz.http"))
    spans.activate(True)


def disconnect(app: Flask) -> None:
    """Stop tracing ``app``'s requests: the hooks go, nothing is left per request."""
    hooks = app.extensions.pop("tracing", None)
    if hooks is not None:
        hooks.disconnect()
        spans.activate(False)


class _Hooks:
    """The request span: begun when Flask starts the request, its status set with the
    answer, ended at teardown. Signals, not hooks: connected only while tracing is on."""

    def __init__(self, app: Flask, tracer):
        self.app = app
        self.tracer = tracer
        request_started.connect(self.started, app, weak=False)
        request_finished.connect(self.finished, app, weak=False)
        request_tearing_down.connect(self.tearing_down, app, weak=False)

    def disconnect(self) -> None:
        request_started.disconnect(self.started, self.app)
        request_finished.disconnect(self.finished, self.app)
        request_tearing_down.disconnect(self.tearing_down, self.app)

    def started(self, sender, **extra) -> None:
        parent = _propagator.extract(request.headers)
        route = request.url_rule.rule if request.url_rule is not None else None
        span = self.tracer.start_span(
            f"{request.method} {route or request.path}", context=parent, kind=trace.SpanKind.SERVER,
            attributes={"http.request.method": request.method, "url.path": request.path,
                        **({"http.route": route} if route else {}),
                        **({"request.id": g.request_id} if "request_id" in g else {})})
        g.trace_span = span
        g.trace_token = context.attach(trace.set_span_in_context(span, parent))

    def finished(self, sender, response, **extra) -> None:
        span = g.get("trace_span")
        if span is None:
            return
        span.set_attribute("http.response.status_code", response.status_code)
        if response.status_code >= 500:
            span.set_status(trace.StatusCode.ERROR)
        ctx = span.get_span_context()
        response.headers[TRACERESPONSE_HEADER] = f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}"

    def tearing_down(self, sender, exc=None, **extra) -> None:
        span = g.pop("trace_span", None)
        if span is None:
            return
        if exc is not None:
            span.record_exception(exc)
            span.set_status(trace.StatusCode.ERROR)
        span.end()
        context.detach(g.pop("trace_token"))
