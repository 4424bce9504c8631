"""A local Trackstar API sandbox (Starlette on uvicorn) for tests, benchmarks and the demo.

``run_sandbox()`` starts it from Python; ``trackstar-sandbox`` / ``python -m trackstar_dagster.sandbox``
from the shell. See ``server.py`` for the handle, ``app.py`` for the behaviour and how the app is assembled.

It is an optional part of the package: ``pip install 'trackstar-dagster[sandbox]'`` brings what it runs on
(starlette, uvicorn, jsonschema), which a pipeline talking to Trackstar does not need. Nothing outside this
package imports it, so ``import trackstar_dagster`` works without them.
"""

try:
    import jsonschema  # noqa: F401 - checked here so every entry point fails the same, clear way
    import starlette  # noqa: F401
    import uvicorn  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by tests/sandbox/test_extra.py
    raise ImportError(
        f"The Trackstar sandbox needs {exc.name or 'a missing package'!r}, which comes with the 'sandbox' extra: "
        "pip install 'trackstar-dagster[sandbox]'"
    ) from exc

from trackstar_dagster.sandbox.faults import FaultConfig
from trackstar_dagster.sandbox.server import SandboxHandle, run_sandbox
from trackstar_dagster.sandbox.state import ConnectionSpec

__all__ = ["ConnectionSpec", "FaultConfig", "SandboxHandle", "run_sandbox"]
