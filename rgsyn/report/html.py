"""The self-contained `reports/report.html`: inline CSS, images inlined as base64, no external
requests. Built from the report's `Table`s and figure paths."""
from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

from rgsyn.report.tables import DASH, NOT_APPLICABLE, NOT_RECOVERABLE, NOT_RUN, Table

CSS = """
body{font-family:-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;margin:0;color:#1d2330;background:#f4f5f7}
main{max-width:1320px;margin:0 auto;padding:24px 32px 48px;background:#fff}
h1{font-size:1.6em;margin:.2em 0 .1em}h2{font-size:1.25em;margin:1.8em 0 .5em;border-bottom:2px solid #d9dde5;padding-bottom:.2em}
h3{font-size:1.05em;margin:1.2em 0 .4em}.sub{color:#596275;margin:0 0 1em}
table.t{border-collapse:collapse;font-size:13px;margin:.4em 0 .3em;font-variant-numeric:tabular-nums}
table.t th,table.t td{padding:3px 9px;text-align:right;white-space:nowrap}table.t th{border-bottom:1px solid #1d2330;font-weight:600}
table.t thead tr:first-child th{border-top:2px solid #1d2330}table.t tbody tr:last-child td{border-bottom:2px solid #1d2330}
table.t .lab{text-align:left}table.t td.wrap{white-space:normal;max-width:430px;text-align:left}
tr.blk td{border-top:1px solid #c9ced8}tr.paper td{color:#3a4a6b}tr.delta td{color:#596275;font-size:12px}
table.t td.nr{color:#a33;font-style:italic}table.t td.rep{color:#6b4fa3;font-style:italic}table.t td.na{color:#9aa1ad}
table.t th.grp{text-align:center;border-bottom:1px solid #8a93a5}
.meta{border-collapse:collapse;font-size:13px}.meta td{text-align:left;padding:2px 12px 2px 0;border:0}.meta td:first-child{color:#596275}
.note{background:#fff6db;border-left:4px solid #e0a800;padding:10px 14px;margin:14px 0;font-size:14px}
.notes{font-size:12px;color:#596275;margin:.2em 0 1em;padding-left:1.2em}
.fig{margin:10px 0 18px}.fig img{max-width:100%;border:1px solid #e3e6ec}.fig p{font-size:12px;color:#596275;margin:.2em 0}
.grid{display:flex;flex-wrap:wrap;gap:14px}.grid .fig{flex:0 1 auto;max-width:48%}.notrun{color:#a33;font-style:italic}
.toc{font-size:13px;margin:10px 0 4px}.toc a{color:#2b5fab;text-decoration:none}
td.v-reproduced{color:#1d7a3a;font-weight:600}td.v-contradicted{color:#b3261e;font-weight:600}td.v-inconclusive{color:#7a6a1d}
p.lead{font-weight:600;font-size:15px;background:#eef3fb;border-left:4px solid #2b5fab;padding:8px 12px;margin:8px 0}
code{background:#eef0f4;padding:0 3px;border-radius:3px}
"""


@dataclass
class Section:
    title: str
    tables: list[Table] = field(default_factory=list)
    figures: list[tuple[str, Path | None]] = field(default_factory=list)   # (caption, png or None)
    text: list[str] = field(default_factory=list)                           # paragraphs (already HTML)
    grid: bool = False


def img_tag(path: Path, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _cell_class(text: str, col: int, n_label: int) -> str:
    if col < n_label:
        return "lab"
    if text == NOT_RUN:
        return "nr"
    if text == "reported":
        return "rep"
    if text in (DASH, NOT_RECOVERABLE, NOT_APPLICABLE):
        return "na"
    if text.startswith(("passes:", "fails:")):
        return "v-reproduced" if text.startswith("passes") else "v-contradicted"
    if text in ("reproduced", "consistent", "contradicted") or text.startswith("inconclusive"):
        return "v-" + text.split()[0].replace("consistent", "reproduced")
    return ""


def table_html(t: Table) -> str:
    out = [f"<h3>{html.escape(t.title)}</h3>"]
    if t.df.empty:
        out.append(f'<p class="notrun">{NOT_RUN}</p>')
    else:
        out.append('<table class="t"><thead>')
        if t.groups:
            out.append("<tr>" + "<th></th>" * t.n_label_cols + "".join(
                f'<th class="grp" colspan="{span}">{html.escape(g)}</th>' for g, span in t.groups) + "</tr>")
        out.append("<tr>" + "".join(
            f'<th class="{"lab" if i < t.n_label_cols else ""}">{html.escape(str(c))}</th>'
            for i, c in enumerate(t.df.columns)) + "</tr></thead><tbody>")
        for i, row in enumerate(t.df.itertuples(index=False)):
            cls = []
            if i in t.breaks:
                cls.append("blk")
            kind = str(row[1]) if t.n_label_cols > 1 else ""
            if kind == "paper":
                cls.append("paper")
            elif kind == "Δ":
                cls.append("delta")
            cells = []
            for j, c in enumerate(row):
                c = str(c)
                cc = _cell_class(c, j, t.n_label_cols)
                if t.name == "what_reproduced" and j == 1 and not c.startswith("↳"):
                    cc = "wrap"
                cells.append(f'<td class="{cc}">{html.escape(c)}</td>')
            out.append(f'<tr class="{" ".join(cls)}">' + "".join(cells) + "</tr>")
        out.append("</tbody></table>")
    if t.notes:
        out.append('<ul class="notes">' + "".join(f"<li>{html.escape(n)}</li>" for n in t.notes) + "</ul>")
    return "\n".join(out)


def render(title: str, meta: list[tuple[str, str]], note: str | None, sections: list[Section],
           lead: str | None = None) -> str:
    """`lead`: the report's first statement (the controls' reading), shown right under the title."""
    body = [f"<h1>{html.escape(title)}</h1>"]
    if lead:
        body.append(f'<p class="lead">{html.escape(lead)}</p>')
    body += ['<p class="sub">Reproduction of “Reinforcement-Guided Synthetic Data Generation for '
             "Privacy-Sensitive Identity Recognition” (arXiv 2604.07884, CVPR 2026) with the rgsyn suite.</p>",
             '<table class="meta">' + "".join(
                 f"<tr><td>{html.escape(k)}</td><td><code>{html.escape(v)}</code></td></tr>" for k, v in meta)
             + "</table>"]
    if note:
        body.append(f'<div class="note">{note}</div>')
    body.append('<nav class="toc">' + " · ".join(
        f'<a href="#s{i}">{html.escape(s.title)}</a>' for i, s in enumerate(sections)) + "</nav>")
    for i, s in enumerate(sections):
        body.append(f'<h2 id="s{i}">{html.escape(s.title)}</h2>')
        body += s.text
        body += [table_html(t) for t in s.tables]
        figs = []
        for caption, png in s.figures:
            if png is None:
                figs.append(f'<div class="fig"><p><b>{html.escape(caption)}</b>: '
                            f'<span class="notrun">{NOT_RUN}</span></p></div>')
            else:
                figs.append(f'<div class="fig">{img_tag(png, caption)}<p>{html.escape(caption)}</p></div>')
        if figs:
            body.append(('<div class="grid">' if s.grid else "<div>") + "".join(figs) + "</div>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head>"
            f"<body><main>{''.join(body)}</main></body></html>\n")
