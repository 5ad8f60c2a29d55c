"""The page's JavaScript keeps its shape (issue 24): no function over 80 lines, and no module writes the
URL by hand (the store in state.js does it for every change). A small scanner, no browser: it skips
strings, template literals, comments and regular expressions, and measures each function (declared,
expression or arrow with a body) from its first line to its closing brace."""

from __future__ import annotations

import re
from pathlib import Path

STATIC = Path(__file__).resolve().parents[1] / "src" / "cnnlab" / "web" / "static"
LIMIT = 80
_REGEX_BEFORE = set("(,=:[!&|?{};+-*%<>~^") | {""}


def _code_only(text: str) -> str:
    """The source with the contents of strings, templates, comments and regexes blanked (newlines kept)."""
    out, i, n, last = [], 0, len(text), ""
    while i < n:
        c, nxt = text[i], text[i + 1 : i + 2]
        if c == "/" and nxt in "/*":
            end = text.find("\n", i) if nxt == "/" else text.find("*/", i + 2) + 2
            end = n if end in (-1, 1) else end
            out.append(re.sub(r"[^\n]", " ", text[i:end]))
            i = end
            continue
        if c in "'\"`" or (
            c == "/" and (last in _REGEX_BEFORE or re.search(r"\breturn\s*$", "".join(out[-12:])))
        ):
            j = i + 1
            in_class = False
            while j < n and (text[j] != c or in_class):
                if text[j] == "\\":
                    j += 1
                elif c == "/" and text[j] in "[]":
                    in_class = text[j] == "["
                elif c == "/" and text[j] == "\n":
                    break
                j += 1
            out.append(c + re.sub(r"[^\n]", " ", text[i + 1 : j]) + c)
            i = j + 1
            last = c
            continue
        out.append(c)
        if not c.isspace():
            last = c
        i += 1
    return "".join(out)


def _functions(text: str):
    """(name, first line, lines) of every function with a braced body."""
    code = _code_only(text)
    starts = re.finditer(r"\bfunction\b[^(]*\(|=>\s*\{|^\s*(?:async\s+)?(\w+)\s*\([^)]*\)\s*\{", code, re.M)
    for m in starts:
        if m.group(0).lstrip().startswith(("if", "for", "while", "switch", "catch")):
            continue
        open_at = m.end() - 1
        if code[open_at] == "(":  # `function name(`: the body's brace comes after the parameters
            depth, j = 0, open_at
            while j < len(code):
                depth += {"(": 1, ")": -1}.get(code[j], 0)
                if depth == 0:
                    break
                j += 1
            open_at = code.find("{", j)
        depth, j = 0, open_at
        while j < len(code):
            depth += {"{": 1, "}": -1}.get(code[j], 0)
            if depth == 0:
                break
            j += 1
        first = code.count("\n", 0, m.start()) + 1
        yield m.group(0).strip()[:40], first, code.count("\n", m.start(), j) + 1


def test_no_javascript_function_over_80_lines():
    long = [
        f"{p.name}:{line} {name} ({n} lines)"
        for p in sorted(STATIC.rglob("*.js"))
        if not p.name.startswith("strings_")
        for name, line, n in _functions(p.read_text(encoding="utf-8"))
        if n > LIMIT
    ]
    assert long == []


def test_the_scanner_measures_functions():
    text = 'function a() {\n  const s = "}}";\n  const r = /\\{x\\}/g;\n  return `${1}`;\n}\nconst b = () => {\n}\n'
    assert [(name[:8], n) for name, _, n in _functions(text)] == [("function", 5), ("=> {", 2)]


def test_only_the_store_writes_the_url():
    users = [p.name for p in STATIC.glob("*.js") if "writeUrl" in p.read_text(encoding="utf-8")]
    assert sorted(users) == ["state.js", "urlstate.js"]
