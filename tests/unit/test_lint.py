"""The migration lint with the real squawk binary (the pinned squawk-cli) on migration text."""

from pathlib import Path

import pytest

from tasks import lint
from tasks.migrations import Migration, parse_migration_files

MIGRATIONS = (
    Path(__file__).resolve().parents[2]
    / "lab/app/internal/infrastructure/persistence/postgres/migrations"
)


def _release_migrations() -> list[Migration]:
    text = "".join(
        f"{'@@@ migration file '}{p.name}\n{p.read_text()}" for p in sorted(MIGRATIONS.glob("*"))
    )
    return parse_migration_files(text)


def test_migration_003_passes_the_lint():
    """Its CONCURRENTLY indexes are safe; its one plain index is on the view it creates."""
    m003 = [m for m in _release_migrations() if m.version == "003"]
    result = lint.lint(m003, "error", serving=True)
    assert result.findings == [] and result.refused == []
    assert "nothing breaks the serving release" in result.summary()


def test_dropping_a_column_is_refused_with_file_line_rule_statement_and_the_way_out():
    drop = Migration("004", "drop_host", "-- gone\nALTER TABLE metrics DROP COLUMN host CASCADE;\n")
    result = lint.lint([drop], "error", serving=True)
    [finding] = result.refused
    assert (finding.file, finding.line, finding.rule) == ("004_drop_host.sql", 2, "ban-drop-column")
    text = finding.text()
    assert "`ALTER TABLE metrics DROP COLUMN host CASCADE;`" in text
    assert "-- deploy: contract" in text and "would break:" in text


@pytest.mark.parametrize(
    ("sql", "rule"),
    [
        ("ALTER TABLE metrics RENAME COLUMN host TO hostname;", "renaming-column"),
        ("ALTER TABLE metrics ALTER COLUMN value TYPE numeric;", "changing-column-type"),
        ("DROP TABLE metrics;", "ban-drop-table"),
        ("CREATE INDEX i_host ON metrics (host);", "require-concurrent-index-creation"),
        ("ALTER TABLE metrics ADD COLUMN site text NOT NULL;", "adding-required-field"),
    ],
)
def test_what_breaks_a_serving_release_is_refused(sql, rule):
    result = lint.lint([Migration("004", "x", sql + "\n")], "error", serving=True)
    assert rule in {f.rule for f in result.refused}


def test_a_contract_migration_may_remove_but_not_lock():
    header = "-- deploy: contract\n"
    drop = Migration("005", "c", header + "ALTER TABLE metrics DROP COLUMN host;\n")
    assert lint.lint([drop], "error", serving=True).refused == []
    locking = Migration("005", "c", header + "CREATE INDEX i_host ON metrics (host);\n")
    assert [f.rule for f in lint.lint([locking], "error", serving=True).refused] == [
        "require-concurrent-index-creation"
    ]


def test_an_ignore_comment_warn_mode_and_a_new_database_refuse_nothing():
    ignored = Migration(
        "004", "x", "-- squawk-ignore ban-drop-column\nALTER TABLE metrics DROP COLUMN host;\n"
    )
    assert lint.lint([ignored], "error", serving=True).findings == []
    drop = Migration("004", "x", "ALTER TABLE metrics DROP COLUMN host;\n")
    warned = lint.lint([drop], "warn", serving=True)
    assert warned.refused == [] and "1 statement(s) would break" in warned.summary()
    assert lint.lint([drop], "error", serving=False).refused == []
    assert lint.lint([drop], "off", serving=True).summary().startswith("migration lint off")


def test_additive_changes_pass():
    sql = (
        "ALTER TABLE metrics ADD COLUMN hostname text;\n"
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS i_hostname ON metrics (hostname);\n"
    )
    assert lint.lint([Migration("004", "x", sql)], "error", serving=True).findings == []
