"""Build a small, real dataset of web-page screenshots: article, shop, login form, dashboard.

Every page is HTML generated from a template of its kind with random text, colours, fonts and layout
(sidebar or not, where the navigation sits, how many columns, cards, paragraphs, chart bars...), then
rendered by headless Chromium (through Playwright) and saved as a PNG screenshot of the first screen:

    python examples/web_pages/make_dataset.py                       # 100 pages per kind -> data/
    python examples/web_pages/make_dataset.py --per-class 20 --out /tmp/pages

It writes `<out>/<kind>/<kind>_<n>.png` (the folder-of-classes layout `cnnlab train --data` reads) and,
with a different seed, a few unseen pages per kind to `<new>/` for `cnnlab predict`.

Chromium: Debian's /usr/bin/chromium by default (`--chromium PATH` for another); nothing is downloaded.
"""

from __future__ import annotations

import argparse
import colorsys
import random
import time
from pathlib import Path

KINDS = ("article", "shop", "login", "dashboard")
HERE = Path(__file__).resolve().parent
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

WORDS = [
    "data",
    "model",
    "network",
    "image",
    "layer",
    "filter",
    "kernel",
    "pixel",
    "feature",
    "map",
    "river",
    "garden",
    "market",
    "coffee",
    "travel",
    "mountain",
    "city",
    "music",
    "light",
    "energy",
    "future",
    "design",
    "simple",
    "modern",
    "classic",
    "secret",
    "golden",
    "green",
    "blue",
    "quiet",
    "fast",
    "small",
    "open",
    "wild",
    "north",
    "summer",
    "winter",
    "story",
    "people",
    "world",
    "science",
    "health",
    "money",
    "home",
    "family",
    "food",
    "project",
    "report",
    "update",
    "weekly",
    "review",
    "guide",
    "history",
    "ocean",
    "forest",
    "stone",
    "cloud",
    "signal",
    "engine",
    "market",
    "value",
    "learning",
    "vision",
    "pattern",
    "shape",
    "colour",
    "texture",
    "number",
    "growth",
    "trend",
    "policy",
    "culture",
    "sport",
    "team",
    "season",
]
FONTS = ("'DejaVu Sans'", "'DejaVu Serif'", "'Liberation Sans'", "'Liberation Serif'", "'DejaVu Sans Mono'")
PRODUCTS = [
    "Lamp",
    "Chair",
    "Mug",
    "Backpack",
    "Sneakers",
    "Headphones",
    "Watch",
    "Jacket",
    "Plant",
    "Camera",
    "Notebook",
    "Kettle",
    "Scarf",
]


# ---- random styling -------------------------------------------------------------------------------


def words(rng: random.Random, n: int, cap: bool = True) -> str:
    text = " ".join(rng.choice(WORDS) for _ in range(n))
    return text.capitalize() if cap else text


def colour(rng: random.Random, *, light: tuple[float, float], sat: tuple[float, float] = (0.2, 0.8)) -> str:
    r, g, b = colorsys.hls_to_rgb(rng.random(), rng.uniform(*light), rng.uniform(*sat))
    return f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"


def palette(rng: random.Random) -> dict[str, str]:
    dark = rng.random() < 0.25  # some sites use a dark theme
    return {
        "bg": colour(rng, light=(0.08, 0.18)) if dark else colour(rng, light=(0.92, 0.99), sat=(0.0, 0.5)),
        "fg": "#eeeeee" if dark else colour(rng, light=(0.05, 0.2), sat=(0.0, 0.3)),
        "accent": colour(rng, light=(0.35, 0.6)),
        "muted": colour(rng, light=(0.45, 0.6), sat=(0.0, 0.2)),
        "panel": colour(rng, light=(0.15, 0.25)) if dark else colour(rng, light=(0.85, 0.97), sat=(0.0, 0.4)),
    }


def page(rng: random.Random, body: str, p: dict[str, str], extra_css: str = "") -> str:
    font = rng.choice(FONTS)
    size = rng.randint(13, 18)
    return f"""<!doctype html><html><head><meta charset="utf-8"><style>
* {{ box-sizing: border-box; }}
body {{ margin: 0; background: {p["bg"]}; color: {p["fg"]}; font-family: {font}, sans-serif; font-size: {size}px; }}
a {{ color: {p["accent"]}; text-decoration: none; }}
.nav a {{ margin: 0 {rng.randint(8, 20)}px; }}
button, .btn {{ background: {p["accent"]}; color: white; border: 0; padding: 8px 16px;
  border-radius: {rng.choice([0, 4, 8, 20])}px; font: inherit; }}
{extra_css}
</style></head><body>{body}</body></html>"""


def header(rng: random.Random, p: dict[str, str], *, search: bool = False, cart: bool = False) -> str:
    links = "".join(f"<a href='#'>{words(rng, 1)}</a>" for _ in range(rng.randint(3, 6)))
    tools = ""
    if search:
        tools += f"<input placeholder='Search {words(rng, 1, cap=False)}...' style='padding:6px;width:{rng.randint(140, 260)}px'>"
    if cart:
        tools += f" <span class='btn'>Cart ({rng.randint(0, 9)})</span>"
    bg = rng.choice([p["panel"], p["accent"], p["bg"]])
    height = rng.randint(48, 90)
    align = rng.choice(["space-between", "flex-start"])
    return (
        f"<div style='display:flex;align-items:center;justify-content:{align};gap:24px;padding:0 24px;"
        f"height:{height}px;background:{bg};border-bottom:1px solid {p['muted']}'>"
        f"<b style='font-size:{rng.randint(18, 28)}px'>{words(rng, rng.randint(1, 2))}</b>"
        f"<div class='nav'>{links}</div>{tools}</div>"
    )


def picture(rng: random.Random, w: int | str, h: int) -> str:
    a, b = colour(rng, light=(0.3, 0.8)), colour(rng, light=(0.3, 0.8))
    angle = rng.randint(0, 359)
    return f"<div style='width:{w if isinstance(w, str) else f'{w}px'};height:{h}px;background:linear-gradient({angle}deg,{a},{b})'></div>"


# ---- the four kinds ---------------------------------------------------------------------------------


def article(rng: random.Random) -> str:
    p = palette(rng)
    paras = "".join(
        f"<p style='line-height:{rng.uniform(1.3, 1.8):.2f}'>{words(rng, rng.randint(25, 70))}.</p>"
        for _ in range(rng.randint(3, 8))
    )
    if rng.random() < 0.5:
        paras = picture(rng, "100%", rng.randint(120, 260)) + paras
    if rng.random() < 0.4:
        paras += f"<blockquote style='border-left:4px solid {p['accent']};padding-left:12px;font-style:italic'>{words(rng, 15)}</blockquote>"
    main = (
        f"<h1 style='font-size:{rng.randint(26, 42)}px;margin:{rng.randint(12, 30)}px 0 6px'>{words(rng, rng.randint(4, 10))}</h1>"
        f"<div style='color:{p['muted']}'>By {words(rng, 2)} · {rng.randint(1, 28)} {rng.choice(['March', 'June', 'October'])} 2024 · {rng.randint(3, 15)} min read</div>"
        f"{paras}"
    )
    width = rng.randint(560, 760)
    if rng.random() < 0.5:
        side = "".join(
            f"<li><a href='#'>{words(rng, rng.randint(3, 6))}</a></li>" for _ in range(rng.randint(3, 7))
        )
        aside = f"<aside style='width:220px;padding:16px;background:{p['panel']}'><h3>Related</h3><ul>{side}</ul></aside>"
        body = f"<div style='display:flex;gap:32px;padding:0 32px'><main style='max-width:{width}px'>{main}</main>{aside}</div>"
    else:
        body = f"<main style='max-width:{width}px;margin:0 auto;padding:0 16px'>{main}</main>"
    return page(rng, header(rng, p) + body, p)


def shop(rng: random.Random) -> str:
    p = palette(rng)
    cols = rng.randint(2, 4)
    cards = []
    for _ in range(cols * rng.randint(2, 3)):
        name = f"{words(rng, 1)} {rng.choice(PRODUCTS)}"
        price = f"{rng.choice(['$', '€', '£'])}{rng.randint(5, 400)}.{rng.choice(['00', '49', '99'])}"
        stars = "★" * rng.randint(3, 5) + "☆" * rng.randint(0, 2)
        cards.append(
            f"<div style='background:{p['panel']};padding:10px;border-radius:{rng.choice([0, 6, 12])}px'>"
            f"{picture(rng, '100%', rng.randint(90, 150))}<div style='margin-top:6px'>{name}</div>"
            f"<div style='color:{p['muted']};font-size:12px'>{stars}</div>"
            f"<b style='color:{p['accent']}'>{price}</b> <button style='float:right;padding:4px 10px'>Add to cart</button></div>"
        )
    grid = f"<div style='display:grid;grid-template-columns:repeat({cols},1fr);gap:{rng.randint(10, 24)}px;flex:1'>{''.join(cards)}</div>"
    if rng.random() < 0.5:
        filters = "".join(
            f"<div><input type='checkbox'> {words(rng, 1)}</div>" for _ in range(rng.randint(4, 8))
        )
        grid = (
            f"<aside style='width:170px'><h3>Filter</h3>{filters}<h3>Price</h3><input type='range'></aside>"
            + grid
        )
    banner = ""
    if rng.random() < 0.5:
        banner = f"<div style='padding:18px 24px;background:{p['accent']};color:white;font-size:22px'>{rng.choice(['Sale', 'New in', 'Free shipping'])}: {words(rng, 4, cap=False)}</div>"
    body = (
        header(rng, p, search=True, cart=True)
        + banner
        + f"<div style='display:flex;gap:24px;padding:20px'>{grid}</div>"
    )
    return page(rng, body, p)


def login(rng: random.Random) -> str:
    p = palette(rng)
    title = rng.choice(["Sign in", "Log in", "Welcome back", "Member login", "Sign in to your account"])
    social = ""
    if rng.random() < 0.5:
        social = "".join(
            f"<div style='border:1px solid {p['muted']};padding:8px;margin:6px 0;text-align:center'>Continue with {name}</div>"
            for name in rng.sample(["Google", "GitHub", "Apple", "Microsoft"], rng.randint(1, 3))
        )
    radius = rng.choice([0, 6, 14])
    field = (
        f"width:100%;padding:10px;margin:6px 0 14px;border:1px solid {p['muted']};border-radius:{radius}px"
    )
    card = (
        f"<div style='width:{rng.randint(300, 420)}px;background:{p['panel']};padding:{rng.randint(24, 40)}px;"
        f"border-radius:{radius}px;box-shadow:0 4px 24px rgba(0,0,0,.{rng.randint(1, 4)})'>"
        f"<b style='font-size:{rng.randint(18, 26)}px'>{words(rng, 1)}</b><h2>{title}</h2>"
        f"<label>{rng.choice(['Email', 'Username', 'Email address'])}</label><input style='{field}'>"
        f"<label>Password</label><input type='password' value='secret' style='{field}'>"
        f"<div><input type='checkbox'> Remember me <a style='float:right' href='#'>Forgot password?</a></div>"
        f"<button style='width:100%;margin-top:16px;padding:12px'>{title}</button>{social}"
        f"<p style='color:{p['muted']}'>No account? <a href='#'>Sign up</a></p></div>"
    )
    layout = rng.random()
    if layout < 0.4:  # split screen: picture left, form right
        body = f"<div style='display:flex;height:100vh'>{picture(rng, '50%', 800)}<div style='flex:1;display:flex;align-items:center;justify-content:center'>{card}</div></div>"
    elif layout < 0.7:
        body = (
            f"<div style='display:flex;height:100vh;align-items:center;justify-content:center'>{card}</div>"
        )
    else:
        body = (
            header(rng, p)
            + f"<div style='display:flex;justify-content:{rng.choice(['center', 'flex-start', 'flex-end'])};padding:40px'>{card}</div>"
        )
    return page(rng, body, p)


def chart(rng: random.Random, p: dict[str, str], w: int, h: int) -> str:
    n = rng.randint(6, 16)
    values = [rng.uniform(0.1, 1.0) for _ in range(n)]
    if rng.random() < 0.5:  # bars
        bw = w / n
        shapes = "".join(
            f"<rect x='{i * bw + 2:.1f}' y='{h - v * h:.1f}' width='{bw - 4:.1f}' height='{v * h:.1f}' fill='{p['accent']}'/>"
            for i, v in enumerate(values)
        )
    else:  # a line
        pts = " ".join(f"{i * w / (n - 1):.1f},{h - v * h:.1f}" for i, v in enumerate(values))
        shapes = f"<polyline points='{pts}' fill='none' stroke='{p['accent']}' stroke-width='3'/>"
    return f"<svg width='{w}' height='{h}' style='background:{p['panel']}'>{shapes}</svg>"


def dashboard(rng: random.Random) -> str:
    p = palette(rng)
    tiles = "".join(
        f"<div style='flex:1;background:{p['panel']};padding:14px'><div style='color:{p['muted']}'>{words(rng, 2)}</div>"
        f"<div style='font-size:{rng.randint(22, 34)}px;font-weight:bold'>{rng.randint(1, 999):,}{rng.choice(['', 'k', '%', ' ms'])}</div>"
        f"<div style='color:{rng.choice(['#2a2', '#c33'])}'>{rng.choice(['+', '-'])}{rng.uniform(0.1, 30):.1f}%</div></div>"
        for _ in range(rng.randint(2, 4))
    )
    charts = "".join(
        chart(rng, p, rng.randint(220, 360), rng.randint(120, 180)) for _ in range(rng.randint(1, 3))
    )
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td style='padding:4px 10px'>{c}</td>"
            for c in (
                words(rng, 2),
                rng.randint(1, 9999),
                f"{rng.uniform(0, 100):.1f}%",
                rng.choice(["ok", "late", "failed"]),
            )
        )
        + "</tr>"
        for _ in range(rng.randint(3, 7))
    )
    table = f"<table style='border-collapse:collapse;margin-top:14px;background:{p['panel']}'><tr><th>Name</th><th>Count</th><th>Rate</th><th>Status</th></tr>{rows}</table>"
    content = (
        f"<div style='flex:1;padding:18px'><h2 style='margin-top:0'>{words(rng, 2)}</h2>"
        f"<div style='display:flex;gap:12px'>{tiles}</div>"
        f"<div style='display:flex;gap:12px;margin-top:14px;flex-wrap:wrap'>{charts}</div>{table}</div>"
    )
    side_bg = colour(rng, light=(0.1, 0.3))
    menu = "".join(
        f"<div style='padding:10px 18px;color:#ddd'>{words(rng, 1)}</div>" for _ in range(rng.randint(5, 9))
    )
    if rng.random() < 0.7:
        body = f"<div style='display:flex;min-height:100vh'><nav style='width:{rng.randint(150, 220)}px;background:{side_bg}'><b style='display:block;padding:18px;color:white'>{words(rng, 1)}</b>{menu}</nav>{content}</div>"
    else:
        body = header(rng, p) + content
    return page(rng, body, p)


TEMPLATES = {"article": article, "shop": shop, "login": login, "dashboard": dashboard}


# ---- rendering ----------------------------------------------------------------------------------


def render(jobs: list[tuple[str, Path]], chromium: str, width: int, height: int) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            tab = browser.new_page(viewport={"width": width, "height": height})
            for doc, path in jobs:
                path.parent.mkdir(parents=True, exist_ok=True)
                tab.set_content(doc, wait_until="load")
                tmp = path.with_name(path.name + ".tmp.png")
                tab.screenshot(path=str(tmp))
                tmp.replace(path)  # a half-written screenshot never looks like data
        finally:
            browser.close()


def build(out: Path, per_class: int, seed: int, prefix: str = "") -> list[tuple[str, Path]]:
    rng = random.Random(seed)
    jobs = []
    for i in range(per_class):
        for kind in KINDS:
            jobs.append((TEMPLATES[kind](rng), out / kind / f"{prefix}{kind}_{i:04d}.png"))
    return jobs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--out", type=Path, default=HERE / "data", help="dataset folder [examples/web_pages/data]"
    )
    ap.add_argument("--new", type=Path, default=HERE / "new_pages", help="unseen pages for predict")
    ap.add_argument("--per-class", type=int, default=100, help="pages per kind [100]")
    ap.add_argument("--new-per-class", type=int, default=5, help="unseen pages per kind [5]")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", default="800x600", help="browser viewport WxH [800x600]")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    args = ap.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    jobs = build(args.out, args.per_class, args.seed)
    new = [
        (doc, args.new / path.name)
        for doc, path in build(args.new, args.new_per_class, args.seed + 10_000, "new_")
    ]
    t0 = time.perf_counter()
    render(jobs + new, args.chromium, width, height)
    print(
        f"Rendered {len(jobs)} pages ({args.per_class} per kind: {', '.join(KINDS)}) to {args.out} and "
        f"{len(new)} unseen pages to {args.new} in {time.perf_counter() - t0:.0f} s"
    )


if __name__ == "__main__":
    main()
