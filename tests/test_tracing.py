"""Traces: W3C traceparent/tracestate in, OpenTelemetry spans out (the request, the
decision with its facts, policy and effects, each SQL statement), the trace id on the
access line and the decision-log row; off by default; sent over OTLP/HTTP when configured."""

from __future__ import annotations

import gzip
import http.server
import logging
import secrets
import threading
import time

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from audience_authz.http import tracing
from tests.support import LiveServer, free_port, last_id, world_factory
from tests.support.ops import json_lines

DECISION_PARTS = ("authz.facts", "authz.policy", "authz.effects")


def _header(response, name: str) -> str | None:
    return next((v for k, v in response.headers.items() if k.lower() == name), None)


def _traceparent() -> tuple[str, str, str]:
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return trace_id, span_id, f"00-{trace_id}-{span_id}-01"


def _delete_check(w) -> dict:
    """An allowed check that plans effects: A is shared with the recipient."""
    return {"principal": {"account_id": w.owner}, "action": "delete", "resource": {"audience_id": w.A}}


def _decision_rows(api, after: int) -> dict[str, dict]:
    return {d["decision_id"]: d for d in api.ok(api.get(f"/v1/decisions?after={after}&limit=1000"))["decisions"]}


@pytest.fixture(scope="module")
def provider(inproc_server):
    """An SDK tracer provider exporting into memory: the process's global one (once per
    process), its hooks connected to the session's app only by ``traced``."""
    exporter = InMemorySpanExporter()
    made = tracing.install(inproc_server.app, inproc_server.settings, exporter, batch=False)
    tracing.disconnect(inproc_server.app)
    yield made, exporter


@pytest.fixture
def traced(service, provider):
    """The session's app traced for one test; untraced again after it."""
    made, exporter = provider
    exporter.clear()
    tracing.connect(service.app, made)
    try:
        yield exporter
    finally:
        tracing.disconnect(service.app)
        exporter.clear()


def test_off_by_default_no_header_no_trace_id(api):
    w = world_factory(api)
    before = last_id(api, "decisions")
    trace_id, _, traceparent = _traceparent()
    r = api.post("/v1/authorize", _delete_check(w), headers={"traceparent": traceparent})
    assert r.status == 200 and r.body["decision"] == "allow"
    assert _header(r, "traceresponse") is None
    row = _decision_rows(api, before)[r.body["decision_id"]]
    assert row["trace_id"] is None


def test_untraced_no_span_is_recorded_even_with_a_provider(service, provider):
    """Tracing disconnected (as off): a request with a traceparent records nothing, not even
    the decision's or the statements' spans, though an SDK provider is the global one."""
    _, exporter = provider
    exporter.clear()
    api = service.client()
    w = world_factory(api)
    _, _, traceparent = _traceparent()
    r = api.post("/v1/authorize", _delete_check(w), headers={"traceparent": traceparent})
    assert r.status == 200 and _header(r, "traceresponse") is None
    assert exporter.get_finished_spans() == ()


def test_a_traced_request_continues_the_callers_trace(service, traced, caplog):
    api = service.client()
    w = world_factory(api)
    before = last_id(api, "decisions")
    trace_id, parent_span_id, traceparent = _traceparent()
    traced.clear()
    with caplog.at_level(logging.INFO, logger="audience_authz.access"):
        r = api.post("/v1/authorize", _delete_check(w), headers={"traceparent": traceparent,
                                                                 "tracestate": "vendor=abc"})
    assert r.status == 200 and r.body["decision"] == "allow" and r.body["effects"]
    spans = traced.get_finished_spans()
    assert spans and {s.context.trace_id for s in spans} == {int(trace_id, 16)}
    by_id = {s.context.span_id: s for s in spans}

    (request_span,) = [s for s in spans if s.kind == SpanKind.SERVER]
    assert request_span.name == "POST /v1/authorize"
    assert request_span.parent.span_id == int(parent_span_id, 16) and request_span.parent.is_remote
    assert request_span.context.trace_state.get("vendor") == "abc"  # tracestate carried on
    assert request_span.attributes["http.response.status_code"] == 200
    # traceresponse names the request span
    assert _header(r, "traceresponse") == f"00-{trace_id}-{request_span.context.span_id:016x}-01"

    (decision,) = [s for s in spans if s.name == "authz.decision"]
    assert decision.parent.span_id == request_span.context.span_id
    assert decision.attributes["authz.decision_id"] == r.body["decision_id"]
    assert decision.attributes["authz.decision"] == "allow" and decision.attributes["authz.action"] == "delete"
    parts = {s.name: s for s in spans if s.name in DECISION_PARTS}
    assert set(parts) == set(DECISION_PARTS)
    assert all(p.parent.span_id == decision.context.span_id for p in parts.values())
    sql = [s for s in spans if s.name.startswith("SQL ")]
    assert all(s.attributes["db.system"] == "sqlite" and s.attributes["db.statement"] for s in sql)
    parents_of_sql = {by_id[s.parent.span_id].name for s in sql}
    assert {"authz.facts", "authz.effects"} <= parents_of_sql  # the statements of each part are its children

    access = [rec for rec in caplog.records if rec.name == "audience_authz.access"
              and getattr(rec, "decision_ids", None) == [r.body["decision_id"]]]
    assert [rec.trace_id for rec in access] == [trace_id]
    assert _decision_rows(api, before)[r.body["decision_id"]]["trace_id"] == trace_id


def test_an_action_traces_its_transaction_and_logs_the_trace_id(service, traced):
    api = service.client()
    w = world_factory(api)
    before = last_id(api, "decisions")
    trace_id, _, traceparent = _traceparent()
    traced.clear()
    denied = api.post(f"/v1/audiences/{w.A}/shares", {"account_ids": [w.other]}, account=w.owner,
                      headers={"traceparent": traceparent})
    assert denied.status == 403
    spans = traced.get_finished_spans()
    assert {s.context.trace_id for s in spans} == {int(trace_id, 16)}
    assert any(s.name == "authz.decision" for s in spans) and any(s.name == "SQL INSERT" for s in spans)
    rows = _decision_rows(api, before)
    assert [rows[d]["trace_id"] for d in denied.body["decision_ids"]] == [trace_id] * len(denied.body["decision_ids"])


def test_without_a_traceparent_a_trace_begins_here(service, traced):
    api = service.client()
    for headers in ({}, {"traceparent": "00-not-a-valid-header-01"}, {"traceparent": "x" * 4000}):
        traced.clear()
        r = api.get("/v1/events/latest", headers=headers)
        assert r.status == 200
        (request_span,) = [s for s in traced.get_finished_spans() if s.kind == SpanKind.SERVER]
        assert request_span.parent is None
        version, trace_id, span_id, flags = _header(r, "traceresponse").split("-")
        assert version == "00" and int(flags, 16) & 1  # sampled (0x02, a random trace id, may be set too)
        assert int(trace_id, 16) == request_span.context.trace_id and int(span_id, 16) == request_span.context.span_id


def test_a_trace_sampled_out_by_the_caller_records_no_span(service, traced):
    api = service.client()
    trace_id, span_id, _ = _traceparent()
    r = api.get("/v1/events/latest", headers={"traceparent": f"00-{trace_id}-{span_id}-00"})
    assert r.status == 200 and traced.get_finished_spans() == ()
    assert _header(r, "traceresponse").split("-")[1] == trace_id  # the trace id is still the caller's


class _Collector(http.server.ThreadingHTTPServer):
    """A tiny OTLP/HTTP receiver: POST /v1/traces, protobuf, decoded into ``spans``."""

    def __init__(self):
        self.spans: list[tuple[dict, object]] = []  # (resource attributes, span)
        self.paths: list[str] = []
        super().__init__(("127.0.0.1", free_port()), _CollectorHandler)


class _CollectorHandler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.server.paths.append(self.path)
        export = ExportTraceServiceRequest.FromString(body)
        for resource_spans in export.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                self.server.spans.extend((resource, s) for s in scope_spans.spans)
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


@pytest.mark.full
def test_spans_arrive_at_an_otlp_http_endpoint(empty_database):
    collector = _Collector()
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    env = {"AUDIENCE_AUTHZ_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.server_port}",
           "AUDIENCE_AUTHZ_OTEL_SERVICE_NAME": "authz-under-test", "OTEL_BSP_SCHEDULE_DELAY": "100"}
    try:
        with LiveServer(empty_database, env=env) as server:
            api = server.client()
            w = world_factory(api)
            trace_id, parent_span_id, traceparent = _traceparent()
            r = api.post("/v1/authorize", _delete_check(w), headers={"traceparent": traceparent})
            assert r.status == 200 and r.body["effects"]
            assert _header(r, "traceresponse").split("-")[1] == trace_id
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                ours = [s for _, s in collector.spans if s.trace_id.hex() == trace_id]
                if {"authz.decision", *DECISION_PARTS} <= {s.name for s in ours} \
                        and any(s.name.startswith("POST") for s in ours):
                    break
                time.sleep(0.1)
            names = {s.name for s in ours}
            assert {"POST /v1/authorize", "authz.decision", *DECISION_PARTS} <= names, names
            assert any(n.startswith("SQL ") for n in names)
            (request_span,) = [s for s in ours if s.name == "POST /v1/authorize"]
            assert request_span.parent_span_id.hex() == parent_span_id
            assert {res["service.name"] for res, s in collector.spans if s.trace_id.hex() == trace_id} \
                == {"authz-under-test"}
            assert set(collector.paths) == {"/v1/traces"}
            access = [line for line in json_lines(server.log_path.read_text())
                      if line.get("logger") == "audience_authz.access" and line.get("request_id") == r.headers.get(
                          "X-Request-Id")]
            assert [line.get("trace_id") for line in access] == [trace_id]
    finally:
        collector.shutdown()
        collector.server_close()
