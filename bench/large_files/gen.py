"""Realistic large migration files: a seed/data migration of CREATE TABLEs, multi-row INSERTs of
~4 kB each, $$ function bodies and comments, in pgshift's native format and other tools' formats."""

from __future__ import annotations

from pathlib import Path

ROW = "({i}, 'customer {i} {pad}', {amount}, '2024-01-{day:02d} 10:00:00+00', '{{\"k\": {i}}}')"


def _insert(block: int, rows: int) -> str:
    values = ",\n".join(
        ROW.format(i=block * rows + r, pad="x" * 20, amount=(block * 7 + r) % 1000, day=r % 28 + 1)
        for r in range(rows)
    )
    return f"INSERT INTO seed_customers (id, name, amount, created_at, extra) VALUES\n{values};\n"


def _function(n: int) -> str:
    return (
        f"CREATE OR REPLACE FUNCTION seed_fn_{n}(x integer) RETURNS integer LANGUAGE plpgsql AS $$\n"
        "BEGIN\n"
        "  -- a ; inside a body does not end the statement\n"
        f"  RETURN x + {n};\n"
        "END;\n"
        "$$;\n"
    )


HEADER = (
    "CREATE TABLE seed_customers (id bigint PRIMARY KEY, name text NOT NULL, amount numeric(12, 2),\n"
    "    created_at timestamptz, extra jsonb);\n"
)


def body(size_bytes: int, *, goose: bool = False) -> str:
    """Up-part SQL of about ``size_bytes``: ~4 kB INSERTs, a function every 50, a comment every 10
    (``goose``: each function inside ``-- +goose StatementBegin`` / ``StatementEnd``, as goose asks)."""
    parts = [HEADER]
    total = len(HEADER)
    block = 0
    while total < size_bytes:
        if block % 10 == 0:
            parts.append(f"-- batch {block}: seed data; a ';' in a comment is not a statement end\n")
        if block % 50 == 0:
            function = _function(block)
            parts.append(f"-- +goose StatementBegin\n{function}-- +goose StatementEnd\n" if goose else function)
            total += len(function)  # the same statements in every format, whatever goose's markers add
        parts.append(_insert(block, 40))
        total += len(parts[-1])
        block += 1
    return "".join(parts)


DOWN = "DROP TABLE seed_customers;\n"
FORMATS = ("native", "dbmate", "golang-migrate", "goose", "flyway", "prisma")


def write(folder: Path, fmt: str, size_bytes: int, version: str = "20240101000000") -> Path:
    """One migration of about ``size_bytes`` in ``fmt`` (one of FORMATS) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    up = body(size_bytes, goose=fmt == "goose")
    if fmt == "native":
        path = folder / f"{version}_seed.sql"
        path.write_text(f"-- pgshift:up\n{up}-- pgshift:down\n{DOWN}")
    elif fmt == "dbmate":
        path = folder / f"{version}_seed.sql"
        path.write_text(f"-- migrate:up\n{up}\n-- migrate:down\n{DOWN}")
    elif fmt == "golang-migrate":
        path = folder / f"{version}_seed.up.sql"
        path.write_text(up)
        (folder / f"{version}_seed.down.sql").write_text(DOWN)
    elif fmt == "goose":
        path = folder / f"{version}_seed.sql"
        path.write_text(f"-- +goose Up\n{up}-- +goose Down\n{DOWN}")
    elif fmt == "flyway":
        path = folder / f"V{version}__seed.sql"
        path.write_text(up)
        (folder / f"U{version}__seed.sql").write_text(DOWN)
    elif fmt == "prisma":  # no down part in Prisma
        path = folder / f"{version}_seed" / "migration.sql"
        path.parent.mkdir()
        path.write_text(up)
        (folder / "migration_lock.toml").write_text('provider = "postgresql"\n')
    else:
        raise ValueError(fmt)
    return path
