"""A local Trackstar API sandbox (Starlette on uvicorn) for tests, benchmarks and the demo.

``run_sandbox()`` starts it from Python; ``trackstar-sandbox`` / ``python -m trackstar_dagster.sandbox``
from the shell. See ``server.py`` for the handle, ``app.py`` for the behaviour and how the app is assembled.
"""

from trackstar_dagster.sandbox.faults import FaultConfig
from trackstar_dagster.sandbox.server import SandboxHandle, run_sandbox
from trackstar_dagster.sandbox.state import ConnectionSpec

__all__ = ["ConnectionSpec", "FaultConfig", "SandboxHandle", "run_sandbox"]
