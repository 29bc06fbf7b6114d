"""Every setting of the service, typed and read once from the environment.

Each field is read from ``AUDIENCE_AUTHZ_<NAME>`` (``PROMETHEUS_MULTIPROC_DIR`` keeps the
name prometheus-client reads). The command line's options override them; the app gets
one ``Settings`` object from ``create_app`` and no module reads the environment itself.
``docs/operations.md`` lists them; a test keeps that table and this class the same.
"""


import secrets
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, NonNegativeFloat, PositiveFloat, PositiveInt, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///audience-authz.db"


def shipped_policy_dir() -> Path:
    """The policy shipped with the package: beside the code in an installed copy, at the
    top of the checkout in a source tree (an editable install)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "policy", here.parent / "policy"):
        if (candidate / "policy.csv").is_file():
            return candidate
    return here / "policy"


def _split(value: str) -> list[str]:
    return [t.strip() for t in value.split(",") if t.strip()]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AUDIENCE_AUTHZ_", extra="ignore", frozen=True)

    database: str = Field(DEFAULT_DATABASE_URL,
                          description="sqlite:///PATH or postgresql://user@host/db (serve --database)")
    policy_dir: Path = Field(default_factory=shipped_policy_dir,
                             description="the policy directory (serve --policy-dir); default: the shipped policy")
    shadow_policy_dir: Path | None = Field(None, description="a candidate policy that decides every request"
                                           " too, without changing any answer (shadow evaluation)")
    tokens: str = Field("", description="comma-separated bearer tokens of full scope; "
                                        "none set: `serve` makes one and prints it")
    check_tokens: str = Field("", description="comma-separated tokens that may only read and decide")
    admin_tokens: str = Field("", description="comma-separated tokens that may also upsert accounts and Business Centers")
    rate_limit: str = Field("10000/second", description="requests per token, e.g. 100/second; off disables it")
    auth_failure_limit: str = Field("30/minute", description="failed authentications (wrong bearer token or console"
                                    " login) per client address before 429 too_many_failed_authentications; off disables it")
    auth_failure_global_limit: str = Field("600/minute", description="failed authentications over all addresses"
                                           " before every further attempt is refused 429; off disables it")
    max_body: PositiveInt = Field(1024 * 1024, description="largest request body in bytes (413 past it)")
    max_response: PositiveInt = Field(8 * 1024 * 1024, description="largest answer in bytes: a page past it is cut"
                                      " short, an action's answer keeps its summary and drops its lists")
    max_request_cost: PositiveInt = Field(100_000, description="most work of one /v1/authorize or batch request:"
                                          " one per check plus one per effect planned (422 request_too_costly past it)")
    db_pool_size: PositiveInt = Field(32, description="PostgreSQL connections per process")
    db_pool_timeout: PositiveInt = Field(10, description="seconds a request waits for a free PostgreSQL connection")
    sqlite_busy_timeout_ms: PositiveInt = Field(10000, description="milliseconds a SQLite writer waits for the lock")
    header_timeout_s: PositiveFloat = Field(10.0, description="seconds a client has to send a whole request head, and"
                                            " the longest wait for each read of a body or write of an answer (then 408"
                                            " or close); a slow client holds no thread meanwhile (http/server.py)")
    max_subscribers: PositiveInt = Field(512, description="event streams and waiting long polls per worker, on"
                                         " threads of their own (503 with Retry-After past it; http/capacity.py)")
    max_subscribers_per_token: PositiveInt = Field(128, description="event streams and waiting long polls of one"
                                                   " token per worker (429 with Retry-After past it)")
    analysis_workers: PositiveInt = Field(2, description="policy analyses (check, symbolic diff, proofs, a reload's"
                                          " vetting) running at once per worker, each in a process of its own")
    analysis_queue: int = Field(4, ge=0, description="policy analyses waiting for a process per worker"
                                " (429 analysis_busy with Retry-After past it)")
    analysis_timeout_s: PositiveFloat = Field(60.0, description="seconds one policy analysis may take"
                                              " (then its process is killed: 422 analysis_too_costly)")
    analysis_memory_mb: PositiveInt = Field(2048, description="address space of one policy analysis process, in MB")
    analysis_max_lines: PositiveInt = Field(2000, description="lines of a candidate's policy.csv that an analysis"
                                            " takes (422 analysis_too_costly past it)")
    analysis_max_condition: PositiveInt = Field(4000, description="characters of one policy.csv line of a candidate"
                                                " that an analysis takes (422 analysis_too_costly past it)")
    decision_log_flush_s: PositiveFloat = Field(0.05, description="seconds before batched decision-log rows are written")
    decision_log: Literal["batched", "durable"] = Field(
        "batched", description="batched: authorize answers before its decision row is written (one commit for many);"
                               " durable: the row is committed before the answer leaves")
    relay_nats: str = Field("nats://127.0.0.1:4222", description="the NATS server of `relay` (relay --nats)")
    relay_stream: str = Field("AUDIENCE_AUTHZ_EVENTS", pattern=r"^[A-Za-z0-9_-]{1,64}$",
                              description="the JetStream stream the relay publishes events to (made if missing)")
    relay_subject_prefix: str = Field("audience_authz.events", pattern=r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$",
                                      description="events are published as <prefix>.<event type>.<account>")
    relay_batch: PositiveInt = Field(500, le=10_000, description="most events the relay reads per round")
    relay_poll_s: PositiveFloat = Field(0.2, description="seconds the relay waits when no event is left to publish")
    relay_metrics_port: int = Field(0, ge=0, le=65535, description="port of the relay's /metrics (0: none)")
    drain_seconds: NonNegativeFloat = Field(
        5.0, description="on SIGTERM, seconds /readyz answers 503 draining while the server still serves, "
                         "before it stops accepting (0: stop at once)")
    idempotency_retention_s: PositiveFloat = Field(
        86400.0, description="seconds an action's Idempotency-Key and its first answer are kept: the same call"
                             " made again within it is answered again, not applied again")
    otlp_endpoint: str = Field("", description="OTLP/HTTP collector to send trace spans to, e.g. http://collector:4318"
                               " (/v1/traces is added); empty: tracing off, no spans, no header")
    otel_service_name: str = Field("audience-authz", description="service.name of the spans sent")
    trace_sample_ratio: float = Field(1.0, ge=0.0, le=1.0, description="share of the traces begun here that are"
                                      " recorded (0 to 1); a caller's traceparent decides for its own trace")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", description="level of the JSON logs on stderr")
    prometheus_multiproc_dir: str = Field(
        "", validation_alias=AliasChoices("PROMETHEUS_MULTIPROC_DIR"),
        description="metrics directory shared by the workers; default: a temporary one made by `serve`")
    console_secret: SecretStr = Field(
        default_factory=lambda: SecretStr(secrets.token_urlsafe(32)),
        description="key that signs the /console session cookies and CSRF tokens; default: one made at start-up"
                    " (shared by the workers of one `serve`; sessions end when the server restarts)")

    console_session_hours: PositiveFloat = Field(8.0, description="absolute lifetime of a console session from its"
                                                 " login, in hours (never extended by use)")
    console_secure_cookie: bool = Field(False, description="mark the console's session cookie Secure (set it when"
                                        " the console is served over HTTPS)")

    @property
    def token_list(self) -> list[str]:
        return _split(self.tokens)

    def scoped_tokens(self) -> dict[str, list[str]]:
        """scope -> its tokens (``full``, ``check``, ``admin``)."""
        return {"full": self.token_list, "check": _split(self.check_tokens), "admin": _split(self.admin_tokens)}


class SettingsError(ValueError):
    """A setting in the environment has a value of the wrong type or range."""


def load(**overrides) -> Settings:
    """The settings: the environment, then ``overrides`` (options given on the command line;
    None means not given)."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False):
            field = str(error["loc"][0]) if error["loc"] else "?"
            variable = "PROMETHEUS_MULTIPROC_DIR" if field.startswith("PROMETHEUS") else f"AUDIENCE_AUTHZ_{field.upper()}"
            problems.append(f"{variable}: {error['msg']}")
        raise SettingsError("; ".join(problems)) from None


def environment_variables() -> dict[str, tuple[str, str]]:
    """variable -> (default, description), for the documentation's table."""
    rows = {}
    for name, field in Settings.model_fields.items():
        variable = "PROMETHEUS_MULTIPROC_DIR" if field.validation_alias else f"AUDIENCE_AUTHZ_{name.upper()}"
        default = "(none)" if field.default is None else str(field.default)
        if field.default_factory:
            default = "(generated)" if name == "console_secret" else "(shipped policy)"
        elif field.default is None:
            default = "(none)"  # unset: the feature is off
        rows[variable] = (default, field.description or "")
    return rows
