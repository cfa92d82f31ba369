"""The batched backfill engine: the correct form of the playbook's invalid ``UPDATE ... LIMIT`` loop.

Each batch is one short transaction with its own statement_timeout and lock_timeout:

1. find the batch's upper key: ``SELECT key FROM t WHERE key > last AND (where) ORDER BY key
   OFFSET n-1 LIMIT 1`` (keyset pagination, an index range scan on the primary key);
2. ``UPDATE t SET <set> WHERE key > last AND key <= upper AND (where)`` — the WHERE is evaluated
   again on the newest row version, so a row the application changed meanwhile is not
   overwritten with a stale value;
3. record ``last_key`` and the row count in ``<history schema>.backfills`` in the same
   transaction, so a killed backfill resumes exactly after the last committed batch.

Steps 2 and 3 are one statement (the UPDATE in a WITH), sent with the COMMIT in one message: the row
locks are held from that message to the commit with no round trip in between, and the lock limit is
that statement's statement_timeout, less the commit's measured tail.

Tables without a primary key or unique NOT NULL key are walked by ``ctid`` page ranges
(PostgreSQL 14+ TID range scans), up to the table's size when the backfill started.
The batch size follows a target batch duration, and shrinks while application sessions wait on a
batch's row locks; the engine pauses between batches and while a standby's replication lag is
above a threshold.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from pglast import parser as pg_parser
from psycopg import errors as pgerrors
from psycopg import sql
from psycopg.pq import TransactionStatus

from pgshift.db.standbys import positions_hidden
from pgshift.errors import MigrationFailed, server_error_text
from pgshift.migrations.tree import ParseError, parse
from pgshift.ops.names import qualified
from pgshift.runner.retry import RetryPolicy, retry_reason

# The lag columns come from the standby's replies: while its replay is paused they grow only as WAL
# or a status reply (wal_receiver_status_interval, 10s) arrives, and once it caught up they keep the
# last, stale figure until the next replies. A standby that has replayed everything is not behind.
DEFAULT_LAG_QUERY = (
    "SELECT coalesce(max(CASE WHEN replay_lsn >= pg_current_wal_lsn() THEN 0 "
    "ELSE extract(epoch FROM greatest(write_lag, flush_lag, replay_lag)) END), 0) FROM pg_stat_replication"
)
# WAL not yet replayed is immediate: it grows with every batch while replay is paused.
LAG_BYTES_QUERY = (
    "SELECT max(pg_wal_lsn_diff(pg_current_wal_lsn(), coalesce(replay_lsn, flush_lsn, sent_lsn)))::bigint, "
    "(array_agg(coalesce(nullif(application_name, ''), client_addr::text, 'local') ORDER BY "
    "pg_wal_lsn_diff(pg_current_wal_lsn(), coalesce(replay_lsn, flush_lsn, sent_lsn)) DESC NULLS LAST))[1] "
    "FROM pg_stat_replication"
)


# Sessions waiting now on a lock this batch holds, and the longest wait so far (ms). Checked in the
# batch's locked statement: a row lock is held until the commit, so whoever waited on one still waits.
_WAITERS = sql.SQL(
    "SELECT ARRAY[count(DISTINCT a.pid), coalesce(max(extract(epoch FROM clock_timestamp() - "
    # pg_locks.waitstart is PostgreSQL 14+ (read through to_jsonb); before, the statement's start
    "coalesce((to_jsonb(l) ->> 'waitstart')::timestamptz, a.query_start))) * 1000, 0)]::float8[] "
    "FROM pg_stat_activity a LEFT JOIN pg_locks l ON l.pid = a.pid AND NOT l.granted "
    "WHERE a.wait_event_type = 'Lock' AND pg_backend_pid() = ANY (pg_blocking_pids(a.pid))")
_TAILS_KEPT = 5  # the lock limit allows for the longest tail of this many recent batches
_FIRST_TAIL_MS = 5.0  # ... and for this before the first batch has measured one


def _set_local(settings: dict[str, str]) -> sql.Composable:
    return sql.SQL("; ").join(sql.SQL("SET LOCAL {} = {}").format(sql.Identifier(name), sql.Literal(value))
                              for name, value in settings.items())


class BackfillError(MigrationFailed):
    """A backfill could not start (table, key or SET/WHERE unusable) or a batch failed, other than by lock timeout."""

    code = "backfill-failed"
    exit_code = 21
    row_security = False  # refused because row-level security policies apply to the backfill's role


class BackfillClauseRefused(BackfillError):
    """--set or --where is not one SET list or condition (a ';', an unclosed comment or quote, a stray parenthesis)."""

    code = "backfill-clause"
    exit_code = 38


_CLAUSE_EXAMPLES = {"--set": "--set \"status = 'PENDING', hits = 0\"", "--where": "--where \"status IS NULL\""}


def _clause_problem(flag: str, text: str) -> str | None:
    """Why ``text`` would not stay the one SET list or condition it is pasted in as, or None. Only the shape
    is judged here; whether it compiles against the table is the server's (``Backfiller._check_clauses``)."""
    try:
        tokens = pg_parser.scan(text)
    except ParseError as exc:
        words = str(exc).split(" at or near ", 1)[0]
        return f"it has an {words.replace('unterminated', 'unclosed')}, which would swallow the rest of the statement"
    depth = 0
    for token in tokens:
        if token.name == "ASCII_59":
            return (f"its ';' at character {token.start + 1} would end the backfill's statement and run what follows "
                    "as another one")
        depth += {"ASCII_40": 1, "ASCII_41": -1}.get(token.name, 0)
        if depth < 0:
            return (f"its parentheses do not balance: the ')' at character {token.start + 1} closes one the "
                    "backfill's statement opened, so the rest would apply outside it")
    if depth:
        return f"its parentheses do not balance: {depth} '(' not closed"
    wrapped = f"UPDATE t SET {text}\n" if flag == "--set" else f"SELECT 1 FROM t WHERE ({text}\n)"
    try:
        statements = parse(wrapped)
    except ParseError:
        return None  # a syntax error inside it: the server's check says where
    if flag == "--set":
        update = statements[0]["UpdateStmt"]
        extra = [clause for key, clause in (("fromClause", "FROM"), ("whereClause", "WHERE"), ("returningList",
                 "RETURNING"), ("returningClause", "RETURNING")) if update.get(key)]  # returningClause: libpg_query 17+
        if extra:
            return f"it adds a {extra[0]} clause to the UPDATE, where only the SET list goes"
    return None


def check_clause(flag: str, text: str | None) -> None:
    """Refuse a --set or --where (``flag``) that is not one SET list or condition, before anything runs."""
    problem = _clause_problem(flag, text) if text else None
    if problem is None:
        return
    what = "SET list" if flag == "--set" else "condition"
    raise BackfillClauseRefused(
        f"{flag} {text!r} is not one {what}: {problem}. pgshift pastes {flag} into each batch's statements "
        f"as it is, so it must be a single {what} (no ';', no unclosed /* comment or quote, balanced parentheses); "
        "nothing was run.", hint=f"give one {what}, e.g. {_CLAUSE_EXAMPLES[flag]}; run other statements in a "
        "migration.")


@dataclass(frozen=True)
class BackfillSpec:
    """What to change: ``UPDATE table SET set_clause WHERE where`` in keyset batches. A set_clause or where
    that is not one SET list or condition is refused here (BackfillClauseRefused, naming --set or --where)."""

    table: str  # as SQL would name it (quoted or not, schema-qualified or not); with schema: the exact name
    set_clause: str
    where: str | None = None
    key: tuple[str, ...] | None = None  # default: the primary key, a unique NOT NULL key, or ctid
    job: str | None = None  # the progress row's name; default derived from table, set and where
    version: str | None = None  # the migration this backfill belongs to, if any
    schema: str | None = None  # set: ``table`` is the exact name in this schema, nothing folded or parsed

    def __post_init__(self) -> None:
        check_clause("--set", self.set_clause)
        check_clause("--where", self.where)

    @property
    def job_name(self) -> str:
        if self.job:
            return self.job
        digest = hashlib.sha256(f"{self.table}\0{self.set_clause}\0{self.where or ''}".encode()).hexdigest()
        return f"{self.table}:{digest[:12]}"


@dataclass(frozen=True)
class BackfillOptions:
    # An application write to a row of the running batch waits for the batch's commit: with 150 ms
    # batches and a 200 ms limit, application updates just ahead of the backfill waited up to 212 ms;
    # with these and yield_to_waiters, under 100 ms (docs/ops.md, "Measured").
    target_ms: int = 75  # aim for batches of this duration
    min_batch: int = 100
    max_batch: int = 50_000
    initial_batch: int = 1_000
    pause_ms: int = 0  # sleep between batches
    statement_timeout_ms: int = 5_000  # per batch statement
    # The longest a batch may hold its row locks: its UPDATE runs under this statement_timeout, and
    # a batch that reaches it is rolled back and tried again at half the size. None: no limit.
    max_lock_ms: int | None = 100
    lock_timeout_ms: int = 1_000  # per batch; a lock wait longer than this is retried
    lock_retries: int = 20
    max_lag_s: float | None = 10.0  # pause while replication lag is above this; None disables
    max_lag_bytes: int | None = None  # ... or while a standby has more WAL than this not yet replayed
    lag_query: str = DEFAULT_LAG_QUERY
    lag_poll_s: float = 1.0
    count_total: bool = True  # count matching rows first, for the ETA
    # Before each commit the batch looks for sessions waiting on its locks (pg_blocking_pids). One
    # that waited half the target halves the next batch, any stops growth for ``calm_batches``
    # batches, and a pause lets them through.
    yield_to_waiters: bool = True
    waiter_pause_ms: int = 10
    calm_batches: int = 5
    # Asked before each batch: a reason to pause (a [watch] threshold crossed now, `backfill --watch`),
    # or None to go on. The backfill waits, polling every lag_poll_s, instead of failing.
    pause_while: Callable[[], str | None] | None = None


@dataclass
class Progress:
    job: str
    table: str
    rows_done: int
    total: int | None
    batches: int
    batch_size: int
    last_batch_ms: float
    rate: float  # rows per second since this run started
    eta_s: float | None
    elapsed_s: float
    state: str  # running | paused-lag | paused-watch | done
    lag_s: float | None = None
    resumed: bool = False
    waiters: int = 0  # sessions that were waiting on this batch's locks just before its commit
    waited_ms: float = 0.0  # the longest of their waits so far at that moment
    lag_bytes: int | None = None  # WAL the furthest standby has not replayed (with max_lag_bytes)

    def as_dict(self) -> dict[str, Any]:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


ProgressCallback = Callable[[Progress], None]


@dataclass
class BackfillResult:
    job: str
    table: str
    rows: int  # rows updated in total, including earlier interrupted runs
    rows_this_run: int
    batches: int
    duration_s: float
    max_batch_ms: float
    mode: str  # "key (id)" or "ctid"
    resumed: bool
    already_done: bool = False
    lag_pauses: int = 0
    batch_ms: list[float] = field(default_factory=list)
    max_lock_ms: float = 0.0  # from sending the batch UPDATE to the return of its commit
    cut_batches: int = 0  # batches stopped at max_lock_ms, rolled back and done again smaller
    waited_batches: int = 0  # batches other sessions were seen waiting on (the next was kept or made smaller)
    max_waited_ms: float = 0.0  # the longest such wait seen, up to the batch's commit
    batch_size: int = 0  # the size the next batch would have had


@dataclass(frozen=True)
class _Target:
    oid: int
    schema: str
    name: str
    key: tuple[str, ...]  # empty: ctid mode
    key_types: tuple[str, ...]
    update_rules: bool = False  # rules rewrite its UPDATEs, which then cannot run inside a WITH

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)

    @property
    def label(self) -> str:
        return qualified(self.schema, self.name)


_TABLE = ("SELECT c.oid::int, n.nspname::text, c.relname::text FROM pg_class c "
          "JOIN pg_namespace n ON n.oid = c.relnamespace ")


def resolve_table(conn: psycopg.Connection[Any], table: str, schema: str | None = None) -> tuple[int, str, str]:
    """(oid, schema, name) of ``table``: the exact name in ``schema``, or else as SQL would read it.

    A name with capitals, dots, spaces or quotes can mean two tables: SQL folds ``Acct`` to ``acct``, a
    person may mean the table "Acct". Only one exists: that one. Both: an error that says how to
    write it, never a guess."""
    if schema is not None:
        row = conn.execute(_TABLE + "WHERE n.nspname = %s AND c.relname = %s", (schema, table)).fetchone()
        if row is None:
            raise BackfillError(f"Table {qualified(schema, table)} does not exist.")
        return int(row[0]), str(row[1]), str(row[2])
    try:
        as_sql = conn.execute(_TABLE + "WHERE c.oid = to_regclass(%s)", (table,)).fetchone()
    except psycopg.Error as exc:
        as_sql, syntax = None, exc.diag.message_primary
    else:
        syntax = None
    found = [as_sql] if as_sql else []
    # The name exactly as written: whole on the search_path, or split at any one dot.
    exact = conn.execute(
        _TABLE + "WHERE c.oid = to_regclass(quote_ident(%s)) OR c.oid IN (SELECT to_regclass("
        "quote_ident(left(%s, p - 1)) || '.' || quote_ident(substr(%s, p + 1))) FROM "
        "generate_series(1, length(%s)) p WHERE substr(%s, p, 1) = '.')", (table,) * 5).fetchall()
    found += [r for r in exact if r[0] not in {f[0] for f in found}]
    if not found:
        reason = f"is not a valid table name ({syntax}) and no table has exactly that name" if syntax \
            else "does not exist (looked up on the search_path, as written and as SQL reads it)"
        raise BackfillError(f"Table {table!r} {reason}.",
                            hint="schema-qualify it, for example --table app.trades, and double-quote a name "
                            "with capitals or spaces: --table 'app.\"Trades\"'.")
    if len(found) > 1:
        names = [qualified(str(r[1]), str(r[2])) for r in found]
        how = ("SQL reads it as the first (it folds unquoted capitals to lower case), and a table also has "
               "exactly the name as written") if as_sql else "tables have those names exactly as written"
        raise BackfillError(
            f"Table {table!r} could mean {' or '.join(names)}: {how}.",
            hint=f"write the one you mean as SQL would, for example --table '{names[-1]}'.")
    return int(found[0][0]), str(found[0][1]), str(found[0][2])


def detect_key(conn: psycopg.Connection[Any], oid: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The primary key, else the narrowest unique NOT NULL key; empty when there is none (ctid)."""
    row = conn.execute(
        """
        SELECT array_agg(a.attname::text ORDER BY k.ord), array_agg(format_type(a.atttypid, a.atttypmod)
               ORDER BY k.ord)
        FROM (SELECT i.indexrelid, i.indisprimary, i.indrelid, i.indkey FROM pg_index i
              WHERE i.indrelid = %s AND i.indisvalid AND i.indisunique AND i.indpred IS NULL
                AND i.indexprs IS NULL) i
        CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY k(attnum, ord)
        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
        GROUP BY i.indexrelid, i.indisprimary
        HAVING bool_and(a.attnotnull)
        ORDER BY i.indisprimary DESC, count(*), i.indexrelid
        LIMIT 1
        """,
        (oid,),
    ).fetchone()
    if row is None:
        return (), ()
    return tuple(row[0]), tuple(row[1])


def _column_types(conn: psycopg.Connection[Any], oid: int, columns: tuple[str, ...]) -> tuple[str, ...]:
    types = []
    for column in columns:
        row = conn.execute(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = %s AND attname = %s "
            "AND attnum > 0 AND NOT attisdropped", (oid, column)).fetchone()
        if row is None:
            raise BackfillError(f"Backfill key column {column!r} does not exist in the table.")
        types.append(str(row[0]))
    return tuple(types)


def _row_security_error(exc: psycopg.Error) -> bool:
    """The server's refusal under row_security = off ("query would be affected by row-level security")."""
    return isinstance(exc, pgerrors.InsufficientPrivilege) and "row-level security" in (exc.diag.message_primary or "")


def row_security_blocks(conn: psycopg.Connection[Any], oid: int, label: str, *,
                        refused: psycopg.Error | None = None) -> None:
    """Refuse (BackfillError, ``row_security`` set) a backfill whose role the table's row-level
    security policies apply to: it would see, and so update, only the rows the policies show.
    ``refused``: the server already refused a backfill statement for that reason."""
    always = refused is not None
    row = conn.execute(
        "SELECT row_security_active(c.oid), c.relforcerowsecurity, pg_get_userbyid(c.relowner)::text, "
        "current_user::text, pg_has_role(current_user, c.relowner, 'USAGE') "
        "FROM pg_class c WHERE c.oid = %s", (oid,)).fetchone()
    if row is None or not (row[0] or always):
        return
    active, forced, owner, role, owns = row
    if not active and refused is not None:  # another table the SET or WHERE reads
        error = BackfillError(
            f"Cannot backfill {label}: {server_error_text(refused)} The SET or WHERE reads a table whose row-level "
            f"security policies apply to the role {role}, so it would see only the rows they show; pgshift does not "
            "run it this way (any batches committed before are kept).",
            hint="run the backfill as a role with BYPASSRLS or a superuser, or as the owner of that table "
            "without FORCE ROW LEVEL SECURITY.")
        error.row_security = True
        raise error
    if owns and forced:
        why = (f"it has FORCE ROW LEVEL SECURITY, so its policies apply even to its owner {owner}, the role "
               f"{role} running the backfill")
        fix = (f"run `ALTER TABLE {label} NO FORCE ROW LEVEL SECURITY` for the backfill (and FORCE again after), "
               "or run it as a role with BYPASSRLS or a superuser.")
    else:
        why = (f"row-level security is enabled and the role {role} running the backfill is not its owner "
               f"({owner}), not a superuser and has no BYPASSRLS, so the policies apply to it")
        fix = (f"run the backfill as the table's owner {owner} (without FORCE ROW LEVEL SECURITY), or as a role "
               "with BYPASSRLS (`ALTER ROLE ... BYPASSRLS`, by a superuser) or a superuser.")
    error = BackfillError(
        f"Cannot backfill {label}: {why}. Its UPDATEs would only see the rows the policies show and would leave "
        "every other row unbackfilled without a word (a later contract could then lose their data), so pgshift "
        f"does not run it this way; {'any batches committed before are kept' if always else 'no row was changed'}.",
        hint=fix)
    error.row_security = True
    raise error


class Backfiller:
    """Runs one backfill job on ``conn`` (autocommit), recording progress in ``schema``.backfills."""

    def __init__(self, conn: psycopg.Connection[Any], schema: str, spec: BackfillSpec,
                 options: BackfillOptions | None = None, progress: ProgressCallback | None = None,
                 notify: Callable[[str], None] | None = None, sleep: Callable[[float], None] = time.sleep) -> None:
        self.conn = conn
        self.schema = schema
        self.spec = spec
        self.options = options or BackfillOptions()
        self.progress = progress or (lambda _p: None)
        self.notify = notify or (lambda _m: None)
        self.sleep = sleep
        self._table = sql.Identifier(schema, "backfills")
        # Each ends its line: a `-- comment` in it must not comment out what the statement adds after it.
        self._set_sql = sql.SQL(f"{spec.set_clause}\n")
        self._where_sql = sql.SQL(f"{spec.where or 'true'}\n")
        self._locked_at: float | None = None  # when the running batch's UPDATE was sent
        self._held_ms: float | None = None  # how long the last committed batch held its row locks
        # Recent batches' hold beyond their locked statement (the commit, the network): taken off the limit.
        self._tails: deque[float] = deque(maxlen=_TAILS_KEPT)
        self._waiters: tuple[int, float] = (0, 0.0)  # the last batch's waiting sessions, longest wait (ms)
        self._calm = 0  # batches to go before the size may grow again after waiters were seen
        self._positions_hidden: bool | None = None  # whether the role cannot see the standbys' lag (checked once)
        self._bytes_visible = False  # checked before the byte limit is first read
        self.retry = RetryPolicy(attempts=self.options.lock_retries, initial_ms=100, max_ms=2_000)

    # -- public ----------------------------------------------------------------------------
    def run(self) -> BackfillResult:
        oid, nsp, rel = resolve_table(self.conn, self.spec.table, self.spec.schema)
        row_security_blocks(self.conn, oid, qualified(nsp, rel))
        leaves = self._leaf_partitions(oid)
        if leaves is not None:
            return self._run_partitions(qualified(nsp, rel), leaves)
        # Policies would hide rows from the key scans and UPDATEs, which would skip them silently;
        # with row_security off the server raises an error instead (superusers and BYPASSRLS roles
        # are not affected). Restored afterwards: the connection may be migrate's.
        previous = self.conn.execute("SELECT current_setting('row_security')").fetchone()
        self.conn.execute("SET row_security = off")
        try:
            return self._run(oid, nsp, rel)
        except pgerrors.InsufficientPrivilege as exc:
            if _row_security_error(exc):
                row_security_blocks(self.conn, oid, qualified(nsp, rel), refused=exc)
            raise
        finally:
            with contextlib.suppress(psycopg.Error):
                self.conn.execute(sql.SQL("SET row_security = {}").format(
                    sql.Literal(previous[0] if previous else "on")))

    def _leaf_partitions(self, oid: int) -> list[tuple[str, str]] | None:
        """A partitioned table's partitions that hold rows, at any depth; None for any other table."""
        row = self.conn.execute("SELECT relkind = 'p' FROM pg_class WHERE oid = %s", (oid,)).fetchone()
        if not row or not row[0]:
            return None
        rows = self.conn.execute(
            "SELECT n.nspname::text, c.relname::text FROM pg_partition_tree(%s::oid::regclass) t "
            "JOIN pg_class c ON c.oid = t.relid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE t.isleaf AND c.relkind = 'r' ORDER BY t.level, 1, 2", (oid,)).fetchall()
        return [(str(r[0]), str(r[1])) for r in rows]

    def _run_partitions(self, label: str, leaves: list[tuple[str, str]]) -> BackfillResult:
        """A partitioned table is backfilled one partition after the other, each its own resumable job
        (``<job> [<partition>]``): its batches plan and lock one partition, not all of them, and a table
        without a key is walked by each partition's ctid (the table itself has no pages)."""
        from dataclasses import replace

        total = BackfillResult(self.spec.job_name, label, 0, 0, 0, 0.0, 0.0,
                               f"partition by partition ({len(leaves)} partitions)", resumed=False, already_done=True)
        modes: list[str] = []
        options = self.options
        for schema, name in leaves:
            spec = replace(self.spec, table=name, schema=schema, job=partition_job(self.spec.job_name, schema, name))
            done = Backfiller(self.conn, self.schema, spec, options, self.progress, self.notify, self.sleep).run()
            if done.batch_size:  # the next partition starts at the size this one reached, not from the first again
                options = replace(options, initial_batch=done.batch_size)
            total.rows += done.rows
            total.rows_this_run += done.rows_this_run
            total.batches += done.batches
            total.duration_s += done.duration_s
            total.max_batch_ms = max(total.max_batch_ms, done.max_batch_ms)
            total.resumed = total.resumed or done.resumed
            total.already_done = total.already_done and done.already_done
            total.lag_pauses += done.lag_pauses
            total.batch_ms += done.batch_ms
            total.max_lock_ms = max(total.max_lock_ms, done.max_lock_ms)
            total.cut_batches += done.cut_batches
            total.waited_batches += done.waited_batches
            total.max_waited_ms = max(total.max_waited_ms, done.max_waited_ms)
            modes.append(done.mode)
        total.mode += f", each by {', '.join(dict.fromkeys(modes))}" if modes else ""
        return total

    def _run(self, oid: int, nsp: str, rel: str) -> BackfillResult:
        key, types = (self.spec.key, _column_types(self.conn, oid, self.spec.key)) if self.spec.key \
            else detect_key(self.conn, oid)
        rules = self.conn.execute("SELECT EXISTS (SELECT FROM pg_rewrite WHERE ev_class = %s AND ev_type = '2')",
                                  (oid,)).fetchone()
        target = _Target(oid, nsp, rel, key, types, bool(rules and rules[0]))
        if not key and self._server_major() < 14:
            raise BackfillError(
                f"Table {target.label} has no primary key or unique NOT NULL key, and walking it by ctid "
                "needs PostgreSQL 14 or later (TID range scans).", hint="add a primary key, or pass --key.")
        self._check_clauses(target)
        state = self._load_or_create(target, oid)
        result = BackfillResult(self.spec.job_name, target.label, int(state["rows_done"]), 0,
                                int(state["batches"]), 0.0, 0.0,
                                f"key ({', '.join(key)})" if key else "ctid", resumed=state["resumed"])
        if state["status"] == "done":
            result.already_done = True
            return result
        self._loop(target, state, result)
        return result

    # -- set-up ----------------------------------------------------------------------------
    def _server_major(self) -> int:
        return int(self.conn.info.server_version) // 10000

    def _check_clauses(self, target: _Target) -> None:
        """Fail fast, before any batch, when SET or WHERE does not compile against the table."""
        query = sql.SQL("EXPLAIN UPDATE {} SET {} WHERE {}").format(
            target.ident, self._set_sql, self._where_sql)
        try:
            with self.conn.transaction():
                self.conn.execute(query)
        except psycopg.Error as exc:
            if _row_security_error(exc):
                raise  # run() explains it
            raise BackfillError(
                f"The backfill of {target.label} does not compile: {server_error_text(exc)} "
                f"(SET {self.spec.set_clause!r}, WHERE {self.spec.where!r}).") from exc

    def _load_or_create(self, target: _Target, oid: int) -> dict[str, Any]:
        row = self.conn.execute(
            sql.SQL("SELECT rows_done, batches, last_key, end_page, batch_size, total_estimate, status, "
                    "set_clause, where_clause FROM {} WHERE job = %s").format(self._table),
            (self.spec.job_name,)).fetchone()
        if row is not None:
            if (row[7], row[8]) != (self.spec.set_clause, self.spec.where):
                raise BackfillError(
                    f"Backfill job {self.spec.job_name!r} exists with a different SET/WHERE "
                    f"({row[7]!r} / {row[8]!r}).", hint="choose another --job name, or --restart it.")
            return {"rows_done": row[0], "batches": row[1], "last_key": row[2], "end_page": row[3],
                    "batch_size": row[4], "total": row[5], "status": row[6], "resumed": row[6] != "done"
                    and (row[1] or 0) > 0}
        end_page = None
        if not target.key:
            end = self.conn.execute(
                "SELECT pg_relation_size(%s::oid) / current_setting('block_size')::int", (oid,)).fetchone()
            end_page = int(end[0]) if end else 0
        total = self._count(target) if self.options.count_total else None
        self.conn.execute(
            sql.SQL("INSERT INTO {} (job, table_name, set_clause, where_clause, key_columns, end_page, "
                    "total_estimate, batch_size, version) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
                    ).format(self._table),
            (self.spec.job_name, target.label, self.spec.set_clause, self.spec.where, list(target.key),
             end_page, total, self.options.initial_batch, self.spec.version))
        return {"rows_done": 0, "batches": 0, "last_key": None, "end_page": end_page,
                "batch_size": self.options.initial_batch, "total": total, "status": "running", "resumed": False}

    def _count(self, target: _Target) -> int | None:
        """Exact count of rows to do when it is quick; else the planner's estimate."""
        try:
            with self.conn.transaction():
                self.conn.execute("SET LOCAL statement_timeout = '10s'")
                row = self.conn.execute(sql.SQL("SELECT count(*) FROM {} WHERE {}").format(
                    target.ident, self._where_sql)).fetchone()
                return int(row[0]) if row else None
        except pgerrors.QueryCanceled:
            row = self.conn.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s",
                                    (target.oid,)).fetchone()
            return max(0, int(row[0])) if row else None

    # -- the loop --------------------------------------------------------------------------
    def _loop(self, target: _Target, state: dict[str, Any], result: BackfillResult) -> None:
        opts = self.options
        size = max(opts.min_batch, min(opts.max_batch, int(state["batch_size"] or opts.initial_batch)))
        last: list[str] | None = state["last_key"]
        started = time.monotonic()
        done = False
        cut_at_minimum = 0
        while not done:
            lag = self._wait_for_lag(target, result, started)
            t0 = time.monotonic()
            self._locked_at = self._held_ms = None
            self._waiters = (0, 0.0)
            try:
                rows, last, done = self._batch_with_retries(target, size, last, state)
            except pgerrors.QueryCanceled:
                if self._cut_by_lock_limit():
                    result.cut_batches += 1
                    cut_at_minimum = cut_at_minimum + 1 if size <= opts.min_batch else 0
                    if cut_at_minimum >= 3:
                        raise BackfillError(
                            f"Backfill batches of {size} rows on {target.label} hold their row locks longer than "
                            f"the {opts.max_lock_ms} ms limit even at the minimum batch size; each was rolled back, "
                            "and progress up to the last committed batch is saved.",
                            hint="lower --min-batch, raise --max-lock, or make the SET / WHERE cheaper.") from None
                    self.notify(f"batch of {size} rows reached the {opts.max_lock_ms} ms lock limit; "
                                "rolled back, trying half as many")
                    size = max(opts.min_batch, size // 2)
                    continue
                if size <= opts.min_batch:
                    raise BackfillError(
                        f"A backfill batch of {size} rows on {target.label} exceeded the statement_timeout "
                        f"({opts.statement_timeout_ms} ms) even at the minimum batch size.",
                        hint="raise --statement-timeout, or add an index that serves the WHERE clause.",
                    ) from None
                size = max(opts.min_batch, size // 4)
                continue
            cut_at_minimum = 0
            if self._held_ms is not None:
                result.max_lock_ms = max(result.max_lock_ms, self._held_ms)
            elapsed_ms = (time.monotonic() - t0) * 1000
            result.rows += rows
            result.rows_this_run += rows
            result.batches += 1
            result.batch_ms.append(elapsed_ms)
            result.max_batch_ms = max(result.max_batch_ms, elapsed_ms)
            waiters, waited_ms = self._waiters
            if waiters:
                result.waited_batches += 1
                result.max_waited_ms = max(result.max_waited_ms, waited_ms)
                if self._calm == 0:
                    self.notify(f"{waiters} session(s) waited on the batch's row locks (up to {waited_ms:.0f} ms); "
                                "smaller batches while they do")
                self._calm = opts.calm_batches
                # A wait past half the target halves the batch; shorter ones only stop its growth.
                if waited_ms >= opts.target_ms / 2:
                    size = max(opts.min_batch, size // 2)
                else:
                    size = min(size, self._next_size(size, elapsed_ms))
            else:
                size = self._next_size(size, elapsed_ms)
                self._calm = max(0, self._calm - 1)
            result.duration_s = time.monotonic() - started
            result.batch_size = size
            self.progress(self._progress(target, state, result, size, elapsed_ms, lag, done))
            pause = max(opts.pause_ms, opts.waiter_pause_ms if waiters else 0)
            if not done and pause:
                self.sleep(pause / 1000)

    def _cut_by_lock_limit(self) -> bool:
        """Whether the cancelled statement was a batch UPDATE running under max_lock_ms."""
        limit = self.options.max_lock_ms
        return self._locked_at is not None and limit is not None and 0 < limit < self.options.statement_timeout_ms

    def _locked_settings(self) -> dict[str, str]:
        """The settings of a batch's locked statement (its UPDATE, progress row and waiters check): from
        there to its commit the batch holds row locks, so the lock limit (when tighter), less the recent
        batches' tail after that statement, becomes its statement_timeout. A wait for a row the application
        holds gives up at half the limit, as a lock timeout: retried after a pause, not cut smaller."""
        limit, opts, budget = self.options.max_lock_ms, self.options, self._locked_budget_ms()
        if not limit or budget is None:
            return {}
        return {"statement_timeout": f"{budget}ms",
                "lock_timeout": f"{max(1, min(opts.lock_timeout_ms, limit // 2))}ms"}

    def _locked_budget_ms(self) -> int | None:
        """The locked statement's statement_timeout: the lock limit less the longest recent tail, at
        least half the limit and at least 1 ms. None: no limit tighter than the statement_timeout."""
        limit = self.options.max_lock_ms
        if not limit or limit >= self.options.statement_timeout_ms:  # 0 would mean no timeout at all
            return None
        # At least 1: half of a 1 ms limit is 0, and statement_timeout = 0 would lift the limit altogether.
        return max(1, limit // 2, int(limit - max(self._tails, default=_FIRST_TAIL_MS)))

    def _next_size(self, size: int, elapsed_ms: float) -> int:
        """Move toward the target duration; at most x1.5 or halve per batch, within bounds."""
        opts = self.options
        budget = self._locked_budget_ms()
        # Under a lock limit, aim well under what it leaves: a batch that reaches it is lost work, and one
        # whose commit is slower than the recent ones would hold its locks past the limit.
        target = opts.target_ms if budget is None else min(opts.target_ms, budget * 3 // 4)
        factor = target / max(elapsed_ms, 1.0)
        # Grow gently (one overshooting batch holds its locks longer), and not at all soon after waiters.
        factor = min(1.0 if self._calm else 1.5, max(0.5, factor))
        return int(max(opts.min_batch, min(opts.max_batch, size * factor)))

    def _progress(self, target: _Target, state: dict[str, Any], result: BackfillResult, size: int,
                  batch_ms: float, lag: float | None, done: bool) -> Progress:
        elapsed = result.duration_s
        rate = result.rows_this_run / result.duration_s if result.duration_s > 0 else 0.0
        total = state["total"]
        eta = None
        if total is not None and rate > 0:
            eta = max(0.0, (total - result.rows) / rate)
        return Progress(self.spec.job_name, target.label, result.rows, total, result.batches, size,
                        batch_ms, rate, 0.0 if done else eta, elapsed, "done" if done else "running",
                        lag, result.resumed, *self._waiters)

    def _wait_while_breached(self, target: _Target, result: BackfillResult, started: float) -> None:
        paused = False
        while self.options.pause_while is not None and (reason := self.options.pause_while()) is not None:
            if not paused:
                self.notify(f"{reason}; pausing the backfill until it clears")
                paused = True
            result.duration_s = time.monotonic() - started
            self.progress(Progress(self.spec.job_name, target.label, result.rows, None, result.batches, 0, 0.0,
                                   0.0, None, result.duration_s, "paused-watch", None, result.resumed))
            self.sleep(self.options.lag_poll_s)

    def _wait_for_lag(self, target: _Target, result: BackfillResult, started: float) -> float | None:
        self._wait_while_breached(target, result, started)
        opts = self.options
        if opts.max_lag_s is None and opts.max_lag_bytes is None:
            return None
        paused = False
        while True:
            lag = self._lag() if opts.max_lag_s is not None else None
            behind, standby = self._lag_bytes() if opts.max_lag_bytes is not None else (None, None)
            over_time = lag is not None and opts.max_lag_s is not None and lag > opts.max_lag_s
            over_bytes = behind is not None and opts.max_lag_bytes is not None and behind > opts.max_lag_bytes
            if not (over_time or over_bytes):
                if paused:
                    self.notify("replication lag is back under the limit; resuming the backfill")
                return lag
            if not paused:
                result.lag_pauses += 1
                why = (f"replication lag {lag:.1f}s is above {opts.max_lag_s}s" if over_time else
                       f"standby {standby} has {behind} bytes of WAL not yet replayed, above {opts.max_lag_bytes}")
                self.notify(f"{why}; pausing the backfill")
                paused = True
            result.duration_s = time.monotonic() - started
            self.progress(Progress(self.spec.job_name, target.label, result.rows, None, result.batches, 0, 0.0,
                                   0.0, None, result.duration_s, "paused-lag", lag, result.resumed,
                                   lag_bytes=behind))
            self.sleep(opts.lag_poll_s)

    def _lag(self) -> float | None:
        if self._positions_hidden is None and self.options.lag_query == DEFAULT_LAG_QUERY:
            with self.conn.transaction():
                role = positions_hidden(self.conn)
                streaming = self.conn.execute("SELECT count(*) FROM pg_stat_replication").fetchone()
            self._positions_hidden = role is not None
            if role is not None and streaming and streaming[0]:
                self.notify(f"warning: the role {role} cannot see the standbys' lag (it lacks pg_read_all_stats, "
                            "part of pg_monitor), so --max-lag cannot pause this backfill; GRANT pg_monitor to it")
        try:
            with self.conn.transaction():
                row = self.conn.execute(sql.SQL(self.options.lag_query)).fetchone()
        except psycopg.Error as exc:
            raise BackfillError(f"The replication lag query failed: {server_error_text(exc)} "
                                f"(query: {self.options.lag_query!r}).") from exc
        return float(row[0]) if row and row[0] is not None else None

    def _lag_bytes(self) -> tuple[int | None, str | None]:
        """WAL bytes the furthest standby has not replayed, and its name; (None, None) without standbys."""
        with self.conn.transaction():
            if not self._bytes_visible:
                role = positions_hidden(self.conn)
                self._bytes_visible = role is None
                if role is not None:  # it would see every standby as 0 bytes behind, and never pause
                    raise BackfillError(
                        f"A pause for standby lag in bytes is asked (--max-lag-bytes or backfill.max_lag_bytes), "
                        f"but the role {role} cannot see the standbys' positions: pg_stat_replication shows them "
                        "only to roles with pg_read_all_stats. No row was changed by this run.",
                        hint=f"GRANT pg_monitor TO {role} (as a superuser or the service's admin role), or run "
                        "without the byte limit (--max-lag-bytes off).")
            row = self.conn.execute(LAG_BYTES_QUERY).fetchone()
        return (int(row[0]), str(row[1])) if row and row[0] is not None else (None, None)

    def _batch_with_retries(self, target: _Target, size: int, last: list[str] | None,
                            state: dict[str, Any]) -> tuple[int, list[str] | None, bool]:
        """One batch, retried after a lock timeout or a deadlock with the step engine's policy (backoff with
        jitter, so two backfills or a backfill and the application that deadlocked do not meet again)."""

        def on_retry(number: int, delay: float, exc: psycopg.Error) -> None:
            self.notify(f"batch {retry_reason(exc)}; retry {number} in {delay:.2f}s")

        def exhausted(attempts: int, exc: psycopg.Error) -> BaseException:
            reason = retry_reason(exc)
            if reason == "serialization failure":
                return BackfillError(
                    f"A backfill batch on {target.label} could not serialize with the application's concurrent "
                    f"writes to its rows after {attempts} attempts (the database's default isolation is "
                    "REPEATABLE READ or SERIALIZABLE); progress up to the last batch is saved.",
                    hint="rerun the same command to resume, when fewer writes go to those rows; a smaller "
                    "--target-ms makes each batch's rows fewer.")
            what = " (each ended in a deadlock)" if reason == "deadlock" else ""
            return BackfillError(
                f"A backfill batch on {target.label} could not take its row locks within "
                f"{self.options.lock_timeout_ms} ms after {attempts} attempts{what}; progress up to the "
                "last batch is saved.", hint="rerun the same command to resume.")

        return self.retry.run(lambda: self._batch(target, size, last, state), on_retry=on_retry,
                              exhausted=exhausted, sleep=self.sleep)

    def _batch(self, target: _Target, size: int, last: list[str] | None,
               state: dict[str, Any]) -> tuple[int, list[str] | None, bool]:
        """One batch in two round trips: BEGIN, its settings and the keyset lookup; then the locked
        statement and the COMMIT. Rolled back on any error."""
        opts = self.options
        # Set again once this attempt sends its locked statement: a retry after a lock timeout must not read a
        # timeout of its lookup as the lock limit reached.
        self._locked_at = None
        settings = {"statement_timeout": f"{opts.statement_timeout_ms}ms", "lock_timeout": f"{opts.lock_timeout_ms}ms"}
        if target.key:
            # A column expand just added has no statistics, and the planner takes `col IS NULL` for rare:
            # it answered the keyset lookup with a full scan and a sort, every batch. Walk the key's index,
            # in this backend: it chose a Gather Merge of two workers, whose start-up (15-20 ms at 1M rows)
            # took longer than the scan itself (under 1 ms) and half of every 75 ms batch.
            settings |= {"enable_seqscan": "off", "enable_sort": "off", "max_parallel_workers_per_gather": "0"}
        begin = sql.SQL("BEGIN; {}").format(_set_local(settings))
        try:
            if target.key:  # BEGIN goes with the lookup
                update, new_last, done = self._key_batch(target, size, last, begin)
                rows = self._update_and_commit(None, update, new_last, size, done, alone=target.update_rules)
            else:  # ... or with the UPDATE
                update, new_last, done = self._ctid_batch(target, size, last, int(state["end_page"] or 0))
                rows = self._update_and_commit(begin, update, new_last, size, done, alone=target.update_rules)
        except BaseException:
            if self.conn.info.transaction_status in (TransactionStatus.INTRANS, TransactionStatus.INERROR):
                with contextlib.suppress(psycopg.Error):
                    self.conn.execute("ROLLBACK")
            raise
        return rows, new_last, done

    def _update_and_commit(self, begin: sql.Composable | None, update: sql.Composable | None,
                           new_last: list[str] | None, size: int, done: bool, alone: bool = False) -> int:
        """The batch's UPDATE, its progress row and the waiters check in one statement, sent with the
        COMMIT; the rows it updated. ``update`` None: no row left, only the progress row. ``alone``: the
        UPDATE is sent first on its own (a table with rules), the rest with the COMMIT after it."""
        opts = self.options
        locked = self._locked_settings() if update is not None else {}
        parts = [p for p in (begin, _set_local(locked) if locked else None) if p is not None]
        sent = time.monotonic()
        updated: float | None = None  # when the UPDATE sent alone returned
        changes: sql.Composable
        if update is not None and alone:
            self._locked_at = sent
            cur = self.conn.execute(sql.SQL("; ").join([*parts, update]))
            while cur.nextset():
                pass
            updated, parts = time.monotonic(), []
            changes = sql.SQL("WITH done AS (SELECT {}::bigint AS n)").format(sql.Literal(max(0, cur.rowcount)))
        elif update is not None:
            changes = sql.SQL("WITH batch AS ({} RETURNING 1), done AS (SELECT count(*) AS n FROM batch)").format(
                update)
        else:
            changes = sql.SQL("WITH done AS (SELECT 0::bigint AS n)")
        waiters = _WAITERS if opts.yield_to_waiters and update is not None else sql.SQL("ARRAY[0, 0]::float8[]")
        statement = sql.SQL(
            "{} UPDATE {} SET last_key = {}, rows_done = rows_done + done.n, batches = batches + 1, "
            "batch_size = {}, updated_at = clock_timestamp(), status = {}, "
            "finished_at = CASE WHEN {} THEN clock_timestamp() END FROM done WHERE job = {} "
            # The statement's own time on the server, from the message's arrival to here.
            "RETURNING done.n, ({}), extract(epoch FROM clock_timestamp() - statement_timestamp()) * 1000"
        ).format(changes, self._table, sql.Literal(new_last), sql.Literal(size),
                 sql.Literal("done" if done else "running"), sql.Literal(done), sql.Literal(self.spec.job_name),
                 waiters)
        message = sql.SQL("; ").join([*parts, statement, sql.SQL("COMMIT")])
        if update is not None and not alone:
            self._locked_at = sent = time.monotonic()
        cur = self.conn.execute(message)
        ended = time.monotonic()
        held_ms = (ended - sent) * 1000
        while cur.description is None and cur.nextset():  # the results of BEGIN and SET come first
            pass
        row = cur.fetchone()
        if row is None:  # the job's progress row is gone (deleted meanwhile)
            return 0
        if update is not None:
            self._held_ms = held_ms
            self._tails.append(max(0.0, (ended - updated) * 1000 if updated is not None else held_ms - float(row[2])))
            if opts.yield_to_waiters:
                self._waiters = (int(row[1][0]), float(row[1][1]))
        return int(row[0])

    def _key_after(self, target: _Target, last: list[str] | None) -> sql.Composable:
        if last is None:
            return sql.SQL("true")
        return sql.SQL("({}) > ({})").format(self._key_cols(target), self._key_values(target, last))

    def _key_cols(self, target: _Target) -> sql.Composable:
        return sql.SQL(", ").join(sql.Identifier(k) for k in target.key)

    def _key_values(self, target: _Target, values: list[str]) -> sql.Composable:
        # The key types come from format_type() in the catalog, so they are valid SQL type names.
        return sql.SQL(", ").join(sql.SQL("CAST({} AS {})").format(sql.Literal(v), sql.SQL(t))
                                  for v, t in zip(values, target.key_types, strict=True))

    def _key_batch(self, target: _Target, size: int, last: list[str] | None,
                   begin: sql.Composable) -> tuple[sql.Composable | None, list[str] | None, bool]:
        """The batch's UPDATE up to the key ``size`` rows on (sent with ``begin``), the new last key,
        and whether it is the last batch. No UPDATE when no row is left."""
        where = self._where_sql
        after = self._key_after(target, last)
        cols = self._key_cols(target)
        # Aliased: ORDER BY "id" would otherwise sort by the text output column of the same name.
        text_cols = sql.SQL(", ").join(sql.SQL("{}::text AS {}").format(sql.Identifier(k), sql.Identifier(f"_k{i}"))
                                       for i, k in enumerate(target.key))
        cur = self.conn.execute(
            # No query parameters here: a '%' in the user's SET/WHERE must stay an operator.
            sql.SQL("{}; SELECT {} FROM {} WHERE {} AND ({}) ORDER BY {} OFFSET {} LIMIT 1").format(
                begin, text_cols, target.ident, after, where, cols, sql.Literal(size - 1)))
        while cur.nextset():  # to the lookup's result, after BEGIN's and the settings'
            pass
        upper = cur.fetchone()
        done = upper is None
        if done:
            upper = self.conn.execute(
                sql.SQL("SELECT {} FROM {} WHERE {} AND ({}) ORDER BY {} LIMIT 1").format(
                    text_cols, target.ident, after, where,
                    sql.SQL(", ").join(sql.SQL("{} DESC").format(sql.Identifier(k)) for k in target.key)),
            ).fetchone()
            if upper is None:
                return None, last, True
        assert upper is not None
        bound = [str(v) for v in upper]
        update = sql.SQL("UPDATE {} SET {} WHERE {} AND ({}) <= ({}) AND ({})").format(
            target.ident, self._set_sql, after, cols, self._key_values(target, bound), where)
        return update, bound, done

    def _ctid_batch(self, target: _Target, pages: int, last: list[str] | None,
                    end_page: int) -> tuple[sql.Composable, list[str] | None, bool]:
        # In ctid mode the batch size counts pages, not rows.
        start = int(last[0]) if last else 0
        stop = min(end_page, start + max(1, pages // 50))
        update = sql.SQL("UPDATE {} SET {} WHERE ctid >= {}::tid AND ctid < {}::tid AND ({})").format(
            target.ident, self._set_sql, sql.Literal(f"({start},0)"),
            sql.Literal(f"({stop},0)"), self._where_sql)
        return update, [str(stop)], stop >= end_page


def partition_job(job: str, schema: str, name: str) -> str:
    """The progress row of one partition's part of a partitioned table's backfill ``job``."""
    return f"{job} [{qualified(schema, name)}]"


def reset_job(conn: psycopg.Connection[Any], schema: str, job: str) -> bool:
    """Forget ``job``'s progress, and that of its partitions' parts."""
    cur = conn.execute(sql.SQL("DELETE FROM {} WHERE job = %s OR starts_with(job, %s)").format(
        sql.Identifier(schema, "backfills")), (job, f"{job} ["))
    return cur.rowcount > 0


def jobs(conn: psycopg.Connection[Any], schema: str) -> list[dict[str, Any]]:
    with contextlib.closing(conn.cursor()) as cur:
        cur.execute(sql.SQL("SELECT job, table_name, status, rows_done, batches, total_estimate, updated_at "
                            "FROM {} ORDER BY started_at").format(sql.Identifier(schema, "backfills")))
        names = [d.name for d in cur.description or []]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def progress_json(p: Progress) -> str:
    return json.dumps(p.as_dict(), default=str)
