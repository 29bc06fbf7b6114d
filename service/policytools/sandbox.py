"""Policy analyses in processes of their own, bounded: never in a thread that decides.

z3 is not safe to use from several threads of one process (concurrent proofs corrupted its
state, raised ``Z3Exception``, wrote non-JSON lines to stderr and crashed whole workers),
and an analysis's cost grows with the candidate it is given. So a server runs every analysis
of a candidate (``policy check``'s search, the symbolic diff, the proofs of
``properties.yaml``, a reload's vetting) through :func:`run`:

* in a small pool of processes (pebble, started from a fork server, so never forked from a
  threaded worker), each analysis alone in its process, scheduled only when the CPU is
  otherwise idle (``SCHED_IDLE``: the decisions always come first), with its memory limited
  and its stdout and stderr sent to /dev/null;
* at most ``workers`` at once and ``queue`` more waiting; past that ``429 analysis_busy``
  with ``Retry-After``;
* each for at most ``timeout_s`` seconds: past it the process is killed and the analysis
  answers ``422 analysis_too_costly``, as it does when it runs out of memory; a process that
  dies (a crash of the solver) is ``422 analysis_failed``. Nothing else is touched;
* a candidate larger than the bounds (lines of ``policy.csv``, length of one condition) is
  refused before any analysis starts (``422 analysis_too_costly``).

The command line (``audience-authz policy ...``) runs its analyses in its own process, as
before: only a server configures the sandbox (``configure``).
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import resource
import threading
from dataclasses import dataclass
from pathlib import Path

from audience_authz import metrics
from audience_authz.exceptions import ApiError

RETRY_AFTER_S = 5


@dataclass(frozen=True)
class Limits:
    workers: int = 2  # analyses running at once (processes)
    queue: int = 4  # analyses waiting for a process
    timeout_s: float = 60.0  # seconds one analysis may take
    memory_mb: int = 2048  # address space of one analysis process
    max_lines: int = 2000  # lines of a candidate's policy.csv
    max_condition: int = 4000  # characters of one condition


class _Sandbox:
    def __init__(self, limits: Limits):
        self.limits = limits
        self._lock = threading.Lock()
        self._pool = None
        self._pid = 0
        self.pending = 0  # analyses running or waiting for a process

    def pool(self):
        import pebble

        with self._lock:
            # a fork (gunicorn's worker) makes its own; a pool whose own threads died is replaced
            if self._pool is None or self._pid != os.getpid() or not self._pool.active:
                if self._pool is not None and self._pid == os.getpid():
                    self._pool.stop()
                context = multiprocessing.get_context("forkserver")
                context.set_forkserver_preload([])  # the fork server stays light: nothing of the server's
                self._pool = pebble.ProcessPool(max_workers=self.limits.workers, max_tasks=50,
                                                initializer=_child_setup, initargs=(self.limits.memory_mb,),
                                                context=context)
                self._pid = os.getpid()
            return self._pool

    def run(self, what: str, fn, *args, **kwargs):
        import pebble

        with self._lock:
            if self.pending >= self.limits.workers + self.limits.queue:
                metrics.analysis_finished("busy")
                raise ApiError(429, "analysis_busy", f"{self.pending} policy analyses run or wait on this worker,"
                               " the most it takes; retry later", headers={"Retry-After": str(RETRY_AFTER_S)})
            self.pending += 1
            self._publish()
        outcome = "error"
        try:
            try:
                future = self.pool().submit(fn, self.limits.timeout_s, *args, **kwargs)
            except RuntimeError:  # the pool broke between the check and the call: a new one
                future = self.pool().submit(fn, self.limits.timeout_s, *args, **kwargs)
            # pebble ends the analysis at timeout_s; the wait is bounded too, should the pool
            # itself fail to answer (the thread that asked is a decision thread)
            result = future.result(timeout=self.limits.timeout_s + 10)
            outcome = "ok"
            return result
        except concurrent.futures.TimeoutError:
            outcome = "too_costly"
            raise ApiError(422, "analysis_too_costly", f"the {what} took longer than the {self.limits.timeout_s:g} s"
                           " an analysis may take (AUDIENCE_AUTHZ_ANALYSIS_TIMEOUT_S); make the candidate"
                           " smaller") from None
        except MemoryError:
            outcome = "too_costly"
            raise ApiError(422, "analysis_too_costly", f"the {what} needed more than the {self.limits.memory_mb} MB"
                           " an analysis may use (AUDIENCE_AUTHZ_ANALYSIS_MEMORY_MB)") from None
        except pebble.ProcessExpired as exc:
            outcome = "failed"
            raise ApiError(422, "analysis_failed", f"the {what} ended abnormally (its process exited with"
                           f" {exc.exitcode}); nothing else was affected") from None
        finally:
            with self._lock:
                self.pending -= 1
                self._publish()
            metrics.analysis_finished(outcome)

    def close(self) -> None:
        with self._lock:
            if self._pool is not None and self._pid == os.getpid():
                self._pool.stop()
            self._pool = None

    def _publish(self) -> None:
        metrics.ANALYSES.labels("running").set(min(self.pending, self.limits.workers))
        metrics.ANALYSES.labels("queued").set(max(0, self.pending - self.limits.workers))

    def snapshot(self) -> dict:
        with self._lock:
            return {"running": min(self.pending, self.limits.workers),
                    "queued": max(0, self.pending - self.limits.workers),
                    "workers": self.limits.workers, "queue": self.limits.queue}


# what an analysis process imports as it starts, once it runs behind the decisions
PRELOAD = ("audience_authz.policytools.sandbox", "audience_authz.policytools.check", "audience_authz.policytools.impact",
           "audience_authz.policytools.symdiff", "audience_authz.policytools.verify",
           "audience_authz.policytools.reload")


def _child_setup(memory_mb: int) -> None:
    """An analysis process: quiet (z3 writes assertion failures to the standard streams,
    which are the server's JSON log), limited in memory, and behind the decisions for CPU."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    os.close(devnull)
    limit = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    # the CPU only when nothing else wants it: an analysis never slows a decision (it waits
    # for a quiet moment instead, within its time limit)
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):  # not Linux
        os.nice(19)
    import importlib

    for module in PRELOAD:  # z3 and the tools: a second of CPU, taken only when it is idle
        importlib.import_module(module)


_sandbox: _Sandbox | None = None


def configure(limits: Limits) -> None:
    """Run this process's analyses in the sandbox, with ``limits`` (a server calls it)."""
    global _sandbox
    if _sandbox is not None and _sandbox.limits == limits:
        return  # another app of this process (tests): the same pool serves it
    if _sandbox is not None:
        _sandbox.close()
    _sandbox = _Sandbox(limits)


def limits() -> Limits:
    return _sandbox.limits if _sandbox else Limits()


def run(what: str, fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` as an analysis (``fn`` a module's function, its arguments and
    answer picklable): in the sandbox when one is configured, else here."""
    if _sandbox is None:
        return fn(*args, **kwargs)
    return _sandbox.run(what, fn, *args, **kwargs)


def snapshot() -> dict | None:
    return _sandbox.snapshot() if _sandbox else None


def check_bounds(directory: str | Path) -> None:
    """Refuse (422 analysis_too_costly) a candidate too large to analyse within the limits."""
    bounds = limits()
    path = Path(directory) / "policy.csv"
    try:
        lines = path.read_bytes().splitlines()
    except OSError:
        return  # a missing file is policy check's to report
    if len(lines) > bounds.max_lines:
        raise ApiError(422, "analysis_too_costly", f"policy.csv has {len(lines):,} lines; an analysed candidate may"
                       f" have {bounds.max_lines:,} (AUDIENCE_AUTHZ_ANALYSIS_MAX_LINES)")
    for number, line in enumerate(lines, 1):
        if len(line) > bounds.max_condition:
            raise ApiError(422, "analysis_too_costly", f"policy.csv line {number} is {len(line):,} characters long; a"
                           f" line of an analysed candidate may have {bounds.max_condition:,}"
                           " (AUDIENCE_AUTHZ_ANALYSIS_MAX_CONDITION)")


# -- the analyses, as they run in an analysis process (module functions: picklable) ------------

def check(directory: str) -> list:
    """``policy check`` of ``directory``; a file it cannot even read (binary, a YAML tag
    that is not data) is one problem, not an error."""
    from audience_authz.policytools.check import check_policy

    try:
        return check_policy(Path(directory))
    except Exception as exc:  # noqa: BLE001 - the candidate's fault: refused with the reason
        return [("policy", 0, f"the candidate cannot be read: {type(exc).__name__}: {exc}")]


def symbolic(baseline: str, candidate: str):
    """The symbolic diff of two policy directories (symdiff.Report, without replay counts)."""
    from audience_authz.engine.policy import Policy
    from audience_authz.policytools import symdiff

    return symdiff.symbolic_diff(Policy.load(baseline), Policy.load(candidate))


def proofs(directory: str) -> dict | None:
    """The properties of ``directory``'s properties.yaml proven against it (None: it has none)."""
    from audience_authz.engine.policy import Policy
    from audience_authz.policytools import verify

    policy = Policy.load(directory)
    if not (policy.directory / verify.PROPERTIES_FILE).is_file():
        return None
    report = verify.run(policy)
    return {"problems": report.problems, "results": [
        {**r.as_dict(), "described": verify.describe(r.counterexample) if r.counterexample else ""}
        for r in report.results]}


def vet(directory: str) -> tuple[str, list]:
    """A reload's vetting of ``directory`` (reload.vet_stage)."""
    from audience_authz.policytools.reload import vet_stage

    return vet_stage(directory)
