"""For ``pgshift demo``: the same index built naively and safely, rehearsed under load.

The plain CREATE INDEX holds SHARE on the table for the whole build, so the workload's updates
wait and the stall budget fails it; CREATE INDEX CONCURRENTLY builds as long but lets them through.
The index expression calls a deliberately slow IMMUTABLE function (1 ms a row) so the build takes
about as long on any machine.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from pgshift.config import Settings
from pgshift.db.connect import connect
from pgshift.rehearsal.run import Notify, RehearsalOptions, RehearsalReport, rehearse

SETUP = """
CREATE TABLE IF NOT EXISTS demo_orders (id bigserial PRIMARY KEY, customer text NOT NULL, total numeric NOT NULL);
INSERT INTO demo_orders (customer, total)
SELECT 'customer ' || g, g % 100 FROM generate_series(1, %(rows)s - (SELECT count(*) FROM demo_orders)) g;
CREATE OR REPLACE FUNCTION demo_slow_key(i bigint) RETURNS bigint LANGUAGE plpgsql IMMUTABLE AS
$$ BEGIN PERFORM pg_sleep(0.001); RETURN i; END $$;
"""
NAIVE = ("CREATE INDEX demo_orders_key_idx ON demo_orders (demo_slow_key(id));\n"
         "-- pgshift:down\nDROP INDEX demo_orders_key_idx;\n")
SAFE = ("CREATE INDEX CONCURRENTLY demo_orders_key_idx ON demo_orders (demo_slow_key(id));\n"
        "-- pgshift:down\nDROP INDEX CONCURRENTLY demo_orders_key_idx;\n")


@dataclass
class DemoResult:
    naive: RehearsalReport
    safe: RehearsalReport


def naive_vs_safe(url: str, *, rows: int = 800, load: float = 100.0, stall_budget_ms: int = 300,
                  notify: Notify | None = None) -> DemoResult:
    """Create ``demo_orders`` in ``url`` (kept; no other change), then rehearse both versions of the
    index migration on clones. Expect ``naive`` to fail on the stall budget and ``safe`` to pass."""
    with connect(url, application_name="pgshift-demo") as conn:
        conn.execute(SETUP.replace("%(rows)s", str(int(rows))))
    options = RehearsalOptions(load_rate=load, stall_budget_ms=stall_budget_ms, warmup_s=0.3, cooldown_s=0.3)
    results: list[RehearsalReport] = []
    for label, text in (("naive", NAIVE), ("safe", SAFE)):
        with tempfile.TemporaryDirectory(prefix=f"pgshift-demo-{label}-") as folder:
            (Path(folder) / "1_orders_key_index.sql").write_text(text)
            settings = Settings(database_url=url, migrations_dir=folder, history_schema="pgshift_demo_rehearsal")
            results.append(rehearse(settings, options, notify=notify))
    return DemoResult(results[0], results[1])
