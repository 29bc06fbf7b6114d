"""The cost cap of one request: how much work (checks, and the effects they plan) one
call to the decision endpoints may make the service do.

A request opens a budget (``limited``); every decision charges one, and every effect
plan charges what it will touch, counted in SQL *before* it is built, so a request past
its cap stops at once instead of after the work (a batch of 1,000 previews of stopping
a share with thousands of ad groups once held a worker for two minutes). Outside a
budget (an action applying its own effects) nothing is counted: an owner can always stop
sharing, however large the audience.
"""

from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass

from audience_authz.exceptions import ApiError


@dataclass
class Budget:
    cap: int
    spent: int = 0


_current: contextvars.ContextVar[Budget | None] = contextvars.ContextVar("request_budget", default=None)


class TooCostly(ApiError):
    def __init__(self, cap: int):
        super().__init__(422, "request_too_costly",
                         f"the request would cost more than {cap} units (one per check plus one per"
                         " effect planned); send fewer checks, or fewer at a time")


@contextlib.contextmanager
def limited(cap: int):
    """Count the work of the block against ``cap``."""
    token = _current.set(Budget(cap))
    try:
        yield
    finally:
        _current.reset(token)


def counting() -> bool:
    return _current.get() is not None


def charge(units: int) -> None:
    """Spend ``units``; raise TooCostly (422) when that passes the cap."""
    budget = _current.get()
    if budget is None:
        return
    budget.spent += units
    if budget.spent > budget.cap:
        raise TooCostly(budget.cap)
