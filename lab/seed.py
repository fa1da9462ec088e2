"""Fill the lab database the way the team's staging looks today: schema of v1.9.0 applied by
hand (migrations 001 and 002, no history table) and full of metrics."""

from __future__ import annotations

from lab.apprepo import APP_SOURCE, MIGRATIONS

TYPES = ("cpu", "memory", "disk", "network")
DEFAULT_ROWS = 1_000_000
HOSTS = 50
DAYS = 30


def legacy_schema_sql() -> str:
    """Migrations 001 and 002 as someone once ran them by hand."""
    folder = APP_SOURCE / MIGRATIONS
    return "\n".join(
        (folder / name).read_text()
        for name in ("001_create_metrics.sql", "002_metrics_time_index.sql")
    )


def seed_sql(rows: int, hosts: int = HOSTS, days: int = DAYS) -> str:
    """Insert ROWS samples spread evenly over the last DAYS days, only into an empty table."""
    if rows < 1 or hosts < 1 or days < 1:
        raise ValueError("rows, hosts and days must be positive")
    types = ",".join(f"'{t}'" for t in TYPES)
    return (
        "INSERT INTO metrics (type, host, value, recorded_at)\n"
        f"SELECT (ARRAY[{types}])[1 + i % {len(TYPES)}],\n"
        f"       'web-' || lpad(((i / {len(TYPES)}) % {hosts})::text, 2, '0'),\n"
        "       round((random() * 100)::numeric, 2),\n"
        f"       now() - (i::double precision / {rows}) * interval '{days} days'\n"
        f"FROM generate_series(0, {rows - 1}) AS i\n"
        "WHERE NOT EXISTS (SELECT 1 FROM metrics);\n"
        "ANALYZE metrics;\n"
    )
