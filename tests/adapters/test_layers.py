"""The layers' contracts themselves ([tool.importlinter] in pyproject.toml): the tree keeps them, and each
one breaks, naming itself, when a forbidden import is added to a copy of the package."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = "from importlinter.cli import lint_imports_command; lint_imports_command()"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the package and of pyproject.toml, to break at will."""
    shutil.copytree(ROOT / "voiceagent", tmp_path / "voiceagent", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` over ``tree``'s copy of the package (not the installed one), with its config."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    command = [sys.executable, "-c", LINT_IMPORTS, "--no-cache", "--no-logo", str(tree / "pyproject.toml")]
    return subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True, timeout=60, check=False)


def add_import(tree: Path, module: str, line: str) -> None:
    path = tree / (module.replace(".", "/") + ".py")
    source = path.read_text(encoding="utf-8")
    head, future, rest = source.partition("from __future__ import annotations\n")
    assert future, f"{module} has no __future__ import to add after"
    path.write_text(head + future + line + "\n" + rest, encoding="utf-8")


def test_the_tree_keeps_every_contract(tree: Path) -> None:
    result = lint_imports(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


FORBIDDEN = [  # (module, the import added to it, the contract it breaks, what the report says)
    (
        "voiceagent.call.core",
        "import voiceagent.twilio",
        "The call core is sans-I/O and transport-neutral",
        "voiceagent.call is not allowed to import voiceagent.twilio",
    ),
    (
        "voiceagent.call.playback",
        "import asyncio",
        "The call core is sans-I/O and transport-neutral",
        "voiceagent.call is not allowed to import asyncio",
    ),
    (
        "voiceagent.twilio.media_stream",
        "from voiceagent import bridge",
        "Adapters (Twilio, Realtime, the store, recordings, tools) never import",
        "voiceagent.twilio is not allowed to import voiceagent.bridge",
    ),
    (
        "voiceagent.store.recorder",
        "from voiceagent.app import create_app",
        "Adapters (Twilio, Realtime, the store, recordings, tools) never import",
        "voiceagent.store is not allowed to import voiceagent.app",
    ),
    (
        "voiceagent.bridge",
        "from voiceagent.twilio.transport import TwilioTransport",
        "The driver and the recordings see a Transport, never Twilio or ASGI",
        "voiceagent.bridge is not allowed to import voiceagent.twilio",
    ),
    (
        "voiceagent.operator_api",
        "from voiceagent.call.core import CallCore",
        "The app and the operator API call the service",
        "voiceagent.operator_api is not allowed to import voiceagent.call.core",
    ),
]


def test_a_forbidden_import_breaks_its_contract(tree: Path) -> None:
    """One copy broken in every way at once (one run of the linter, which reports each violation)."""
    for module, line, _, _ in FORBIDDEN:
        add_import(tree, module, line)
    result = lint_imports(tree)
    assert result.returncode != 0, result.stdout
    output = " ".join(result.stdout.split())  # the report wraps long names at 80 columns
    assert "0 kept, 4 broken" in output, output
    for _, line, contract, broken in FORBIDDEN:
        assert contract in output, (line, output)
        assert broken in output, (line, output)
