"""The explainer web app: a FastAPI server with a JSON API and a plain HTML + ES modules page.

    from cnnlab.web import create_app      # an ASGI app for the runs in a folder
    cnnlab serve runs/ --port 8000         # the same, from the command line (127.0.0.1 by default)

The server computes nothing itself: it validates requests and serialises what `cnnlab.explain`,
`cnnlab.filters` and `cnnlab.run.folder` return. Limits are in `cnnlab.web.limits`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app", "serve"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        # importing a light submodule (`cnnlab.web.registry` for `cnnlab publish`) runs this file first:
        # deferred: so that it does not load FastAPI, uvicorn and every route
        from cnnlab.web.app import create_app

        return create_app
    if name == "serve":
        # deferred: as above (uvicorn)
        from cnnlab.web.server import serve

        return serve
    raise AttributeError(f"module 'cnnlab.web' has no attribute {name!r}")
