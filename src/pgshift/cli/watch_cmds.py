"""``pgshift watch``: sample the database (and the application's health) until told to stop."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from rich.live import Live
from rich.table import Table

from pgshift import api
from pgshift.cli.common import handle_errors, settings_options, stdout
from pgshift.config import Settings


def _table(sample: api.WatchSample) -> Table:
    table = Table(title=f"pgshift watch · {sample.at} · {sample.elapsed_s:.0f}s", show_header=False,
                  title_justify="left")
    table.add_column(style="dim")
    table.add_column()
    wal = "standby" if sample.wal_bytes_per_s is None else f"{sample.wal_bytes_per_s / 1e6:.2f} MB/s"
    rows: list[tuple[str, str]] = [
        ("sessions waiting for a lock", str(sample.blocked_sessions)),
        ("longest lock wait", f"{sample.longest_lock_wait_ms:.0f} ms"),
        ("longest transaction", f"{sample.longest_transaction_s:.1f} s"),
        ("commits / rollbacks per s", f"{sample.commits_per_s:.1f} / {sample.rollbacks_per_s:.1f}"),
        ("deadlocks, temp files per s", f"{sample.deadlocks_per_s:.1f}, {sample.temp_files_per_s:.1f}"),
        ("WAL", wal),
        ("database size", f"{sample.database_bytes / 1e6:.1f} MB "
                          f"({sample.database_growth_bytes_per_s / 1e3:+.1f} kB/s)"),
    ]
    for b in sample.blocked[:3]:
        rows.append((f"  pid {b.pid} waits {b.waiting_ms:.0f} ms", f"behind {', '.join(map(str, b.blocked_by))}: "
                     f"{b.query}"))
    for s in sample.standbys:
        rows.append((f"standby {s.name or s.client}", f"{s.state}, {s.replay_lag_s:.1f}s, {s.lag_bytes} bytes behind"))
    if sample.health is not None:
        h = sample.health
        rows.append(("application health", f"{'ok' if h.ok else 'FAILING'} ({h.status or h.error}, "
                                           f"{h.latency_ms:.0f} ms)"))
    for name, metric in sample.metrics.items():
        rows.append((f"metric {name}", "no value" if metric is None else f"{metric:g}"))
    for breach in sample.breaches:
        rows.append(("[bold red]BREACH[/]", breach))
    for label, text in rows:
        table.add_row(label, text)
    return table


@click.command("watch")
@settings_options
@click.option("--for", "for_", default="0", help="How long to watch (e.g. 30m); 0 watches until Ctrl-C.")
@click.option("--interval", default=None, help="Time between samples (default: watch.interval, 1s).")
@click.option("--json", "as_json", is_flag=True, help="JSON lines, one per sample (the default when not a tty).")
@handle_errors
def watch_cmd(settings: Settings, for_: str, interval: str | None, as_json: bool) -> None:
    """Watch the database: blocked sessions, long transactions, commit and rollback rates, WAL,
    standby lag, the application's health and your own metrics. Exit 30 when a [watch] threshold is crossed.
    """
    settings, seconds = api.watch_flags(settings, for_=for_, interval=interval)
    lines = as_json or not sys.stdout.isatty()
    with api.Watcher(settings) as watcher:
        try:
            if lines:
                report = watcher.watch(seconds, lambda s: print(api.watch_json_line(s), flush=True))
            else:
                with Live(console=stdout, auto_refresh=False) as live:
                    def show(sample: api.WatchSample) -> None:
                        live.update(_table(sample), refresh=True)

                    report = watcher.watch(seconds, show)
        except KeyboardInterrupt:
            return
    summary: dict[str, Any] = {"summary": report.to_json()}
    if lines:
        print(json.dumps(summary, separators=(",", ":")), flush=True)
    else:
        stdout.print(f"watched {report.seconds:.0f}s, {report.samples} samples; no threshold crossed")


COMMANDS = [watch_cmd]
