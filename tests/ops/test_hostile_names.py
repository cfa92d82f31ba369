"""Every operation on schemas, tables and columns whose names need quoting (mixed case, spaces, quotes,
dots, unicode, keywords, 63 bytes), next to tables whose names an unquoted lookup would land on
instead: expand -> abort restores the target exactly, expand -> contract changes the target as asked,
and the look-alike tables are never touched."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from psycopg import sql

from pgshift import api
from pgshift.ops import service
from tests.conftest import PgServer
from tests.ops.helpers import make_project

HOSTILE = ["Acct", "acct", "my table", 'a"b', '"', "a.b", "x.y.z", "Ünïcødé", "ß", "select", "user", "1st", " lead",
           "O'Brien", "a;b--", "%s", "UPPER", "x" * 63, "é" * 31 + "x", "_pgshift_nn"]
SYSTEM_COLUMNS = {"id", "tableoid", "cmax", "xmax", "cmin", "xmin", "ctid", "oid"}


def _fits(name: str) -> bool:
    return bool(name.strip()) and "\x00" not in name and len(name.encode()) <= 63


IDENT = st.one_of(
    st.sampled_from(HOSTILE),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=63).filter(_fits),
)


def fold(name: str) -> str:
    """What PostgreSQL makes of the name written unquoted: ASCII letters lower-cased."""
    return "".join(ch.lower() if "A" <= ch <= "Z" else ch for ch in name)


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@st.composite
def names(draw: st.DrawFn) -> dict[str, str]:
    n = {key: draw(IDENT) for key in ("schema", "table", "ref", "c", "d", "new", "obj")}
    assume(not fold(n["schema"]).startswith("pg_") and n["schema"] not in ("pgshift", "public"))
    tables = {n["table"], fold(n["table"])}
    assume(n["ref"] not in tables and n["new"] not in tables and n["new"] != n["ref"])
    assume(n["obj"] not in {*tables, n["ref"], n["new"]} and n["new"] != "a")  # "a": the enum's first value
    assume(len({n["c"], n["d"], n["new"]}) == 3 and not {n["c"], n["d"], n["new"]} & SYSTEM_COLUMNS)
    return n


def operation(kind: str, n: dict[str, str]) -> dict[str, Any]:
    t, c, d, new, obj, c_sql = n["table"], n["c"], n["d"], n["new"], n["obj"], quote(n["c"])
    operations: dict[str, dict[str, Any]] = {
        "add_column": {"table": t, "column": {"name": new, "type": "int"}, "up": f"{c_sql} + 1"},
        "add_column_constant": {"table": t, "column": {"name": new, "type": "text", "default": "'x'",
                                                       "nullable": False}},
        "set_not_null": {"table": t, "column": c, "up": "0"},
        "drop_not_null": {"table": t, "column": d},
        "set_default": {"table": t, "column": c, "default": "7"},
        "add_check": {"table": t, "name": obj, "check": f"{c_sql} IS NULL OR {c_sql} >= 0"},
        "add_foreign_key": {"table": t, "name": obj, "columns": [c], "references_table": n["ref"],
                            "references_columns": ["id"]},
        "add_unique": {"table": t, "name": obj, "columns": ["id", c]},
        "create_index": {"table": t, "name": obj, "columns": [c, d]},
        "rename_column": {"table": t, "from": c, "to": new},
        "change_column_type": {"table": t, "column": c, "type": "bigint"},
        "drop_column": {"table": t, "column": d, "down": "'v2'"},
        "rename_table": {"from": t, "to": new},
        "create_table": {"table": new, "columns": [{"name": c, "type": "int", "primary_key": True}]},
        "drop_table": {"table": t},
        "drop_index": {"name": obj},
        "add_enum_value": {"type": obj, "value": new, "before": "a"},
    }
    return operations[kind]


OPERATIONS = ["add_column", "add_column_constant", "set_not_null", "drop_not_null", "set_default", "add_check",
              "add_foreign_key", "add_unique", "create_index", "rename_column", "change_column_type", "drop_column",
              "rename_table", "create_table", "drop_table", "drop_index", "add_enum_value"]


def _table_sql(schema: str, table: str, n: dict[str, str]) -> list[sql.Composed]:
    t = sql.Identifier(schema, table)
    return [
        sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, {c} int CHECK ({c} >= 0), {} text NOT NULL)").format(
            t, sql.Identifier(n["d"]), c=sql.Identifier(n["c"])),
        # Carried to the new column by rename_column and change_column_type.
        sql.SQL("CREATE INDEX ON {} ({}, {})").format(t, sql.Identifier(n["c"]), sql.Identifier(n["d"])),
        sql.SQL("INSERT INTO {} SELECT g, CASE WHEN g % 3 <> 0 THEN g % 5 END, 'd' || g "
                "FROM generate_series(1, 40) g").format(t),
    ]


def _set_up(conn: psycopg.Connection[Any], n: dict[str, str]) -> list[tuple[str, str]]:
    """The target, the table it references, and look-alikes: the names an unquoted or case-folded
    lookup would find instead. Returns the look-alikes."""
    s, t = n["schema"], n["table"]
    lookalikes = list(dict.fromkeys(pair for pair in [(s, fold(t)), (fold(s), fold(t)), (fold(s), t),
                                                      ("public", t), ("public", fold(t))] if pair != (s, t)))
    for schema in dict.fromkeys([s, fold(s)]):
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
    for schema, table in [(s, t), *lookalikes]:
        for statement in _table_sql(schema, table, n):
            conn.execute(statement)
    conn.execute(sql.SQL("CREATE TABLE {} (id int PRIMARY KEY)").format(sql.Identifier(s, n["ref"])))
    conn.execute(sql.SQL("INSERT INTO {} SELECT generate_series(0, 10)").format(sql.Identifier(s, n["ref"])))
    return lookalikes


def _oid(conn: psycopg.Connection[Any], schema: str, table: str) -> int | None:
    row = conn.execute("SELECT c.oid::int FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                       "WHERE n.nspname = %s AND c.relname = %s", (schema, table)).fetchone()
    return int(row[0]) if row else None


def fingerprint(conn: psycopg.Connection[Any], oid: int) -> dict[str, Any]:
    """Everything an operation could change on one table: name, columns, constraints, indexes,
    triggers and the rows."""
    def rows(query: str) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in conn.execute(query, {"oid": oid}).fetchall()]

    relname = rows("SELECT relname::text FROM pg_class WHERE oid = %(oid)s")
    if not relname:
        return {"exists": False}
    table = conn.execute("SELECT %(oid)s::regclass::text", {"oid": oid}).fetchone()
    assert table is not None
    return {
        "name": relname,
        "columns": rows("SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull, "
                        "pg_get_expr(d.adbin, d.adrelid) FROM pg_attribute a LEFT JOIN pg_attrdef d "
                        "ON d.adrelid = a.attrelid AND d.adnum = a.attnum WHERE a.attrelid = %(oid)s "
                        "AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum"),
        "constraints": rows("SELECT conname::text, pg_get_constraintdef(oid), convalidated FROM pg_constraint "
                            "WHERE conrelid = %(oid)s ORDER BY 1"),
        "indexes": rows("SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid), indisvalid FROM pg_index "
                        "WHERE indrelid = %(oid)s ORDER BY 1"),
        "triggers": rows("SELECT tgname::text FROM pg_trigger WHERE tgrelid = %(oid)s AND NOT tgisinternal"),
        "data": conn.execute(sql.SQL("SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) FROM {} t").format(
            sql.SQL(str(table[0])))).fetchone(),
    }


def _columns(print_: dict[str, Any]) -> dict[str, tuple[Any, ...]]:
    return {str(c[0]): tuple(c[1:]) for c in print_["columns"]}


def _index_count(conn: psycopg.Connection[Any], oid: int, name: str) -> int:
    row = conn.execute("SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                       "WHERE i.indrelid = %s AND c.relname = %s AND i.indisvalid", (oid, name)).fetchone()
    return int(row[0]) if row else 0


def _values(conn: psycopg.Connection[Any], schema: str, table: str, column: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in conn.execute(sql.SQL("SELECT id, {}::bigint FROM {} ORDER BY id").format(
        sql.Identifier(column), sql.Identifier(schema, table))).fetchall()]


def _check_contracted(conn: psycopg.Connection[Any], kind: str, n: dict[str, str], oid: int,
                      before: dict[str, Any]) -> None:
    after = fingerprint(conn, oid)
    cols = _columns(after) if after.get("exists", True) else {}
    constraints = {str(c[0]): c for c in after.get("constraints", [])}
    if kind == "add_column":
        assert n["new"] in cols
        row = conn.execute(sql.SQL("SELECT count(*) FILTER (WHERE {new} IS DISTINCT FROM {c} + 1) FROM {t}").format(
            new=sql.Identifier(n["new"]), c=sql.Identifier(n["c"]), t=sql.Identifier(n["schema"], n["table"]))
        ).fetchone()
        assert row == (0,)
    elif kind == "add_column_constant":
        assert cols[n["new"]][1] is True
    elif kind == "set_not_null":
        assert cols[n["c"]][1] is True
    elif kind == "drop_not_null":
        assert cols[n["d"]][1] is False
    elif kind == "set_default":
        assert cols[n["c"]][2] == "7"
    elif kind in ("add_check", "add_foreign_key", "add_unique"):
        assert constraints[n["obj"]][2] is True  # validated
    elif kind == "create_index":
        assert _index_count(conn, oid, n["obj"]) == 1
    elif kind == "rename_column":  # every row's value moved, which only the backfill of the right table does
        assert n["new"] in cols and n["c"] not in cols
        assert _values(conn, n["schema"], n["table"], n["new"]) == before["c_values"]
    elif kind == "change_column_type":
        assert cols[n["c"]][0] == "bigint"
        assert _values(conn, n["schema"], n["table"], n["c"]) == before["c_values"]
    elif kind == "drop_column":
        assert n["d"] not in cols
    elif kind == "rename_table":
        assert after["name"] == [(n["new"],)]
    elif kind == "create_table":
        assert _oid(conn, n["schema"], n["new"]) is not None
    elif kind == "drop_table":
        assert after == {"exists": False}
    elif kind == "drop_index":
        assert _index_count(conn, oid, n["obj"]) == 0
    elif kind == "add_enum_value":
        assert conn.execute(sql.SQL("SELECT enum_range(NULL::{})::text[]").format(
            sql.Identifier(n["schema"], n["obj"]))).fetchone() == ([n["new"], "a"],)
    if kind in ("rename_column", "change_column_type"):  # the index and CHECK on the column came along
        assert [i[0] for i in after["indexes"]] == [i[0] for i in before["indexes"]]
        assert all(i[2] for i in after["indexes"])
        assert [(c[0], c[2]) for c in after["constraints"]] == [(c[0], c[2]) for c in before["constraints"]]
    if kind not in ("drop_table", "rename_table", "create_table", "set_not_null"):
        assert after["data"] == before["data"] or kind in ("add_column", "add_column_constant", "drop_column",
                                                          "change_column_type", "rename_column")


@pytest.mark.parametrize("kind", OPERATIONS)
@settings(max_examples=5, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(n=names())
@example(n={"schema": 'My "Schema"', "table": "Acct", "ref": "Ref", "c": "Amount", "d": "amount", "new": "New Name",
            "obj": "Obj.Name"})
@example(n={"schema": "s" * 63, "table": "é" * 31 + "X", "ref": "r" * 63, "c": "C" * 63, "d": "c" * 63,
            "new": "ñ" * 31 + "N", "obj": "o" * 63})
@example(n={"schema": "app", "table": "Acct", "ref": "ref", "c": "Amount", "d": "note", "new": "total",
            "obj": "acct_check"})
@example(n={"schema": "a.b", "table": 'a"b', "ref": "%s", "c": 'x"y', "d": "select", "new": "my table", "obj": '"'})
def test_every_operation_on_names_that_need_quoting(pg_server: PgServer, kind: str, n: dict[str, str]) -> None:
    dbname = pg_server.create_database()
    url = pg_server.url_for(dbname)
    try:
        with psycopg.connect(url, autocommit=True) as conn, tempfile.TemporaryDirectory() as tmp:
            lookalikes = _set_up(conn, n)
            if kind == "drop_index":
                conn.execute(sql.SQL("CREATE INDEX {} ON {} ({})").format(
                    sql.Identifier(n["obj"]), sql.Identifier(n["schema"], n["table"]), sql.Identifier(n["d"])))
            if kind == "add_enum_value":
                conn.execute(sql.SQL("CREATE TYPE {} AS ENUM ('a')").format(sql.Identifier(n["schema"], n["obj"])))
            target = _oid(conn, n["schema"], n["table"])
            assert target is not None
            others = {pair: _oid(conn, *pair) for pair in lookalikes}
            untouched = {pair: fingerprint(conn, oid) for pair, oid in others.items() if oid is not None}
            before = fingerprint(conn, target)
            c_values = _values(conn, n["schema"], n["table"], n["c"])
            ops = {"schema": n["schema"], "lock_timeout": "1s", "backfill_batch_size": 15,
                   "operations": [{kind.removesuffix("_constant"): operation(kind, n)}]}
            settings_ = make_project(Path(tmp), url, {"002_hostile.ops.json": json.dumps(ops)})

            api.migrate(settings_)
            assert {p: fingerprint(conn, o) for p, o in others.items() if o is not None} == untouched
            service.abort(settings_)
            assert fingerprint(conn, target) == before or kind == "set_not_null"  # its `up` fills NULLs in place
            if kind == "set_not_null":
                assert _columns(fingerprint(conn, target)) == _columns(before)
            if kind == "create_table":
                assert _oid(conn, n["schema"], n["new"]) is None

            api.migrate(settings_)
            service.contract(settings_)
            _check_contracted(conn, kind, n, target, {**before, "c_values": c_values})
            assert {p: fingerprint(conn, o) for p, o in others.items() if o is not None} == untouched
    finally:
        pg_server.drop_database(dbname)


def _two_accts(conn: psycopg.Connection[Any]) -> None:
    conn.execute('CREATE SCHEMA "My ""Schema"""')
    for table in ('acct', '"Acct"', '"My ""Schema"""."Acct"'):
        conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, hits int NOT NULL DEFAULT 0)")
        conn.execute(f"INSERT INTO {table} (id) SELECT generate_series(1, 50)")


def _hits(conn: psycopg.Connection[Any]) -> dict[str, int]:
    return {t: int(conn.execute(f"SELECT sum(hits) FROM {t}").fetchone()[0])  # type: ignore[index]
            for t in ('acct', '"Acct"', '"My ""Schema"""."Acct"')}


def test_pgshift_backfill_never_takes_the_case_folded_table_for_the_named_one(
    tmp_path: Path, db_url: str, conn: psycopg.Connection[Any]
) -> None:
    from tests.helpers import run_pgshift

    _two_accts(conn)
    # Unquoted Acct: SQL reads acct, a person may mean "Acct". Both exist: refused, with the quoting that works.
    refused = run_pgshift(["backfill", "--table", "Acct", "--set", "hits = hits + 1", "--quiet"], cwd=tmp_path,
                          url=db_url)
    assert refused.returncode != 0 and "could mean public.acct or public.\"Acct\"" in refused.stderr
    assert "--table 'public.\"Acct\"'" in refused.stderr
    assert _hits(conn) == {"acct": 0, '"Acct"': 0, '"My ""Schema"""."Acct"': 0}
    for table, changed in [('public."Acct"', '"Acct"'), ("acct", "acct"),
                           ('"My ""Schema"""."Acct"', '"My ""Schema"""."Acct"')]:
        done = run_pgshift(["backfill", "--table", table, "--set", "hits = hits + 1", "--quiet"], cwd=tmp_path,
                           url=db_url)
        assert done.returncode == 0, done.stderr
        assert _hits(conn)[changed] == 50
    assert _hits(conn) == {"acct": 50, '"Acct"': 50, '"My ""Schema"""."Acct"': 50}
    # Only one table has the name as written: that one, whether SQL would fold it or not.
    conn.execute("DROP TABLE acct")
    done = run_pgshift(["backfill", "--table", "Acct", "--set", "hits = hits + 1", "--quiet", "--job", "j2"],
                       cwd=tmp_path, url=db_url)
    assert done.returncode == 0, done.stderr
    done = run_pgshift(["backfill", "--table", 'My "Schema".Acct', "--set", "hits = hits + 1", "--quiet",
                        "--job", "j3"], cwd=tmp_path, url=db_url)
    assert done.returncode == 0, done.stderr
    assert conn.execute('SELECT sum(hits) FROM "Acct"').fetchone() == (100,)
    assert conn.execute('SELECT sum(hits) FROM "My ""Schema"""."Acct"').fetchone() == (100,)


@settings(max_examples=40, deadline=None, database=None)
@given(name=IDENT)
def test_quote_ident_and_fit_agree_with_the_server(pg_server: PgServer, name: str) -> None:
    from pgshift.runner.names import fit, qualified, quote_ident

    with psycopg.connect(pg_server.admin_url, autocommit=True) as c:
        assert quote_ident(name) == c.execute("SELECT quote_ident(%s)", (name,)).fetchone()[0]  # type: ignore[index]
        long = fit("_pgshift_nn", name, name)
        assert len(long.encode()) <= 63 and long != fit("_pgshift_nn", name, name + "x")
        # The server keeps a fitted name as it is: nothing cut a second time.
        assert c.execute("SELECT %s::name::text", (long,)).fetchone() == (long,)
        assert c.execute("SELECT to_regclass(%s)", (qualified("pg_catalog", "pg_class"),)).fetchone() is not None


def test_names_that_look_like_markup_are_printed_as_they_are(tmp_path: Path, db_url: str,
                                                             conn: psycopg.Connection[Any]) -> None:
    from tests.helpers import run_pgshift

    conn.execute('CREATE TABLE "x[/]" (id int PRIMARY KEY, hits int NOT NULL DEFAULT 0)')
    conn.execute('INSERT INTO "x[/]" (id) SELECT generate_series(1, 30)')
    done = run_pgshift(["backfill", "--table", 'public."x[/]"', "--set", "hits = 1"], cwd=tmp_path, url=db_url)
    assert done.returncode == 0, done.stderr
    assert 'rows of public."x[/]"' in done.stdout
    missing = run_pgshift(["backfill", "--table", "[bold]nope[/]", "--set", "hits = 1"], cwd=tmp_path, url=db_url)
    assert missing.returncode != 0 and "Table '[bold]nope[/]' does not exist" in missing.stderr


def test_a_long_transaction_on_a_mixed_case_table_is_seen_and_waited_out(tmp_path: Path, db_url: str,
                                                                          conn: psycopg.Connection[Any]) -> None:
    """Before a strong lock, pgshift looks for sessions holding locks on the table: on "Acct", not on acct."""
    import time

    from tests.ops.helpers import Writers

    conn.execute('CREATE TABLE "Acct" (id int PRIMARY KEY, qty int); CREATE TABLE acct (id int PRIMARY KEY)')
    settings_ = make_project(tmp_path, db_url, {"002_check.ops.json": json.dumps({
        "lock_timeout": "50ms", "operations": [{"add_check": {"table": "Acct", "name": "qty_positive",
                                                              "check": "qty > 0"}}]})})
    blocker = psycopg.connect(db_url)
    blocker.execute('SELECT * FROM "Acct"')  # an open transaction holding ACCESS SHARE on "Acct"
    time.sleep(0.3)  # already older than lock_timeout when the migration looks
    notes: list[str] = []
    writers = Writers()
    writers.start(lambda stop: len(api.migrate(settings_, notify=notes.append).applied))
    queued: list[Any] = []
    with psycopg.connect(db_url, autocommit=True) as watch:  # a queued ALTER would show for 50 ms a time
        until = time.monotonic() + 1.5
        while time.monotonic() < until and any(t.is_alive() for t in writers.threads):
            queued += watch.execute("SELECT pid, query FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                    "AND datname = current_database()").fetchall()
            time.sleep(0.005)
    blocker.rollback()
    blocker.close()
    writers.join()
    assert writers.errors == [] and queued == []  # traffic never waited behind a queued ALTER
    assert any('needs a strong lock on public."Acct"' in n and "it would wait behind" in n for n in notes)


def test_derived_names_of_long_columns_do_not_collide(tmp_path: Path, db_url: str,
                                                      conn: psycopg.Connection[Any]) -> None:
    """Shadow columns and NOT NULL checks are named from the column: cut to 63 bytes, two columns that
    share their first 60 bytes would get the same shadow column."""
    first, second = "é" * 30 + "_1", "é" * 30 + "_2"  # 62 bytes each
    conn.execute(sql.SQL("CREATE TABLE t (id int PRIMARY KEY, {} int NOT NULL, {} int NOT NULL)").format(
        sql.Identifier(first), sql.Identifier(second)))
    conn.execute("INSERT INTO t SELECT g, g, -g FROM generate_series(1, 100) g")
    settings_ = make_project(tmp_path, db_url, {"002_types.ops.json": json.dumps({"operations": [
        {"change_column_type": {"table": "t", "column": first, "type": "bigint"}},
        {"change_column_type": {"table": "t", "column": second, "type": "bigint"}}]})})
    api.migrate(settings_)
    service.contract(settings_)
    assert conn.execute(sql.SQL("SELECT sum({}), sum({}), pg_typeof(sum({})) FROM t").format(
        sql.Identifier(first), sql.Identifier(second), sql.Identifier(first))).fetchone() == (5050, -5050, "numeric")
    assert conn.execute("SELECT count(*) FROM pg_attribute WHERE attrelid = 't'::regclass AND attnum > 0 "
                        "AND NOT attisdropped AND attnotnull AND format_type(atttypid, atttypmod) = 'bigint'"
                        ).fetchone() == (2,)
