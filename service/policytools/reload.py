"""Safe hot reload: the running server takes up edited policy files, never a broken one.

Each process that serves (each gunicorn worker, or the --dev server) has a ``Reloader``:

* a watcher thread compares the policy directory's content (the four policy files and
  ``tests/``) with what it last saw, every ``poll`` seconds, and reloads on a change;
  SIGHUP to the process, and ``POST /v1/policy/reload``, ask for a reload at once;
* a candidate is read once into a snapshot directory, and that snapshot is *vetted*: it
  must keep the contract between the code and the policy (``contract.py``), pass ``policy
  check``, its own ``tests/`` suite and ``policy verify`` (its ``properties.yaml``), and
  decide every (relation, action) the service asks on the facts the gatherer builds (a
  smoke test: no accepted policy answers 500). Only then is a new ``Policy``
  built from it and swapped into the Authorizer whole (a Policy is never changed in place;
  a request in flight keeps the one it started with). A refused candidate changes
  nothing: the last good policy keeps serving, and the refusal is logged, counted in
  ``STATS`` and shown by ``/readyz``;
* accepted snapshots stay under a root shared by the workers of one server (``serve``
  makes it), with ``CURRENT`` naming the last good one: a worker that starts later (a
  respawn, or gunicorn's own SIGHUP restart) while the files on disk are broken serves
  that instead of failing.
"""

from __future__ import annotations

import atexit
import datetime
import hashlib
import logging
import os
import shutil
import signal
import tempfile
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from audience_authz import metrics
from audience_authz.engine.authorizer import Authorizer
from audience_authz.engine.policy import POLICY_FILES, Policy, PolicyError, PycasbinMismatch
from audience_authz.engine.shadow import Shadow
from audience_authz.exceptions import ApiError
from audience_authz.policytools import published, sandbox
from audience_authz.policytools.check import Problem, check_policy, contract_problems, smoke_problems
from audience_authz.vocabulary import OPTIONAL_FILES

log = logging.getLogger("audience_authz.reload")
TESTS_DIR = "tests"


@dataclass
class ReloadStats:
    """This process's reload counters (exported as metrics) and its last refusal."""

    loaded_total: int = 0  # candidates accepted and swapped in
    refused_total: int = 0  # candidates refused (the last good policy kept serving)
    last_error: dict | None = None  # the last refusal, until a good load or the files match again
    last_loaded_at: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def readiness(self) -> dict:
        with self.lock:
            return {"policy_reloads": {"loaded": self.loaded_total, "refused": self.refused_total,
                                       "last_loaded_at": self.last_loaded_at},
                    "last_reload_error": self.last_error}


STATS = ReloadStats()


@dataclass
class ReloadResult:
    status: str  # "loaded", "unchanged" or "refused"
    policy_version: str  # the version serving after this reload
    previous_version: str
    problems: list[Problem] = field(default_factory=list)

    def body(self) -> dict:
        body = {"status": self.status, "policy_version": self.policy_version,
                "previous_version": self.previous_version}
        if self.problems:
            body["problems"] = [{"file": f, "line": n, "message": m} for f, n, m in self.problems]
        return body


def vet(directory: str | Path) -> list[Problem]:
    """Why ``directory`` may not serve (see ``vet_stage``)."""
    return vet_stage(directory)[1]


def vet_stage(directory: str | Path) -> tuple[str, list[Problem]]:
    """Why ``directory`` may not serve, and the stage that says so: the contract between the
    code and the policy, ``policy check`` (which ends by deciding every (relation, action) the
    service asks), its own ``tests/`` suite, then the properties of its ``properties.yaml``
    (``policy verify``). Coverage gaps are for ``policy test`` and CI, not a refusal."""
    from audience_authz.policytools import verify
    from audience_authz.policytools.cases import run_suite

    directory = Path(directory)
    problems = check_policy(directory)
    if problems:
        contract = contract_problems(directory) if all((directory / n).is_file() for n in POLICY_FILES) else []
        return ("contract" if contract else "check"), problems
    policy = Policy.load(directory)
    if (directory / TESTS_DIR).is_dir():
        report = run_suite(policy, directory / TESTS_DIR, coverage=False)
        problems = [(f"{TESTS_DIR}/{r.case.file}", r.case.line, f"{r.status}: {r.case.name}: {'; '.join(r.messages)}")
                    for r in report.results if r.status != "pass"]
        if problems:
            return "tests", problems
    if (directory / verify.PROPERTIES_FILE).is_file():
        problems = verify.run(policy).refusals()
        if problems:
            return "verify", problems
    return "", []


def _vet_isolated(directory: Path) -> tuple[str, list[Problem]]:
    """``vet_stage`` as an analysis (policytools/sandbox.py): in a process of its own on a
    server; one that is too costly, finds no place or dies is a refusal with that reason."""
    try:
        return sandbox.run("reload's vetting", sandbox.vet, str(directory))
    except ApiError as exc:
        return "analysis", [("policy", 0, f"{exc.code}: {exc.message}")]


def decision_problems(policy: Policy) -> list[Problem]:
    """``smoke_problems`` of ``policy``, worked out once per policy version (for /readyz)."""
    found = _SMOKED.get(policy.version)
    if found is None:
        found = _SMOKED[policy.version] = smoke_problems(policy)
    return found


_SMOKED: dict[str, list[Problem]] = {}
_PASSED: set[str] = set()  # fingerprints of policy files that passed vet_stage in this process


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class Snapshots:
    """Vetted copies of policy directories under ``root``; ``CURRENT`` names the last good."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def read(directory: Path) -> dict[str, bytes]:
        """The policy files and tests of ``directory``, read once."""
        files = {name: (directory / name).read_bytes() for name in (*POLICY_FILES, *OPTIONAL_FILES)
                 if (directory / name).is_file()}
        tests = directory / TESTS_DIR
        if tests.is_dir():
            for path in sorted(tests.rglob("*")):
                if path.is_file() and path.suffix in (".yaml", ".yml"):
                    files[path.relative_to(directory).as_posix()] = path.read_bytes()
        return files

    @staticmethod
    def fingerprint(files: dict[str, bytes]) -> str:
        digest = hashlib.sha256()
        for name, data in sorted(files.items()):
            digest.update(name.encode() + b"\0" + data + b"\0")
        return digest.hexdigest()

    def write(self, files: dict[str, bytes]) -> Path:
        """A new directory holding ``files`` exactly as they were read."""
        path = self.root / f"incoming-{uuid.uuid4().hex}"
        for name, data in files.items():
            (path / name).parent.mkdir(parents=True, exist_ok=True)
            (path / name).write_bytes(data)
        return path

    def keep(self, incoming: Path, version: str) -> Path:
        """File a vetted snapshot under its version and name it CURRENT (atomically)."""
        final = self.root / version
        try:
            incoming.rename(final)
        except OSError:  # another worker filed the same version first: identical content
            shutil.rmtree(incoming, ignore_errors=True)
        self.point(version)
        return final

    def point(self, version: str) -> None:
        """Name snapshot ``version`` the last good one (atomically)."""
        pointer = self.root / f".CURRENT-{uuid.uuid4().hex}"
        pointer.write_text(version)
        os.replace(pointer, self.root / "CURRENT")

    def mark_vetted(self, fingerprint: str, version: str) -> None:
        """Files of ``fingerprint`` passed every stage and are kept as ``version``: the other
        workers of this server take them up without vetting them again."""
        marker = self.root / f".vetted-{fingerprint}-{uuid.uuid4().hex}"
        marker.write_text(version)
        os.replace(marker, self.root / f"vetted-{fingerprint}")

    def vetted(self, fingerprint: str) -> Path | None:
        try:
            path = self.root / (self.root / f"vetted-{fingerprint}").read_text().strip()
        except OSError:
            return None
        return path if path.is_dir() else None

    def name_shadow(self, name: str | None) -> None:
        """Name the shadow snapshot every worker should decide with (None: no shadow)."""
        if name is None:
            (self.root / "SHADOW").unlink(missing_ok=True)
            return
        pointer = self.root / f".SHADOW-{uuid.uuid4().hex}"
        pointer.write_text(name)
        os.replace(pointer, self.root / "SHADOW")

    def shadow(self) -> str | None:
        try:
            name = (self.root / "SHADOW").read_text().strip()
        except OSError:
            return None
        return name if (self.root / name).is_dir() else None

    def current(self) -> Path | None:
        try:
            path = self.root / (self.root / "CURRENT").read_text().strip()
        except OSError:
            return None
        return path if path.is_dir() else None


class Reloader:
    """Keeps ``authz.policy`` on the last good version of ``directory``."""

    def __init__(self, directory: str | Path, snapshots: Snapshots, poll: float = 1.0):
        self.directory = Path(directory)
        self.snapshots = snapshots
        self.poll = poll
        self.authz: Authorizer | None = None
        self._seen: str | None = None  # fingerprint of the files last considered
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._shadow_name: str | None = None  # the shadow snapshot this worker decides with

    # -- the first policy of this process --------------------------------------------------
    def initial(self) -> Authorizer:
        """The live files if they pass; else the last good snapshot (the refusal reported);
        else PolicyError: there is nothing safe to serve."""
        files = self.snapshots.read(self.directory)
        self._seen = self.snapshots.fingerprint(files)
        policy, problems, stage = self._vetted(files)
        if policy is None:
            fallback = self.snapshots.current()
            if fallback is None:
                raise PolicyError(problems)
            self.authz = Authorizer(Policy.load(fallback))
            self._refused("start", problems, stage)
            log.warning("serving the last good policy %s from %s", self.authz.policy.version, fallback)
        else:
            self.authz = Authorizer(policy)
        return self.authz

    def _vetted(self, files: dict[str, bytes]) -> tuple[Policy | None, list[Problem], str]:
        """The policy of ``files`` if it passes, else (None, problems, the stage refusing)."""
        fingerprint = self.snapshots.fingerprint(files)
        kept = self.snapshots.vetted(fingerprint)
        if kept is not None:  # these very files passed in another worker (or the parent)
            try:
                policy = Policy.load(kept)
                if not decision_problems(policy):
                    self.snapshots.point(kept.name)
                    return policy, [], ""
            except Exception:  # noqa: BLE001 - vet it again below
                log.exception("loading the vetted snapshot %s failed", kept)
        incoming = self.snapshots.write(files)
        try:
            # vetting is a function of the files alone (and of this process's code): files
            # that passed once in this process pass again without the proofs being redone
            stage, problems = ("", []) if fingerprint in _PASSED else _vet_isolated(incoming)
            if problems:
                return None, problems, stage
            _PASSED.add(fingerprint)
            version = Policy.load(incoming).version
            policy = Policy.load(self.snapshots.keep(incoming, version))
            problems = decision_problems(policy)  # the very object that would serve
            if problems:
                return None, problems, "smoke"
            self.snapshots.mark_vetted(fingerprint, version)
            return policy, [], ""
        except PycasbinMismatch:
            raise  # not the candidate's fault: no policy can be served with this pycasbin
        except Exception as exc:  # noqa: BLE001 - anything that goes wrong refuses the candidate
            log.exception("vetting the policy candidate failed")
            return None, [("policy", 0, f"the candidate could not be vetted: {type(exc).__name__}: {exc}")], "check"
        finally:
            shutil.rmtree(incoming, ignore_errors=True)

    # -- reloads ---------------------------------------------------------------------------
    def reload(self, source: str) -> ReloadResult:
        """Vet the files as they are now and, if they pass, serve them."""
        with self._lock:
            previous = self.authz.policy
            try:
                files = self.snapshots.read(self.directory)
            except OSError as exc:
                return self._refused(source, [("policy", 0, f"cannot read {self.directory}: {exc}")], "read")
            self._seen = self.snapshots.fingerprint(files)
            policy, problems, stage = self._vetted(files)
            if policy is None:
                return self._refused(source, problems, stage)
            # a code the serving policy gives may be retired, never dropped: a caller matching on
            # it would silently stop matching (a retired entry itself may go: it is given no more)
            gone = published.dropped(published.Codes(dict(previous.reasons), {}), policy.directory,
                                     f"by the policy serving, {previous.version}")
            if gone:
                return self._refused(source, gone, "check")
            with STATS.lock:
                STATS.last_error = None
                if policy.version != previous.version:
                    STATS.loaded_total += 1
                    STATS.last_loaded_at = _now()
            if policy.version == previous.version:
                return ReloadResult("unchanged", previous.version, previous.version)
            self.authz.policy = policy  # one assignment: every later decision uses the new policy
            if self.authz.shadow is not None:  # compare facts against the new policy's schema
                self.authz.shadow = Shadow(self.authz.shadow.policy, policy.facts_schema, self.authz.shadow.source)
            metrics.policy_loaded(policy.version)
            metrics.initialise(policy.outcomes())
            log.info("policy reloaded (%s): %s -> %s", source, previous.version, policy.version)
            return ReloadResult("loaded", policy.version, previous.version)

    def _refused(self, source: str, problems: list[Problem], stage: str = "check") -> ReloadResult:
        serving = self.authz.policy.version if self.authz else ""
        metrics.reload_failed(stage)
        with STATS.lock:
            STATS.refused_total += 1
            STATS.last_error = {"at": _now(), "source": source, "kept_version": serving or None, "stage": stage,
                                "problems": [{"file": f, "line": n, "message": m} for f, n, m in problems]}
        log.warning("policy reload refused (%s); still serving %s: %s (refused by %s)", source, serving or "nothing",
                    "; ".join(f"{f}:{n}: {m}" for f, n, m in problems), stage)
        return ReloadResult("refused", serving, serving, problems)

    # -- the shadow policy (engine/shadow.py), shared by the workers of one server ----------
    def set_shadow(self, directory: str | Path) -> list[Problem]:
        """Decide every live request with the policy of ``directory`` too, once it passes
        ``policy check`` (the contract included); the other workers follow at their next poll."""
        with self._lock:
            try:
                files = self.snapshots.read(Path(directory))
            except OSError as exc:
                return [("policy", 0, f"cannot read {directory}: {exc}")]
            incoming = self.snapshots.write(files)
            try:
                sandbox.check_bounds(incoming)
                problems = sandbox.run("policy check", sandbox.check, str(incoming))
            except ApiError:
                shutil.rmtree(incoming, ignore_errors=True)
                raise
            if problems:
                shutil.rmtree(incoming, ignore_errors=True)
                return problems
            name = f"shadow-{self.snapshots.fingerprint(files)[:16]}"
            try:
                incoming.rename(self.snapshots.root / name)
            except OSError:  # the same candidate is there already
                shutil.rmtree(incoming, ignore_errors=True)
            self.snapshots.name_shadow(name)
            self._shadow_name = None
            self._sync_shadow()
            return []

    def clear_shadow(self) -> None:
        with self._lock:
            self.snapshots.name_shadow(None)
            self._sync_shadow()

    def _sync_shadow(self) -> None:
        """Take up the shadow the shared root names (or none)."""
        name = self.snapshots.shadow()
        if name == self._shadow_name and (name is None) == (self.authz.shadow is None):
            return
        self._shadow_name = name
        if name is None:
            if self.authz.shadow is not None:
                log.warning("shadow policy %s cleared", self.authz.shadow.policy.version)
            self.authz.shadow = None
            return
        policy = Policy.load(self.snapshots.root / name)
        self.authz.shadow = Shadow(policy, self.authz.policy.facts_schema, name)
        log.warning("shadow policy %s deciding beside %s", policy.version, self.authz.policy.version)

    # -- triggers --------------------------------------------------------------------------
    def start(self) -> None:
        """Watch the files (when ``poll`` > 0) and answer SIGHUP, in a daemon thread."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGHUP, lambda *_: self._wake.set())
        self._thread = threading.Thread(target=self._watch, name="policy-reloader", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while True:
            asked = self._wake.wait(self.poll if self.poll > 0 else None)
            self._wake.clear()
            try:
                if asked:
                    self.reload("signal")
                elif self.snapshots.fingerprint(self.snapshots.read(self.directory)) != self._seen:
                    self.reload("watch")
                with self._lock:
                    self._sync_shadow()
            except Exception:  # noqa: BLE001 - the watcher must outlive any error
                log.exception("policy watcher")


def start(app, directory: str | Path, snapshot_root: str | Path | None = None, poll: float = 1.0,
          shadow_dir: str | Path | None = None) -> Authorizer:
    """Set up this process's reloader: its first policy and its shadow if any. The app starts
    its watcher and SIGHUP (``Reloader.start``) once it is built: a reload compiling
    conditions beside the app's own start could meet CPython 3.11's parser state, which is
    not safe across threads (``SystemError: AST constructor recursion depth mismatch``)."""
    root = snapshot_root
    if root is None:  # a process on its own: its snapshots go when it does
        root = tempfile.mkdtemp(prefix="audience-authz-policy-")
        atexit.register(shutil.rmtree, root, True)
    reloader = Reloader(directory, Snapshots(root), poll)
    authz = reloader.initial()
    if shadow_dir is not None:
        problems = reloader.set_shadow(shadow_dir)
        if problems:
            raise PolicyError(problems)
    else:
        reloader._sync_shadow()  # a shadow set on this server before this worker started
    app.extensions["policy_reloader"] = reloader
    return authz
