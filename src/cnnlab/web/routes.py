"""The JSON API. Each endpoint validates its input, calls `cnnlab.explain` / `cnnlab.filters` /
`cnnlab.run.folder`, and serialises what they return; nothing is computed here."""

from __future__ import annotations

import asyncio
import json
import math
import time
import weakref
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import ValidationError
from pydantic_core import PydanticSerializationError
from torch import nn

from cnnlab import filters
from cnnlab.errors import CnnlabError
from cnnlab.explain.heatmaps import gradcam_and_saliency
from cnnlab.explain.schema import (
    ActivationsDoc,
    InputInfo,
    ModelSchema,
    PredictionDoc,
    encode_tensor,
    stats_of,
)
from cnnlab.explain.stages import find_stage, stage_kind, stage_params
from cnnlab.explain.stagewise import activations, prediction
from cnnlab.filters import KERNEL_INFO, KERNELS
from cnnlab.filters.kernels import normalize_kernel, validate_kernel
from cnnlab.models import count_params
from cnnlab.web import docs
from cnnlab.web.batching import BatchItem
from cnnlab.web.compute import within
from cnnlab.web.forms import ExplainForm, FilterForm, ImageForm, openapi_body, read_form
from cnnlab.web.limits import public_message
from cnnlab.web.registry import REQUEST_RESCAN_SECONDS
from cnnlab.web.uploads import BadUpload, check_content_type, model_input, read_image

router = APIRouter()

MAX_WEB_KERNEL = 15  # largest playground kernel side (the CLI takes up to 63)
ERRORS: dict[int | str, dict[str, Any]] = {  # FastAPI's `responses` type
    c: {"model": docs.ErrorDoc, "description": d}
    for c, d in {
        400: "malformed form body (multipart framing, part headers, boundary)",
        404: "unknown model or layer",
        408: "the request body did not arrive in time",
        409: "the model or its test set cannot be loaded here",
        411: "a chunked request body: send the body with a Content-Length",
        413: "body over the byte limit",
        415: "not an accepted image format",
        422: "invalid parameter or image (too many pixels, too small, truncated, ...)",
        503: "over capacity: retry shortly",
        504: "the request did not finish within the server's deadline",
    }.items()
}
# what a GET can answer: no body, so no form framing (400), body deadline (408), size (413) or type (415)
GET_ERRORS: dict[int | str, dict[str, Any]] = {
    c: v for c, v in ERRORS.items() if c not in (400, 408, 413, 415)
}


def _json(doc) -> Response:
    try:
        return Response(doc.model_dump_json(by_alias=True), media_type="application/json")
    except PydanticSerializationError:  # text from a run's files that is not UTF-8 (a lone surrogate):
        body = json.dumps(doc.model_dump(by_alias=True, mode="json"))  # sent as JSON escapes, not a 500
        return Response(body, media_type="application/json")


def _registry(request: Request):
    return request.app.state.registry


async def _compute(request: Request, form: type, work):
    """A compute endpoint: parse and validate the form (`cnnlab.web.forms`) and call
    ``work(registry, form, upload)``, both in the compute pool (`cnnlab.web.compute`), off the event loop."""
    body = await request.body()  # already read, within the byte cap, by limits.BodyLimit
    content_type = request.headers.get("content-type", "")
    registry = _registry(request)

    def job():
        fields, upload = read_form(body, content_type, form)
        return work(registry, fields, upload)

    return await request.app.state.pool.run(job)


@router.get("/api/models", response_model=docs.ModelsDoc, summary="The runs in RUNS_DIR")
@router.head("/api/models", include_in_schema=False)  # link and health checkers send HEAD
def list_models(request: Request):
    """Rendered once per change of the runs folder (`RunRegistry.generation`): clients polling it cost a
    scan (file signatures only, one at a time, shared by the callers waiting for it) and no rendering."""
    reg = _registry(request)
    reg.runs(refresh=True, max_age=REQUEST_RESCAN_SECONDS)
    generation, body = _LISTINGS.get(reg, (-1, b""))
    if generation != reg.generation:
        generation = reg.generation  # read before the table: a newer table is never cached as older
        body = _listing(reg)
        _LISTINGS[reg] = (generation, body)
    return Response(body, media_type="application/json")


_LISTINGS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # registry -> (generation, answer)


def _listing(reg) -> bytes:
    runs = reg.runs()
    models, unavailable = [], reg.unavailable()
    for e in runs.values():
        try:
            models.append(docs.ModelEntry(**e.describe()))
        except ValidationError as exc:  # one odd run never breaks the listing of the others
            unavailable[e.id] = (
                f"{e.path / 'results.json'} does not describe the run: {exc.errors()[0]['msg']}"
            )
    broken = [docs.UnavailableEntry(id=k, error=public_message(v, reg.root)) for k, v in unavailable.items()]
    return bytes(_json(docs.ModelsDoc(runs_dir=str(reg.root), models=models, unavailable=broken)).body)


@router.get("/api/kernels", response_model=docs.KernelsDoc, summary="Named kernels for the playground")
def list_kernels():
    entries = [
        docs.KernelEntry(name=n, description=i.description, source=i.source, matrix=KERNELS[n].tolist())
        for n, i in KERNEL_INFO.items()
        if max(KERNELS[n].shape) <= MAX_WEB_KERNEL
    ]
    return _json(docs.KernelsDoc(kernels=entries, max_size=MAX_WEB_KERNEL))


@router.get("/api/weights", response_model=docs.WeightsDoc, responses=GET_ERRORS, summary="A layer's weights")
async def weights(
    request: Request,
    model: str = Query(..., max_length=300, description="a model id from /api/models"),
    layer: str = Query(..., max_length=200),
    channel: int | None = Query(None, ge=0, description="one output channel (conv) or unit (dense)"),
):
    registry = _registry(request)
    return await request.app.state.pool.run(lambda: _weights(registry, model, layer, channel))


def _weights(registry, model: str, layer: str, channel: int | None) -> Response:
    run = registry.run(model)
    _, module = find_stage(run.model, layer)
    kind = stage_kind(module)
    if not isinstance(module, (nn.Conv2d, nn.Linear)):  # the kinds "conv" and "dense"
        raise CnnlabError(f"layer {layer!r} is a {kind} stage; weights are shown for conv and dense layers")
    w, b = module.weight.detach().cpu(), module.bias
    if channel is not None:
        if channel >= w.shape[0]:
            raise CnnlabError(f"channel must be in 0..{w.shape[0] - 1}, got {channel}")
        w = w[channel]
        b = b[channel : channel + 1] if b is not None else None
    doc = docs.WeightsDoc(
        model=model,
        layer=layer,
        kind=kind,
        params=stage_params(module),
        channel=channel,
        weight=encode_tensor(w.float().numpy()),
        bias=encode_tensor(b.detach().cpu().float().numpy()) if b is not None else None,
    )
    return _json(doc)


@router.post(
    "/api/predict",
    response_model=PredictionDoc,
    responses=ERRORS,
    summary="Top-k classes for one image",
    openapi_extra=openapi_body(ImageForm),
)
async def predict(request: Request):
    """The form is parsed and the image decoded in predict's own pool of threads (never on the event
    loop: a small file can be costly to decode, and never queued behind explanations); the forward pass
    runs on the model's batcher, shared with the other requests for it that arrive meanwhile
    (`cnnlab.web.batching`)."""
    body = await request.body()  # already read, within the byte cap, by limits.BodyLimit
    content_type = request.headers.get("content-type", "")
    registry, batchers = _registry(request), request.app.state.batchers
    pool = request.app.state.predict_pool
    loop = asyncio.get_running_loop()
    end = loop.time() + pool.deadline  # one deadline for the decode and the batch together
    item = BatchItem(loop)

    def prepare():
        form, upload = read_form(body, content_type, ImageForm)
        batcher = batchers.get(form.model, registry.run(form.model).model)
        with batcher.expecting():
            run, prepared = _input(registry, form, upload)
            batcher.submit(item, prepared.tensor)
        return form, run, prepared

    try:
        form, run, prepared = await pool.run(prepare)
        logits, probabilities = await within(item.future, end - loop.time(), limit=pool.deadline)
    finally:
        item.dropped = True
    return _predict_answer(run, form, prepared, logits, probabilities)


def _predict_answer(run, form: ImageForm, prepared, logits, probabilities) -> Response:
    """The request's own answer from its row of the batch (tens of microseconds: a dozen floats)."""
    doc = PredictionDoc(
        model=_model_info(run, form.model),
        input=InputInfo(**prepared.info()),
        prediction=prediction(logits, run.classes, probabilities).to_schema(form.top_k),
    )
    return _json(doc)


def _input(registry, form: ImageForm, upload, run=None):
    return model_input(
        registry,
        form.model,
        data=upload.data if upload else None,
        content_type=upload.content_type if upload else None,
        test_index=form.test_index,
        pick_random=form.random,
        invert=form.invert,
        run=run,
    )


_PARAMS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # loaded model -> its parameter count


def _model_info(run, model_id: str):
    params = _PARAMS.get(run.model)
    if params is None:  # counted once per loaded model, not per request (a walk over every module)
        params = _PARAMS[run.model] = count_params(run.model)
    return ModelSchema(
        id=model_id,
        name=str(run.config.get("model")),
        input_shape=list(run.input_shape),
        classes=run.classes,
        params=params,
    )


@router.post(
    "/api/explain",
    response_model=ActivationsDoc,
    responses=ERRORS,
    summary="Every stage's activations, the prediction, Grad-CAM and saliency",
    openapi_extra=openapi_body(ExplainForm),
)
async def explain(request: Request):
    return await _compute(request, ExplainForm, _explain)


def _explain(registry, form: ExplainForm, upload) -> Response:
    run, prepared = _input(registry, form, upload)
    if form.class_index is not None and form.class_index >= len(run.classes):
        raise CnnlabError(f"class_index must be in 0..{len(run.classes) - 1}, got {form.class_index}")
    acts = activations(run.model, prepared, classes=run.classes, model_name=str(run.config.get("model")))
    cam, sal = gradcam_and_saliency(
        run.model,
        prepared,
        layer=form.gradcam_layer,
        class_index=form.class_index,
        classes=run.classes,
        want_gradcam=form.gradcam,
        want_saliency=form.saliency,
    )
    doc = acts.to_schema(
        encoding=form.encoding,
        precision=form.precision,
        top_k=form.top_k,
        model_id=form.model,
        gradcam=cam,
        saliency=sal,
    )
    doc.model = _model_info(run, form.model)
    return _json(doc)


def _kernel(text: str):
    text = text.strip()
    if text in KERNELS:
        return text, KERNELS[text].copy()
    if not text.startswith("["):
        raise CnnlabError(
            f"kernel must be a name ({', '.join(list(KERNELS)[:6])}, ...) or a JSON matrix like [[1,0,-1],[2,0,-2],[1,0,-1]]"
        )
    try:
        values = json.loads(text)
    except (ValueError, RecursionError):
        raise CnnlabError("kernel is not valid JSON; write it like [[1,0,-1],[2,0,-2],[1,0,-1]]") from None
    if not isinstance(values, list):
        raise CnnlabError("kernel must be a list of rows like [[1,0,-1],[2,0,-2],[1,0,-1]]")
    k = validate_kernel(values, "kernel")
    if max(k.shape) > MAX_WEB_KERNEL:
        raise CnnlabError(
            f"kernel is {k.shape[0]}x{k.shape[1]}; the page takes up to {MAX_WEB_KERNEL}x{MAX_WEB_KERNEL}"
        )
    return None, k


@router.post(
    "/api/filter",
    response_model=docs.FilterDoc,
    responses=ERRORS,
    summary="Convolve an image with a kernel (the filter playground)",
    openapi_extra=openapi_body(FilterForm),
)
async def filter_image(request: Request):
    return await _compute(request, FilterForm, _filter)


def _filter(registry, form: FilterForm, upload) -> Response:
    t0 = time.perf_counter()
    name, k = _kernel(form.kernel)
    if upload is not None:
        check_content_type(upload.content_type)
        img = read_image(upload.data, gray=True)
    else:
        img = filters.sample_image(gray=True)
    factor = max(1, math.ceil(max(img.shape) / form.max_side))
    if factor >= min(img.shape):  # shrinking the long side to max_side would leave no short side
        h, w = img.shape
        raise BadUpload(
            f"the image is {w}x{h}: too elongated to shrink to {form.max_side} pixels on its longer side; "
            "crop it, or raise max_side"
        )
    if factor > 1:
        img = filters.downsample(img, factor)
    out = filters.apply(
        img,
        k,
        boundary=form.boundary,
        mode=form.mode,
        stride=form.stride,
        op=form.op,
        normalize=form.normalize,
    )
    if form.normalize:
        k = normalize_kernel(k)  # report the kernel that was applied
    doc = docs.FilterDoc(
        kernel=k.tolist(),
        kernel_name=name,
        op=form.op,
        boundary=form.boundary,
        mode=form.mode,
        stride=form.stride,
        downsample=factor,
        input=encode_tensor(img) if form.echo_input else None,
        output=encode_tensor(out),
        stats=stats_of(out),
        seconds=round(time.perf_counter() - t0, 4),
    )
    return _json(doc)
