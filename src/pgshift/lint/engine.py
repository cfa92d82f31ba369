"""The lint engine: parse, replay the schema model, run rules, apply suppressions, settings
and table sizes, and analyse the locks each transaction accumulates.

Public API (used by ``migrate``, ``check`` and rehearsal):

- :func:`lint_migrations` for loaded migrations (earlier ``history`` is replayed first),
- :func:`lint_sql` for a SQL text (a file or stdin).
"""

from __future__ import annotations

import bisect
import re
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain, islice
from pathlib import Path
from typing import overload

from pglast import parser

from pgshift.config import LintSettings
from pgshift.errors import MigrationSourceError, SqlParseError
from pgshift.lint import fastjson, plpgsql
from pgshift.lint import locks as lockmod
from pgshift.lint.context import Ctx, RunState, TxState, UnitState
from pgshift.lint.gcpause import no_gc
from pgshift.lint.model import (
    Finding,
    Hit,
    LintReport,
    LockStep,
    ParseProblem,
    Rule,
    Severity,
    TableSize,
)
from pgshift.lint.nodes import Node, func_names, qualified, relname, strings
from pgshift.lint.registry import all_rules, rules_by_kind
from pgshift.lint.schema import Schema
from pgshift.lint.suppress import Suppression, attach, read_suppressions, suppressions_on
from pgshift.migrations.blocks import Block, boundaries_of, segments
from pgshift.migrations.classify import may_be_transaction_control, transaction_control
from pgshift.migrations.files import scan_file
from pgshift.migrations.model import Migration, Statement
from pgshift.migrations.splitter import first_word, read_source, split_sql
from pgshift.migrations.tree import ParseError, parse, parse_json

DEFAULT_PG_VERSION = 16
_DDL_KINDS = frozenset({
    "AlterTableStmt", "IndexStmt", "CreateTrigStmt", "RenameStmt", "DropStmt", "TruncateStmt",
    "ClusterStmt", "RefreshMatViewStmt", "AlterEnumStmt", "LockStmt",
})
_DML_KINDS = frozenset({"UpdateStmt", "DeleteStmt", "InsertStmt", "MergeStmt"})
# Statements that define or run PL/pgSQL, and those that may call a function the migration defined.
_RUNS_PLPGSQL = frozenset({"CreateFunctionStmt", "DoStmt"})
_MAY_CALL = frozenset({"CallStmt", "SelectStmt", "InsertStmt", "UpdateStmt"})


@dataclass
class Options:
    settings: LintSettings
    pg_version: int
    sizes: dict[str, TableSize]
    collect_locks: bool = False
    rules: dict[str, list[Rule]] = field(default_factory=dict)


@dataclass(slots=True)
class Parsed:
    statement: Statement
    node: Node | None
    error: ParseProblem | None = None


# -- parsing ------------------------------------------------------------------------------
class _Lines:
    """Byte offset -> (line, column), for statements found in one parse of a whole file."""

    def __init__(self, data: bytes, base_line: int) -> None:
        self.data = data
        self.base = base_line
        self.starts = [0] + [m.end() for m in re.finditer(rb"\n", data)]

    def at(self, offset: int) -> tuple[int, int]:
        index = bisect.bisect_right(self.starts, offset) - 1
        start = self.starts[index]
        column = len(self.data[start:offset].decode("utf-8", "replace")) + 1
        return index + self.base, column


def _chunks(data: bytes) -> list[tuple[int, int]]:
    """Statement byte ranges found by the scanner alone, for files that do not parse."""
    text = data.decode("utf-8", "replace")
    ranges: list[tuple[int, int]] = []
    start = 0
    try:
        tokens = parser.scan(text)
    except ParseError:
        return [(0, len(data))]
    for token in tokens:
        if token.name == "ASCII_59":  # ';'
            ranges.append((start, token.start))
            start = token.end + 1
    if text[start:].strip():
        ranges.append((start, len(text)))
    if text.isascii():
        return ranges
    # The scanner counts characters, the parser bytes: convert.
    return [(len(text[:a].encode()), len(text[:b].encode())) for a, b in ranges]


def _clean(data: bytes, start: int, end: int) -> tuple[int, str]:
    chunk = data[start:end]
    stripped = chunk.lstrip()
    start += len(chunk) - len(stripped)
    return start, stripped.decode("utf-8", "replace").rstrip().rstrip(";").rstrip()


def parse_text(text: str, file: str, base_line: int = 1) -> list[Parsed]:
    """Statements of ``text`` with trees; a statement that does not parse carries its error."""
    return list(_text_statements(text, file, base_line)[1])


def statements_of(text: str, file: str) -> list[Statement]:
    """The statements of ``text``, without their trees (a statement that does not parse is still one)."""
    return _text_statements(text, file)[0]


def _text_statements(text: str, file: str, base_line: int = 1) -> tuple[list[Statement], Iterable[Parsed]]:
    """The statements of ``text`` and their trees, parsed lazily (one chunk of trees in memory)."""
    try:
        statements = split_sql(text, file=file, base_line=base_line)
    except SqlParseError:
        data = text.encode("utf-8")
        pieces = _parse_pieces(data, file, _Lines(data, base_line))
        return [p.statement for p in pieces], pieces
    return statements, iter_parsed(statements)


_CHUNK_BYTES = 256 * 1024
_LOOKAHEAD = 3


def _batches(statements: Iterable[Statement]) -> Iterator[list[Statement]]:
    """Consecutive statements of about _CHUNK_BYTES of SQL each, read as they come (a streamed part
    is never held whole)."""
    batch: list[Statement] = []
    size = 0
    for statement in statements:
        batch.append(statement)
        size += len(statement.sql)
        if size >= _CHUNK_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _parse_json(sql: str) -> str | None:
    try:
        return parse_json(sql)
    except ParseError:
        return None


def iter_parsed(statements: Iterable[Statement]) -> Iterator[Parsed]:
    """Trees for statements already split, one batch of about _CHUNK_BYTES at a time: a helper
    thread parses the next batches (libpg_query runs without the GIL) while this one decodes, and
    only a few batches of trees (and of statements) exist at once, whatever the size of the file."""
    batches = _batches(statements)
    first = next(batches, None)
    if first is None:
        return
    second = next(batches, None)
    if second is None:
        yield from _batch_parsed(first, _parse_json(_joined(first)))
        return
    from concurrent.futures import Future, ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        # A few batches ahead: the helper needs the GIL between two batches, and it only gets it
        # when this thread is between two decodes, so a helper just one batch ahead would wait.
        pending: deque[tuple[list[Statement], Future[str | None]]] = deque()
        upcoming = chain((first, second), batches)
        for batch in upcoming:
            pending.append((batch, pool.submit(_parse_json, _joined(batch))))
            if len(pending) <= _LOOKAHEAD:
                continue
            done, raw = pending.popleft()
            yield from _batch_parsed(done, raw.result())
        while pending:
            done, raw = pending.popleft()
            yield from _batch_parsed(done, raw.result())


def _joined(statements: list[Statement]) -> str:
    return "\n;\n".join(s.sql for s in statements)


def _batch_parsed(statements: list[Statement], raw: str | None) -> list[Parsed]:
    stmts = fastjson.loads(raw).get("stmts", []) if raw is not None else []
    if len(stmts) == len(statements):
        return [Parsed(s, item["stmt"]) for s, item in zip(statements, stmts, strict=True)]
    out: list[Parsed] = []
    for statement in statements:
        try:
            one = parse(statement.sql)
            out.append(Parsed(statement, one[0] if one else None))
        except ParseError as exc:
            message = str(exc.args[0]) if exc.args else str(exc)
            line, column = _error_position(statement, exc)
            out.append(Parsed(statement, None, ParseProblem(statement.file, line, column, message)))
    return out


def _error_position(statement: Statement, exc: ParseError) -> tuple[int, int]:
    """Where in the file the parser stopped: its cursor within the statement, or the statement's end
    for "at end of input" (no cursor), as `migrate` reports the same error."""
    cursor = exc.args[1] if len(exc.args) > 1 and exc.args[1] is not None else len(statement.sql)
    before = statement.sql[:min(max(int(cursor), 0), len(statement.sql))]
    newlines = before.count("\n")
    if not newlines:
        return statement.line, statement.column + len(before)
    return statement.line + newlines, len(before) - before.rfind("\n")


def _parse_pieces(data: bytes, file: str, lines: _Lines) -> list[Parsed]:
    out: list[Parsed] = []
    for start, end in _chunks(data):
        begin, sql = _clean(data, start, end)
        if not sql:
            continue
        line, column = lines.at(begin)
        statement = Statement(sql, file, line, column, len(out))
        try:
            stmts = parse(sql)
        except ParseError as exc:
            cursor = exc.args[1] if len(exc.args) > 1 else None  # None: at end of input
            offset = len(sql.encode()) if cursor is None else int(cursor)
            eline, ecol = lines.at(begin + min(max(offset, 0), len(sql.encode())))
            message = str(exc.args[0]) if exc.args else str(exc)
            out.append(Parsed(statement, None, ParseProblem(file, eline, ecol, message)))
            continue
        if stmts:
            out.append(Parsed(statement, stmts[0]))
    return out


def parse_statements(statements: list[Statement]) -> list[Parsed]:
    """Trees for statements already split by a migration reader (all in memory: prefer iter_parsed)."""
    return list(iter_parsed(statements))


# -- the engine ---------------------------------------------------------------------------
def _rule_selected(rule: Rule, settings: LintSettings) -> bool:
    names = {rule.id.lower(), rule.name}
    if settings.enable and not names & {r.lower() for r in settings.enable}:
        return False
    return not names & {r.lower() for r in settings.disable}


def rule_selected(rule: Rule, settings: LintSettings) -> bool:
    """Whether lint.enable / lint.disable in ``settings`` run ``rule``."""
    return _rule_selected(rule, settings)


def _severity(rule: Rule, hit: Hit, settings: LintSettings) -> Severity:
    if settings.severity:
        for key in (rule.id, rule.id.lower(), rule.name):
            if key in settings.severity:
                return settings.severity[key]  # type: ignore[return-value]
    return hit.severity or rule.severity


def _human(n: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}".rstrip("0").rstrip(".") + f" {unit}"
    return str(int(n))


def _impact(rule: Rule, hit: Hit, severity: Severity, opts: Options,
            sizes: dict[str, TableSize]) -> tuple[Severity, str]:
    """Scale a size-dependent finding by the table's real size when it is known."""
    size = sizes.get(hit.table or "")
    if not rule.impact_scaled or size is None:
        return severity, hit.message
    what = "rewrites" if rule.rewrites else "scans" if rule.scans else "locks"
    gb = size.bytes / 1e9
    volume = f"~{gb:.1f} GB" if gb >= 0.1 else f"~{size.bytes / 1e6:.0f} MB"
    blocked = " and ".join(", ".join(rule.blocks).rsplit(", ", 1)) or "other DDL"
    settings = opts.settings
    if size.rows >= settings.large_table_rows or size.bytes >= 1_000_000_000:
        return "error", (f"{hit.message} ({what} {hit.table}, {_human(size.rows)} rows, {volume}: "
                         f"blocks {blocked} for minutes)")
    if size.rows < settings.small_table_rows and size.bytes < 100_000_000:
        return "note", f"{hit.message} ({hit.table} is small: {_human(size.rows)} rows, {volume})"
    return severity, f"{hit.message} ({hit.table}, {_human(size.rows)} rows, {volume})"


_FILLING = frozenset({"InsertStmt", "CopyStmt", "MergeStmt", "SelectStmt"})


def _filled_by(k: str, b: Node) -> str | None:
    """The table a statement fills with rows of unknown number: INSERT ... SELECT (not VALUES),
    COPY ... FROM, MERGE, SELECT ... INTO."""
    if k == "InsertStmt":
        select = (b.get("selectStmt") or {}).get("SelectStmt")
        return relname(b.get("relation")) if select is not None and not select.get("valuesLists") else None
    if (k == "CopyStmt" and b.get("is_from")) or k == "MergeStmt":
        return relname(b.get("relation")) or None
    if k == "SelectStmt" and b.get("intoClause"):
        return relname(b["intoClause"].get("rel")) or None
    return None


def _moved_table(k: str, b: Node) -> tuple[str, str] | None:
    """(old name, new name) of a table a RENAME TO or SET SCHEMA gives a new name."""
    if k == "RenameStmt" and b.get("renameType") == "OBJECT_TABLE" and b.get("newname"):
        old = relname(b.get("relation"))
        return old, (old.rsplit(".", 1)[0] + "." if "." in old else "") + str(b["newname"])
    if k == "AlterObjectSchemaStmt" and b.get("objectType") == "OBJECT_TABLE" and b.get("newschema"):
        old = relname(b.get("relation"))
        return old, qualified([str(b["newschema"]), old.rsplit(".", 1)[-1]])
    return None


def _dropped_tables(b: Node) -> list[str]:
    if b.get("removeType") != "OBJECT_TABLE":
        return []
    return [qualified(strings(obj.get("List", {}).get("items"))) for obj in b.get("objects") or ()]


# What can still hurt on the way back: a rollback runs during an incident, so its lock and
# transaction hazards matter as much as the way up. That a down part drops what the up part
# added is its purpose, so the destructive, compatibility and type rules do not apply to it.
ROLLBACK_CATEGORIES = frozenset({"locking", "transactions"})


class _Linter:
    def __init__(self, opts: Options, schema: Schema, report: LintReport, *, part: str = "up",
                 run: RunState | None = None) -> None:
        self.opts = opts
        self.part = part
        # A down part is judged against the server as it is, not as the way up leaves it, except
        # that a table the server lacks can only be one the run's up parts create: new and empty
        # unless they filled it (a copy, so the down part changes nothing for later up parts).
        self.run = run if part == "up" and run is not None else RunState(
            dict(opts.sizes), runner_sets=run.runner_sets if run is not None else frozenset())
        self.up_run = run if part == "down" and run is not None and run.live else None
        self.schema = schema
        self.report = report
        star = opts.rules.get("*", [])
        # Rules per node kind, with the every-statement rules appended, built once; [True] for statements in
        # a transaction, [False] without the rules that only judge those (most statements of a plain file).
        by_kind = {k: [*v, *star] for k, v in opts.rules.items() if k != "*"}
        self._all = (
            {True: by_kind, False: {k: [r for r in v if not r.in_transaction] for k, v in by_kind.items()}},
            {True: star, False: [r for r in star if not r.in_transaction]})
        # The same tables without the rules done in the unit (Rule.done_when), per set of done flags.
        self._done_flags = frozenset(r.done_when for group in opts.rules.values() for r in group if r.done_when)
        self._tables: dict[frozenset[str], tuple[dict[bool, dict[str, list[Rule]]], dict[bool, list[Rule]],
                                                 dict[tuple[bool, tuple[str, ...]], list[Rule]]]] = {}
        self._use_tables(frozenset())
        self._summary: tuple[Statement | None, str] = (None, "")

    def _use_tables(self, done: frozenset[str]) -> None:
        """Dispatch by the rule tables without the rules whose done_when flag is in ``done``."""
        tables = self._tables.get(done)
        if tables is None:
            def kept(rules: list[Rule]) -> list[Rule]:
                return [r for r in rules if r.done_when not in done] if done else rules

            by_kind, star = self._all
            tables = self._tables[done] = (
                {active: {k: kept(v) for k, v in table.items()} for active, table in by_kind.items()},
                {active: kept(v) for active, v in star.items()}, {})
        self.by_kind, self.star, self.alter_cache = tables

    def run_unit(self, statements: Sequence[Statement], parsed: Iterable[Parsed], unit: UnitState,
                 suppressions: list[Suppression], migration: str | None, *, report_unused: bool = True) -> None:
        """Lint ``statements``, whose trees ``parsed`` yields in order (lazily: one batch in memory)."""
        attach(suppressions, [s.line for s in statements])
        tx = TxState(active=unit.transactional)
        if self.up_run is not None:  # the tables the up parts created so far, as they are now
            self.run = RunState(dict(self.opts.sizes), live=True, fresh=set(self.up_run.fresh),
                                runner_sets=self.up_run.runner_sets)
        self.run.enter(unit)
        # The transactions the file's own BEGIN / COMMIT divide it into, as its tool runs it.
        starts = {b.start: b for b in _blocks(statements, unit)}
        sqls: Sequence[str] = [s.sql for s in statements] if isinstance(statements, list) else _Texts(statements)
        unit.has_other_statements = len(statements) > 1
        unit.find_indexes = lambda: _find_indexes(statements, unit)  # most units never ask
        flags = len(unit.flags)
        self._use_tables(self._done_flags & unit.flags)
        for position, item in enumerate(parsed):
            self.report.statements += 1
            if position in starts:
                tx = TxState(active=starts[position].transactional, explicit=starts[position].explicit)
            tx = self._lint_one(item, position, tx, unit, sqls, suppressions, migration, bool(starts))
            if len(unit.flags) != flags:  # a rule may be done for the rest of the unit
                flags = len(unit.flags)
                self._use_tables(self._done_flags & unit.flags)
        if report_unused:
            self.unused(suppressions)

    def _lint_one(self, item: Parsed, position: int, tx: TxState, unit: UnitState, sqls: Sequence[str],
                  suppressions: list[Suppression], migration: str | None, blocks: bool, depth: int = 0) -> TxState:
        """Judge one statement and replay it; the transaction state after it."""
        if item.node is None:
            if item.error:
                self.report.parse_errors.append(item.error)
                self._parse_error_rules(item, unit, tx, suppressions, migration)
            return tx
        node = item.node
        k, b = next(iter(node.items()))  # kind() and body() at once: a node is {"Kind": {...}}
        ctx = Ctx(item.statement, node, k, b, self.schema, self.opts.pg_version,
                  self.opts.settings, tx, unit, self.run.sizes, sqls, position)
        for rule in self._rules_for(k, ctx):
            for hit in rule.check(ctx):
                self._emit(rule, hit, ctx.statement, unit, suppressions, migration)
        if k == "TransactionStmt":
            return tx if blocks else self._transaction(ctx.body, tx, unit)
        self._after(ctx)
        # The PL/pgSQL it runs: a DO block's body, or a function of this migration it calls.
        if depth < 3 and (k in _RUNS_PLPGSQL or (unit.plpgsql and k in _MAY_CALL)):
            for inner in self._plpgsql_run_by(ctx):
                tx = self._lint_one(inner, position, tx, unit, sqls, suppressions, migration, blocks, depth + 1)
        return tx

    def _plpgsql_run_by(self, ctx: Ctx) -> list[Parsed]:
        if ctx.kind == "CreateFunctionStmt":
            found = plpgsql.function_body(ctx.body)
            if found is not None:
                ctx.unit.plpgsql[found[0]] = (ctx.statement, found[1])
            return []
        sources: list[tuple[Statement, str]] = []
        if ctx.kind == "DoStmt":
            source = plpgsql.do_body(ctx.body)
            if source is not None:
                sources.append((ctx.statement, source))
        elif ctx.unit.plpgsql and ctx.kind in _MAY_CALL:
            called = func_names(ctx.body)
            if ctx.kind == "CallStmt":  # CALL's own call is a bare FuncCall, not wrapped in a node
                called += [name.lower() for name in strings((ctx.body.get("funccall") or {}).get("funcname"))[-1:]]
            sources += [ctx.unit.plpgsql[name] for name in dict.fromkeys(called) if name in ctx.unit.plpgsql]
        parsed: list[Parsed] = []
        for outer, source in sources:
            items = plpgsql.embedded(source)
            if items:
                parsed += iter_parsed(plpgsql.statements_in(outer, source, items))
        return parsed

    def _rules_for(self, k: str, ctx: Ctx) -> list[Rule]:
        active = bool(ctx.tx.active)
        if k != "AlterTableStmt":
            return self.by_kind[active].get(k) or self.star[active]
        key = (active, tuple(sub for sub, _, _ in ctx.alter_cmds))
        rules = self.alter_cache.get(key)
        if rules is None:
            present = set(key[1])
            rules = self.alter_cache[key] = [r for r in self.by_kind[active].get(k) or self.star[active]
                                             if not r.subtypes or present & set(r.subtypes)]
        return rules

    def _transaction(self, stmt: Node, tx: TxState, unit: UnitState) -> TxState:
        what = stmt.get("kind", "")
        if what in ("TRANS_STMT_BEGIN", "TRANS_STMT_START"):
            return TxState(active=True, explicit=True)
        if what in ("TRANS_STMT_COMMIT", "TRANS_STMT_ROLLBACK"):
            return TxState(active=unit.transactional)
        return tx

    def _parse_error_rules(self, item: Parsed, unit: UnitState, tx: TxState,
                           suppressions: list[Suppression], migration: str | None) -> None:
        for rule in all_rules():
            hook = rule.on_parse_error
            if hook is not None and _rule_selected(rule, self.opts.settings):
                for hit in hook(item.statement.sql):
                    self._emit(rule, hit, item.statement, unit, suppressions, migration)

    def _emit(self, rule: Rule, hit: Hit, statement: Statement, unit: UnitState,
              suppressions: list[Suppression], migration: str | None) -> None:
        if hit.table and hit.table in unit.created and not rule.applies_to_new_tables:
            return
        settings = self.opts.settings
        severity = _severity(rule, hit, settings) if settings.severity else hit.severity or rule.severity
        message = hit.message
        if rule.impact_scaled and hit.scaled and self.run.sizes:
            severity, message = _impact(rule, hit, severity, self.opts, self.run.sizes)
        lock = hit.lock if hit.lock is not None else rule.lock
        if self._summary[0] is not statement:  # several findings on one statement share it
            self._summary = (statement, statement.summary)
        finding = Finding(
            rule.id, rule.name, severity, statement.file, statement.line, statement.column,
            message, self._summary[1], migration, lock or None,
            lockmod.BLOCKS.get(lock, rule.blocks) if lock else (), hit.fix or None,
            rule.destructive, False, None,
            # --fix rewrites the way up only: its follow-up migrations would run a down statement going up.
            hit.autofix if self.part == "up" else None, statement.index, self.part,
        )
        if self.part == "down":
            finding.message = "On rollback (down part): " + finding.message
        for sup in suppressions:
            if sup.file == statement.file and sup.matches(rule.id, rule.name) and (
                sup.whole_file or sup.target == statement.line
            ) and sup.reason:
                sup.used = True
                finding.suppressed, finding.suppress_reason = True, sup.reason
                break
        self.report.findings.append(finding)

    def unused(self, suppressions: list[Suppression]) -> None:
        """Report every suppression that matched no finding (or has no reason)."""
        from pgshift.lint.registry import rule_by_key

        meta = rule_by_key("unused-suppression")
        assert meta is not None
        for sup in suppressions:
            if sup.used:
                continue
            if not sup.reason:
                message = (f"'-- pgshift:ignore {','.join(sup.rules)}' has no reason; write "
                           "'-- pgshift:ignore <rule> -- <why this is safe>'. It suppresses nothing.")
            else:
                known = all(r == "all" or rule_by_key(r) is not None for r in sup.rules)
                message = (f"'-- pgshift:{'ignore-file' if sup.whole_file else 'ignore'} "
                           f"{','.join(sup.rules)}' matches no finding"
                           + ("" if known else " (unknown rule id or name)") + "; remove it.")
            sup.used = True
            self.report.findings.append(Finding(meta.id, meta.name, meta.severity, sup.file, sup.line, 1,
                                                message, f"-- pgshift:ignore {','.join(sup.rules)}"))

    def _track_tables(self, k: str, b: Node, unit: UnitState) -> None:
        """Keep which tables are new and empty (created, not filled) and which sizes still hold."""
        run = self.run
        if k in ("CreateStmt", "CreateTableAsStmt"):
            raw_into: Node = b.get("into") or {}
            into: Node = raw_into.get("IntoClause") or raw_into
            table = relname(b.get("relation") or into.get("rel"))
            on_server = table in run.sizes
            if run.live and on_server and b.get("if_not_exists"):
                return  # IF NOT EXISTS on a table the server has: it keeps its rows and size
            if k == "CreateTableAsStmt" and not into.get("skipData"):
                self._forget(table, unit)  # CREATE TABLE AS (without WITH NO DATA) fills it
                return
            unit.created.add(table)  # in live mode, the run's set
            if run.live and on_server:
                run.unit_only.add(table)
            return
        filled = _filled_by(k, b) if k in _FILLING else None
        if filled:
            self._forget(filled, unit)
        elif k == "DropStmt":
            for table in _dropped_tables(b):
                self._forget(table, unit)
        elif moved := _moved_table(k, b):
            old, new = moved
            for names in (unit.created, run.fresh):
                if old in names:
                    names.discard(old)
                    names.add(new)
            if old in run.sizes:
                run.sizes[new] = run.sizes.pop(old)

    def _forget(self, table: str, unit: UnitState) -> None:
        """``table`` now holds rows of unknown number, or is gone: neither new nor of a known size."""
        unit.created.discard(table)
        self.run.fresh.discard(table)
        self.run.sizes.pop(table, None)

    def _after(self, ctx: Ctx) -> None:
        """Replay the statement into the schema model and the transaction's lock state."""
        k, b, tx, unit = ctx.kind, ctx.body, ctx.tx, ctx.unit
        self._track_tables(k, b, unit)
        if k == "VariableSetStmt":
            name = str(b.get("name", "")).lower()
            unit.lock_timeout |= name == "lock_timeout"
            unit.statement_timeout |= name == "statement_timeout"
        if k == "AlterTableStmt":
            chosen: list[str] = []  # an ALTER TABLE adding two unnamed checks numbers the second
            for subtype, table, cmd in ctx.alter_cmds:
                con = (cmd.get("def") or {}).get("Constraint", {}) if subtype == "AT_AddConstraint" else {}
                # Unnamed, it is validated by the name PostgreSQL gave it (before the model adds it).
                if con and (conname := self.schema.constraint_name(table, con, chosen)) is not None:
                    tx.added_constraints.add((table, conname))
                    chosen.append(conname)
        if k == "AlterEnumStmt" and b.get("newVal"):
            tx.enum_values.add(str(b["newVal"]))
        # Judged before the model changes; only a transaction or --locks keeps them (an auto-committed
        # statement's locks end with it), so plain files skip deciding them unless a rule asked.
        taken = ctx.locks if tx.active or self.opts.collect_locks else []
        if self.part == "up":  # the model follows the way up; a down part is judged, not replayed
            self.schema.apply(ctx.node, unit.label or ctx.statement.file)
        if tx.active:
            for table, level in taken:
                tx.locks[table] = lockmod.stronger(tx.locks.get(table), level)
                if level == "ACCESS EXCLUSIVE" and tx.access_exclusive is None and table not in unit.created:
                    tx.access_exclusive = (table, ctx.statement.where)
            if k in _DDL_KINDS:
                tx.ddl.extend(t for t, _ in taken)
            if k in _DML_KINDS:
                tx.dml.append(relname(b.get("relation")))
            tx.statements += 1
        if self.opts.collect_locks:
            held = dict(tx.locks) if tx.active else dict(taken)
            self.report.lock_steps.append(LockStep(unit.label, ctx.statement.file, ctx.statement.line,
                                                   ctx.statement.summary, tx.active, held))


class _Texts(Sequence[str]):
    """The SQL of a streamed part's statements (``[start:stop]``), as the rules that look at the other
    statements of a unit ask for it: read again when asked, never held."""

    def __init__(self, statements: Sequence[Statement], start: int = 0, stop: int | None = None) -> None:
        self.statements, self.start = statements, start
        self.stop = len(statements) if stop is None else stop

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __iter__(self) -> Iterator[str]:
        return (s.sql for s in islice(self.statements, self.start, self.stop))

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> _Texts: ...

    def __getitem__(self, index: int | slice) -> str | _Texts:
        if isinstance(index, slice):
            start, stop, _ = index.indices(len(self))
            return _Texts(self.statements, self.start + start, self.start + max(start, stop))
        position = index + len(self) if index < 0 else index
        if not 0 <= position < len(self):
            raise IndexError(index)
        return next(iter(self[position:position + 1]))


_INDEX_WORD = re.compile("index", re.I)
# Statements that never change the schema model: replaying history need not parse them.
_DATA_WORDS = frozenset({"INSERT", "UPDATE", "DELETE", "COPY", "MERGE"})


def _find_indexes(statements: Iterable[Statement], unit: UnitState) -> None:
    """Where each CREATE INDEX of the unit is, before linting it (a rule asks about later ones). Only
    statements starting with CREATE and containing the word are parsed for it, not the whole unit again."""
    candidates = [(p, s) for p, s in enumerate(statements) if first_word(s.sql) == "CREATE"
                  and _INDEX_WORD.search(s.sql)]
    for (position, _), item in zip(candidates, iter_parsed(s for _, s in candidates), strict=True):
        if item.node is not None and "IndexStmt" in item.node:
            stmt = item.node["IndexStmt"]
            first = (stmt.get("indexParams") or [{}])[0].get("IndexElem", {}).get("name")
            if first:
                unit.index_positions[(relname(stmt.get("relation")), str(first))] = position


def _options(settings: LintSettings | None, pg_version: int | None,
             sizes: dict[str, TableSize] | None, collect_locks: bool) -> Options:
    settings = settings or LintSettings()
    version = pg_version or settings.pg_version or DEFAULT_PG_VERSION
    selected = [r for r in all_rules() if _rule_selected(r, settings)]
    return Options(settings, int(version), sizes or {}, collect_locks, rules_by_kind(selected))


def _file_lines(path: str, cache: dict[str, list[tuple[int, str]]]) -> list[tuple[int, str]]:
    """The file's (number, text) lines that can hold a suppression, kept for the next migration of the
    same file; a large file is read in pieces, never whole."""
    if path not in cache:
        scanned = scan_file(Path(path), "pgshift:ignore")
        if scanned is not None:
            cache[path] = [(number, line.removesuffix("\n")) for number, _, _, line in scanned.lines]
        else:
            try:
                text = Path(path).read_text(encoding="utf-8", errors="replace")
            except OSError:
                text = ""
            cache[path] = [(number, line) for number, line in enumerate(text.splitlines(), start=1)
                           if "pgshift:ignore" in line]
    return cache[path]


def _replay(schema: Schema, migrations: list[Migration]) -> None:
    for migration in migrations:
        statements = (s for s in migration.up if first_word(s.sql) not in _DATA_WORDS)
        for item in iter_parsed(statements):
            if item.node is not None:
                schema.apply(item.node, migration.label)


def lint_migrations(
    migrations: list[Migration],
    *,
    settings: LintSettings | None = None,
    pg_version: int | None = None,
    history: list[Migration] | None = None,
    sizes: dict[str, TableSize] | None = None,
    schema: Schema | None = None,
    collect_locks: bool = False,
    rollback: bool = False,
    live: bool = False,
    run: RunState | None = None,
) -> LintReport:
    """Lint the up part of each migration in order. ``history`` (already applied migrations)
    and ``schema`` (e.g. from a schema dump) seed the schema model; each linted migration is
    replayed into it before the next is linted. ``rollback`` also lints each down part for the
    lock and transaction hazards of running it (findings with ``part == "down"``).

    ``live``: ``sizes`` were read from the server the migrations will run on and list every table
    it has, so a table an earlier migration creates that is not there is new and empty (see
    :class:`RunState`). ``run`` carries that state on from an earlier call of the same run."""
    run = run or RunState(dict(sizes or {}), live)
    with no_gc():
        return _lint_migrations(migrations, _options(settings, pg_version, sizes, collect_locks), history,
                                schema, rollback, run)


def _lint_migrations(migrations: list[Migration], opts: Options, history: list[Migration] | None,
                     schema: Schema | None, rollback: bool, run: RunState) -> LintReport:
    report = LintReport(pg_version=opts.pg_version)
    model = schema or Schema()
    _replay(model, history or [])
    linter = _Linter(opts, model, report, run=run)
    down_linter = _Linter(_rollback_options(opts), model, report, run=run, part="down") if rollback else None
    texts: dict[str, list[tuple[int, str]]] = {}
    for migration in migrations:
        up_statements: Sequence[Statement] = migration.up
        up_parsed: Iterable[Parsed] = ()
        if migration.error is not None:
            broken = _unparsed(migration, migration.error, report)
            if broken is None:  # the file cannot be read as a migration at all: reported, the others still linted
                report.files += 1
                continue
            up_statements, up_parsed = [p.statement for p in broken], broken
        else:
            up_parsed = iter_parsed(up_statements)
        down_statements: Sequence[Statement] = []
        down_parsed: Iterable[Parsed] = ()
        if down_linter is not None and migration.down_error is not None:
            broken_down = _unparsed(migration, migration.down_error, report, part="down") or []
            down_statements, down_parsed = [p.statement for p in broken_down], broken_down
        elif down_linter is not None and migration.down:
            down_statements, down_parsed = migration.down, iter_parsed(migration.down)
        files = sorted({s.file for s in chain(up_statements, down_statements)})
        report.files += len(files)
        suppressions = [s for f in files for s in suppressions_on(_file_lines(f, texts), f)]
        up_sups, down_sups = _split_suppressions(suppressions, up_statements, down_statements)
        linter.run_unit(up_statements, up_parsed, _unit(migration, opts), up_sups, migration.version,
                        report_unused=not down_statements)
        if down_statements and down_linter is not None:
            errors_before = len(report.parse_errors)
            down_linter.run_unit(down_statements, down_parsed, _unit(migration, opts), down_sups, migration.version,
                                 report_unused=False)
            for problem in report.parse_errors[errors_before:]:
                problem.message += " (in the down part: a rollback through this migration is refused)"
            linter.unused(suppressions)  # once, over both parts
    return report


def _blocks(statements: Iterable[Statement], unit: UnitState) -> list[Block]:
    """The tool's transactions over ``statements`` when the file has its own BEGIN / COMMIT, else none."""
    if unit.boundaries is None:
        return []
    kinds = [_control(s.sql) for s in statements]
    if not any(k in ("begin", "commit") for k in kinds):
        return []
    return segments(kinds, unit.boundaries)[0]


def _control(sql: str) -> str | None:
    """'begin' or 'commit' (from the first word, parsing only the few that may be one), else None."""
    if not may_be_transaction_control(sql):
        return None
    try:
        what = transaction_control(sql)
    except ParseError:  # a broken statement, reported on its own
        return None
    return what if what in ("begin", "commit") else None


def _unparsed(migration: Migration, error: MigrationSourceError, report: LintReport,
              part: str = "up") -> list[Parsed] | None:
    """The statements of a part that did not load, each with its tree or its own parse error, so
    the statements around a broken one are still linted; None (error reported) when the file has
    no SQL to go by (a missing marker, an empty or unreadable file)."""
    if isinstance(error, SqlParseError) and error.text is not None:
        parsed = parse_text(error.text, error.file, error.base_line)
        if any(p.error for p in parsed):
            return parsed
    file, line, column, message = _where(error, str(migration.path))
    if part == "down":
        message += " (in the down part: a rollback through this migration is refused)"
    report.parse_errors.append(ParseProblem(file, line, column, message))
    return [] if part == "down" else None


def _where(error: MigrationSourceError, path: str) -> tuple[str, int, int, str]:
    """(file, line, column, message) of a loading error; most messages start with file[:line]."""
    if isinstance(error, SqlParseError):
        return error.file, error.line, error.column, error.reason
    match = re.match(rf"{re.escape(path)}(?::(\d+))?:?\s+", error.message)
    if match is None:
        return path, 1, 1, error.message
    return path, int(match.group(1) or 1), 1, error.message[match.end():]


def _unit(migration: Migration, opts: Options) -> UnitState:
    unit = UnitState(migration.label, migration.transactional or opts.settings.assume_in_transaction)
    unit.boundaries = boundaries_of(migration)
    unit.lock_timeout = migration.lock_timeout is not None
    unit.statement_timeout = migration.statement_timeout is not None
    return unit


def _rollback_options(opts: Options) -> Options:
    rules = {id(r): r for group in opts.rules.values() for r in group}.values()
    kept = [r for r in rules if r.category in ROLLBACK_CATEGORIES]
    return Options(opts.settings, opts.pg_version, opts.sizes, False, rules_by_kind(sorted(kept, key=lambda r: r.id)))


def _split_suppressions(suppressions: list[Suppression], up: Iterable[Statement], down: Sequence[Statement]
                        ) -> tuple[list[Suppression], list[Suppression]]:
    """(up part's, down part's): a line suppression belongs to the down part when it is in a down
    file below every up statement of that file; a whole-file one belongs to both."""
    if not down:
        return suppressions, []
    last_up: dict[str, int] = {}
    for statement in up:
        last_up[statement.file] = max(last_up.get(statement.file, 0), statement.line)
    down_files = {s.file for s in down}
    up_sups: list[Suppression] = []
    down_sups: list[Suppression] = []
    for sup in suppressions:
        if sup.whole_file:
            up_sups.append(sup)
            down_sups.append(sup)
        elif sup.file in down_files and sup.line > last_up.get(sup.file, 0):
            down_sups.append(sup)
        else:
            up_sups.append(sup)
    return up_sups, down_sups


# Reading in pieces splits the text twice (to count, then to lint): ~45% more CPU than holding it, for
# a third less memory at 10 MB. A loose file is what the lint bench and most CI runs lint, so it is held
# up to here (well under a hundred MB of memory), and a larger one, where memory matters, streams.
LOOSE_STREAM_BYTES = 8_000_000


def lint_file(
    path: Path,
    *,
    settings: LintSettings | None = None,
    pg_version: int | None = None,
    sizes: dict[str, TableSize] | None = None,
    schema: Schema | None = None,
    collect_locks: bool = False,
    report: LintReport | None = None,
    live: bool = False,
    run: RunState | None = None,
) -> LintReport:
    """:func:`lint_sql` of a plain SQL file: one over LOOSE_STREAM_BYTES is read in pieces and its text
    never held, with the same findings; a smaller one, or one that does not parse (its error needs the
    text), is read whole."""
    file = str(path)
    try:
        if path.stat().st_size <= LOOSE_STREAM_BYTES:
            raise MigrationSourceError("read whole")
        source = read_source(path, "pgshift:", split_sql)
        statements = source.part(1) if source.text is None else None
        text = source.text
    except (SqlParseError, MigrationSourceError):
        statements, text = None, None
    if statements is None:
        if text is None:
            text = path.read_text(encoding="utf-8", errors="replace")
        return lint_sql(text, file=file, settings=settings, pg_version=pg_version, sizes=sizes, schema=schema,
                        collect_locks=collect_locks, report=report, live=live, run=run)
    opts = _options(settings, pg_version, sizes, collect_locks)
    report = report or LintReport(pg_version=opts.pg_version)
    report.files += 1
    unit = UnitState(None, opts.settings.assume_in_transaction)
    lines = [(number, text) for number, _start, _end, text in source.lines]  # those naming pgshift: only
    if any("pgshift:no-transaction" in text for _, text in lines):
        unit.transactional = False
    with no_gc():
        _Linter(opts, schema or Schema(), report, run=run or RunState(dict(sizes or {}), live)).run_unit(
            statements, iter_parsed(statements), unit, suppressions_on(lines, file), None)
    return report


def lint_sql(
    text: str,
    *,
    file: str = "<stdin>",
    settings: LintSettings | None = None,
    pg_version: int | None = None,
    sizes: dict[str, TableSize] | None = None,
    schema: Schema | None = None,
    transactional: bool | None = None,
    collect_locks: bool = False,
    report: LintReport | None = None,
    live: bool = False,
    run: RunState | None = None,
) -> LintReport:
    """Lint a SQL text (a plain file or stdin). Each statement auto-commits unless
    ``transactional`` (default: ``lint.assume_in_transaction``) or the SQL says BEGIN.
    ``live`` and ``run``: as for :func:`lint_migrations`."""
    opts = _options(settings, pg_version, sizes, collect_locks)
    report = report or LintReport(pg_version=opts.pg_version)
    report.files += 1
    in_tx = opts.settings.assume_in_transaction if transactional is None else transactional
    unit = UnitState(None, in_tx)
    if "pgshift:no-transaction" in text:
        unit.transactional = False
    with no_gc():
        statements, parsed = _text_statements(text, file)
        _Linter(opts, schema or Schema(), report, run=run or RunState(dict(sizes or {}), live)).run_unit(
            statements, parsed, unit, read_suppressions(text, file), None)
    return report
