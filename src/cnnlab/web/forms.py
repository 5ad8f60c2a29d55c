"""Request forms of the compute endpoints: a small multipart/form-data parser over the already-buffered
body, and pydantic models that validate the fields (and document them in OpenAPI).

Why not FastAPI's ``Form``/``File`` parameters: for a 28x28 upload they cost about 1.5 ms of Python per
request (python-multipart's byte-level callbacks, a spooled temporary file per upload, per-field
validation), more than the model's forward pass; on a 2-core machine that is the difference between
meeting and missing the latency target under 20 concurrent clients. The body is at most
`limits.MAX_BODY_BYTES` and already in memory (`limits.BodyLimit`), so splitting it on the boundary is
both simple and fast.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qsl

from pydantic import BaseModel, ConfigDict, Field

from cnnlab.web.uploads import BadUpload

MAX_PARTS = 32
MAX_FIELD_BYTES = 64 * 1024
_PARAM = re.compile(r';\s*([A-Za-z0-9_*-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;\s]*)')


@dataclass
class FilePart:
    data: bytes
    filename: str | None
    content_type: str | None


def _params(value: str) -> tuple[str, dict[str, str]]:
    """``form-data; name="x"; filename="a.png"`` -> ("form-data", {"name": "x", "filename": "a.png"})."""
    head, _, rest = value.partition(";")
    params = {}
    for key, raw in _PARAM.findall(";" + rest):
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        params[key.lower()] = raw
    return head.strip().lower(), params


def parse_form(body: bytes, content_type: str) -> tuple[dict[str, str], FilePart | None]:
    """Fields and the optional ``file`` part of a multipart/form-data or urlencoded body."""
    kind, params = _params(content_type or "")
    if kind == "application/x-www-form-urlencoded":
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_PARTS)
        except (UnicodeDecodeError, ValueError) as exc:
            raise BadUpload(f"the form body is not valid urlencoded UTF-8 ({exc})") from None
        return dict(pairs), None
    if kind != "multipart/form-data":
        raise BadUpload(
            f"send the fields as multipart/form-data (or application/x-www-form-urlencoded), not {kind or 'no content type'!r}",
            415,
        )
    boundary = params.get("boundary", "")
    if not 1 <= len(boundary) <= 200:
        raise BadUpload("the multipart Content-Type has no valid boundary", 400)
    delimiter = b"--" + boundary.encode("latin-1", "replace")
    start = body.find(delimiter)
    if start < 0:
        raise BadUpload("the multipart body holds no parts (boundary not found)", 400)
    # A real delimiter is followed by CRLF (a next part) or "--" (the end); anything else was content
    # that merely contained the delimiter's bytes, so glue it back to the part it came from.
    segments: list[bytes] = []
    for piece in body[start + len(delimiter) :].split(b"\r\n" + delimiter):
        if segments and not piece.lstrip(b" \t").startswith((b"\r\n", b"--")):
            segments[-1] += b"\r\n" + delimiter + piece
        else:
            segments.append(piece.lstrip(b" \t") if piece.lstrip(b" \t").startswith(b"\r\n") else piece)
    fields: dict[str, str] = {}
    upload: FilePart | None = None
    closed = False
    for n, segment in enumerate(segments):
        if segment.startswith(b"--"):  # the closing delimiter
            closed = True
            break
        if n >= MAX_PARTS:
            raise BadUpload(f"too many form parts (at most {MAX_PARTS})", 400)
        if not segment.startswith(b"\r\n"):
            raise BadUpload("malformed multipart body (a boundary is not followed by a line break)", 400)
        head, sep, content = segment[2:].partition(b"\r\n\r\n")
        if not sep:
            raise BadUpload("malformed multipart body (a part has no header/content separator)", 400)
        headers = {}
        for line in head.decode("utf-8", "replace").split("\r\n"):
            name, colon, value = line.partition(":")
            if colon:
                headers[name.strip().lower()] = value.strip()
        disposition, dparams = _params(headers.get("content-disposition", ""))
        if disposition != "form-data" or "name" not in dparams:
            raise BadUpload("malformed multipart body (a part has no Content-Disposition name)", 400)
        name = dparams["name"]
        if "filename" in dparams or name == "file":
            if name != "file" or upload is not None:
                raise BadUpload("send at most one file, in the field named 'file'", 422)
            upload = FilePart(content, dparams.get("filename"), headers.get("content-type"))
        else:
            if len(content) > MAX_FIELD_BYTES:
                raise BadUpload(f"form field {name[:40]!r} is over {MAX_FIELD_BYTES:,} bytes", 413)
            try:
                fields[name] = content.decode("utf-8")
            except UnicodeDecodeError:
                raise BadUpload(f"form field {name[:40]!r} is not UTF-8 text", 422) from None
    if not closed:
        raise BadUpload("the multipart body is truncated (no closing boundary)", 400)
    return fields, upload


def validation_message(errors) -> str:
    """pydantic's error list -> one line: ``field: problem; field: problem``."""
    parts = []
    for e in errors[:4]:
        loc = ".".join(str(x) for x in e.get("loc", ()) if x not in ("body", "query"))
        parts.append(f"{loc or 'request'}: {e.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


# ---- the forms ---------------------------------------------------------------------------------------

_MODEL = Field(..., max_length=300, description="a model id from /api/models")
_INVERT = Field("auto", description="auto | true | false: invert (datasets of light objects on black)")


class _Form(BaseModel):
    model_config = ConfigDict(extra="forbid", str_max_length=20000)


class ImageForm(_Form):
    """Exactly one image source: a ``file`` part (PNG, JPEG, GIF, BMP or WebP; at most 8 MiB and 16
    megapixels), ``test_index``, or ``random=true``."""

    model: str = _MODEL
    test_index: int | None = Field(None, ge=0, description="use this image of the model's test set")
    random: bool = Field(False, description="use a random test-set image")
    invert: str = _INVERT
    top_k: int = Field(5, ge=1, le=1000)


class ExplainForm(ImageForm):
    gradcam: bool = Field(True, description="include Grad-CAM for the predicted (or given) class")
    gradcam_layer: str | None = Field(None, max_length=200, description="stage for Grad-CAM [last conv]")
    saliency: bool = Field(True, description="include the gradient saliency map")
    class_index: int | None = Field(None, ge=0, description="class for Grad-CAM / saliency [predicted]")
    encoding: Literal["base64", "list"] = Field("base64", description="how tensors are written")


class FilterForm(_Form):
    """An optional ``file`` part (else the bundled cat photo) and the kernel with its options."""

    kernel: str = Field(..., min_length=1, max_length=20000, description="a kernel name or a JSON matrix")
    boundary: Literal["symm", "reflect", "wrap", "fill"] = "symm"
    mode: Literal["same", "valid", "full"] = "same"
    stride: int = Field(1, ge=1, le=16)
    op: Literal["conv", "corr"] = Field("conv", description="conv (flipped, SciPy) or corr (CNN layers)")
    normalize: bool = False
    max_side: int = Field(512, ge=16, le=1024, description="larger images keep every n-th pixel")
    echo_input: bool = Field(True, description="return the (downsampled, gray) input too")


def openapi_body(form: type[BaseModel]) -> dict:
    """The OpenAPI requestBody for a form model plus its optional ``file`` part."""
    schema = form.model_json_schema()
    schema["properties"]["file"] = {"type": "string", "format": "binary", "description": "the image"}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {"schema": schema},
                "application/x-www-form-urlencoded": {"schema": form.model_json_schema()},
            },
        }
    }
