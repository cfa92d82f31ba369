"""`pgshift demo`: the playbook's example app, migrated on an embedded PostgreSQL.

Creates the users/trades schema, applies the playbook's "Migration Examples" written the safe
way, shows status, rolls one back, applies it again, backs up, rehearses, deploys the playbook's
rename as an expand/contract (`pgshift deploy`), shows the watch display, and stops the server it started.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import psycopg
from psycopg import sql

from pgshift import deploy
from pgshift.config import Settings
from pgshift.embedded import EmbeddedCluster
from pgshift.runner.gate import MigrateChecks
from pgshift.units import Duration

Say = Callable[[str], None]
DEMO_DB = "traider"


def copy_demo_migrations(target: Path) -> list[Path]:
    target.mkdir(parents=True, exist_ok=True)
    copied = []
    for item in sorted(resources.files("pgshift.demo_migrations").iterdir(), key=lambda p: p.name):
        if item.name.endswith(".sql"):
            path = target / item.name
            path.write_text(item.read_text())
            copied.append(path)
    return copied


def run_demo(
    say: Say, *, workdir: Path | None = None, extra_steps: list[Callable[[Settings, Say], None]] | None = None
) -> None:
    started = time.monotonic()
    root = Path(workdir or tempfile.mkdtemp(prefix="pgshift-demo-"))
    cluster = EmbeddedCluster(root / "cluster")
    try:
        say(f"Starting an embedded PostgreSQL in {cluster.root} ...")
        state = cluster.start(tcp=False)
        say(f"  {state.version}, socket only")
        with psycopg.connect(cluster.socket_dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DEMO_DB)))
        migrations = copy_demo_migrations(root / "migrations")
        say(f"Wrote {len(migrations)} migrations from the playbook's examples to {root / 'migrations'}")
        settings = dataclasses.replace(
            Settings(base_dir=root), database_url=cluster.socket_dsn(DEMO_DB),
            migrations_dir=str(root / "migrations"), lock_wait=Duration.parse("10s"),
            backup=dataclasses.replace(Settings().backup, directory=str(root / "backups")),
        )
        _steps(settings, say)
        for step in extra_steps or []:
            step(settings, say)
    finally:
        cluster.stop()
        if workdir is None:
            shutil.rmtree(root, ignore_errors=True)
        say(f"Stopped the embedded PostgreSQL; demo took {time.monotonic() - started:.1f}s.")


def _steps(settings: Settings, say: Say) -> None:
    say("\n1. pgshift status (nothing applied yet)")
    _show_status(settings, say)
    say("\n2. pgshift migrate --dry-run (exact SQL and transaction boundaries, nothing changes)")
    dry = deploy.migrate(settings, dry_run=True)
    say("\n".join(step.sql for step in dry.dry_run[-2:]))
    _lint_playbook(say)
    say("\n3. pgshift migrate (lints the pending migrations against the live server and applies the backup "
        "policy first)")
    report = deploy.migrate(settings, notify=lambda m: say(f"   · {m}"), checks=MigrateChecks())
    for r in report.applied:
        say(f"   applied {r.version} {r.name}: {r.mode}, {r.duration_ms} ms")
    with psycopg.connect(settings.database_url or "", autocommit=True) as conn:
        counts = conn.execute("SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM trades)").fetchone()
        users, trades = counts or (0, 0)
        say(f"   users: {users} rows, trades: {trades} rows; every trade now has status PENDING "
            "and a validated foreign key to users")
    say("\n4. pgshift status")
    _show_status(settings, say)
    say("\n5. pgshift rollback --steps 2 (the foreign key: its validation, then the constraint)")
    for r in deploy.rollback(settings, steps=2).reverted:
        say(f"   rolled back {r.version} {r.name} in {r.duration_ms} ms")
    say("\n6. pgshift migrate (apply them again)")
    for r in deploy.migrate(settings).applied:
        say(f"   applied {r.version} {r.name} in {r.duration_ms} ms")
    say("\n7. pgshift validate")
    problems = deploy.validate(settings).problems
    say("   every applied migration matches its file" if not problems else f"   problems: {problems}")
    _backup(settings, say)
    _rehearsal(settings, say)
    _deploy(settings, say)


PLAYBOOK_SQL = """\
ALTER TABLE users ADD COLUMN last_login_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP;
ALTER TABLE users ADD COLUMN phone VARCHAR(20);
UPDATE users SET phone = '0000000000' WHERE phone IS NULL;
ALTER TABLE users ALTER COLUMN phone SET NOT NULL;
ALTER TABLE users DROP COLUMN email;
CREATE INDEX idx_trades_user_id ON trades(user_id);
ALTER TABLE trades ADD CONSTRAINT fk_trades_user_id FOREIGN KEY (user_id) REFERENCES users(id);
DO $$ BEGIN
  UPDATE huge_table SET flag = true WHERE flag IS NULL LIMIT 10000;
END $$;
ALTER SYSTEM SET maintenance_work_mem = '256MB';
SELECT pg_reload_conf();
SET work_mem = '256MB';
"""


def _lint_playbook(say: Say) -> None:
    """What `pgshift lint` says about the playbook's own SQL, as the playbook wrote it."""
    from pgshift.lint.engine import lint_sql

    say("\n   pgshift lint on the playbook's SQL as written (before the safe versions above):")
    for finding in lint_sql(PLAYBOOK_SQL, file="playbook.sql", pg_version=15).active:
        message = finding.message
        ends = [i for i in (message.find(": ", 20), message.find(". ", 20)) if i > 0]
        say(f"   line {finding.line}: {finding.severity:<7} {finding.name}: {message[:min(ends, default=None)]}")


def _backup(settings: Settings, say: Say) -> None:
    from pgshift.safety import take_backup, verify_backup

    say("\n8. pgshift backup, then pgshift backup verify --restore-test")
    result = take_backup(settings, settings.database_url)
    tables = ", ".join(f"{t.name} {t.rows} rows" for t in result.backup.manifest.tables if t.schema == "public")
    say(f"   {result.backup.path.name}: {tables}; checksums and a full read-back passed")
    report = verify_backup(result.backup.path, full=True, url=settings.database_url)
    say(f"   restored into a scratch database: {'; '.join(report.passed[-3:])}")


def _rehearsal(settings: Settings, say: Say) -> None:
    """Rehearse the same index built naively and safely, on clones, under a synthetic workload."""
    from pgshift.rehearsal.demo import naive_vs_safe

    say("\n9. pgshift rehearse --load 100 --stall-budget 300ms: one index, built two ways, on clones under load")
    result = naive_vs_safe(settings.database_url or "")
    for label, report in (("CREATE INDEX", result.naive), ("CREATE INDEX CONCURRENTLY", result.safe)):
        worst = max((s.worst_latency_ms or 0.0 for s in report.statements if s.phase == "up"), default=0.0)
        say(f"   {label:<27} {report.verdict.upper():<5} worst query during the build {worst:.0f} ms")
        for reason in report.reasons:
            say(f"      {reason.message}")
    say("   (the source database is unchanged; each clone was dropped)")


# The playbook's rename (its "Migration Timeline": both names work while the new version rolls out).
RENAME_OPS = """\
version_schema: public_v2
operations:
  - rename_column: {table: users, from: email, to: email_address}
"""


def _deploy(settings: Settings, say: Say, watch_seconds: float = 3.0) -> None:
    """`pgshift deploy` of the playbook's rename as an expand/contract, with a stand-in application hook,
    then the watch display while a stand-in application writes through the new name."""
    import sys
    import threading

    from pgshift.rollout import deploy as run_deploy
    from pgshift.watch import Watcher

    say("\n10. pgshift deploy: the playbook's rename users.email -> email_address as an .ops expand/contract")
    (Path(settings.migrations_dir) / "20240107000000_rename_users_email.ops.yaml").write_text(RENAME_OPS)
    hook = f"{sys.executable} -c \"print('new version rolled out: it reads users.email_address')\""
    settings = dataclasses.replace(settings, deploy=dataclasses.replace(
        settings.deploy, app_command=hook, rollback_app_command="true", watch=Duration.parse("1s"), contract="later"))
    report = run_deploy(settings, notify=lambda m: say(f"   · {m}"))
    for step in report.steps:
        say(f"   {step.state:>7} {step.name:<9} {step.detail}")
    say(f"   deploy {report.outcome}; the contract (dropping the old name) is due after {settings.deploy.soak}: "
        "`pgshift contract` then")

    say(f"\n11. pgshift watch --for {watch_seconds:.0f}s (while the new version writes through email_address)")
    stop = threading.Event()

    def new_version() -> None:
        with psycopg.connect(settings.database_url or "", autocommit=True, options="-c search_path=public_v2") as app:
            while not stop.wait(0.02):
                app.execute("UPDATE users SET email_address = email_address WHERE id = %s",
                            (f"u{int(time.monotonic() * 50) % 500 + 1}",))

    writer = threading.Thread(target=new_version, daemon=True)
    writer.start()
    try:
        with Watcher(settings) as watcher:
            watcher.watch(watch_seconds, lambda sample: say(
                f"   {sample.at[11:19]}  sessions waiting {sample.blocked_sessions}  longest lock wait "
                f"{sample.longest_lock_wait_ms:.0f} ms  longest transaction {sample.longest_transaction_s:.1f} s  "
                f"commits/s {sample.commits_per_s:.0f}  rollbacks/s {sample.rollbacks_per_s:.0f}"))
    finally:
        stop.set()
        writer.join()


def _show_status(settings: Settings, say: Say) -> None:
    report = deploy.status(settings)
    for m in report.plan.migrations:
        say(f"   {m.version}  {report.plan.state_of(m):<12} {m.name}")
