"""`pgshift lint --fix` streams a file over 1 MB through (pgshift.lint.fix._Copier) instead of holding
it: the files it writes must be byte for byte what the whole-file rewrite writes, wherever the
pieces are cut (the size threshold and the piece size are made tiny here)."""

from __future__ import annotations

import shutil
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pgshift import api
from pgshift.config import Settings
from pgshift.lint import fix
from pgshift.lint.model import Finding
from pgshift.migrations import files

FIXED = [
    "CREATE INDEX ix_{i} ON accounts (owner){space};{nl}",  # PS001: moved, or made CONCURRENTLY in place
    "ALTER TABLE accounts ADD CONSTRAINT fk_{i} FOREIGN KEY (owner) REFERENCES users (id);{nl}",  # PS012: NOT VALID
    "DROP INDEX ix_old_{i}{space};{nl}",  # PS002
]
OTHER = [
    "CREATE TABLE t{i} (id bigint PRIMARY KEY, note text);{nl}",
    "INSERT INTO t{i} VALUES (1, 'semi;{nl}colon; CREATE INDEX ix ON accounts (owner);{nl}');{nl}",
    "CREATE FUNCTION f{i}() RETURNS int LANGUAGE plpgsql AS $${nl}BEGIN{nl}  RETURN 1;{nl}END;{nl}$$;{nl}",
    "/* a comment;{nl}with a cut; */ ALTER TABLE t{i} ADD COLUMN c text;{nl}",
    "-- \u00fcn\u00efc\u00f6de \U0001f600{nl}{nl}   {nl}",
]
CHOICES = FIXED + OTHER


def _folder(path: Path, order: list[int], spaces: list[str], nl: str, bom: bool, transactional: bool) -> Path:
    folder = path / "migrations"
    shutil.rmtree(path, ignore_errors=True)
    folder.mkdir(parents=True)
    head = "" if transactional else f"-- pgshift:no-transaction{nl}"
    body = "".join(CHOICES[p].format(i=i, nl=nl, space=spaces[i % len(spaces)].format(nl=nl))
                   for i, p in enumerate(order))
    text = ("\ufeff" if bom else "") + f"{head}-- pgshift:up{nl}{body}-- pgshift:down{nl}SELECT 1;{nl}"
    (folder / "0002_change.sql").write_bytes(text.encode())
    (folder / "0009_later.sql").write_bytes(f"-- pgshift:up{nl}CREATE INDEX ix_late ON accounts (owner);{nl}".encode())
    return folder


Fixed = tuple[list[tuple[str, str, int, int]], list[str], list[str]]


def _fix(folder: Path, *, streamed: bool, piece: int) -> tuple[Fixed, dict[str, bytes]]:
    saved = files.STREAM_BYTES, files._READ_CHARS, fix._rewrite_streamed
    files.STREAM_BYTES, files._READ_CHARS = (0, piece) if streamed else (10**12, saved[1])
    files._CHECKPOINTS.clear()

    def rewrite(path: Path, findings: list[Finding], statements: dict[tuple[str, int, int], str]
                ) -> list[Finding] | None:
        written = saved[2](path, findings, statements)
        assert written is not None, "not streamed: the test would prove nothing"
        return written

    fix._rewrite_streamed = rewrite
    try:
        outcome = api.lint_fix(Settings(base_dir=folder.parent, migrations_dir="migrations"))
    finally:
        files.STREAM_BYTES, files._READ_CHARS, fix._rewrite_streamed = saved
        files._CHECKPOINTS.clear()
    assert outcome.fix is not None
    fixed = [(f.rule, Path(f.file).name, f.line, f.column) for f in outcome.fix.fixed]
    written = {p.name: p.read_bytes() for p in sorted(folder.iterdir())}
    return (fixed, [p.name for p in outcome.fix.changed], [p.name for p in outcome.fix.created]), written


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(order=st.lists(st.integers(0, len(CHOICES) - 1), min_size=1, max_size=12),
       spaces=st.lists(st.sampled_from(["", " ", "{nl}  {nl}"]), min_size=1, max_size=3),
       nl=st.sampled_from(["\n", "\r\n"]), bom=st.booleans(), transactional=st.booleans(), piece=st.integers(1, 60))
def test_a_streamed_fix_writes_the_same_bytes(order: list[int], spaces: list[str], nl: str, bom: bool,
                                              transactional: bool, piece: int, tmp_path: Path) -> None:
    whole = _fix(_folder(tmp_path / "whole", order, spaces, nl, bom, transactional), streamed=False, piece=piece)
    streamed = _fix(_folder(tmp_path / "streamed", order, spaces, nl, bom, transactional), streamed=True, piece=piece)
    assert streamed == whole
    if any(p < len(FIXED) for p in order):
        assert whole[0][0], "nothing was fixed: the test would prove nothing"


def test_a_streamed_fix_keeps_the_file_mode_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "m", [0, 3, 1], [" "], "\n", False, True)
    (folder / "0002_change.sql").chmod(0o640)
    (_, changed, created), written = _fix(folder, streamed=True, piece=5)
    assert changed == ["0002_change.sql", "0009_later.sql"] and created
    assert b"moved by pgshift lint --fix" in written["0002_change.sql"]
    assert (folder / "0002_change.sql").stat().st_mode & 0o777 == 0o640
    assert sorted(written) == sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]
