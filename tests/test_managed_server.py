"""pgshift on a managed PostgreSQL (docs/managed.md): every main path run through the CLI, over TCP
with a password, as a role that owns its database but is no superuser -- once with CREATEDB (as
most services grant their admin role) and once without. What needs more degrades with a warning
naming the missing privilege, or refuses up front (exit 27) leaving nothing behind."""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from psycopg import sql

from pgshift.db.privileges import PrivilegeMissing
from tests.conftest import PgServer
from tests.helpers import run_pgshift, write_migration

PASSWORD = "managed pw/1:@"  # characters a URL must escape


@dataclass
class Managed:
    role: str
    database: str
    url: str  # TCP, password-authenticated, as the role
    createdb: bool
    admin_url: str  # the test's superuser, on the same database

    def databases(self) -> list[str]:
        """Every database the role owns, sorted."""
        with psycopg.connect(self.admin_url) as conn:
            return sorted(str(r[0]) for r in conn.execute(
                "SELECT datname FROM pg_database WHERE datdba = (SELECT oid FROM pg_roles WHERE rolname = %s)",
                (self.role,)))

    def scalar(self, query: str) -> object:
        with psycopg.connect(self.admin_url) as conn:
            row = conn.execute(query).fetchone()
            return row[0] if row else None


@pytest.fixture(params=[True, False], ids=["createdb", "nocreatedb"])
def managed(request: pytest.FixtureRequest, pg_server: PgServer) -> Iterator[Managed]:
    if pg_server.cluster is None:
        pytest.skip("needs the embedded cluster's TCP listener")  # pragma: no cover
    role = f"managed_{uuid.uuid4().hex[:8]}"
    database = f"{role}_app"
    createdb = bool(request.param)
    with psycopg.connect(pg_server.admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} NOSUPERUSER NOCREATEROLE {}").format(
            sql.Identifier(role), sql.Literal(PASSWORD), sql.SQL("CREATEDB" if createdb else "NOCREATEDB")))
        admin.execute(sql.SQL("CREATE DATABASE {} OWNER {} TEMPLATE template0").format(
            sql.Identifier(database), sql.Identifier(role)))
    state = pg_server.cluster.state()
    assert state is not None
    url = f"postgresql://{role}:{quote(PASSWORD, safe='')}@127.0.0.1:{state.port}/{database}"
    yield Managed(role, database, url, createdb, pg_server.url_for(database))
    with psycopg.connect(pg_server.admin_url, autocommit=True) as admin:
        owned = admin.execute("SELECT datname FROM pg_database WHERE datdba = "
                              "(SELECT oid FROM pg_roles WHERE rolname = %s)", (role,)).fetchall()
        for name in {database, *(str(r[0]) for r in owned)}:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.execute(sql.SQL("DROP OWNED BY {} CASCADE").format(sql.Identifier(role)))
        admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def _project(tmp_path: Path, pg_server: PgServer, extra: str = "") -> Path:
    assert pg_server.cluster is not None
    (tmp_path / "pgshift.toml").write_text(
        f'migrations_dir = "migrations"\n{extra}\n[backup]\ndirectory = "backups"\n'
        f'pg_bindir = "{pg_server.cluster.bindir}"\n')
    folder = tmp_path / "migrations"
    write_migration(folder, "1", "init",
                    "CREATE TABLE accounts (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, email text, n int);\n"
                    "INSERT INTO accounts (email, n) SELECT 'a' || g, g FROM generate_series(1, 500) g;",
                    "DROP TABLE accounts;")
    write_migration(folder, "2", "note", "ALTER TABLE accounts ADD COLUMN note text;",
                    "ALTER TABLE accounts DROP COLUMN note;")
    return tmp_path


def _pgshift(args: list[str], project: Path, m: Managed, **env: str) -> tuple[int, str, str]:
    result = run_pgshift(args, cwd=project, url=m.url, env=env)
    assert PASSWORD not in result.stdout + result.stderr
    assert quote(PASSWORD, safe="") not in result.stdout + result.stderr
    return result.returncode, result.stdout, " ".join(result.stderr.split())


def _ok(args: list[str], project: Path, m: Managed, **env: str) -> tuple[str, str]:
    code, out, err = _pgshift(args, project, m, **env)
    assert code == 0, f"{args}: exit {code}: {err}"
    return out, err


def test_migrate_rollback_lint_check_ops_and_backfill_as_the_database_owner(
        managed: Managed, tmp_path: Path, pg_server: PgServer) -> None:
    project = _project(tmp_path, pg_server)
    out, _ = _ok(["migrate", "--no-backup"], project, managed)
    assert "applied 1 init" in out and "applied 2 note" in out
    assert managed.scalar("SELECT count(*) FROM accounts") == 500
    assert managed.scalar("SELECT tableowner FROM pg_tables WHERE tablename = 'migrations' "
                          "AND schemaname = 'pgshift'") == managed.role
    out, _ = _ok(["rollback"], project, managed)
    assert "rolled back 2 note" in out
    _ok(["migrate", "--no-backup"], project, managed)

    write_migration(project / "migrations", "3", "index", "CREATE INDEX accounts_email ON accounts (email);",
                    "DROP INDEX accounts_email;")
    code, out, _ = _pgshift(["lint", "--database", managed.url, "--json", "migrations"], project, managed)
    report = json.loads(out)
    assert code == 0 and report["pg_version"] == 15, out
    # The live table's size was read as this role: PS001 is a note, not an error, on a small table.
    assert any(f["rule"] == "PS001" and "accounts is small" in f["message"] for f in report["findings"])
    (project / "migrations" / "3_index.sql").unlink()

    code, out, _ = _pgshift(["check", "--json"], project, managed)
    checks = {c["name"]: c for c in json.loads(out)["checks"]}
    assert checks["pending migrations"]["status"] == "passed"
    assert checks["replication lag"]["status"] == "passed"
    assert [c["name"] for c in checks.values() if c["status"] == "failed"] == ["recent verified backup"]
    assert code == 1

    (project / "migrations" / "4_rename.ops.yaml").write_text(
        "operations:\n  - rename_column: {table: accounts, from: email, to: email_address}\n")
    out, _ = _ok(["migrate", "--no-backup"], project, managed)
    assert "applied 4 rename (expand" in out
    out, _ = _ok(["abort"], project, managed)
    assert "aborted 4 rename" in out
    _ok(["migrate", "--no-backup"], project, managed)
    out, _ = _ok(["contract"], project, managed)
    assert "contracted 4 rename" in out
    assert managed.scalar("SELECT count(*) FROM information_schema.columns WHERE table_name = 'accounts' "
                          "AND column_name = 'email_address'") == 1

    out, _ = _ok(["backfill", "--table", "accounts", "--set", "n = n + 1", "--quiet"], project, managed)
    assert "backfilled 500 rows of public.accounts" in out
    assert managed.scalar("SELECT sum(n) FROM accounts") == sum(range(1, 501)) + 500


def test_rewrite_guard_warns_once_and_goes_on_until_a_superuser_installs_it(
        managed: Managed, tmp_path: Path, pg_server: PgServer) -> None:
    project = _project(tmp_path, pg_server, 'rewrite_guard = "64kB"')
    _, err = _ok(["migrate", "--no-backup"], project, managed)
    # One plain warning line naming the privilege; no Python warning location or source line.
    assert err.count("warning: rewrite_guard = 64kB is set, but the guard is unavailable") == 1, err
    assert f"role '{managed.role}' is not a superuser" in err
    assert "table_rewrite event trigger" in err and "will NOT be stopped" in err
    assert "RewriteGuardUnavailable" not in err and "api.py" not in err
    write_migration(project / "migrations", "3", "widen", "ALTER TABLE accounts ALTER COLUMN n TYPE bigint;",
                    "ALTER TABLE accounts ALTER COLUMN n TYPE int;")
    _, err = _ok(["migrate", "--no-backup"], project, managed)  # unguarded, as the warning says
    assert err.count("guard is unavailable") == 1
    assert managed.scalar("SELECT evtname FROM pg_event_trigger") is None  # nothing half-installed

    # The warning's advice: a superuser runs `pgshift migrate` once with the guard set (nothing pending).
    admin = run_pgshift(["migrate", "--no-backup"], cwd=project, url=managed.admin_url)
    assert admin.returncode == 0, admin.stderr
    assert "guard is unavailable" not in admin.stderr
    write_migration(project / "migrations", "4", "narrow", "ALTER TABLE accounts ALTER COLUMN n TYPE int;",
                    "ALTER TABLE accounts ALTER COLUMN n TYPE bigint;")
    code, _, err = _pgshift(["migrate", "--no-backup"], project, managed)
    assert code == 8 and "rewrite guard" in err and "public.accounts" in err
    assert "guard is unavailable" not in err
    assert managed.scalar("SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                          "WHERE attrelid = 'accounts'::regclass AND attname = 'n'") == "bigint"


def _refused(result: tuple[int, str, str], needs: str, m: Managed) -> str:
    code, _, err = result
    assert code == PrivilegeMissing.exit_code == 27, err
    assert "error (privilege):" in err and needs in err
    assert f"needs the CREATEDB privilege, which role '{m.role}'" in err and "nothing was created or changed" in err
    assert f'ALTER ROLE "{m.role}" CREATEDB' in err
    return err


def test_backup_verify_restore_and_rehearse(managed: Managed, tmp_path: Path, pg_server: PgServer) -> None:
    stopped = tmp_path / "app-stopped"
    stop = json.dumps([sys.executable, "-c", f"open({str(stopped)!r}, 'w').close()"])
    project = _project(tmp_path, pg_server, f"[app]\nstop_command = {stop}\n")
    _ok(["migrate", "--no-backup"], project, managed)
    out, _ = _ok(["backup"], project, managed)
    assert "verified (quick)" in out
    folder = next((project / "backups").iterdir())
    out, _ = _ok(["backup", "verify", "latest"], project, managed)
    assert "verified (quick)" in out
    before = managed.databases()
    assert before == [managed.database]
    write_migration(project / "migrations", "3", "flag", "ALTER TABLE accounts ADD COLUMN flag boolean;",
                    "ALTER TABLE accounts DROP COLUMN flag;")

    full = _pgshift(["backup", "verify", "latest", "--restore-test"], project, managed)
    rehearsal = _pgshift(["rehearse"], project, managed)
    restore = _pgshift(["restore", "latest", "--yes"], project, managed)
    if not managed.createdb:
        _refused(full, "The full verification (--restore-test) restores into a scratch database", managed)
        assert "without --restore-test" in full[2]
        _refused(rehearsal, "A rehearsal runs on a throwaway copy of the database", managed)
        err = _refused(restore, f"Restoring {managed.database} creates a new database beside it", managed)
        assert "pgshift restore --table" in err
        assert managed.databases() == before  # no scratch, clone or copy
        assert not stopped.exists()  # the app was never stopped
        # The hint's way without the privilege works: one table, in the live database.
        out, _ = _ok(["restore", "latest", "--table", "public.accounts", "--yes"], project, managed)
        assert "restored 500 rows of public.accounts" in out
        return
    assert full[0] == 0 and "verified (full)" in full[1], full[2]
    assert rehearsal[0] == 0 and "verdict: pass" in rehearsal[1], rehearsal[2]
    assert restore[0] == 0 and f"{managed.database} restored from {folder.name}" in restore[1], restore[2]
    assert stopped.exists()
    after = managed.databases()
    kept = [d for d in after if d != managed.database]
    assert len(kept) == 1 and kept[0].startswith(f"{managed.database}_pre_restore_"), after  # nothing else left


@pytest.mark.parametrize("managed", [False], indirect=True, ids=["nocreatedb"])
def test_check_judges_other_roles_sessions_by_their_locks(
        managed: Managed, tmp_path: Path, pg_server: PgServer) -> None:
    """Without pg_read_all_stats another role's session shows no state or age; its locks still show."""
    project = _project(tmp_path, pg_server)
    _ok(["migrate", "--no-backup"], project, managed)
    write_migration(project / "migrations", "3", "flag", "ALTER TABLE accounts ADD COLUMN flag boolean;")

    def sessions_check() -> dict[str, object]:
        _, out, _ = _pgshift(["check", "--json"], project, managed)
        found: dict[str, object] = next(c for c in json.loads(out)["checks"]
                                        if c["name"] == "no sessions blocking DDL")
        return found

    with psycopg.connect(managed.admin_url, application_name="app") as app:  # the app, as another role
        app.execute("SELECT count(*) FROM accounts")  # its transaction stays open: idle in transaction
        pid = app.info.backend_pid
        result = sessions_check()
        assert result["status"] == "failed", result
        detail = " ".join(result["detail"])  # type: ignore[arg-type]
        assert f"pid {pid} of role postgres (state and age hidden) holds locks on accounts" in detail
        assert f"role {managed.role} lacks pg_read_all_stats" in detail
        app.rollback()
        result = sessions_check()  # connected, holding nothing: cannot be judged further
        assert result["status"] == "warning" and result["value"] == "0 long-running, 1 not inspectable", result
        with psycopg.connect(managed.admin_url, autocommit=True) as admin:
            admin.execute(sql.SQL("GRANT pg_read_all_stats TO {}").format(sql.Identifier(managed.role)))
        assert sessions_check()["status"] == "passed"  # now seen: idle, no transaction


@pytest.mark.parametrize("managed", [False], indirect=True, ids=["nocreatedb"])
def test_backup_of_tables_the_role_may_not_read_is_refused_naming_them(
        managed: Managed, tmp_path: Path, pg_server: PgServer) -> None:
    """On a managed service another role (an extension's installer, the app) may own a table the
    migration role cannot read; pg_dump would stop part-way, so the backup refuses up front."""
    project = _project(tmp_path, pg_server)
    _ok(["migrate", "--no-backup"], project, managed)
    with psycopg.connect(managed.admin_url, autocommit=True) as admin:
        admin.execute("CREATE TABLE public.audit_log (id int)")
        admin.execute("CREATE SCHEMA vault")
        admin.execute("CREATE TABLE vault.keys (k text)")
    code, _, err = _pgshift(["backup"], project, managed)
    assert code == 27, err
    assert (f"role '{managed.role}' (the user in database_url) lacks the SELECT privilege on 2 of them: "
            "public.audit_log (owner postgres), vault.keys (owner postgres, schema without USAGE); "
            "no backup was written") in err
    assert f'GRANT SELECT ON public.audit_log TO "{managed.role}"' in err
    assert not (project / "backups").exists() or not any((project / "backups").iterdir())
    with psycopg.connect(managed.admin_url, autocommit=True) as admin:  # what the hint says
        for statement in ("GRANT SELECT ON public.audit_log, vault.keys TO {}", "GRANT USAGE ON SCHEMA vault TO {}"):
            admin.execute(sql.SQL(statement).format(sql.Identifier(managed.role)))
    out, _ = _ok(["backup"], project, managed)
    assert "verified (quick)" in out


@pytest.mark.parametrize("managed", [True], indirect=True, ids=["createdb"])
def test_restore_that_may_not_end_the_apps_sessions_names_pg_signal_backend(
        managed: Managed, tmp_path: Path, pg_server: PgServer) -> None:
    project = _project(tmp_path, pg_server)
    _ok(["migrate", "--no-backup"], project, managed)
    _ok(["backup"], project, managed)
    app_role = f"{managed.role}_web"
    with psycopg.connect(managed.admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(app_role)))
    try:
        app_url = f"{managed.admin_url.replace('user=postgres', f'user={app_role}')} application_name=web"
        with psycopg.connect(app_url, autocommit=True) as app:  # the app, connected as its own role
            code, _, err = _pgshift(["restore", "latest", "--yes"], project, managed)
            assert code == 14, err
            assert f"The live database {managed.database} was not changed" in err
            assert "pg_signal_backend" in err and "Hint: stop the application first (app.stop_command)" in err
            assert managed.databases() == [managed.database]  # the restored copy was dropped
            assert managed.scalar(f"SELECT datallowconn FROM pg_database WHERE datname = '{managed.database}'")
            assert app.execute("SELECT 1").fetchone() == (1,)  # still connected: nothing was ended
            with psycopg.connect(managed.admin_url, autocommit=True) as admin:  # what the hint says
                admin.execute(sql.SQL("GRANT pg_signal_backend TO {}").format(sql.Identifier(managed.role)))
            out, _ = _ok(["restore", "latest", "--yes"], project, managed)
            assert "restore complete" in out
    finally:
        with psycopg.connect(managed.admin_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(app_role)))


@pytest.mark.parametrize("managed", [True], indirect=True, ids=["createdb"])
def test_rehearse_as_a_role_that_does_not_own_the_database_copies_it_with_pg_dump(
        managed: Managed, tmp_path: Path, pg_server: PgServer) -> None:
    """A service's admin role owns the database; the deploy role has CREATEDB and owns the tables. Only
    the owner may copy a database as a template, so the clone is made with pg_dump | pg_restore."""
    with psycopg.connect(managed.admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("ALTER DATABASE {} OWNER TO postgres").format(sql.Identifier(managed.database)))
        admin.execute(sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(
            sql.Identifier(managed.database), sql.Identifier(managed.role)))
        admin.execute(sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(sql.Identifier(managed.role)))
    project = _project(tmp_path, pg_server)
    _ok(["migrate", "--no-backup"], project, managed)
    write_migration(project / "migrations", "3", "flag", "ALTER TABLE accounts ADD COLUMN flag boolean;",
                    "ALTER TABLE accounts DROP COLUMN flag;")
    out, _ = _ok(["rehearse", "--json"], project, managed)
    report = json.loads(out)
    assert report["verdict"] == "pass" and report["clone"]["method"] == "pg_dump", report["clone"]
    assert "does not own the source database" in report["clone"]["note"]
    assert managed.databases() == []  # the clone, the role's own, was dropped


@pytest.mark.parametrize("managed", [True], indirect=True, ids=["createdb"])
def test_restore_by_a_role_that_does_not_own_the_database_is_refused_up_front(
        managed: Managed, tmp_path: Path, pg_server: PgServer) -> None:
    stopped = tmp_path / "app-stopped"
    stop = json.dumps([sys.executable, "-c", f"open({str(stopped)!r}, 'w').close()"])
    project = _project(tmp_path, pg_server, f"[app]\nstop_command = {stop}\n")
    _ok(["migrate", "--no-backup"], project, managed)
    _ok(["backup"], project, managed)
    with psycopg.connect(managed.admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("ALTER DATABASE {} OWNER TO postgres").format(sql.Identifier(managed.database)))
    code, _, err = _pgshift(["restore", "latest", "--yes"], project, managed)
    assert code == 27, err
    assert (f"Restoring {managed.database} renames it to keep it, and so needs ownership of database "
            f"{managed.database}, which belongs to role 'postgres', not to role '{managed.role}'") in err
    assert f'GRANT "postgres" TO "{managed.role}"' in err
    assert not stopped.exists() and managed.databases() == []  # the app was not stopped; no copy was made
