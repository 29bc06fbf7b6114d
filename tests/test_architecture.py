"""ARCHITECTURE.md names every module under service/ with its layer, and no module imports
from a layer above its own. Read from the source with ``ast``: nothing is imported or run."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVICE = ROOT / "service"  # installed as the import package audience_authz
PACKAGE = "audience_authz"
ARCHITECTURE = ROOT / "ARCHITECTURE.md"
# The layers, lowest first: a module may import from its own layer and those below it.
# actions, policytools and relay stand side by side on the engine.
RANK = {"base": 0, "store": 1, "engine": 2, "actions": 3, "policytools": 3, "relay": 3, "http": 4, "entry": 5}
# the numbered files of a migrations folder are named by the folder's row
MIGRATION = re.compile(r"^store/migrations/\d{4}_\w+\.py$")
ROW = re.compile(r"^\|\s*`service/([^`]+)`\s*\|\s*([a-z]+)\s*\|", re.MULTILINE)


def documented() -> dict[str, str]:
    """path under service/ -> layer, from the module table of ARCHITECTURE.md."""
    rows: dict[str, str] = {}
    for path, layer in ROW.findall(ARCHITECTURE.read_text()):
        assert path not in rows, f"ARCHITECTURE.md lists service/{path} twice"
        rows[path] = layer
    return rows


def source_files() -> list[str]:
    return sorted(str(p.relative_to(SERVICE)) for p in SERVICE.rglob("*.py") if "__pycache__" not in p.parts)


def row_of(path: str, rows: dict[str, str]) -> str | None:
    """The table row that names ``path``: its own, its package's for an ``__init__.py``,
    the migrations folder's for a numbered migration."""
    if path in rows:
        return path
    folder = path.rsplit("/", 1)[0] + "/" if "/" in path else ""
    if path.endswith("__init__.py") and folder and folder in rows:
        return folder
    if MIGRATION.match(path) and "store/migrations/" in rows:
        return "store/migrations/"
    return None


def module_name(path: str) -> str:
    parts = [PACKAGE, *path[:-len(".py")].split("/")]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(source: str, module: str, is_package: bool, known: set[str]) -> set[str]:
    """The modules of the package that ``source`` (the text of ``module``) imports,
    wherever the import stands (in a function too); ``from p import name`` counts as
    ``p.name`` when that is a module, else as ``p``."""
    found = set()

    def nearest(name: str) -> str | None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            if target == PACKAGE or target.startswith(PACKAGE + "."):
                hit = nearest(target)
                if hit is not None and hit != module:
                    found.add(hit)
    return found


def layers() -> dict[str, tuple[str, str]]:
    """module name -> (path, layer), for every module under service/."""
    rows = documented()
    out = {}
    for path in source_files():
        row = row_of(path, rows)
        if row is not None:
            out[module_name(path)] = (path, rows[row])
    return out


def upward_imports(modules: dict[str, tuple[str, str]], sources: dict[str, str]) -> list[str]:
    known = set(modules)
    problems = []
    for module, (path, layer) in sorted(modules.items()):
        for target in sorted(imported(sources[module], module, path.endswith("__init__.py"), known)):
            target_path, target_layer = modules[target]
            # upwards, or sideways between the two layers that share a rank
            if RANK[target_layer] > RANK[layer] or (RANK[target_layer] == RANK[layer] and target_layer != layer):
                problems.append(f"service/{path} ({layer}) imports {target} ({target_layer})")
    return problems


def test_every_module_is_named_in_architecture_md():
    rows = documented()
    missing = [f"service/{path}" for path in source_files() if row_of(path, rows) is None]
    assert not missing, f"ARCHITECTURE.md's module table does not name {missing}"


def test_architecture_md_names_no_module_that_is_gone():
    files = set(source_files())
    stale = [f"service/{path}" for path in documented()
             if path not in files and not (path.endswith("/") and (SERVICE / path).is_dir())]
    assert not stale, f"ARCHITECTURE.md names {stale}, which do not exist"


def test_every_layer_is_a_known_one_and_a_subpackage_is_one_layer():
    rows = documented()
    unknown = {path: layer for path, layer in rows.items() if layer not in RANK}
    assert not unknown, f"layers not in {sorted(RANK)}: {unknown}"
    by_package: dict[str, set[str]] = {}
    for path, layer in rows.items():
        if "/" in path:
            by_package.setdefault(path.split("/", 1)[0], set()).add(layer)
    mixed = {package: sorted(found) for package, found in by_package.items() if len(found) > 1}
    assert not mixed, f"a subpackage spans layers: {mixed}"


def test_no_module_imports_from_a_layer_above_its_own():
    """Nor do actions and policytools, side by side on the engine, import each other."""
    modules = layers()
    sources = {module: (SERVICE / path).read_text() for module, (path, _) in modules.items()}
    problems = upward_imports(modules, sources)
    assert not problems, "imports against the layering of ARCHITECTURE.md:\n" + "\n".join(problems)


def test_the_layer_check_sees_an_upward_import():
    """The check itself: a store module importing the http layer, directly, relatively and
    from inside a function, is reported each time; importing downwards is not."""
    modules = {"audience_authz.store.models": ("store/models.py", "store"),
               "audience_authz.store": ("store/__init__.py", "store"),
               "audience_authz.http.errors": ("http/errors.py", "http"),
               "audience_authz.http": ("http/__init__.py", "http"),
               "audience_authz.vocabulary": ("vocabulary.py", "base")}
    for source in ("from audience_authz.http.errors import error_response",
                   "from ..http import errors",
                   "def f():\n    import audience_authz.http.errors",
                   "from audience_authz.http import errors"):
        sources = {name: "" for name in modules} | {"audience_authz.store.models": source}
        assert upward_imports(modules, sources) == [
            "service/store/models.py (store) imports audience_authz.http.errors (http)"], source
    sources = {name: "" for name in modules} | {"audience_authz.store.models": "from audience_authz import vocabulary"}
    assert upward_imports(modules, sources) == []


def test_the_layer_check_keeps_actions_and_policytools_apart():
    modules = {"audience_authz.actions.sharing": ("actions/sharing.py", "actions"),
               "audience_authz.policytools.check": ("policytools/check.py", "policytools")}
    sources = {"audience_authz.actions.sharing": "from audience_authz.policytools.check import check_policy",
               "audience_authz.policytools.check": ""}
    assert upward_imports(modules, sources) == [
        "service/actions/sharing.py (actions) imports audience_authz.policytools.check (policytools)"]
