"""The JSON API. Each endpoint validates its input, calls `cnnlab.explain` / `cnnlab.filters` /
`cnnlab.runs`, and serialises what they return; nothing is computed here."""

from __future__ import annotations

import json
import math
import time
from typing import Literal

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import Response

from cnnlab.explain.schema import ActivationsDoc, PredictionDoc, encode_tensor, stats_of
from cnnlab.web import docs, limits
from cnnlab.web.uploads import BadUpload, model_input, read_image

router = APIRouter()

MAX_WEB_KERNEL = 15  # largest playground kernel side (the CLI takes up to 63)
ERRORS = {
    c: {"model": docs.ErrorDoc, "description": d}
    for c, d in {
        404: "unknown model or layer",
        409: "the model or its test set cannot be loaded here",
        413: "body over the byte limit",
        415: "not an accepted image format",
        422: "invalid parameter or image (too many pixels, too small, truncated, ...)",
        503: "over capacity: retry shortly",
    }.items()
}


FilterFileField = File(None, description="an image; none: the bundled cat photo")


async def form_only(request: Request) -> None:
    """The compute endpoints take form fields (multipart/form-data for uploads); say so on anything else."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in ("multipart/form-data", "application/x-www-form-urlencoded"):
        raise BadUpload(
            f"send the fields as multipart/form-data (or application/x-www-form-urlencoded), not {ctype or 'no content type'!r}",
            415,
        )


def _json(doc) -> Response:
    return Response(doc.model_dump_json(by_alias=True), media_type="application/json")


def _registry(request: Request):
    return request.app.state.registry


def _upload(file: UploadFile | None) -> tuple[bytes | None, str | None]:
    if file is None:
        return None, None
    return file.file.read(limits.MAX_BODY_BYTES + 1), file.content_type


@router.get("/api/models", response_model=docs.ModelsDoc, summary="The runs in RUNS_DIR")
def list_models(request: Request):
    reg = _registry(request)
    runs = reg.runs(refresh=True)
    models = [docs.ModelEntry(**e.describe()) for e in runs.values()]
    return _json(docs.ModelsDoc(runs_dir=str(reg.root), models=models))


@router.get("/api/kernels", response_model=docs.KernelsDoc, summary="Named kernels for the playground")
def list_kernels():
    from cnnlab.filters import KERNEL_INFO, KERNELS

    entries = [
        docs.KernelEntry(name=n, description=i.description, source=i.source, matrix=KERNELS[n].tolist())
        for n, i in KERNEL_INFO.items()
        if max(KERNELS[n].shape) <= MAX_WEB_KERNEL
    ]
    return _json(docs.KernelsDoc(kernels=entries, max_size=MAX_WEB_KERNEL))


@router.get("/api/weights", response_model=docs.WeightsDoc, responses=ERRORS, summary="A layer's weights")
def weights(
    request: Request,
    model: str = Query(..., max_length=300, description="a model id from /api/models"),
    layer: str = Query(..., max_length=200),
    channel: int | None = Query(None, ge=0, description="one output channel (conv) or unit (dense)"),
):
    from cnnlab.explain.stages import find_stage, stage_kind, stage_params

    run = _registry(request).run(model)
    _, module = find_stage(run.model, layer)
    kind = stage_kind(module)
    if kind not in ("conv", "dense"):
        raise BadUpload(f"layer {layer!r} is a {kind} stage; weights are shown for conv and dense layers")
    w, b = module.weight.detach().cpu(), module.bias
    if channel is not None:
        if channel >= w.shape[0]:
            raise BadUpload(f"channel must be in 0..{w.shape[0] - 1}, got {channel}")
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


ModelField = Form(..., max_length=300, description="a model id from /api/models")
FileField = File(None, description="an image (PNG, JPEG, GIF, BMP, WebP; <= 8 MiB, <= 16 megapixels)")
IndexField = Form(None, ge=0, description="use this image of the model's test set instead of an upload")
RandomField = Form(False, description="use a random test-set image")
InvertField = Form("auto", description="auto | true | false: invert (datasets of light objects on black)")


@router.post(
    "/api/predict",
    response_model=PredictionDoc,
    responses=ERRORS,
    summary="Top-k classes",
    dependencies=[Depends(form_only)],
)
def predict(
    request: Request,
    model: str = ModelField,
    file: UploadFile | None = FileField,
    test_index: int | None = IndexField,
    random: bool = RandomField,
    invert: str = InvertField,
    top_k: int = Form(5, ge=1, le=1000),
):
    from cnnlab.explain.schema import InputInfo
    from cnnlab.explain.stagewise import predict_image

    data, ctype = _upload(file)
    run, prepared = model_input(
        _registry(request), model, data=data, content_type=ctype, test_index=test_index,
        pick_random=random, invert=invert,
    )  # fmt: skip
    pred, _ = predict_image(run.model, prepared, classes=run.classes)
    doc = PredictionDoc(
        model=_model_info(run, model),
        input=InputInfo(**prepared.info()),
        prediction=pred.to_schema(top_k),
    )
    return _json(doc)


def _model_info(run, model_id: str):
    from cnnlab.explain.schema import ModelInfo

    return ModelInfo(
        id=model_id,
        name=str(run.config.get("model")),
        input_shape=list(run.input_shape),
        classes=run.classes,
        params=sum(p.numel() for p in run.model.parameters()),
    )


@router.post(
    "/api/explain",
    response_model=ActivationsDoc,
    responses=ERRORS,
    summary="Every stage's activations",
    dependencies=[Depends(form_only)],
)
def explain(
    request: Request,
    model: str = ModelField,
    file: UploadFile | None = FileField,
    test_index: int | None = IndexField,
    random: bool = RandomField,
    invert: str = InvertField,
    top_k: int = Form(5, ge=1, le=1000),
    gradcam: bool = Form(True, description="include Grad-CAM for the predicted (or given) class"),
    gradcam_layer: str | None = Form(None, max_length=200, description="stage for Grad-CAM [last conv]"),
    saliency: bool = Form(True, description="include the gradient saliency map"),
    class_index: int | None = Form(None, ge=0, description="class for Grad-CAM/saliency [predicted]"),
    encoding: Literal["base64", "list"] = Form("base64", description="how tensors are written"),
):
    from cnnlab.errors import CnnlabError
    from cnnlab.explain import heatmaps
    from cnnlab.explain.stagewise import activations

    data, ctype = _upload(file)
    reg = _registry(request)
    run, prepared = model_input(
        reg, model, data=data, content_type=ctype, test_index=test_index, pick_random=random, invert=invert
    )
    acts = activations(run.model, prepared, classes=run.classes, model_name=str(run.config.get("model")))
    cam = sal = None
    if gradcam:
        try:
            cam = heatmaps.gradcam(
                run.model, prepared, layer=gradcam_layer, class_index=class_index, classes=run.classes
            )
        except CnnlabError:
            if gradcam_layer is not None or class_index is not None:
                raise
    if saliency:
        sal = heatmaps.saliency(run.model, prepared, class_index=class_index, classes=run.classes)
    doc = acts.to_schema(encoding=encoding, top_k=top_k, model_id=model, gradcam=cam, saliency=sal)
    doc.model = _model_info(run, model)
    return _json(doc)


def _kernel(text: str):
    from cnnlab.filters import KERNELS
    from cnnlab.filters.kernels import validate_kernel

    text = text.strip()
    if text in KERNELS:
        return text, KERNELS[text].copy()
    if not text.startswith("["):
        raise BadUpload(
            f"kernel must be a name ({', '.join(list(KERNELS)[:6])}, ...) or a JSON matrix like [[1,0,-1],[2,0,-2],[1,0,-1]]"
        )
    try:
        values = json.loads(text)
    except (ValueError, RecursionError):
        raise BadUpload("kernel is not valid JSON; write it like [[1,0,-1],[2,0,-2],[1,0,-1]]") from None
    if not isinstance(values, list):
        raise BadUpload("kernel must be a list of rows like [[1,0,-1],[2,0,-2],[1,0,-1]]")
    k = validate_kernel(values, "kernel")
    if max(k.shape) > MAX_WEB_KERNEL:
        raise BadUpload(
            f"kernel is {k.shape[0]}x{k.shape[1]}; the page takes up to {MAX_WEB_KERNEL}x{MAX_WEB_KERNEL}"
        )
    return None, k


@router.post(
    "/api/filter",
    response_model=docs.FilterDoc,
    responses=ERRORS,
    summary="Convolve an image",
    dependencies=[Depends(form_only)],
)
def filter_image(
    file: UploadFile | None = FilterFileField,
    kernel: str = Form(..., max_length=20000, description="a kernel name or a JSON matrix"),
    boundary: Literal["symm", "reflect", "wrap", "fill"] = Form("symm"),
    mode: Literal["same", "valid", "full"] = Form("same"),
    stride: int = Form(1, ge=1, le=16),
    op: Literal["conv", "corr"] = Form("conv", description="conv (flipped, SciPy) or corr (CNN layers)"),
    normalize: bool = Form(False),
    max_side: int = Form(512, ge=16, le=1024, description="larger images keep every n-th pixel"),
    echo_input: bool = Form(True, description="return the (downsampled, gray) input too"),
):
    from cnnlab import filters

    t0 = time.perf_counter()
    name, k = _kernel(kernel)
    data, ctype = _upload(file)
    if data is not None:
        from cnnlab.web.uploads import check_content_type

        check_content_type(ctype)
        img = read_image(data, gray=True)
    else:
        img = filters.sample_image(gray=True)
    factor = max(1, math.ceil(max(img.shape) / max_side))
    if factor > 1:
        img = filters.downsample(img, factor)
    out = filters.apply(img, k, boundary=boundary, mode=mode, stride=stride, op=op, normalize=normalize)
    doc = docs.FilterDoc(
        kernel=k.tolist(),
        kernel_name=name,
        op=op,
        boundary=boundary,
        mode=mode,
        stride=stride,
        downsample=factor,
        input=encode_tensor(img) if echo_input else None,
        output=encode_tensor(out),
        stats=stats_of(out),
        seconds=round(time.perf_counter() - t0, 4),
    )
    return _json(doc)
