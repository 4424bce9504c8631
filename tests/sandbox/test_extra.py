"""The sandbox is an optional extra: the package imports without it, and the sandbox says what to install."""

from __future__ import annotations

import subprocess
import sys

SANDBOX_ONLY = ("starlette", "uvicorn", "jsonschema")


def _run(code: str) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh interpreter (this one has long imported everything)."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_importing_the_package_loads_none_of_the_sandbox_dependencies() -> None:
    out = _run(
        "import sys, trackstar_dagster\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {SANDBOX_ONLY!r}))\n"
        "print(sorted(m for m in sys.modules if m.startswith('trackstar_dagster.sandbox')))\n"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["[]", "[]"]


def test_sandbox_without_its_extra_names_the_extra() -> None:
    for missing in SANDBOX_ONLY:
        # None in sys.modules makes ``import missing`` fail as if the package were not installed
        out = _run(f"import sys; sys.modules[{missing!r}] = None\nimport trackstar_dagster.sandbox.server\n")
        assert out.returncode != 0
        last = out.stderr.strip().splitlines()[-1]
        assert last.startswith("ImportError: The Trackstar sandbox needs"), out.stderr
        assert repr(missing) in last and "pip install 'trackstar-dagster[sandbox]'" in last, last
