"""The client-only distribution (client/): what a calling service installs and type-checks.

A new service installs ``audience-authz-client`` alone into a fresh virtual environment:
it gets ``requests`` and its dependencies and nothing of the server; ``mypy --strict``
checks a caller against the installed package; the names it lists are the service's.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import typing
import venv
from pathlib import Path

import pytest
import yaml

import audience_authz_client as client_pkg
from audience_authz import vocabulary
from tests.support import ROOT

CLIENT = ROOT / "client"
CALLER = CLIENT / "examples" / "caller.py"


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory) -> Path:
    """A fresh venv with ``pip install client/`` (not editable: as a service would get it)."""
    where = tmp_path_factory.mktemp("client-venv")
    venv.create(where, with_pip=True)
    subprocess.run([where / "bin" / "python", "-m", "pip", "install", "--quiet", str(CLIENT)], check=True,
                   timeout=600, capture_output=True)
    return where


def _run(python: Path, code: str) -> str:
    """``code`` run by ``python`` outside the checkout (whose egg-info would be seen)."""
    return subprocess.run([python, "-c", code], check=True, capture_output=True, text=True, timeout=60,
                          cwd=python.parent).stdout


@pytest.mark.full
def test_the_client_installs_with_requests_alone(client_venv):
    python = client_venv / "bin" / "python"
    listing = _run(python, textwrap.dedent("""
        import importlib.metadata as m, json, re
        dists = {d.metadata["Name"].lower().replace("_", "-"): [re.split(r"[ ;<>=!~\\[(]", r)[0].lower()
                 for r in (d.requires or []) if "extra ==" not in r] for d in m.distributions()}
        files = [str(f) for f in m.files("audience-authz-client")]
        print(json.dumps({"dists": dists, "files": files}))
    """))
    import json

    found = json.loads(listing)
    dists, files = found["dists"], found["files"]
    assert dists["audience-authz-client"] == ["requests"]
    closure, todo = set(), ["audience-authz-client"]
    while todo:  # what the client pulls in, transitively
        name = todo.pop().replace("_", "-")
        if name not in closure:
            closure.add(name)
            todo += dists.get(name, [])
    installed = set(dists) - {"pip", "setuptools", "wheel"}  # what venv itself brings
    assert installed == closure, installed - closure
    assert not closure & {"flask", "gunicorn", "peewee", "pycasbin", "psycopg2-binary", "pydantic", "audience-authz"}
    assert "audience_authz_client/py.typed" in files
    assert _run(python, "import audience_authz_client as c; print(c.AuthzClient.__name__)").strip() == "AuthzClient"
    gone = subprocess.run([python, "-c", "import audience_authz"], capture_output=True, timeout=60,
                          cwd=python.parent)
    assert gone.returncode != 0  # the server is not there, and the client does not need it


@pytest.mark.full
def test_mypy_strict_checks_a_caller_against_the_installed_client(client_venv, tmp_path):
    def mypy(path: Path) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental",
                               "--python-executable", str(client_venv / "bin" / "python"), str(path)],
                              capture_output=True, text=True, timeout=300, cwd=tmp_path)

    good = mypy(CALLER)
    assert good.returncode == 0, good.stdout + good.stderr

    bad = tmp_path / "bad_caller.py"
    bad.write_text(textwrap.dedent("""
        from audience_authz_client import AuthzClient
        authz = AuthzClient("http://authz", "t")
        authz.authorize("acc", "aply", "aud")
        print(authz.share("acc", "aud", ["b"]).recipients)
    """))
    result = mypy(bad)
    assert result.returncode == 1
    errors = result.stdout
    assert 'bad_caller.py:4: error: Argument 2 to "authorize"' in errors  # "aply" is no action
    assert 'bad_caller.py:5: error: Item "Denied" of "ShareResult | Denied"' in errors  # a deny must be looked at
    assert errors.count(": error:") == 2  # (reason codes are open: a policy may add one, see below)


@pytest.mark.full  # mypy in a child process: the full tier
def test_the_client_package_itself_passes_mypy_strict():
    result = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental",
                             str(CLIENT / "src" / "audience_authz_client")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def _names(literal) -> set[str]:
    return set(typing.get_args(literal))


def test_the_clients_names_are_the_services():
    # reason codes are open (a policy author adds codes): each code the client knows is one the
    # service has, ever published (reasons.yaml keeps a retired code, marked), never the reverse
    listed = yaml.safe_load((ROOT / "policy" / "reasons.yaml").read_text())
    reasons = {**listed["deny"], **(listed.get("retired") or {})}
    service_only = {"response_too_large"}  # a fail-closed deny the service answers (http/errors.py)
    client_own = set(client_pkg.CLIENT_REASONS)
    assert client_own <= set(client_pkg.KNOWN_REASON_CODES)
    assert set(client_pkg.KNOWN_REASON_CODES) - client_own <= set(reasons) | service_only
    assert not client_own & set(reasons)
    assert client_pkg.ReasonCode is str and client_pkg.EventType is str and client_pkg.EffectType is str
    assert set(vocabulary.SERVICE_REASONS) <= set(reasons)
    assert '"response_too_large"' in (ROOT / "service" / "http" / "errors.py").read_text()
    assert _names(client_pkg.Action) == set(vocabulary.AUDIENCE_ACTIONS)
    assert _names(client_pkg.MatrixAction) == set(vocabulary.MATRIX_ACTIONS)
    assert _names(client_pkg.Source) == set(vocabulary.SOURCES)
    assert _names(client_pkg.KnownEffectType) == set(vocabulary.EFFECTS) | {"pause_ad_group"}
    assert set(client_pkg.types.EFFECT_CLASSES) == _names(client_pkg.KnownEffectType)
