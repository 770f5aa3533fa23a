"""Safe by default: what the shipped settings and the source code allow, checked statically.

- The Streamlit settings bind 127.0.0.1, keep XSRF protection on and cap uploads; ``make run``
  passes the same loopback address.
- No code path in the package, the pages or the app evaluates user strings (``eval``,
  ``exec``, ``compile``), unpickles (``pickle.load(s)``, ``numpy.load(allow_pickle=True)``),
  calls ``torch.load`` without ``weights_only=True``, or starts a shell (``shell=True``,
  ``os.system``).
"""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = sorted([*REPO.joinpath("fairvlm").rglob("*.py"), *REPO.joinpath("pages").glob("*.py"),
                  REPO / "app.py"])
FORBIDDEN_CALLS = {"eval", "exec", "compile", "system", "popen", "__import__"}
UNPICKLERS = {("pickle", "load"), ("pickle", "loads"), ("dill", "load"), ("joblib", "load")}


def _calls(path: Path) -> list[tuple[ast.Call, str, str | None]]:
    """Every call in ``path`` with its function name and owner: ``None`` for ``f(...)``,
    ``"a"`` for ``a.f(...)``, ``"<expression>"`` for ``x.y().f(...)`` and the like."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if not isinstance(node, ast.Call):
            continue
        function = node.func
        if isinstance(function, ast.Name):
            found.append((node, function.id, None))
        elif isinstance(function, ast.Attribute):
            owner = function.value
            found.append((node, function.attr,
                          owner.id if isinstance(owner, ast.Name) else "<expression>"))
    return found


def _keyword(call: ast.Call, name: str) -> object:
    for keyword in call.keywords:
        if keyword.arg == name:
            return keyword.value.value if isinstance(keyword.value, ast.Constant) else "dynamic"
    return None


def test_streamlit_settings_are_safe_by_default() -> None:
    settings = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())
    server = settings["server"]
    assert server["address"] == "127.0.0.1"
    assert server["enableXsrfProtection"] is True
    assert 0 < server["maxUploadSize"] <= 1024
    assert settings["browser"]["gatherUsageStats"] is False


def test_make_run_binds_the_loopback_address() -> None:
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^HOST \?= 127\.0\.0\.1$", makefile, re.MULTILINE)
    assert "--server.address $(HOST)" in makefile


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_code_runs_user_strings_or_unpickles(path: Path) -> None:
    for call, name, owner in _calls(path):
        where = f"{path.relative_to(REPO)}:{call.lineno}"
        if owner is None or owner == "os":
            assert name not in FORBIDDEN_CALLS, f"{where}: {name}(...)"
        assert (owner, name) not in UNPICKLERS, f"{where}: {owner}.{name}(...)"
        if (owner, name) == ("torch", "load"):
            assert _keyword(call, "weights_only") is True, f"{where}: torch.load without " \
                "weights_only=True"
        if (owner, name) == ("np", "load"):
            assert _keyword(call, "allow_pickle") in (None, False), f"{where}: allow_pickle"
        assert _keyword(call, "shell") in (None, False), f"{where}: shell=True"


def test_the_scan_sees_what_it_must_refuse(tmp_path: Path) -> None:
    """The checks above can fail: a file doing each forbidden thing is caught."""
    bad = tmp_path / "bad.py"
    bad.write_text("import os, pickle, torch, subprocess\n"
                   "eval(s)\nos.system(s)\npickle.loads(b)\ntorch.load(f)\n"
                   "subprocess.run(s, shell=True)\n")
    names = {(owner, name) for _, name, owner in _calls(bad)}
    assert {(None, "eval"), ("os", "system"), ("pickle", "loads"), ("torch", "load")} <= names
    load = next(call for call, name, owner in _calls(bad) if (owner, name) == ("torch", "load"))
    run = next(call for call, name, owner in _calls(bad) if name == "run")
    assert _keyword(load, "weights_only") is None and _keyword(run, "shell") is True
