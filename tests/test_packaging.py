"""The package as a user gets it: a wheel built from the tree, installed into fresh virtual
environments, run from a directory outside the checkout.

One environment has the wheel with its dependencies (``pip install audience-authz``): its
command checks, tests and serves the shipped policy, ``--policy-dir`` still overrides it, and
a postgresql:// URL without the ``[postgresql]`` extra is a one-line error. The other has
only the client distribution (``client/``, requests alone): it loads there with no Flask and
gets a decision from the first one's server.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support import ROOT, free_port

pytestmark = pytest.mark.full

TOKEN = "packaging-token"


def run(args, *, cwd: Path, env: dict | None = None, timeout: float = 180, check: bool = True):
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check:
        assert done.returncode == 0, f"{args}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def clean_env(**extra: str) -> dict:
    """The environment without this checkout's venv, PYTHONPATH or AUDIENCE_AUTHZ_* settings."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AUDIENCE_AUTHZ_", "PYTHON", "VIRTUAL_ENV", "PROMETHEUS_MULTIPROC_DIR"))}
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
    return {**env, **extra}


def venv(path: Path, *requirements: str, no_deps: bool = False) -> Path:
    """A fresh virtual environment at ``path`` with ``requirements`` installed (by this
    environment's pip, which shares its wheel cache); its bin directory."""
    run([sys.executable, "-m", "venv", "--without-pip", path], cwd=path.parent)
    install(path / "bin" / "python", *requirements, no_deps=no_deps)
    return path / "bin"


def install(python: Path, *requirements, no_deps: bool = False) -> None:
    run([sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--disable-pip-version-check",
         *(["--no-deps"] if no_deps else []), *requirements], cwd=python.parent, env=clean_env())


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """The wheel, and the two environments it is installed in."""
    tmp = tmp_path_factory.mktemp("packaging")
    # a copy of what the build reads (pyproject.toml, its readme, the two package folders), so
    # that no stale build/ of the checkout can add files
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for name in ("service", "policy"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--disable-pip-version-check",
         "--wheel-dir", tmp / "dist", src], cwd=tmp, env=clean_env())
    [wheel] = (tmp / "dist").glob("audience_authz-*.whl")
    outside = tmp / "elsewhere"  # the working directory of every command: no checkout near it
    outside.mkdir()
    server = venv(tmp / "server-env", wheel)  # pip install audience-authz
    client = venv(tmp / "client-env", ROOT / "client")  # the client distribution alone: requests, no server
    return {"wheel": wheel, "outside": outside, "server": server, "client": client}


def cli(built, *args, check=True, **env):
    return run([built["server"] / "audience-authz", *args], cwd=built["outside"], env=clean_env(**env), check=check)


def test_the_installed_copy_is_the_wheel_with_its_shipped_policy(built):
    code = ("import audience_authz, audience_authz.config as c; "
            "print(audience_authz.__file__); print(c.shipped_policy_dir()); print(c.load().policy_dir)")
    done = run([built["server"] / "python", "-c", code], cwd=built["outside"], env=clean_env())
    module, shipped, default = done.stdout.splitlines()
    site = built["server"].parent / "lib"
    assert Path(module).is_relative_to(site) and not Path(module).is_relative_to(ROOT)
    assert Path(shipped) == Path(module).parent / "policy" == Path(default)
    assert sorted(p.name for p in Path(shipped).iterdir() if p.is_file()) == sorted(
        p.name for p in (ROOT / "policy").iterdir() if p.is_file())
    assert (Path(shipped) / "tests").is_dir()


def test_policy_check_and_test_on_the_shipped_policy(built):
    assert cli(built, "policy", "check").stdout.strip() == "policy OK"
    summary = cli(built, "policy", "test", "-q").stdout.strip().splitlines()[-1]
    assert " 0 failed, 0 errors, 0 coverage gaps" in summary and not summary.startswith("0 passed"), summary


def test_policy_dir_overrides_the_shipped_policy(built, tmp_path):
    shipped = cli(built, "policy", "test", "-q").stdout.strip().splitlines()[-1]
    own = tmp_path / "own-policy"
    shutil.copytree(ROOT / "policy", own, ignore=shutil.ignore_patterns("__pycache__"))
    with (own / "policy.csv").open("a") as f:
        f.write("# a local change: another policy version\n")
    tested = cli(built, "policy", "test", "-q", "--policy-dir", own).stdout.strip().splitlines()[-1]
    assert tested.split("(policy ")[1] != shipped.split("(policy ")[1]
    by_env = cli(built, "policy", "test", "-q", AUDIENCE_AUTHZ_POLICY_DIR=str(own)).stdout.strip().splitlines()[-1]
    assert by_env == tested
    (own / "reasons.yaml").unlink()
    broken = cli(built, "policy", "check", own, check=False)
    assert broken.returncode == 1 and broken.stdout.splitlines() == ["reasons.yaml:1:1: file is missing"]


def test_demo_then_serve_and_the_client_from_an_environment_without_flask(built, tmp_path):
    database = f"sqlite:///{tmp_path / 'demo.db'}"
    loaded = cli(built, "demo", "--database", database).stdout
    assert "loaded audiences aud_A, aud_B, aud_C" in loaded
    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen([built["server"] / "audience-authz", "serve", "--port", str(port), "--database", database],
                              cwd=built["outside"], env=clean_env(AUDIENCE_AUTHZ_TOKENS=TOKEN),
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        health = _wait_healthy(f"http://127.0.0.1:{port}", server, tmp_path / "serve.log")
        assert health == {"status": "ok"}
        client = f"""
import json, sys
from audience_authz_client import AuthzClient
authz = AuthzClient("http://127.0.0.1:{port}", "{TOKEN}", timeout=5)
view = authz.authorize("acc_owner", "view", "aud_A")
reshare = authz.authorize("acc_recipient", "share", "aud_A", target_account_id="acc_peer")
print(json.dumps({{"view": [view.allowed, view.codes, view.error],
                  "reshare": [reshare.allowed, reshare.codes, reshare.error],
                  "server_modules": sorted(m for m in ("flask", "gunicorn", "peewee", "casbin") if m in sys.modules)}}))
"""
        answers = json.loads(run([built["client"] / "python", "-c", client], cwd=built["outside"],
                                 env=clean_env()).stdout)
        assert answers["view"][0] is True and answers["view"][2] is None, answers
        assert answers["reshare"] == [False, ["reshare_forbidden"], None], answers
        assert answers["server_modules"] == []
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def test_the_client_environment_has_no_server_dependencies(built):
    for module in ("flask", "gunicorn", "psycopg2"):
        done = run([built["client"] / "python", "-c", f"import {module}"], cwd=built["outside"], env=clean_env(),
                   check=False)
        assert done.returncode == 1 and "ModuleNotFoundError" in done.stderr, (module, done.stderr)


def test_postgresql_without_its_extra_is_a_clear_error(built):
    assert run([built["server"] / "python", "-c", "import psycopg2"], cwd=built["outside"], env=clean_env(),
               check=False).returncode == 1  # the base install leaves the driver to [postgresql]
    for args in (["migrate"], ["demo"]):
        done = cli(built, *args, "--database", "postgresql://nobody@127.0.0.1:1/none", check=False)
        assert done.returncode == 1, done.stdout + done.stderr
        assert "Traceback" not in done.stderr
        assert done.stderr.strip() == ("Error: postgresql:// needs PostgreSQL's driver psycopg2, which is not "
                                       "installed: pip install 'audience-authz[postgresql]' (or psycopg2-binary)")


def test_tracing_without_its_extra_is_a_clear_error(built, tmp_path):
    assert run([built["server"] / "python", "-c", "import opentelemetry.sdk"], cwd=built["outside"], env=clean_env(),
               check=False).returncode == 1  # the base install has the API only; the SDK is [tracing]
    done = cli(built, "serve", "--database", f"sqlite:///{tmp_path / 'authz.db'}", check=False,
               AUDIENCE_AUTHZ_OTLP_ENDPOINT="http://127.0.0.1:4318")
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().endswith("Error: AUDIENCE_AUTHZ_OTLP_ENDPOINT is set but the OpenTelemetry SDK is not"
                                        " installed: pip install 'audience-authz[tracing]'"), done.stderr


def _wait_healthy(base_url: str, server: subprocess.Popen, log: Path) -> dict:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"serve exited {server.returncode}: {log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(base_url + "/healthz", timeout=1) as answer:
                return json.loads(answer.read())
        except OSError:  # not listening yet
            time.sleep(0.2)
    pytest.fail(f"serve did not answer /healthz: {log.read_text()[-3000:]}")
