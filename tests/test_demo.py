"""`make demo` runs `pgshift demo`: the guided tour on its own embedded PostgreSQL must work end to end."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import run_pgshift


def test_the_demo_runs_end_to_end(tmp_path: Path) -> None:
    done = run_pgshift(["demo"], cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    # The playbook's own SQL as written is caught, including its invalid UPDATE ... LIMIT and ALTER SYSTEM.
    assert "error   update-limit: UPDATE ... LIMIT is not valid PostgreSQL" in out
    assert "warning alter-system: ALTER SYSTEM changes maintenance_work_mem" in out
    # The safe versions apply, roll back, apply again; the backup is proven by a restore.
    assert "every applied migration matches its file" in out
    assert "checksums and a full read-back passed" in out
    restored = next(line for line in out.splitlines() if "restored into a scratch database" in line)
    assert "row counts of" in restored and "sequence(s) match" in restored and "schema matches" in restored, restored
    # The rehearsal tells the blocking index build from the concurrent one.
    assert "CREATE INDEX                FAIL" in out and "CREATE INDEX CONCURRENTLY   PASS" in out
    # It ends with a deploy of the playbook's rename (expand, the app hook, the watch window; contract later) ...
    assert "applied 20240107000000" in out and "new version rolled out" in out
    assert "deploy deployed; the contract (dropping the old name) is due after 7d" in out
    # ... and the watch display, one line a second, while the new version writes through the new name.
    watched = [line for line in out.splitlines() if "sessions waiting 0  longest lock wait" in line]
    assert len(watched) >= 3 and any("commits/s 0 " not in line for line in watched[1:]), watched
    assert "Stopped the embedded PostgreSQL" in out
