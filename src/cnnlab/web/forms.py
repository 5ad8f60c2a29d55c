"""Request forms of the compute endpoints: multipart/form-data parsed by python-multipart's streaming
parser over the already-buffered body (at most `limits.MAX_BODY_BYTES`), and pydantic models that
validate the fields (and document them in OpenAPI).

Why python-multipart's low-level parser rather than Starlette's ``request.form()``: the parse runs in
the compute pool (`cnnlab.web.compute`), never on the event loop, with no spooled temporary file per
upload; and every limit below is checked as the parser's callbacks fire, so a hostile body is refused at
the first byte that breaks one. Limits:
- at most `MAX_PARTS` parts, one of them the ``file``; a field at most `MAX_FIELD_BYTES`;
- per part at most `MAX_HEADERS` header lines of at most `MAX_HEADER_BYTES` each (python-multipart);
- a boundary of 1..70 characters (RFC 2046), and the boundary line may occur at most ``MAX_PARTS + 1``
  times in the body. RFC 2046 forbids it inside a part, and counting it (C speed) first bounds the
  parser's only slow path: content holding many copies of the delimiter costs it Python work per copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, TypeVar
from urllib.parse import parse_qsl

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from cnnlab.errors import CnnlabError
from cnnlab.web.uploads import BadUpload

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

MAX_PARTS = 32
MAX_FIELD_BYTES = 64 * 1024
MAX_HEADERS = 8
MAX_HEADER_BYTES = 4096
MAX_BOUNDARY = 70  # RFC 2046
FEED_BYTES = 256 * 1024  # the parser is fed in slices: a limit hit early stops the work early


@dataclass
class FilePart:
    data: bytes
    filename: str | None
    content_type: str | None


class _Collector:
    """python-multipart callbacks that gather fields and the one file part, enforcing the limits."""

    def __init__(self) -> None:
        self.fields: dict[str, str] = {}
        self.upload: FilePart | None = None
        self.parts = 0
        self.closed = False
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._headers: dict[str, bytes] = {}
        self._data = bytearray()
        self._limit: int | None = MAX_FIELD_BYTES  # None: the file part (the body cap bounds it)
        self._name = ""

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self.part_begin,
            "on_header_field": lambda d, s, e: self._header_name.extend(d[s:e]),
            "on_header_value": lambda d, s, e: self._header_value.extend(d[s:e]),
            "on_header_end": self.header_end,
            "on_headers_finished": self.headers_finished,
            "on_part_data": self.part_data,
            "on_part_end": self.part_end,
            "on_end": self.end,
        }

    def part_begin(self) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise BadUpload(f"too many form parts (at most {MAX_PARTS})", 400)
        self._headers, self._data = {}, bytearray()

    def header_end(self) -> None:
        self._headers[self._header_name.decode("latin-1").strip().lower()] = bytes(self._header_value)
        self._header_name, self._header_value = bytearray(), bytearray()

    def headers_finished(self) -> None:
        disposition, params = parse_options_header(self._headers.get("content-disposition", b""))
        if disposition != b"form-data" or b"name" not in params:
            raise BadUpload("malformed multipart body (a part has no Content-Disposition name)", 400)
        self._name = params[b"name"].decode("utf-8", "replace")
        self._filename = params.get(b"filename")
        if self._filename is not None or self._name == "file":
            if self._name != "file" or self.upload is not None:
                raise BadUpload("send at most one file, in the field named 'file'", 422)
            self._limit = None  # the body cap (BodyLimit) already bounds the file
        else:
            self._limit = MAX_FIELD_BYTES

    def part_data(self, data: bytes, start: int, end: int) -> None:
        self._data += data[start:end]
        if self._limit is not None and len(self._data) > self._limit:
            raise BadUpload(f"form field {self._name[:40]!r} is over {self._limit:,} bytes", 413)

    def part_end(self) -> None:
        if self._limit is None:
            ctype = self._headers.get("content-type")
            self.upload = FilePart(
                bytes(self._data),
                self._filename.decode("utf-8", "replace") if self._filename is not None else None,
                ctype.decode("latin-1").strip() if ctype is not None else None,
            )
            return
        try:
            self.fields[self._name] = self._data.decode("utf-8")
        except UnicodeDecodeError:
            raise BadUpload(f"form field {self._name[:40]!r} is not UTF-8 text", 422) from None

    def end(self) -> None:
        self.closed = True


def _occurrences(data: bytes, pattern: bytes, start: int, most: int) -> int:
    """How often ``pattern`` occurs in ``data[start:]``, counting no further than ``most``."""
    n, i = 0, data.find(pattern, start)
    while i >= 0 and n < most:
        n += 1
        i = data.find(pattern, i + len(pattern))
    return n


def _multipart(body: bytes, boundary: bytes) -> tuple[dict[str, str], FilePart | None]:
    delimiter = b"--" + boundary
    start = body.find(delimiter)  # a preamble before the first boundary is allowed (RFC 2046), skipped
    if start < 0:
        raise BadUpload("the multipart body holds no parts (boundary not found)", 400)
    if _occurrences(body, b"\r\n" + delimiter, start, MAX_PARTS + 2) > MAX_PARTS + 1:
        raise BadUpload(
            f"too many form parts (at most {MAX_PARTS}; the body repeats its boundary line more often, "
            "and a boundary must not occur inside a part)",
            400,
        )
    form = _Collector()
    parser = MultipartParser(
        boundary, form.callbacks(), max_header_count=MAX_HEADERS, max_header_size=MAX_HEADER_BYTES
    )
    try:
        for i in range(start, len(body), FEED_BYTES):
            parser.write(body[i : i + FEED_BYTES])
            if form.closed:  # the epilogue after the closing boundary is ignored
                break
        parser.finalize()
    except MultipartParseError as exc:
        why = str(exc).split(" at index")[0].rstrip(".")  # python-multipart's reason, without offsets
        raise BadUpload(f"malformed multipart body ({why[:120]})", 400) from None
    if not form.closed:
        raise BadUpload("malformed multipart body (truncated: no closing boundary)", 400)
    return form.fields, form.upload


def parse_form(body: bytes, content_type: str) -> tuple[dict[str, str], FilePart | None]:
    """Fields and the optional ``file`` part of a multipart/form-data or urlencoded body.

    Example:
        >>> parse_form(b"model=cnn2&test_index=3", "application/x-www-form-urlencoded")
        ({'model': 'cnn2', 'test_index': '3'}, None)
    """
    raw_kind, params = parse_options_header(content_type or "")
    kind = raw_kind.decode("latin-1").lower()
    if kind == "application/x-www-form-urlencoded":
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_PARTS)
        except (UnicodeDecodeError, ValueError) as exc:
            raise BadUpload(f"the form body is not valid urlencoded UTF-8 ({exc})", 400) from None
        return dict(pairs), None
    if kind != "multipart/form-data":
        raise BadUpload(
            f"send the fields as multipart/form-data (or application/x-www-form-urlencoded), not {kind or 'no content type'!r}",
            415,
        )
    boundary = params.get(b"boundary", b"")
    if not 1 <= len(boundary) <= MAX_BOUNDARY:
        raise BadUpload(
            f"the multipart Content-Type has no valid boundary (1 to {MAX_BOUNDARY} characters)", 400
        )
    return _multipart(body, boundary)


FormT = TypeVar("FormT", bound=BaseModel)


def read_form(body: bytes, content_type: str, form: type[FormT]) -> tuple[FormT, FilePart | None]:
    """Parse ``body`` and validate its fields as ``form``: (the form, the optional file part)."""
    fields, upload = parse_form(body, content_type)
    try:
        return form.model_validate(fields), upload
    except ValidationError as exc:
        raise CnnlabError(validation_message(exc.errors())) from None


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
    precision: Literal["compact", "exact"] = Field(
        "compact",
        description="compact: big stages as uint8 within their stated max_error, repeated ones derived "
        "(the page's choice); exact: every stage as float32, bit for bit (list encoding is always exact)",
    )


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
