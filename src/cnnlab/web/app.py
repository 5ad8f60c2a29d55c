"""The FastAPI app: the JSON API (`routes`), the page (`static/`), health checks, and the rules every
request goes through: a body cap, a concurrency limit, and errors as ``{"error", "status"}`` JSON with a
4xx code for anything the client got wrong (never a 5xx for bad input)."""

from __future__ import annotations

import logging
import os
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path

from cnnlab.web import limits

STATIC = Path(__file__).parent / "static"
COMPUTE_PATHS = ("/api/predict", "/api/explain", "/api/filter")
CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
log = logging.getLogger("cnnlab.web")


class Headers:
    """Plain ASGI middleware (no per-request task, unlike ``@app.middleware``): adds ``Server-Timing``
    (how long the server worked on the request, upload read included), ``nosniff``, and for the page
    a strict Content-Security-Policy (only our own scripts, styles and connections)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        path = scope["path"]
        page = path == "/" or path.startswith("/static")

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                extra = [
                    (b"server-timing", f"app;dur={(time.perf_counter() - t0) * 1000:.2f}".encode()),
                    (b"x-content-type-options", b"nosniff"),
                ]
                if page:
                    extra += [(b"content-security-policy", CSP.encode()), (b"cache-control", b"no-cache")]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        return await self.app(scope, receive, send_with_headers)


def _warm(registry) -> None:
    try:
        runs = registry.runs(refresh=True)
        if runs:
            first = next(iter(runs))
            registry.run(first)
            registry.test_split(first)
    except Exception:  # noqa: BLE001 - warming is an optimisation; the request will report the problem
        log.debug("warm-up failed", exc_info=True)


def create_app(
    runs_dir: str | os.PathLike,
    *,
    data_dir: str | os.PathLike | None = None,
    max_concurrent: int = 4,
    max_waiting: int = 32,
    wait_seconds: float = 5.0,
    max_models: int = 4,
    max_body_bytes: int = limits.MAX_BODY_BYTES,
    warm: bool = True,
):
    """The explainer app for the runs under ``runs_dir``.

    Args:
        runs_dir: folder scanned for runs (``config.json`` + ``model.safetensors``); model ids are the run
            folders' paths relative to it.
        data_dir: dataset folder for "random test image" (else each run's recorded folder / $CNNLAB_DATA_DIR).
        max_concurrent, max_waiting, wait_seconds: the concurrency limiter (see `cnnlab.web.limits`).
        max_models: loaded models kept in the LRU cache.
        warm: on startup, load the first model and its test set in the background, so the page's first
            "random test image" does not wait for them.

    Example:
        >>> from fastapi.testclient import TestClient  # doctest: +SKIP
        >>> client = TestClient(create_app("runs"))  # doctest: +SKIP
        >>> client.get("/api/models").json()["models"]  # doctest: +SKIP
    """
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, JSONResponse
    from fastapi.staticfiles import StaticFiles
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from cnnlab import __version__
    from cnnlab.errors import CnnlabError
    from cnnlab.web import docs
    from cnnlab.web.forms import validation_message
    from cnnlab.web.registry import RunRegistry, Unavailable, UnknownModel
    from cnnlab.web.routes import router
    from cnnlab.web.uploads import BadUpload

    registry = RunRegistry(runs_dir, max_models=max_models, data_dir=data_dir)

    @asynccontextmanager
    async def lifespan(app):
        if warm:
            threading.Thread(target=_warm, args=(registry,), daemon=True, name="cnnlab-warm").start()
        yield

    app = FastAPI(
        lifespan=lifespan,
        docs_url=None,  # Swagger UI and ReDoc load from a CDN: blank offline. /docs is our own page.
        redoc_url=None,
        title="cnnlab explainer",
        version=__version__,
        description=(
            "Every layer of any model cnnlab trained. Limits: request body <= "
            f"{max_body_bytes // 2**20} MiB; images PNG, JPEG, GIF, BMP or WebP, at most "
            f"{limits.MAX_PIXELS / 1e6:g} megapixels and at least {limits.MIN_SIDE}x{limits.MIN_SIDE}; "
            f"{max_concurrent} requests computed at once, then 503. Errors are JSON: "
            '{"error": "...", "status": 4xx}.'
        ),
    )
    app.state.registry = registry

    def error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
        return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)

    @app.exception_handler(BadUpload)
    async def _bad_upload(request: Request, exc: BadUpload):
        return error(exc.status, str(exc))

    @app.exception_handler(UnknownModel)
    async def _unknown(request: Request, exc: UnknownModel):
        return error(404, str(exc))

    @app.exception_handler(Unavailable)
    async def _unavailable(request: Request, exc: Unavailable):
        return error(409, str(exc))

    @app.exception_handler(CnnlabError)
    async def _cnnlab(request: Request, exc: CnnlabError):
        message = str(exc)
        return error(404 if message.startswith("Unknown layer") else 422, message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        return error(422, validation_message(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        return error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception):  # a bug, not the client's fault: say so, log it
        log.exception("unhandled error on %s", request.url.path)
        return error(500, f"internal error ({type(exc).__name__}); this is a bug in cnnlab")

    @app.head("/healthz", include_in_schema=False)  # health and link checkers often send HEAD
    @app.get(
        "/healthz",
        response_model=docs.HealthDoc,
        response_model_exclude_none=True,
        summary="The process is up",
    )
    def healthz():
        return {"status": "ok"}

    @app.head("/readyz", include_in_schema=False)
    @app.get("/readyz", response_model=docs.HealthDoc, summary="RUNS_DIR is readable")
    def readyz():
        reg = app.state.registry
        if not reg.root.is_dir():
            return error(503, f"runs folder {reg.root} is missing")
        return {"status": "ready", "models": len(reg.runs())}

    app.include_router(router)

    @app.head("/", include_in_schema=False)
    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/docs", include_in_schema=False)
    def api_docs():  # the API reference, rendered in the browser from /openapi.json (no CDN)
        return FileResponse(STATIC / "apidocs.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(
        limits.Limiter,
        paths=COMPUTE_PATHS,
        max_concurrent=max_concurrent,
        max_waiting=max_waiting,
        wait_seconds=wait_seconds,
    )
    app.add_middleware(limits.BodyLimit, max_bytes=max_body_bytes)
    app.add_middleware(Headers)
    return app
