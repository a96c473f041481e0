"""Small HTML building blocks of the report: escaping, embedded images, tables, the page around them.

Everything the report shows comes from files; every text is escaped here (:func:`esc`) except HTML
fragments that their producer already escaped (the highlighted reports of :mod:`moreclip.explain.text`).
Images are embedded as ``data:`` URIs, so ``report.html`` is one self-contained file.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

CSS = """
:root { --ink:#1d2430; --muted:#5b6573; --line:#dde2e8; --soft:#f5f7fa; --accent:#2160c4; --ok:#1a7f37;
  --bad:#c62828; }
* { box-sizing: border-box; }
body { font-family: -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif; color: var(--ink);
  margin: 0; background: #fff; line-height: 1.5; font-size: 15px; }
main { max-width: 1180px; margin: 0 auto; padding: 28px 32px 60px; }
h1 { font-size: 28px; margin: 0 0 4px; } h2 { font-size: 21px; margin: 38px 0 8px; padding-top: 10px;
  border-top: 1px solid var(--line); } h3 { font-size: 16px; margin: 22px 0 6px; }
.sub { color: var(--muted); margin: 0 0 18px; }
nav { font-size: 13px; margin: 6px 0 0; } nav a { margin-right: 14px; color: var(--accent); text-decoration: none; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(250px, 1fr)); gap: 12px; margin: 18px 0; }
.card { border: 1px solid var(--line); border-radius: 10px; padding: 12px 14px; background: var(--soft); }
.card .what { font-size: 13px; color: var(--muted); min-height: 2.6em; }
.card .big { font-size: 30px; font-weight: 650; letter-spacing: -0.5px; }
.card .ci, .card .ref { font-size: 12.5px; color: var(--muted); }
.badge { display: inline-block; font-size: 11.5px; font-weight: 600; padding: 1px 7px; border-radius: 9px;
  color: #fff; margin-left: 4px; vertical-align: 2px; } .pass { background: var(--ok); } .fail { background: var(--bad); }
table { border-collapse: collapse; margin: 8px 0 6px; font-size: 13.5px; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: var(--soft); font-weight: 600; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.macro td { font-weight: 650; }
figure { margin: 10px 0 18px; } figure img { max-width: 100%; border: 1px solid var(--line); border-radius: 6px; }
figcaption { font-size: 13px; color: var(--muted); max-width: 60em; margin-top: 4px; }
.row { display: flex; flex-wrap: wrap; gap: 22px; align-items: flex-start; } .row > * { flex: 1 1 420px; }
.patient { border: 1px solid var(--line); border-radius: 12px; padding: 8px 18px 14px; margin: 18px 0; }
.report-text { background: var(--soft); border-radius: 8px; padding: 2px 12px 8px; }
.nb { display: flex; flex-wrap: wrap; gap: 10px; } .nb figure { margin: 0; text-align: center; }
.nb figure img { display: block; } .nb figcaption { font-size: 11.5px; }
ol.hits { padding-left: 20px; margin: 4px 0; font-size: 13.5px; } ol.hits li { margin-bottom: 6px; }
.own { background: #e6f4ea; border-radius: 4px; padding: 0 4px; font-weight: 600; font-size: 12px; }
.score { color: var(--muted); font-variant-numeric: tabular-nums; font-size: 12px; }
pre { background: var(--soft); border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px;
  font-size: 12.5px; overflow-x: auto; max-height: 520px; }
code { background: var(--soft); padding: 1px 4px; border-radius: 4px; font-size: 13px; }
.note { font-size: 13.5px; color: var(--muted); max-width: 64em; }
details summary { cursor: pointer; color: var(--accent); font-size: 13.5px; }
"""


def esc(value) -> str:
    """HTML-escaped ``str(value)``."""
    return html.escape(str(value), quote=True)


def data_uri(path: str | Path, mime: str = "image/png") -> str:
    """The file as a ``data:`` URI."""
    return f"data:{mime};base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def img(path: str | Path, alt: str, width: int | None = None) -> str:
    """An ``<img>`` with the file embedded (empty string when the file is missing)."""
    p = Path(path)
    if not p.is_file():
        return ""
    w = f' width="{width}"' if width else ""
    return f'<img src="{data_uri(p)}" alt="{esc(alt)}"{w}>'


def figure(path: str | Path, alt: str, caption: str, width: int | None = None) -> str:
    """An embedded image with its (escaped) caption; empty when the file is missing."""
    tag = img(path, alt, width)
    return f"<figure>{tag}<figcaption>{esc(caption)}</figcaption></figure>" if tag else ""


def table(header: list[str], rows: list[list], numeric: set[int] | frozenset = frozenset(),
          row_classes: list[str] | None = None) -> str:  # fmt: skip
    """A table; cells are escaped, columns in ``numeric`` right-aligned."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = []
    for i, r in enumerate(rows):
        cls = f' class="{row_classes[i]}"' if row_classes and row_classes[i] else ""
        cells = "".join(f'<td class="num">{esc(c)}</td>' if j in numeric else f"<td>{esc(c)}</td>"
                        for j, c in enumerate(r))  # fmt: skip
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def fmt(v, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def fmt_ci(entry: dict | None, digits: int = 3) -> str:
    """``{"value"|"mean", "ci", ["std"]}`` -> ``0.912 [0.890, 0.931]`` (``± std`` for means)."""
    if not entry:
        return "–"
    if "mean" in entry:
        s = fmt(entry.get("mean"), digits)
        if entry.get("std") is not None:
            s += f" ± {entry['std']:.{digits}f}"
    else:
        s = fmt(entry.get("value"), digits)
    ci = entry.get("ci")
    if ci and ci[0] is not None:
        s += f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"
    return s


def page(title: str, body: str) -> str:
    """The full document."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body><main>{body}</main></body></html>\n"
    )
