"""Engine behaviour: settings, suppressions, parse errors inside a file, positions, schema model."""

from __future__ import annotations

from pgshift.config import LintSettings
from pgshift.lint.engine import lint_sql
from pgshift.lint.schema import Schema


def rules(report: object) -> list[str]:
    return [f.rule for f in report.active]  # type: ignore[attr-defined]


def test_disable_enable_and_severity_overrides() -> None:
    sql = "SET lock_timeout = '1s';\nSET statement_timeout = '1s';\nCREATE INDEX i ON t (a);\nDROP VIEW v;\n"
    assert rules(lint_sql(sql)) == ["PS001", "PS022"]
    assert rules(lint_sql(sql, settings=LintSettings(disable=["create-index-non-concurrently"]))) == ["PS022"]
    assert rules(lint_sql(sql, settings=LintSettings(enable=["PS022"]))) == ["PS022"]
    report = lint_sql(sql, settings=LintSettings(severity={"PS022": "error", "PS001": "note"}))
    assert {f.rule: f.severity for f in report.active} == {"PS001": "note", "PS022": "error"}
    assert not report.failed("error") or report.count("error") == 1
    assert report.failed("warning") and report.failed("note")


def test_suppression_applies_to_next_statement_only() -> None:
    sql = ("SET lock_timeout = '1s';\nSET statement_timeout = '1s';\n"
           "-- pgshift:ignore PS001, PS054 -- tiny lookup table\n"
           "CREATE INDEX i ON t (a);\nCREATE INDEX j ON t (b);\n")
    report = lint_sql(sql)
    active = [(f.rule, f.line) for f in report.active]
    assert active == [("PS001", 5)]
    suppressed = [f for f in report.findings if f.suppressed]
    assert [(f.rule, f.line, f.suppress_reason) for f in suppressed] == [("PS001", 4, "tiny lookup table")]


def test_parse_error_in_the_middle_keeps_linting_the_file() -> None:
    sql = "SELECT 1;\nSELEC oops;\nALTER TABLE users RENAME COLUMN a TO b;\n"
    report = lint_sql(sql, file="m.sql")
    assert [(p.file, p.line, p.column) for p in report.parse_errors] == [("m.sql", 2, 1)]
    assert "PS017" in rules(report)


def test_positions_count_characters_not_bytes() -> None:
    report = lint_sql("SELECT 'ééé'; CREATE INDEX i ON t (a);\n", file="u.sql")
    finding = next(f for f in report.findings if f.rule == "PS001")
    assert (finding.line, finding.column) == (1, 15)


def test_schema_model_follows_renames_and_drops() -> None:
    schema = Schema()
    schema.load_sql("CREATE TABLE a (id int, v varchar(10));\nALTER TABLE a RENAME COLUMN v TO w;\n"
                    "ALTER TABLE a RENAME TO b;\nCREATE INDEX b_w ON b (w);\nDROP INDEX b_w;\n"
                    "ALTER TABLE b ADD CONSTRAINT c CHECK (w IS NOT NULL) NOT VALID;\n"
                    "CREATE TABLE p (x int) PARTITION BY LIST (x);\n")
    table = schema.table("b")
    assert table is not None and "w" in table.columns and table.columns["w"].typmods == (10,)
    assert not table.indexes and schema.table("a") is None
    assert table.checks["c"].not_null_column == "w" and not table.checks["c"].validated
    assert schema.tables["p"].partitioned
    # Judged from the replayed schema: widening the renamed column is safe.
    report = lint_sql("ALTER TABLE b ALTER COLUMN w TYPE varchar(20);", schema=schema)
    assert "PS010" not in rules(report)


def test_a_table_created_and_filled_in_the_same_migration_is_not_new() -> None:
    created = "SET lock_timeout = '1s';\nSET statement_timeout = '1s';\nCREATE TABLE t (a int);\n"
    index = "CREATE INDEX i ON t (a);\n"
    assert "PS001" not in rules(lint_sql(created + "INSERT INTO t VALUES (1), (2);\n" + index))
    for fill in ("INSERT INTO t SELECT a FROM big;\n", "COPY t FROM STDIN;\n",
                 "MERGE INTO t USING big ON t.a = big.a WHEN NOT MATCHED THEN INSERT VALUES (big.a);\n"):
        assert "PS001" in rules(lint_sql(created + fill + index)), fill


def test_statements_inside_plpgsql_are_linted_at_their_own_lines() -> None:
    """A DO block's body and a called function's body are PL/pgSQL: their SQL statements are judged like
    any other, each reported at its own line of the file."""
    from pgshift.lint.engine import lint_sql

    sql = ("DO $$\n"                                              # 1
           "BEGIN\n"                                              # 2
           "  CREATE INDEX orders_user ON orders (user_id);\n"    # 3
           "  IF true THEN\n"                                     # 4
           "    ALTER TABLE orders DROP COLUMN note;\n"           # 5
           "  END IF;\n"                                          # 6
           "END $$;\n"                                            # 7
           "CREATE FUNCTION fill() RETURNS void LANGUAGE plpgsql AS $f$\n"  # 8
           "BEGIN\n"                                              # 9
           "  ALTER TABLE orders ALTER COLUMN id TYPE bigint;\n"  # 10
           "END $f$;\n"                                           # 11
           "SELECT fill();\n")                                    # 12
    found = {(f.rule, f.line) for f in lint_sql(sql, file="m.sql", pg_version=15).active}
    assert {("PS001", 3), ("PS019", 5), ("PS010", 10)} <= found, found


def test_an_index_is_known_by_its_schema_and_name() -> None:
    """An index lives in its table's schema; an unqualified name means public (the default search_path)."""
    schema = Schema()
    schema.load_sql("CREATE SCHEMA s;\nCREATE TABLE s.t (id int, c int);\nCREATE INDEX idx ON s.t (c);\n"
                    "CREATE TABLE t (id int PRIMARY KEY, c int);\nCREATE INDEX idx ON t (c);\n"
                    "CREATE TABLE s.u (id int PRIMARY KEY);\n")
    assert schema.index_tables == {"s.idx": "s.t", "idx": "t", "t_pkey": "t", "s.u_pkey": "s.u"}
    report = lint_sql("DROP INDEX s.idx;\nDROP INDEX idx;\nDROP INDEX public.t_pkey;\n", schema=schema,
                      collect_locks=True)
    assert [f.message.split(": ")[0] for f in report.findings if f.rule == "PS002"] == [
        "DROP INDEX s.idx without CONCURRENTLY takes an ACCESS EXCLUSIVE lock on s.t",
        "DROP INDEX idx without CONCURRENTLY takes an ACCESS EXCLUSIVE lock on t",
        "DROP INDEX t_pkey without CONCURRENTLY takes an ACCESS EXCLUSIVE lock on t"]
    assert [step.held for step in report.lock_steps] == [{"s.t": "ACCESS EXCLUSIVE"}, {"t": "ACCESS EXCLUSIVE"},
                                                         {"t": "ACCESS EXCLUSIVE"}]
    table = schema.table("s.t")
    assert table is not None and not table.indexes and schema.index_tables == {"s.u_pkey": "s.u"}
    schema.load_sql("DROP TABLE s.u;")
    assert schema.index_tables == {}
