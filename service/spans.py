"""Child spans of a traced request, with the OpenTelemetry API only (no SDK, no Flask).

The engine (the decision: facts, policy, effects) and the store (each SQL statement) open
their spans here. A span is opened only under a recording parent: the request's span,
which ``http/tracing.py`` starts when tracing is configured, and says so with ``activate``.
Untraced (the default), each call costs the test of one flag and opens nothing (looking up
the current span in OpenTelemetry's context costs some microseconds, ten times a request).
"""

from __future__ import annotations

from contextlib import nullcontext

from opentelemetry import trace

_tracer = trace.get_tracer("audience_authz")
_NOT_TRACED = nullcontext()  # reusable: entering it does nothing and yields None
active = False  # requests of this process are traced (set by http/tracing.py with activate)


def activate(on: bool) -> None:
    global active
    active = on


def child(name: str, attributes: dict | None = None):
    """A context manager: a span named ``name`` under the current one while it records,
    else nothing (yields None). An exception leaving the block is recorded on the span."""
    if not active or not trace.get_current_span().is_recording():
        return _NOT_TRACED
    return _tracer.start_as_current_span(name, attributes=attributes)


def trace_id() -> str | None:
    """The current trace's id as 32 hex digits (W3C), or None outside a trace. A request
    sampled out still has one: its access line and decisions carry it, with no spans."""
    if not active:
        return None
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None
