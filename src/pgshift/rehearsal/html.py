"""One self-contained HTML file: verdict, timeline (inline SVG), statements and locks, schema
diff. No external fetches; a few lines of inline JS only add hover highlighting."""

from __future__ import annotations

from html import escape
from typing import Any

from pgshift.rehearsal.catalog import Change
from pgshift.rehearsal.model import RehearsalReport
from pgshift.rehearsal.recorder import StatementRecord
from pgshift.rehearsal.verdict import size_text
from pgshift.rehearsal.workload import error_text

WIDTH, HEIGHT = 1000, 340
LEFT, RIGHT, TOP, BOTTOM = 60, 20, 50, 40
LANE = 26  # the statement lane above the latency plot
PHASE_COLOURS = {"up": "#3b6fd8", "down": "#8a5cc7", "up-again": "#2f9c8f", "contract": "#c7883b"}

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1060px;color:#1d2433}
h1{font-size:22px}h2{font-size:17px;margin-top:28px}
.verdict{padding:12px 16px;border-radius:6px;font-weight:600;font-size:18px}
.pass{background:#e3f6e8;color:#16632b}.fail{background:#fde7e7;color:#9b1c1c}
table{border-collapse:collapse;width:100%;font-size:13px}td,th{border-bottom:1px solid #e3e6ec;
padding:4px 6px;text-align:left;vertical-align:top}th{background:#f4f6fa}tr.hl td{background:#fff6d6}
code,pre{font:12px/1.4 ui-monospace,monospace}pre{background:#f7f8fa;padding:8px;overflow-x:auto}
.add{color:#16632b}.rem{color:#9b1c1c}.chg{color:#8a5a00}.muted{color:#667085}.bad{color:#9b1c1c;font-weight:600}
svg text{font:11px system-ui,sans-serif;fill:#394150}
"""
JS = """
document.querySelectorAll('[data-stmt]').forEach(function (el) {
  el.addEventListener('mouseenter', function () { mark(el.dataset.stmt, true); });
  el.addEventListener('mouseleave', function () { mark(el.dataset.stmt, false); });
});
function mark(id, on) {
  document.querySelectorAll('[data-stmt="' + id + '"]').forEach(function (x) {
    x.classList.toggle('hl', on); if (x.tagName === 'rect') { x.style.opacity = on ? 1 : ''; }
  });
}
document.documentElement.dataset.rendered = '1';
"""


def render_html(report: RehearsalReport) -> str:
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; style-src 'unsafe-inline'; "
        "script-src 'unsafe-inline'\">",
        f"<title>pgshift rehearsal: {escape(report.verdict)}</title><style>{CSS}</style></head><body>",
        f"<h1>pgshift rehearsal of {escape(report.source)}</h1>",
        _verdict(report), _facts(report), "<h2>Timeline</h2>", timeline_svg(report),
        "<h2>Statements and locks</h2>", _statements(report), "<h2>Schema</h2>", _schema(report),
    ]
    if report.test is not None:
        parts.append(f"<h2>Test command</h2><p><code>{escape(report.test.command)}</code> exited with "
                     f"{report.test.exit_code} in {report.test.duration_s:.1f}s</p>"
                     f"<pre>{escape(report.test.output_tail)}</pre>")
    parts.append(f"<script>{JS}</script></body></html>")
    return "\n".join(parts)


def _verdict(report: RehearsalReport) -> str:
    items = "".join(f"<li>{escape(r.message)}</li>" for r in report.reasons)
    warnings = "".join(f"<li class='muted'>{escape(w)}</li>" for w in report.warnings)
    word = "PASS" if report.passed else "FAIL"
    return (f"<div id='verdict' class='verdict {report.verdict}'>Verdict: {word}</div>"
            + (f"<ul id='reasons'>{items}</ul>" if items else "")
            + (f"<ul>{warnings}</ul>" if warnings else ""))


def _facts(report: RehearsalReport) -> str:
    clone = report.clone
    rows = [("Started", report.started_at), ("Took", f"{report.duration_s:.2f}s"),
            ("Pending migrations", ", ".join(report.pending) or "none"),
            ("Stall budget", f"{report.options.stall_budget_ms} ms")]
    if clone is not None:
        rows.append(("Clone", f"{clone.name} by {clone.method} in {clone.duration_s:.2f}s"
                     + (" (kept)" if report.kept else " (dropped)")))
    if report.workload is not None:
        summary = report.workload.summary()
        rows.append(("Workload", f"{report.workload.rate:g} queries/s on {', '.join(report.workload.tables)}: "
                     f"{summary['queries']} queries, {summary['errors']} errors "
                     f"({summary['own_errors']} the workload's own), p50 {summary['p50_ms']} ms, "
                     f"p99 {summary['p99_ms']} ms, max {summary['max_ms']} ms"))
    body = "".join(f"<tr><th>{escape(k)}</th><td>{escape(str(v))}</td></tr>" for k, v in rows)
    return f"<table id='facts'>{body}</table>" + _workload_errors(report)


def _workload_errors(report: RehearsalReport) -> str:
    """The first few distinct errors of failed workload queries, and who caused them."""
    entries = report.workload.summary()["error_messages"] if report.workload is not None else []
    if not entries:
        return ""
    rows = "".join(
        f"<tr><td><code>{escape(e['sqlstate'])}</code></td><td>{escape(e['message'])}</td><td>{e['count']}</td>"
        f"<td class='{'bad' if e['cause'] == 'migration' else 'muted'}'>"
        f"{'the migration' if e['cause'] == 'migration' else 'the workload itself'}</td>"
        f"<td>{escape(', '.join(e['queries']))}</td></tr>" for e in entries)
    return ("<h2>Workload errors</h2><table id='workload-errors'><tr><th>SQLSTATE</th><th>message</th>"
            f"<th>queries</th><th>caused by</th><th>query kinds</th></tr>{rows}</table>")


def _bounds(report: RehearsalReport) -> tuple[float, float]:
    samples = report.workload.samples if report.workload else []
    starts = [s.start for s in report.statements] + [s.start for s in samples]
    ends = [s.end for s in report.statements] + [s.end for s in samples]
    if not starts:
        return 0.0, 1.0
    low, high = min(starts), max(ends)
    return low, max(high, low + 0.001)


def timeline_svg(report: RehearsalReport) -> str:
    """Every phase (up, down, up-again, contract) as a labelled band, its statements as bars, over the
    workload's query latencies: a rollback that stalls the app shows as plainly as a change does."""
    low, high = _bounds(report)
    samples = report.workload.samples if report.workload else []
    budget = report.options.stall_budget_ms
    y_max = max([s.latency_ms for s in samples] + [budget * 1.5, 1.0])
    plot_top, plot_bottom = TOP + LANE + 8, HEIGHT - BOTTOM

    def x(t: float) -> float:
        return LEFT + (t - low) / (high - low) * (WIDTH - LEFT - RIGHT)

    def y(ms: float) -> float:
        return plot_bottom - min(ms, y_max) / y_max * (plot_bottom - plot_top)

    out = [f"<svg id='timeline' xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' height='{HEIGHT}' "
           f"viewBox='0 0 {WIDTH} {HEIGHT}' role='img' aria-label='statements against workload latency'>",
           f"<rect x='0' y='0' width='{WIDTH}' height='{HEIGHT}' fill='#fff'/>",
           f"<text x='{LEFT}' y='18'>statements by phase (bars) and workload query latency (dots, ms); "
           f"red crosses are failed queries; dashed line is the {budget} ms budget</text>"]
    for number, (name, (start, end)) in enumerate(report.phases.items()):
        colour = PHASE_COLOURS.get(name, "#99a")
        label_y = TOP - 4 - 12 * (number % 2)  # staggered: a short phase's label must not cover the next
        out.append(f"<rect class='phase' x='{x(start):.1f}' y='{TOP}' width='{max(1.0, x(end) - x(start)):.1f}' "
                   f"height='{plot_bottom - TOP}' fill='{colour}' fill-opacity='.07'/>"
                   f"<text x='{x(start):.1f}' y='{label_y}' fill='{colour}'>{escape(name)}</text>")
    out += _axes(low, high, y_max, x, y, plot_top, plot_bottom)
    flagged = {r.statement for r in report.reasons if r.statement}
    for index, record in enumerate(report.statements):
        out.append(_bar(index, record, x, record.where in flagged and record.phase == "up"))
    for sample in samples:
        cx, cy = x(sample.end), y(sample.latency_ms)
        if sample.error:
            out.append(f"<path class='err' d='M{cx - 4:.1f},{plot_top - 4:.1f} l8,8 m0,-8 l-8,8' stroke='#d12' "
                       f"stroke-width='2'><title>{escape(sample.kind)} {escape(sample.table)}: "
                       f"{escape(sample.error)}</title></path>")
        else:
            colour = "#d12" if sample.latency_ms > budget else "#556"
            if sample.latency_ms > budget:  # show how long it waited, from issue to answer
                out.append(f"<line x1='{x(sample.start):.1f}' x2='{cx:.1f}' y1='{cy:.1f}' y2='{cy:.1f}' "
                           f"stroke='#d12' stroke-opacity='.35'/>")
            out.append(f"<circle class='q' cx='{cx:.1f}' cy='{cy:.1f}' r='2.2' fill='{colour}' fill-opacity='.7'/>")
    out.append(f"<line x1='{LEFT}' x2='{WIDTH - RIGHT}' y1='{y(budget):.1f}' y2='{y(budget):.1f}' stroke='#d12' "
               "stroke-dasharray='5,4'/>")
    out.append("</svg>")
    return "".join(out)


def _axes(low: float, high: float, y_max: float, x: Any, y: Any, top: float, bottom: float) -> list[str]:
    out = [f"<line x1='{LEFT}' x2='{WIDTH - RIGHT}' y1='{bottom}' y2='{bottom}' stroke='#99a'/>",
           f"<line x1='{LEFT}' x2='{LEFT}' y1='{top}' y2='{bottom}' stroke='#99a'/>"]
    for i in range(6):
        t = low + (high - low) * i / 5
        out.append(f"<text x='{x(t):.1f}' y='{bottom + 16}' text-anchor='middle'>{t:.2f}s</text>")
        ms = y_max * i / 4 if i < 5 else None
        if ms is not None:
            out.append(f"<text x='{LEFT - 6}' y='{y(ms) + 4:.1f}' text-anchor='end'>{ms:.0f}</text>")
    return out


def _bar(index: int, record: StatementRecord, x: Any, flagged: bool) -> str:
    x0, x1 = x(record.start), x(record.end)
    colour = "#d12" if flagged or record.error else PHASE_COLOURS.get(record.phase, "#3b6fd8")
    tip = (f"{record.sql} — {record.duration_ms:.0f} ms; locks: "
           + (", ".join(f"{lk.mode} on {lk.relation}" for lk in record.locks) or "none")
           + (f"; worst workload latency {record.worst_latency_ms:.0f} ms" if record.worst_latency_ms else ""))
    return (f"<rect class='stmt' data-stmt='{index}' x='{x0:.1f}' y='{TOP + 14}' width='{max(2.0, x1 - x0):.1f}' "
            f"height='{LANE - 8}' fill='{colour}' fill-opacity='.75'><title>{escape(tip)}</title></rect>")


def _statements(report: RehearsalReport) -> str:
    head = ("<tr><th>phase</th><th>statement</th><th>ms</th><th>locks</th><th>rewrite</th><th>rows</th>"
            "<th>worst stall</th><th>errors</th></tr>")
    rows = []
    for index, r in enumerate(report.statements):
        locks = "<br>".join(
            f"{escape(lk.mode)} on {escape(lk.relation)}"
            + (f" <span class='bad'>(blocks {escape(lk.blocks)})</span>" if lk.blocks and lk.kind == "table" else "")
            for lk in r.locks) or "<span class='muted'>none seen</span>"
        rewrite = "<br>".join(f"{escape(w.table)} ({w.rows} rows, {size_text(w.size_bytes)})" for w in r.rewrites)
        stall = "" if r.worst_latency_ms is None else f"{r.worst_latency_ms:.0f} ms"
        over = r.worst_latency_ms is not None and r.worst_latency_ms > report.options.stall_budget_ms
        rows.append(
            f"<tr data-stmt='{index}'><td>{escape(r.phase)}</td><td><code>{escape(r.sql)}</code><br>"
            f"<span class='muted'>{escape(r.where)}</span>"
            + (f"<br><span class='bad'>{escape(r.error)}</span>" if r.error else "")
            + f"</td><td>{r.duration_ms:.0f}</td><td>{locks}</td><td>{rewrite or '-'}</td>"
            f"<td>{'' if r.rows_affected is None else r.rows_affected}</td>"
            f"<td class='{'bad' if over else ''}'>{stall}</td><td>{r.workload_errors or ''}"
            + "".join(f"<br><span class='bad'>{escape(error_text(e))}</span>" for e in r.workload_error_messages)
            + "</td></tr>")
    return f"<table id='locks'>{head}{''.join(rows)}</table>"


def _changes(changes: list[Change]) -> str:
    css = {"added": "add", "removed": "rem", "changed": "chg"}
    return "\n".join(f"<span class='{css[c.kind]}'>{escape(c.line())}</span>" for c in changes)


def _schema(report: RehearsalReport) -> str:
    s = report.schema
    parts = [f"<p>Fingerprint before: <code>{s.before[:16]}</code>, after up: <code>{s.after_up[:16]}</code>"
             + (f", after down: <code>{s.after_down[:16]}</code>" if s.after_down else "")
             + f". Reversibility: <b>{escape(s.reversibility)}</b>.</p>"]
    if s.down_diff:
        parts.append("<h3>What the down parts did not restore</h3>"
                     f"<pre id='down-diff'>{_changes(s.down_diff)}</pre>")
    if s.up_again_diff:
        parts.append(f"<h3>Up after down differs</h3><pre>{_changes(s.up_again_diff)}</pre>")
    parts.append("<h3>What the migrations change</h3>"
                 f"<pre id='schema-diff'>{_changes(s.migration_changes) or 'no schema change'}</pre>")
    return "".join(parts)
