"""Turn what a request names (an uploaded image, a test-set index, "random") into the model's input,
checking every limit in `cnnlab.web.limits` first. All decoding goes through `cnnlab.images.load_image`
(header-checked pixel cap: decompression bombs are refused before decoding)."""

from __future__ import annotations

import random

from cnnlab.errors import CnnlabError
from cnnlab.explain.inputs import prepare_input
from cnnlab.images import load_image
from cnnlab.web import limits


class BadUpload(CnnlabError):
    """A request body or uploaded file the server cannot take: malformed form data (400), over a size
    limit (413), not an image type (415), or an image it cannot use (422, the default)."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.http_status = status


def check_content_type(declared: str | None) -> None:
    """The part's declared type must be an image type, ``application/octet-stream`` or absent."""
    if not declared:
        return
    base = declared.split(";")[0].strip().lower()
    if base in limits.ALLOWED_TYPES or base == "application/octet-stream":
        return
    raise BadUpload(
        f"uploads must be images ({', '.join(limits.ALLOWED_FORMATS)}); the file was sent as {base!r}",
        415,
    )


def check_bytes(data: bytes, name: str = "upload") -> None:
    """Not empty, not over the body limit, and an accepted image format by its first bytes."""
    if not data:
        raise BadUpload(f"{name} is empty (0 bytes), not an image")
    if len(data) > limits.MAX_BODY_BYTES:
        raise BadUpload(f"{name} is over the limit of {limits.MAX_BODY_BYTES:,} bytes", 413)
    if limits.sniff_format(data[:16]) is None:
        raise BadUpload(
            f"{name} is not an image in an accepted format ({', '.join(limits.ALLOWED_FORMATS)})", 415
        )


def read_image(data: bytes, *, gray: bool, name: str = "upload"):
    """Bytes of an uploaded image -> float32 (H, W) or (H, W, 3) in 0..1, or `BadUpload`."""
    check_bytes(data, name)
    try:
        img = load_image(data, gray=gray, max_pixels=limits.MAX_PIXELS, name=name)
    except CnnlabError as exc:
        raise BadUpload(str(exc)) from None
    return img


def parse_invert(value: str | None) -> bool | str:
    v = (value or "auto").strip().lower()
    table: dict[str, bool | str] = {"auto": "auto", "true": True, "yes": True, "1": True, "on": True}
    table |= {"false": False, "no": False, "0": False, "off": False}
    if v not in table:
        raise CnnlabError(f"invert must be auto, true or false, got {(value or '')[:40]!r}")
    return table[v]


def model_input(
    registry,
    model_id: str,
    *,
    data: bytes | None,
    content_type: str | None,
    test_index,
    pick_random,
    invert,
    run=None,
):
    """(run, PreparedInput) for a request: exactly one of an upload, ``test_index`` or ``pick_random``.
    ``run``: the model's loaded run when the caller already holds it (else the registry loads it)."""
    how = parse_invert(invert)  # checked whatever the image source, though only uploads use it
    given = sum(x for x in (data is not None, test_index is not None, bool(pick_random)))
    if given != 1:
        raise CnnlabError("give exactly one image source: a file upload, test_index, or random=true")
    run = run if run is not None else registry.run(model_id)
    shape = run.input_shape
    if data is not None:  # decoded as `cnnlab predict` decodes files for this run: same pixels, same answer
        check_content_type(content_type)
        check_bytes(data)
        try:
            prepared = prepare_input(
                data, shape, invert=how, source="upload", max_pixels=limits.MAX_PIXELS, **run.image_options
            )
        except CnnlabError as exc:
            raise BadUpload(str(exc)) from None
        return run, prepared
    split, _ = registry.test_split(model_id)
    n = len(split.labels)
    if pick_random:
        test_index = random.randrange(n)
    if not 0 <= test_index < n:
        raise CnnlabError(f"test_index must be in 0..{n - 1}, got {test_index}")
    x = split.images[test_index]  # uint8 (C, H, W), exactly what the model was tested on
    return run, prepare_input(
        x, shape, invert=False, source=f"test:{test_index}", label=int(split.labels[test_index])
    )
