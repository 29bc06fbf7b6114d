"""Errors an API call can end in, each with its HTTP status and stable code."""

from __future__ import annotations


class ApiError(Exception):
    """``{"error": {"code", "message"}}`` with ``status`` (and ``headers``, e.g. a
    ``Retry-After`` for a refusal that passes)."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


class NotFound(ApiError):
    def __init__(self, kind: str, id_: str):
        super().__init__(404, f"unknown_{kind}", f"no {kind.replace('_', ' ')} with id {id_!r}")


class Denied(Exception):
    """A policy deny: 403 with the reasons of every refused check; nothing was changed."""

    def __init__(self, outcomes: list):
        super().__init__("denied")
        self.outcomes = outcomes

    @property
    def reasons(self) -> list[dict]:
        return [r for o in self.outcomes for r in o.reasons]


class CannotCarryOut(ApiError):
    """An action the policy allowed that the service cannot carry out (a lookalike refresh of
    an audience with no seed, a share that exists, a reference to nothing): 409 or 422 with
    its own code, whatever the policy says. Never a rule: rules are in policy/."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(status, code, f"{message} (the policy allows it, but it cannot be carried out)")
