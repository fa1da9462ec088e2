"""Drift as pure functions (tasks/commands/drift.py) and its orchestration on in-memory hosts
(tasks/drift.py): what is listed, how a dump is cut into objects, what a difference shows
(never an .env value), the scratch database always dropped, pre-flight's policy."""

from __future__ import annotations

import json
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import replace

import pytest
from fake_remote import FakeRemote

from tasks import drift, preflight
from tasks.commands import drift as d
from tasks.config import Settings, validate
from tasks.context import Run
from tasks.migrations import Migration
from tasks.remote import DeployError


def _settings() -> Settings:
    s, problems = validate(
        {"deploy_env": "t", "app_repo_url": "git://h/r.git", "db_host": "db1"}, {"DB_PASSWORD": "x"}
    )
    assert not problems, problems
    return s


S = _settings()

DUMP = """--
-- PostgreSQL database dump
--
\\restrict AbC123

SET statement_timeout = 0;
SELECT pg_catalog.set_config('search_path', '', false);

--
-- Name: metrics; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.metrics (
    id bigint NOT NULL,
    type text NOT NULL,
    value double precision
);

--
-- Name: metrics id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.metrics ALTER COLUMN id SET DEFAULT nextval('public.metrics_id_seq');

--
-- Name: idx_metrics_type; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX idx_metrics_type ON public.metrics USING btree (type);

\\unrestrict AbC123
"""


def test_the_host_listing_is_valid_shell_and_never_puts_a_value_on_a_command_line():
    script = d.host_state_script(S)
    assert subprocess.run(["sh", "-n"], input=script, text=True).returncode == 0
    assert "printf '%s' \"$line\" | sha256sum" in script  # a builtin feeds sha256sum's stdin
    assert "docker inspect" in script  # redis_mode container
    assert "docker" not in d.host_state_script(replace(S, redis_mode="external"))


def test_the_listing_is_read_back_as_objects():
    out = (
        "sha\t/etc/x/proxy.cfg\tabc\n"
        "env\tDB_PASSWORD\tdeadbeef  -\n"
        "stat\t/etc/x/proxy.cfg\t644 root:root\n"
        "link\t/app/current\t/app/releases/v1\n"
        "releases\t-\tv1 v2 \n"
        "unit-file\tx-proxy.service\tenabled\n"
        "unit\tx@blue.service\trunning\n"
        "a line that is not one\n"
    )
    assert d.parse_host_state(out) == {
        "file /etc/x/proxy.cfg": "abc 644 root:root",
        ".env key DB_PASSWORD": "deadbeef",
        "link /app/current": "/app/releases/v1",
        "releases": "v1 v2",
        "unit-file x-proxy.service": "enabled",
        "unit x@blue.service": "running",
    }


def test_host_differences_name_the_object_and_never_show_an_env_digest():
    expected = {
        "file /app/.env": "a" * 64 + " 600 app:app",
        ".env key DB_PASSWORD": "1111",
        ".env key GONE": "2222",
        "unit x@blue.service": "running",
    }
    found = {
        "file /app/.env": "b" * 64 + " 644 app:app",
        ".env key DB_PASSWORD": "3333",
        ".env key ADDED": "4444",
        "unit x@blue.service": "running",
    }
    lines = [x.line() for x in d.compare_hosts(expected, found)]
    assert lines == [
        ".env key ADDED: expected absent, found present",
        ".env key DB_PASSWORD: expected the recorded value, found another value",
        ".env key GONE: expected present, found absent",
        "file /app/.env: expected sha256 aaaaaaaaaaaa mode 600 app:app, found sha256 "
        "bbbbbbbbbbbb mode 644 app:app",
    ]
    assert not any(digest in " ".join(lines) for digest in ("1111", "2222", "3333", "4444"))
    assert d.compare_hosts(expected, dict(expected)) == []


def test_a_dump_is_cut_at_pg_dumps_headers_without_set_or_restrict_lines():
    objects = d.schema_objects(DUMP)
    assert set(objects) == {
        "TABLE public.metrics",
        "DEFAULT public.metrics id",
        "INDEX public.idx_metrics_type",
    }
    assert objects["INDEX public.idx_metrics_type"] == (
        "CREATE INDEX idx_metrics_type ON public.metrics USING btree (type);"
    )
    assert "restrict" not in json.dumps(objects) and "SET statement" not in json.dumps(objects)
    # a dump of the same schema with another \restrict key is the same schema
    assert d.schema_objects(DUMP.replace("AbC123", "zz9")) == objects


def test_schema_differences_added_missing_and_changed():
    expected = d.schema_objects(DUMP)
    found = dict(expected)
    del found["INDEX public.idx_metrics_type"]
    found["INDEX public.by_hand"] = "CREATE INDEX by_hand ON public.metrics USING btree (value);"
    found["TABLE public.metrics"] = expected["TABLE public.metrics"].replace(
        "value double precision", "value double precision,\nnote text"
    )
    lines = [x.line() for x in d.compare_schemas(expected, found)]
    assert lines == [
        "INDEX public.by_hand: expected absent (no applied migration makes it), found present",
        "INDEX public.idx_metrics_type: expected present (an applied migration makes it), "
        "found absent",
        "TABLE public.metrics: expected as the migrations define it, found added note text",
    ]


def test_the_replay_names_each_script_and_runs_as_the_service_role():
    text = drift._replay_text(S, [("001", "CREATE TABLE a ();"), ("002", "DROP TABLE a;")])
    assert text.splitlines()[0] == f'SET ROLE "{S.db_user}";'
    assert text.index(f"\\echo {drift.REPLAY_MARK}002") > text.index("CREATE TABLE a")


INIT = Migration("001", "init", "CREATE TABLE a ();\n")


def _servers(checksum: str, replay_ok: bool = True) -> tuple[FakeRemote, FakeRemote]:
    """The migration host (history: 001 with CHECKSUM; the serving release has 001_init.sql)
    and the database server (the replay succeeds or fails in 001)."""
    mig = FakeRemote("app1")
    mig.answer("schema_migrations", (True, f"t t\n001|{checksum}\n"))
    mig.answer("ls -1d", (True, "/app/releases/v1/\n/app/releases/v0/\n"))
    mig.answer(r"@@@ migration file", (True, "@@@ migration file 001_init.sql\nCREATE TABLE a ();"))
    mig.answer(r"cd '?/app/releases/v0", (False, "", "no such folder"))  # an older kind of release
    db = FakeRemote("db1")
    mark = f"{drift.REPLAY_MARK}001\n"
    replay = (True, mark) if replay_ok else (False, mark, "ERROR: boom")
    db.answer(r"psql .* -f -", replay)
    db.answer("pg_dump", (True, DUMP))
    return mig, db


def test_an_applied_migration_no_release_holds_with_its_checksum_is_a_difference():
    mig, db = _servers("0" * 64)
    found, _ = drift.schema_drift(mig, db, S)
    assert [x.object for x in found] == ["migration 001"]
    assert found[0].expected == "its script (checksum 000000000000) in a release on app1"
    assert db.ran("DROP DATABASE IF EXISTS")


def test_a_history_that_does_not_replay_names_the_migration_and_the_scratch_database_goes():
    mig, db = _servers(INIT.checksum, replay_ok=False)
    with pytest.raises(DeployError, match="migration 001 failed: ERROR: boom"):
        drift.schema_drift(mig, db, S)
    drops = db.ran("DROP DATABASE IF EXISTS")
    assert len(drops) == 2 and db.commands[-1] == drops[-1]  # before, and after whatever happened


def test_the_junit_report_has_a_failing_case_per_difference():
    hosts = {
        "app1": {"differences": [{"object": "x", "expected": "a", "found": "b"}], "notes": []},
        "app2": {"differences": [], "notes": []},
    }
    suites = ET.fromstring(drift.junit("prod", hosts))
    assert [s.get("failures") for s in suites] == ["1", "0"]
    assert suites[0][0].find("failure").get("message") == "expected a, found b"


@pytest.mark.parametrize(
    ("policy", "accept", "refused"),
    [("warn", "", False), ("fail", "", True), ("fail", "incident 12", False)],
)
def test_pre_flight_refuses_drift_only_under_fail_without_a_reason(
    monkeypatch, policy, accept, refused
):
    diff = d.Difference("INDEX public.x", "absent", "present")
    listed = {"releases": "v1"}
    monkeypatch.setattr(drift, "check", lambda h, s, m: drift.Found([diff], [], listed))
    h, run = FakeRemote("app1"), Run("app1", "t")
    s = replace(S, drift_policy=policy, drift_accept=accept)
    problems, facts = preflight._drift(run, h, s, True)
    assert run.listed == listed  # what a run that then changes nothing records as left
    assert bool(problems) is refused
    assert facts["drift"] == [diff.line()]
    assert facts.get("drift_accepted", "") == accept
    assert bool(h.said) is not refused  # printed as warnings when the deploy goes on


def test_a_replayed_schema_is_kept_and_read_back_while_history_and_versions_stay_the_same():
    header = "-- Dumped from database version 15.14\n-- Dumped by pg_dump version 15.14\n"
    mig, db = _servers(INIT.checksum)
    db.answer("pg_dump", (True, header + DUMP))
    assert drift.schema_drift(mig, db, S) == ([], [])
    kept = next(path for path in db.files if path.startswith(drift.CACHE_DIR))
    assert db.ran("CREATE DATABASE")

    again = FakeRemote("db1", script=list(db.script))
    again.answer(r"cat '?" + kept, (True, db.files[kept]))
    assert drift.schema_drift(mig, again, S) == ([], [])
    assert not again.ran("CREATE DATABASE") and again.ran("DROP DATABASE IF EXISTS")

    upgraded = FakeRemote("db1", script=list(again.script))
    upgraded.answer("pg_dump", (True, header.replace("15.14", "16.4") + DUMP))
    assert drift.schema_drift(mig, upgraded, S) == ([], [])
    assert upgraded.ran("CREATE DATABASE")  # another server version: replayed again


def test_a_check_that_cannot_finish_is_a_difference_of_its_own():
    h = FakeRemote("app1").answer("deployments.jsonl", DeployError("connection lost"))
    found = drift.check(h, S, False)
    assert [x.object for x in found.differences] == ["drift check"]
    assert "connection lost" in found.differences[0].found


def test_a_database_without_history_is_not_compared_and_says_so():
    mig, db = _servers(INIT.checksum)
    mig.answer("schema_migrations", (True, "f t\n"))
    assert drift.schema_drift(mig, db, S) == ([], [drift.NO_HISTORY])
    assert not db.ran("CREATE DATABASE")
