"""What cnnlab's objects look like in Jupyter: the HTML and PNG behind their `_repr_html_`/`_repr_png_`.

Each type shows itself: its ``_repr_html_`` (or ``_repr_png_``) is one line that calls its view here
(``History`` -> `history_html`, ``Summary`` -> `summary_html`, ``RunResult``, ``Run``, ``Dataset``,
``Animation``...), or in its own package when the view needs that package's figures (explain's
``Activations``, ``Prediction`` and ``Heatmap``: `cnnlab.explain.reprs`, built from the pieces here).
Methods rather than a registry of formatters: Jupyter finds a method on the object with no setup, where a
registry would hold only what some import had registered before the cell ran. This module imports no
feature module (the objects are duck-typed; it uses only the figure leaves `cnnlab.pictures` and
`cnnlab.plots`), so every import points one way, from the types down to their views.

Every piece of text is escaped (class names, run paths and layer specs come from users); pictures are
inline base64 `data:` URIs, so a saved notebook shows them without files beside it. Nothing here trains
or evaluates: a repr only formats what the object holds and draws small figures (curves at screen
resolution), so displaying an object costs milliseconds, not a pass over a dataset.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

import numpy as np
from PIL import Image

from cnnlab.pictures import SCREEN_DPI
from cnnlab.pictures import figure_png as render
from cnnlab.plots import learning_curves_figure

MAX_ROWS = 16  # longer tables show their head and tail around an elision row
_STYLE = "border-collapse:collapse;font-variant-numeric:tabular-nums;margin:0.3em 0"


def fmt(value: Any) -> str:
    """A table cell: integers with thousands separators, floats to 4 significant places, None blank.

    Example:
        >>> fmt(485514), fmt(0.912345), fmt(None), fmt("a<b")
        ('485,514', '0.9123', '', 'a<b')
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) >= 1000 else f"{value:.4g}"
    if isinstance(value, (tuple, list)):
        return "x".join(str(v) for v in value) if all(isinstance(v, int) for v in value) else str(value)
    return str(value)


def _numeric(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def table(
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    caption: str | None = None,
    footer: Iterable[Sequence[Any]] = (),
    bold_rows: Iterable[int] = (),
    max_rows: int | None = MAX_ROWS,
    header: bool = True,
) -> str:
    """An HTML table; numbers right-aligned. ``bold_rows`` (indices into ``rows``) are emphasised. Over
    ``max_rows`` rows, the head and tail are kept with a "… N more" row between (bold rows stay shown).

    Example:
        >>> "<td" in table(["a"], [[1]]) and "&lt;" in table(["<"], [])
        True
    """
    rows = [list(r) for r in rows]
    bold = set(bold_rows)
    keep = list(range(len(rows)))
    if max_rows is not None and len(rows) > max_rows:
        half = max_rows // 2
        keep = sorted(set(range(half)) | set(range(len(rows) - half, len(rows))) | bold)
    cell = "padding:0.15em 0.6em;border-bottom:1px solid #ddd"
    out = [f'<table style="{_STYLE}">']
    if caption:
        out.append(f'<caption style="text-align:left;font-weight:bold">{escape(caption)}</caption>')
    if header:
        out.append("<thead><tr>")
        out += [f'<th style="{cell};text-align:left">{escape(str(c))}</th>' for c in columns]
        out.append("</tr></thead>")
    out.append("<tbody>")
    last = -1
    for i in keep:
        if i != last + 1:
            out.append(
                f'<tr><td colspan="{len(columns)}" style="{cell};color:#888">… {i - last - 1} more</td></tr>'
            )
        last = i
        weight = ";font-weight:bold" if i in bold else ""
        out.append("<tr>")
        for v in rows[i]:
            align = "right" if _numeric(v) else "left"
            out.append(f'<td style="{cell};text-align:{align}{weight}">{escape(fmt(v))}</td>')
        out.append("</tr>")
    out.append("</tbody>")
    footer = [list(r) for r in footer]
    if footer:
        out.append("<tfoot>")
        for r in footer:
            out.append(
                "<tr>"
                + "".join(
                    f'<td style="{cell};text-align:{"right" if _numeric(v) else "left"}">{escape(fmt(v))}</td>'
                    for v in r
                )
                + "</tr>"
            )
        out.append("</tfoot>")
    out.append("</table>")
    return "".join(out)


def key_values(pairs: Iterable[tuple[str, Any]], *, caption: str | None = None) -> str:
    """A two-column table of settings or results; pairs whose value is None are left out."""
    rows = [(k, v) for k, v in pairs if v is not None and v != ""]
    return table(["", ""], rows, caption=caption, max_rows=None, header=False)


def image(data: bytes, alt: str, *, mime: str = "image/png", width: int | None = None) -> str:
    """An <img> holding ``data`` inline (a data: URI), with escaped alt text."""
    size = f' width="{int(width)}"' if width else ""
    b64 = base64.b64encode(data).decode("ascii")
    return (
        f'<img src="data:{mime};base64,{b64}" alt="{escape(alt, quote=True)}"{size} style="max-width:100%">'
    )


def section(title: str, *parts: str) -> str:
    """A titled block: an escaped heading over already-built HTML parts."""
    head = f'<div style="font-weight:bold;font-size:1.1em;margin:0.3em 0">{escape(title)}</div>'
    return '<div class="cnnlab">' + head + "".join(parts) + "</div>"


def side_by_side(*parts: str) -> str:
    cells = "".join(f'<div style="margin-right:1.5em">{p}</div>' for p in parts if p)
    return f'<div style="display:flex;flex-wrap:wrap;align-items:flex-start">{cells}</div>'


# ---- figures -------------------------------------------------------------------------------------------


def figure_png(fig, *, dpi: int = SCREEN_DPI, tight: bool = True) -> bytes:
    """A figure as a PNG at screen resolution (`cnnlab.plots.figure_png`), margins trimmed."""
    return render(fig, dpi=dpi, tight=tight)


def curves_png(histories: Mapping[str, Any]) -> bytes | None:
    """The learning curves (`cnnlab.plots.learning_curves_figure`) of one or more histories as a PNG,
    or None when no history has an epoch yet."""
    if not any(len(h) for h in histories.values()):
        return None
    return figure_png(
        learning_curves_figure({k: h for k, h in histories.items() if len(h)}, figsize=(11, 3.8))
    )


def _curves(histories: Mapping[str, Any], what: str) -> str:
    png = curves_png(histories)
    return image(png, f"learning curves of {what}") if png else ""


# ---- cnnlab objects ------------------------------------------------------------------------------------


def summary_html(s) -> str:
    """A `cnnlab.summarize.Summary`: one row per stage, totals below."""
    rows = [(r.name, r.kind, "x".join(map(str, r.output_shape)), r.params, r.flops) for r in s.rows]
    footer = [
        ("Total params", "", "", s.total_params, ""),
        ("Trainable params", "", "", s.trainable_params, ""),
        ("Non-trainable params", "", "", s.non_trainable_params, ""),
        ("FLOPs per image", "", "", "", s.flops),
    ]
    caption = f"Input {'x'.join(map(str, s.input_shape))} (channels x height x width)"
    return table(
        ["stage", "type", "output shape", "params", "FLOPs"],
        rows,
        caption=caption,
        footer=footer,
        max_rows=None,
    )


def history_table(h) -> str:
    columns = h.columns()
    rows = [[r.get(c) for c in columns] for r in h.rows]
    best = [i for i, r in enumerate(h.rows) if h.best_epoch is not None and r.get("epoch") == h.best_epoch]
    return table(columns, rows, bold_rows=best)


def history_html(h, *, title: str = "History") -> str:
    """A `History`: the epochs (the best in bold) beside the learning curves."""
    if not len(h):
        return section(title, "<p>No epochs yet.</p>")
    facts = f"{h.epochs} epochs, {h.total_seconds:.1f} s"
    if h.best_epoch is not None:
        facts += f"; best epoch {h.best_epoch} (in bold)"
    if h.stopped_early:
        facts += "; stopped early"
    return section(title, f"<p>{escape(facts)}</p>", history_table(h), _curves({"model": h}, title))


def _test_pairs(test: Mapping[str, Any]) -> list[tuple[str, Any]]:
    return [
        ("final-set images", test.get("n")),
        ("final-set loss", test.get("loss")),
        ("final-set accuracy", test.get("accuracy")),
        ("Error %", None if test.get("error_pct") is None else round(float(test["error_pct"]), 2)),
    ]


def result_html(r) -> str:
    """A `cnnlab.experiment.RunResult`: what was trained, the final-set numbers, the curves."""
    h = r.history
    pairs = [
        ("model", r.name),
        ("params", r.params),
        ("epochs run", h.epochs),
        ("best epoch", h.best_epoch),
        ("train seconds", round(h.total_seconds, 1)),
        *_test_pairs(r.test or {}),
        ("run folder", str(r.path) if r.path else None),
    ]
    return section(f"Run result: {r.name}", key_values(pairs), _curves({r.name: h}, r.name))


RUN_KEYS = (
    "model",
    "data",
    "split",
    "seed",
    "limit",
    "recipe",
    "epochs",
    "batch_size",
    "optimizer",
    "lr",
    "params",
)


def run_html(run) -> str:
    """A `cnnlab.run.folder.Run`: its settings, final-set results and curves."""
    cfg = run.config
    settings = [(k, cfg.get(k)) for k in RUN_KEYS]
    settings += [("input", "x".join(map(str, run.input_shape))), ("classes", len(run.classes))]
    results = run.results or {}
    outcome = [
        ("epochs run", results.get("epochs_run")),
        ("best epoch", results.get("best_epoch")),
        ("train seconds", results.get("train_seconds")),
        *_test_pairs(results.get("test") or {}),
        ("weights verified", run.verified),
    ]
    parts = [side_by_side(key_values(settings, caption="settings"), key_values(outcome, caption="results"))]
    if run.notes:
        parts.append("<ul>" + "".join(f"<li>{escape(n)}</li>" for n in run.notes) + "</ul>")
    parts.append(_curves({str(cfg.get("model")): run.history}, str(run.path)))
    return section(f"Run {run.path}", *parts)


COMPARISON_HEADS = {
    "epochs_run": "epochs run",
    "best_epoch": "best epoch",
    "train_seconds": "train s",
    "test_accuracy": "test accuracy",
    "error_pct": "error %",
}


def comparison_html(results: Sequence[Any]) -> str:
    """The tutorial's table (error % on the final set, lowest in bold) and every model's curves."""
    rows = [r.row() for r in results if r.test]
    if not rows:
        return section("Comparison", "<p>No results.</p>")
    columns = list(rows[0])
    best = min(range(len(rows)), key=lambda i: rows[i]["error_pct"])
    heads = [COMPARISON_HEADS.get(c, c) for c in columns]
    tab = table(heads, [[r[c] for c in columns] for r in rows], bold_rows=[best], max_rows=None)
    curves = _curves({r.name: r.history for r in results}, "the compared models")
    return section("Comparison (error % on the final set; lowest in bold)", tab, curves)


def animation_html(anim) -> str:
    """A `cnnlab.filters.animation.Animation`: the GIF itself, its title as caption."""
    w, _ = anim.size
    return (
        f'<figure style="margin:0">{image(anim.gif(), anim.title, mime="image/gif", width=w)}'
        f"<figcaption>{escape(anim.title)} ({len(anim.frames)} frames)</figcaption></figure>"
    )


def dataset_html(data) -> str:
    """A `cnnlab.data.Dataset`: split sizes, classes, and one training image of each class."""
    sizes = [(name, len(getattr(data, name))) for name in ("train", "val", "test")]
    facts = [
        ("split", data.split_description or f"{data.split} (seed {data.seed})"),
        ("input", "x".join(map(str, data.input_shape))),
        ("limit", data.limit),
    ]
    return section(
        f"Dataset {data.name}",
        side_by_side(
            key_values([*sizes, *facts]),
            image(class_strip_png(data.train, data.classes), "one image per class"),
        ),
        f"<p>{escape(', '.join(f'{i}: {c}' for i, c in enumerate(data.classes)))}</p>",
    )


def class_strip_png(split, classes: Sequence[str], *, scale: int = 2) -> bytes:
    """The first image of each class side by side (nearest-neighbour enlarged), as a PNG."""
    labels = split.labels.numpy()
    tiles = []
    for k in range(len(classes))[:20]:
        hit = np.flatnonzero(labels == k)
        if len(hit):
            img = split.images[int(hit[0])].numpy()  # (C, H, W) uint8
            tiles.append(img[0] if img.shape[0] == 1 else img[:3].transpose(1, 2, 0))
    if not tiles:
        tiles = [np.zeros(split.images.shape[2:], dtype=np.uint8)]
    h = max(t.shape[0] for t in tiles)
    strip = np.concatenate(
        [np.pad(t, [(0, h - t.shape[0]), (0, 2)] + [(0, 0)] * (t.ndim - 2)) for t in tiles], axis=1
    )
    pic = Image.fromarray(strip)
    pic = pic.resize((pic.width * scale, pic.height * scale), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    pic.save(buf, format="PNG")
    return buf.getvalue()
