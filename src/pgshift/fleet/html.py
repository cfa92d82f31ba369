"""The fleet summary as one self-contained HTML page (`--targets FILE --html PAGE`), in the style of
the rehearsal and deploy reports (their CSS). Targets appear by name and ``database X on host:port``
only; errors were masked when the rollout kept them."""

from __future__ import annotations

from html import escape

from pgshift.db.connect import mask_password
from pgshift.fleet import FleetReport
from pgshift.fleet.deploy import FleetDeployReport
from pgshift.rehearsal.html import CSS
from pgshift.rollout import _series_svg

_GOOD = ("applied", "up to date", "passed", "deployed", "rolled back")
_BAD = ("interrupted", "undo failed")


def render_fleet_html(report: FleetReport | FleetDeployReport) -> str:
    """The summary table (target, result, duration, migrations applied or pending, error); for a deploy
    also its fleet-wide steps, the watched servers and what the failure policy did."""
    deploy = report if isinstance(report, FleetDeployReport) else None
    summary = report.summary() if isinstance(report, FleetDeployReport) else report
    title = f"pgshift {summary.command} --targets" + (f": deploy {deploy.deploy_id}" if deploy else "")
    ok = summary.ok if deploy is None else deploy.outcome == "deployed"
    verdict = deploy.outcome if deploy else ("no target failed" if ok else "failed")
    counted = "pending" if summary.command in ("status", "check") else "applied"
    counts = ", ".join(f"{n} {state}" for state, n in sorted(summary.counts.items()))
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; style-src 'unsafe-inline'\">",
        f"<title>{escape(title)}: {escape(verdict)}</title><style>{CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f"<div class='verdict {'pass' if ok else 'fail'}'>{escape(verdict)}</div>",
        f"<p class='muted'>{len(summary.results)} target(s), parallel {summary.parallel}: {escape(counts)} in "
        f"{summary.duration_s:.1f} s" + (f"; stopped: {escape(summary.stopped)}" if summary.stopped else "") + "</p>",
    ]
    if deploy is not None and deploy.error:
        parts.append(f"<p class='bad'>{escape(mask_password(deploy.error))}</p>")
    parts.append(f"<h2>Targets</h2><table><tr><th>target</th><th>where</th><th>result</th><th>s</th>"
                 f"<th>{counted}</th><th>error</th></tr>")
    for r in summary.results:
        started = r.result != "not started"
        css = "" if r.result in _GOOD else " class='bad'" if r.result in _BAD or r.failed else " class='chg'"
        parts.append(f"<tr><td>{escape(r.target)}{' <span class=muted>(canary)</span>' if r.canary else ''}</td>"
                     f"<td class='muted'>{escape(r.where)}</td><td{css}>{escape(r.result)}</td>"
                     f"<td>{f'{r.duration_s:.1f}' if started else ''}</td>"
                     f"<td>{(r.pending if counted == 'pending' else r.applied) if started else ''}</td>"
                     f"<td>{escape(mask_password(r.error or ''))}</td></tr>")
    parts.append("</table>")
    if deploy is not None:
        parts += _deploy_sections(deploy)
    parts.append("</body></html>")
    return "\n".join(parts)


def _deploy_sections(deploy: FleetDeployReport) -> list[str]:
    parts = []
    if deploy.steps:
        parts.append("<h2>Fleet-wide steps (once)</h2><table><tr><th>step</th><th>state</th><th>started</th>"
                     "<th>finished</th><th>detail</th></tr>")
        for step in deploy.steps:
            output = f"<pre>{escape(chr(10).join(step.output))}</pre>" if step.output else ""
            parts.append(f"<tr><td>{escape(step.name)}</td><td>{escape(step.state)}</td><td>{escape(step.started_at)}"
                         f"</td><td>{escape(step.finished_at or '')}</td><td>{escape(mask_password(step.detail))}"
                         f"{output}</td></tr>")
        parts.append("</table>")
    for server, totals in deploy.watch.items():
        parts.append(f"<h2>Watched on {escape(server)}</h2><p class='muted'>{totals.get('samples', 0)} samples; peaks: "
                     + escape(", ".join(f"{k} {v:g}" for k, v in totals.get("peak", {}).items())) + "</p>")
        parts.append(_series_svg(totals.get("series", [])))
    if deploy.undo:
        parts.append("<h2>What the failure policy did</h2><ul>"
                     + "".join(f"<li>{escape(mask_password(line))}</li>" for line in deploy.undo) + "</ul>")
    return parts
