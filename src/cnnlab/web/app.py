"""The FastAPI app: the JSON API (`routes`), the page (`static/`), health checks, and the rules every
request goes through: a body cap and read deadline, a concurrency limit, CPU work in a bounded pool with
a deadline (`compute`), and errors as ``{"error", "status"}`` JSON whose status is the error type's
``http_status`` (`cnnlab.errors`): a 4xx for anything the client got wrong, never a 5xx for bad input,
and never a server-side absolute path in the message."""

from __future__ import annotations

import asyncio
import gc
import importlib
import logging
import os
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from cnnlab import __version__
from cnnlab.errors import CnnlabError
from cnnlab.userfiles import printable
from cnnlab.web import batching, docs, limits
from cnnlab.web.compute import ComputePool
from cnnlab.web.forms import validation_message
from cnnlab.web.limits import public_message
from cnnlab.web.registry import RunRegistry
from cnnlab.web.routes import router

STATIC = Path(__file__).parent / "static"
COMPUTE_PATHS = ("/api/explain", "/api/filter", "/api/weights")
BATCHED_PATHS = ("/api/predict",)  # its forward passes are shared (`batching`): a batch's worth at once
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
        started = False

        async def send_with_headers(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                extra = [
                    (b"server-timing", f"app;dur={(time.perf_counter() - t0) * 1000:.2f}".encode()),
                    (b"x-content-type-options", b"nosniff"),
                ]
                if page:
                    extra += [(b"content-security-policy", CSP.encode()), (b"cache-control", b"no-cache")]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        try:
            return await self.app(scope, receive, send_with_headers)
        except asyncio.CancelledError:
            # uvicorn cancels what is still running when a stop's grace period (SIGTERM) is over: the
            # client gets the JSON 503 of a server going away, not uvicorn's 500 and a logged traceback
            if not started:
                message = "the server is shutting down; try again in a moment"
                await limits.send_error(send, 503, message, {"Connection": "close", "Retry-After": "1"})
            return None


# what requests and the warm-up import on first use: the image formats' plugins, the filter playground's
# SciPy convolutions, the explainer's modules, run loading
PRELOAD = (
    "PIL.Image",
    "scipy.fft",
    "scipy.ndimage",
    "cnnlab.data",
    "cnnlab.explain.data",
    "cnnlab.explain.heatmaps",
    "cnnlab.explain.inputs",
    "cnnlab.explain.stages",
    "cnnlab.explain.stagewise",
    "cnnlab.explain.wire",
    "cnnlab.filters.conv",
    "cnnlab.filters.kernels",
    "cnnlab.run.folder",
    "cnnlab.pngsafe",
    "cnnlab.tensorfiles",
)


def preload() -> None:
    """Import, on the calling thread, every module that requests and the warm-up import on first use.

    Otherwise the first concurrent requests (on the compute threads) and the warm-up thread import them at
    the same moment, and when two threads' imports wait on each other Python's import locks hand one of them
    a partly initialised module: an ImportError (a 500) under load, seen on a fresh server."""
    for name in PRELOAD:
        importlib.import_module(name)
    importlib.import_module("PIL.Image").init()  # every format's plugin (Image.open imports them lazily)


def _description(
    max_body_bytes, max_concurrent, max_waiting, batched, batched_in_all, request_seconds
) -> str:
    """The API's description in /openapi.json and /docs: its limits, as this app enforces them."""
    return (
        "Every layer of any model cnnlab trained. Limits: request body <= "
        f"{max_body_bytes // 2**20} MiB; images PNG, JPEG, GIF, BMP or WebP, at most "
        f"{limits.MAX_PIXELS / 1e6:g} megapixels and at least {limits.MIN_SIDE}x{limits.MIN_SIDE}; "
        f"{max_concurrent} explain/filter/weights requests computed at once and {max_waiting} more "
        f"waiting, {batched} predict requests at once (their forward passes batched) and "
        f"{batched_in_all} in all, then 503; a request not done in {request_seconds:g} s: 504. Errors are "
        'JSON: {"error": "...", "status": 4xx}.'
    )


def _warm(registry) -> None:
    try:
        runs = registry.runs(refresh=True)
        if runs:
            first = next(iter(runs))
            registry.run(first)
            registry.test_split(first)
    except Exception:  # noqa: BLE001 - warming is an optimisation; the request will report the problem
        log.debug("warm-up failed", exc_info=True)
    # What is loaded by now (libraries, the server's own objects, a model) stays for the process's life:
    # frozen, it leaves the collector's full scans. Unfrozen, those 120,000 objects made each full collection
    # a 20-90 ms pause of every request (predict's p99 100+ ms under load).
    gc.freeze()


def json_error(status: int, message: str, root: Path, headers: dict | None = None):
    """The API's error answer, ``{"error": message, "status": status}``, with server paths hidden."""
    body = {"error": printable(public_message(message, root)), "status": status}
    return JSONResponse(body, status_code=status, headers=headers)


def _error_handlers(app, root: Path) -> None:
    """Every error as JSON; a `CnnlabError`'s status is its type's ``http_status`` (`cnnlab.errors`)."""

    @app.exception_handler(CnnlabError)
    async def _cnnlab(request: Request, exc: CnnlabError):
        return json_error(exc.http_status, str(exc), root)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        return json_error(422, validation_message(exc.errors()), root)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        return json_error(exc.status_code, str(exc.detail), root, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception):  # a bug, not the client's fault: say so, log it
        log.exception("unhandled error on %s", request.url.path)
        return json_error(500, f"internal error ({type(exc).__name__}); this is a bug in cnnlab", root)


def _pages(app) -> None:
    """Health checks, the page and the API reference."""

    @app.head("/healthz", include_in_schema=False)  # health and link checkers often send HEAD
    @app.get(
        "/healthz",
        response_model=docs.HealthDoc,
        response_model_exclude_none=True,
        summary="The process is up",
    )
    async def healthz():  # answered on the event loop itself: no thread, whatever is being computed
        return {"status": "ok"}

    @app.head("/readyz", include_in_schema=False)
    @app.get("/readyz", response_model=docs.HealthDoc, summary="RUNS_DIR is readable")
    def readyz():
        reg = app.state.registry
        if not reg.root.is_dir():
            return json_error(503, "the runs folder (RUNS_DIR) is missing", reg.root)
        return {"status": "ready", "models": len(reg.runs())}

    @app.head("/", include_in_schema=False)
    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/docs", include_in_schema=False)
    def api_docs():  # the API reference, rendered in the browser from /openapi.json (no CDN)
        return FileResponse(STATIC / "apidocs.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")


def _add_limits(app, limited: dict, *, wait_seconds: float, max_body_bytes: int, body_seconds: float) -> None:
    """The middleware every request passes, outermost first: `Headers`, `limits.BodyLimit` (with the
    app's body budget), then one `limits.Limiter` per group of paths in ``limited`` ({paths: (at once,
    waiting)})."""
    for paths, (most, waiting) in limited.items():
        app.add_middleware(
            limits.Limiter, paths=paths, max_concurrent=most, max_waiting=waiting, wait_seconds=wait_seconds
        )
    app.add_middleware(
        limits.BodyLimit, max_bytes=max_body_bytes, seconds=body_seconds, budget=app.state.body_budget
    )
    app.add_middleware(Headers)


class _Compute:
    """Where the app computes: a pool of threads for explains, a smaller one for predict's parsing and
    decoding (never queued behind explains), and predict's batchers."""

    def __init__(
        self,
        max_concurrent: int,
        request_seconds: float,
        max_models: int,
        max_batch: int,
        batch_window: float,
    ):
        self.max_concurrent, self.request_seconds = max_concurrent, request_seconds
        self.max_models, self.max_batch, self.batch_window = max_models, max_batch, batch_window

    def install(self, app) -> None:
        app.state.pool = ComputePool(self.max_concurrent, deadline=self.request_seconds)
        app.state.predict_pool = ComputePool(max(2, self.max_concurrent // 2), deadline=self.request_seconds)
        app.state.batchers = batching.Batchers(
            self.max_models, max_batch=self.max_batch, window=self.batch_window
        )

    @staticmethod
    async def close(app) -> None:
        """After uvicorn's drain: let work already inside torch finish (bounded), start nothing new."""
        app.state.batchers.close()
        app.state.predict_pool.close(0)
        await asyncio.to_thread(app.state.pool.close, limits.CLOSE_SECONDS)


def _lifespan(registry, compute: _Compute, *, warm: bool):
    """Serving starts: fresh compute when the app is served again after a shutdown (tests do that), the
    first model warmed in the background; serving ends: compute closed."""

    @asynccontextmanager
    async def lifespan(app):
        if app.state.pool.closed:
            compute.install(app)
        gc.freeze()  # see _warm
        if warm:
            threading.Thread(target=_warm, args=(registry,), daemon=True, name="cnnlab-warm").start()
        yield
        await compute.close(app)

    return lifespan


def create_app(
    runs_dir: str | os.PathLike,
    *,
    data_dir: str | os.PathLike | None = None,
    max_concurrent: int = 4,
    max_waiting: int = 32,
    wait_seconds: float = 5.0,
    max_models: int = 4,
    max_batch: int = batching.MAX_BATCH,
    batch_window: float = batching.WINDOW_SECONDS,
    max_body_bytes: int = limits.MAX_BODY_BYTES,
    body_budget: int = limits.BODY_BUDGET_BYTES,
    body_seconds: float = limits.BODY_SECONDS,
    request_seconds: float = limits.REQUEST_SECONDS,
    warm: bool = True,
):
    """The explainer app for the runs under ``runs_dir``.

    Args:
        runs_dir: folder scanned for runs (``config.json`` + ``model.safetensors``); model ids are the run
            folders' paths relative to it.
        data_dir: dataset folder for "random test image" (else each run's recorded folder / $CNNLAB_DATA_DIR).
        max_concurrent, max_waiting, wait_seconds: the concurrency limiter (see `cnnlab.web.limits`);
            ``max_concurrent`` is also the number of compute threads.
        max_models: loaded models kept in the LRU cache.
        max_batch, batch_window: /api/predict runs the images of concurrent requests for one model as one
            forward pass of up to ``max_batch`` images, waiting at most ``batch_window`` seconds for
            requests still being decoded (`cnnlab.web.batching`); as many predict requests as a batch
            holds are admitted at once (1: no batching).
        max_body_bytes, body_seconds: a request body larger than this is refused (413), one that has not
            arrived within ``body_seconds`` too (408).
        body_budget: request bodies held at once, in bytes, all connections together: a body that would
            go over it is refused (503) before any of it is read (`limits.BodyBudget`).
        request_seconds: the compute deadline: parsing, decoding and the model together (else 504).
        warm: on startup, load the first model and its test set in the background, so the page's first
            "random test image" does not wait for them.

    Example:
        >>> from fastapi.testclient import TestClient  # doctest: +SKIP
        >>> client = TestClient(create_app("runs"))  # doctest: +SKIP
        >>> client.get("/api/models").json()["models"]  # doctest: +SKIP
    """
    preload()
    registry = RunRegistry(runs_dir, max_models=max_models, data_dir=data_dir)
    # predict admits a batch's worth at once, and no more requests in all than the others (their bodies
    # are held in memory while they wait)
    batched = max(max_concurrent, max_batch)
    batched_waiting = max(max_concurrent + max_waiting - batched, 0)
    # python-multipart logs every malformed body it meets; the client gets a 400 saying so, and a server
    # log line per hostile request would only let a stranger fill the log
    logging.getLogger("python_multipart").setLevel(logging.ERROR)

    compute = _Compute(max_concurrent, request_seconds, max_models, max_batch, batch_window)
    app = FastAPI(
        lifespan=_lifespan(registry, compute, warm=warm),
        docs_url=None,  # Swagger UI and ReDoc load from a CDN: blank offline. /docs is our own page.
        redoc_url=None,
        title="cnnlab explainer",
        version=__version__,
        description=_description(
            max_body_bytes, max_concurrent, max_waiting, batched, batched + batched_waiting, request_seconds
        ),
    )
    app.state.registry = registry
    compute.install(app)  # here too: an app driven without lifespan events needs it
    app.state.body_budget = limits.BodyBudget(body_budget)
    _error_handlers(app, registry.root)
    app.include_router(router)
    _pages(app)
    limited = {COMPUTE_PATHS: (max_concurrent, max_waiting), BATCHED_PATHS: (batched, batched_waiting)}
    _add_limits(
        app, limited, wait_seconds=wait_seconds, max_body_bytes=max_body_bytes, body_seconds=body_seconds
    )
    return app
