"""The server of tests/test_errors.py: ``create_app`` plus test routes that fail the way a bug does.

Run as ``python -m tests.errors_server PORT`` with the ``EOFUSION_*`` settings in the environment. It is a real
server process (uvicorn on a loopback port, its log on stdout); its only additions are under ``/test-only``.
"""

from __future__ import annotations

import os
import sys

import uvicorn

from eofusion.config import Settings
from eofusion.errors import Busy, Conflict, EOFusionError, InvalidInput, NotFound, TooLarge

#: What ``/test-only/raise/{kind}`` raises.
RAISED: dict[str, EOFusionError] = {
    "invalid": InvalidInput("bad value"), "missing": NotFound("no such thing"), "clash": Conflict("taken"),
    "large": TooLarge("too much"), "busy": Busy("queue full", retry_after=7)}
#: The message of the bug ``/test-only/boom`` raises (a test checks it stays out of the answer).
BUG = "a bug on purpose (test route)"


def main(port: int) -> None:
    """Serve the app with the test routes on 127.0.0.1:``port``."""
    from server.app import create_app

    app = create_app(Settings.from_env(dict(os.environ)))

    async def boom() -> None:
        raise RuntimeError(BUG)

    async def raise_kind(kind: str) -> None:
        raise RAISED[kind]

    app.add_api_route("/test-only/boom", boom)
    app.add_api_route("/test-only/raise/{kind}", raise_kind)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main(int(sys.argv[1]))
