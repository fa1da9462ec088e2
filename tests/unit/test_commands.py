import hashlib
import json
import os
import subprocess
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tasks.commands import (
    docker,
    dotenv,
    git,
    guard,
    haproxy,
    host_state,
    http,
    k6,
    logs,
    migration_sql,
    postgres,
    rediscli,
    shell,
    units,
)
from tasks.config import validate

S, _ = validate(
    {"deploy_env": "t", "app_repo_url": "git://h/r.git", "db_host": "db1", "db_user": "monitoring"},
    {"DB_PASSWORD": "x"},
)


def test_psql_reads_a_pgpass_file_and_stops_on_errors():
    assert postgres.psql(S, "SELECT 1") == (
        f"{postgres.client_path(postgres.CLIENTS)} "
        "PGPASSFILE=/var/lib/monitoring-dashboard-deploy/pgpass PGSSLMODE=disable "
        "PGCONNECT_TIMEOUT=5 psql -X -q -At -v ON_ERROR_STOP=1 -h db1 -p 5432 -U monitoring "
        "-d monitoring -c 'SELECT 1'"
    )


def test_the_history_is_read_in_one_psql_that_skips_a_missing_table():
    cmd = postgres.history(S)
    assert cmd.startswith(postgres.psql(S, file="-") + " <<'SQL'\n") and cmd.endswith("\nSQL")
    script = cmd.split("\n", 1)[1]
    assert (
        script.index("\\gset")
        < script.index("\\if :has_history")
        < script.index("FROM schema_migrations WHERE reverted_at IS NULL")
        < script.index("\\endif")
    )


def test_psql_runs_each_statement_in_its_own_transaction():
    cmd = postgres.psql(
        S, None, None, "SET lock_timeout = '5s'", "CREATE INDEX CONCURRENTLY i ON t (a)"
    )
    assert cmd.endswith(
        "-c 'SET lock_timeout = '\"'\"'5s'\"'\"'' -c 'CREATE INDEX CONCURRENTLY i ON t (a)'"
    )
    assert postgres.psql(S, file="/x/m.sql").endswith(" -f /x/m.sql")


def test_pgpass_line_escapes_colons_and_backslashes():
    assert postgres.pgpass_line(S, "a:b\\c") == "db1:5432:monitoring:monitoring:a\\:b\\\\c\n"


def test_the_newest_postgresql_client_comes_first_in_path(tmp_path):
    """Run by a real shell: 9.6 sorts after 15 as text, 16 has no psql, and `b` and `m` in the
    environment change nothing."""
    for version in ("9.6", "10", "15", "16"):
        (tmp_path / version / "bin").mkdir(parents=True)
        if version != "16":
            (tmp_path / version / "bin" / "psql").write_text("#!/bin/sh\n")
            (tmp_path / version / "bin" / "psql").chmod(0o755)
    script = f'{postgres.client_path(str(tmp_path))}; echo "$PATH"'
    env = {"PATH": "/usr/bin:/bin", "b": "/elsewhere", "m": "99"}
    done = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True)
    assert done.stdout.strip() == f"{tmp_path}/15/bin:/usr/bin:/bin" and not done.stderr
    none = postgres.client_path(str(tmp_path / "none"))
    done = subprocess.run(["sh", "-c", f'{none}; echo "$PATH"'], env=env, capture_output=True)
    assert done.stdout.strip() == b"/usr/bin:/bin"  # no empty entry: not the current folder


@pytest.mark.parametrize("exit_code", [0, 1, 28])
def test_a_failed_pg_dump_leaves_no_file_and_keeps_its_exit_code(tmp_path, exit_code, monkeypatch):
    """The command as built, run by a real shell against a pg_dump that writes half a dump
    and then fails (as on a full disk)."""
    monkeypatch.setattr(postgres, "CLIENTS", str(tmp_path / "no-clients"))  # the fake runs
    fake = tmp_path / "bin" / "pg_dump"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\nfor a; do f="$a"; done\necho half > "$f"\nexit {exit_code}\n')
    fake.chmod(0o755)
    dest = tmp_path / "backup_1.dump"
    done = subprocess.run(
        ["sh", "-c", postgres.pg_dump(S, str(dest))],
        env={"PATH": f"{fake.parent}:/usr/bin:/bin"},
        check=False,
    )
    assert done.returncode == exit_code
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == (
        ["backup_1.dump"] if exit_code == 0 else []
    )


def test_pg_dump_is_restorable_private_and_atomic():
    cmd = postgres.pg_dump(S, "/b/backup_1.dump")
    assert cmd.startswith("umask 077 && ")
    assert (
        "pg_dump -Fc --no-owner --exclude-table=deploy_lock --exclude-table=schema_migrations "
        "--exclude-table=schema_backfills "
        "-h db1 -p 5432 -U monitoring -d monitoring -f /b/backup_1.dump.partial && "
        "mv /b/backup_1.dump.partial /b/backup_1.dump;" in cmd
    )
    assert postgres.pg_restore_list("/b/x.dump") == "pg_restore --list /b/x.dump | grep -c -v '^;'"
    assert postgres.prune_backups("/b", 5) == (
        "ls -1t /b/backup_*.dump 2>/dev/null | tail -n +6 | xargs -r rm -f --"
    )


def test_redis_container_has_exactly_the_checklists_flags():
    assert rediscli.redis_run(S, "abc", None) == (
        "docker create --name redis-cache --restart unless-stopped -p 127.0.0.1:6379:6379 "
        "--label monitoring-dashboard.spec=abc redis:7-alpine redis-server --maxmemory 1gb "
        "--maxmemory-policy allkeys-lru --save '' --appendonly no >/dev/null && "
        "docker start redis-cache >/dev/null"
    )


def test_redis_password_file_is_copied_in_for_the_images_user_never_on_the_command_line():
    cmd = rediscli.redis_run(S, "abc", "/s/redis-auth.conf")
    assert "redis-server /usr/local/etc/redis/auth.conf --maxmemory" in cmd
    assert (
        " >/dev/null && tar -C /s --owner=999 --group=999 --numeric-owner --mode=0400 "
        "--transform 's|^redis\\-auth\\.conf$|usr/local/etc/redis/auth.conf|' -cf - "
        "redis-auth.conf | docker cp -a - redis-cache:/ && docker start redis-cache" in cmd
    )
    assert "requirepass" not in cmd and " -v " not in cmd


def test_redis_cli_reads_the_password_at_run_time():
    cmd = rediscli.redis_cli(S, "--scan", "--pattern", "metrics:*", host="127.0.0.1", port=6379)
    assert cmd == (
        'a="$(cat /var/lib/monitoring-dashboard-deploy/redis_password 2>/dev/null)";'
        ' [ -z "$a" ] || export REDISCLI_AUTH="$a"; redis-cli --no-auth-warning '
        "-h 127.0.0.1 -p 6379 --scan --pattern 'metrics:*'"
    )


def test_go_build_happens_in_a_partial_folder_renamed_when_done():
    cmd = git.build_release(
        "git://h/r.git", "a" * 40, "/app/repo.git", "/app/releases/v1-aaa", "svc"
    )
    build = "go build -trimpath -buildvcs=false -o bin/monitoring-dashboard-api"
    assert f"{build} ./cmd/monitoring-dashboard-api" in cmd
    assert "CGO_ENABLED=0 GOFLAGS=-mod=vendor GOPROXY=off" in cmd
    assert cmd.endswith("mv -T /app/releases/v1-aaa.partial /app/releases/v1-aaa")
    assert (
        f"git -C /app/repo.git archive {'a' * 40} | tar -x -C /app/releases/v1-aaa.partial" in cmd
    )


def test_restore_replaces_objects_in_one_transaction():
    assert postgres.pg_restore(S, "/b/x.dump").endswith(
        "pg_restore --clean --if-exists --no-owner --single-transaction -h db1 -p 5432 "
        "-U monitoring -d monitoring /b/x.dump"
    )
    assert "ORDER BY id" in postgres.table_fingerprint_sql()


def test_health_wait_is_bounded_and_wants_a_200_with_the_expected_body():
    cmd = http.wait_healthy("http://127.0.0.1:8080/h", '"ok":true', 10)
    assert cmd.startswith("end=$(($(date +%s) + 10)); while :; do ")
    assert '[ "$(date +%s)" -lt "$end" ] || break' in cmd
    assert "curl -s -m 2" in cmd and '(HTTP 200)") echo' in cmd
    assert cmd.endswith("exit 1")


def test_switch_is_an_atomic_rename():
    assert git.switch_current("/a/current", "/a/releases/r") == (
        "ln -sfn /a/releases/r /a/current.new && mv -T /a/current.new /a/current"
    )


def test_prune_keeps_protected_releases():
    assert git.prune_releases("/a/releases", 3, ["new", "old"]) == (
        "cd /a/releases && rm -rf -- *.partial && ls -1t | grep -v -x -F -e new -e old "
        "| tail -n +2 | xargs -r rm -rf --"
    )


@pytest.mark.parametrize(
    "out,ref,commit",
    [
        ("a" * 40 + "\trefs/tags/v1\n" + "b" * 40 + "\trefs/tags/v1^{}\n", "v1", "b" * 40),
        ("c" * 40 + "\trefs/heads/main\n", "main", "c" * 40),
        ("", "d" * 40, "d" * 40),
        ("", "v9", None),
    ],
)
def test_ls_remote_resolution(out, ref, commit):
    assert git.parse_ls_remote(out, ref) == commit


def test_release_id_is_file_safe():
    assert git.release_id("feature/x y", "0123456789abcdef") == "feature_x_y-0123456789ab"


MIGRATION = """-- a comment with CREATE INDEX CONCURRENTLY must in it;
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_a ON metrics (a);

CREATE MATERIALIZED VIEW IF NOT EXISTS mv AS
    SELECT 1;
CREATE UNIQUE INDEX IF NOT EXISTS mv_key ON mv (x);
"""


def test_split_statements_flags_concurrent_index_builds():
    statements = migration_sql.split_statements(MIGRATION)
    assert [s.concurrent for s in statements] == [True, False, False]
    assert statements[0].sql == "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_a ON metrics (a);"
    assert migration_sql.created_objects(MIGRATION) == ["idx_a", "mv", "mv_key"]
    with pytest.raises(ValueError):
        migration_sql.split_statements("SELECT 1")


def test_every_statement_postgresql_refuses_in_a_transaction_is_flagged_concurrent():
    outside = "DROP INDEX CONCURRENTLY IF EXISTS a;\nREINDEX INDEX CONCURRENTLY b;\n"
    inside = "DROP INDEX c;\nREFRESH MATERIALIZED VIEW CONCURRENTLY mv;\n"
    assert [s.concurrent for s in migration_sql.split_statements(outside + inside)] == [
        True,
        True,
        False,
        False,
    ]


def test_migration_script_locks_sets_timeouts_and_keeps_concurrently_out_of_transactions():
    script = migration_sql.migration_script(
        S,
        [
            ("003", "x", "sum", MIGRATION, "DROP INDEX idx_a;\n", "expand"),
            ("004", "y", "s2", "ALTER TABLE t ADD c int;\n", None, "contract"),
        ],
        ["idx_a"],
        "me@here",
    )
    lines = script.splitlines()
    assert lines[1] == "SELECT pg_advisory_lock(hashtext('monitoring-dashboard-migrations'));"
    assert "SET lock_timeout = '5s';" in lines and "SET statement_timeout = '30min';" in lines
    assert "DROP INDEX CONCURRENTLY IF EXISTS idx_a;" in lines
    first = script.index("applying migration 003")
    second = script.index("applying migration 004")
    build = "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_a ON metrics (a);\nBEGIN;\nCREATE MAT"
    assert build in script[first:second]  # the build alone, the view and its index in one
    assert script[first:second].count("BEGIN;") == 1
    assert script[second:].count("BEGIN;") == 1 and "COMMIT;" in script[second:]
    assert "'DROP INDEX idx_a;\n', 'expand')" in script[first:second]  # down script kept
    assert "NULL, 'contract')" in script[second:]
    assert "ADD COLUMN IF NOT EXISTS down_sql" in script  # a history table from before


def test_a_recorded_down_script_with_quotes_stays_one_sql_literal():
    sql = migration_sql.record_migration_sql("005", "n", "sum", "me", 'DROP VIEW "it\'s";\n')
    assert "'DROP VIEW \"it''s\";\n'" in sql
    assert "'me', false, NULL, 'expand')" in migration_sql.record_migration_sql(
        "005", "n", "sum", "me", None
    )


def test_env_file_holds_every_variable_of_step_4():
    text = dotenv.env_file_content(S, "dbpw", "")
    for key in (
        "DB_MAX_OPEN_CONNS=100",
        "DB_MAX_IDLE_CONNS=50",
        "REDIS_ENABLED=true",
        "REDIS_HOST=localhost",
        "REDIS_PORT=6379",
        "REDIS_PASSWORD=",
        "REDIS_DB=0",
        "REDIS_CACHE_TTL=60s",
        "REDIS_POOL_SIZE=100",
        "REDIS_MIN_IDLE_CONNS=20",
        "REDIS_DIAL_TIMEOUT=5s",
        "REDIS_READ_TIMEOUT=3s",
        "REDIS_WRITE_TIMEOUT=3s",
        "SERVER_READ_TIMEOUT=30s",
        "SERVER_WRITE_TIMEOUT=30s",
        "SERVER_IDLE_TIMEOUT=120s",
        "DB_PASSWORD=dbpw",
    ):
        assert key + "\n" in text
    with pytest.raises(ValueError):
        dotenv.env_file_content(S, "two\nlines", "")


def test_k6_runs_with_thresholds_passed_as_variables():
    assert k6.k6_run("s.js", "/t/sum.json", {"MODE": "smoke", "P95_MS": 500}) == [
        "k6",
        "run",
        "--quiet",
        "--no-color",
        "--summary-export=/t/sum.json",
        "-e",
        "MODE=smoke",
        "-e",
        "P95_MS=500",
        "s.js",
    ]


def test_pack_release_names_the_folder_inside_a_tarball_that_does_not_vary():
    cmd = git.pack_release("/app/releases/v2-abc", "/state/v2-abc.tar.gz")
    assert cmd.split(" && ") == [
        "umask 077",
        "epoch=$(stat -c %Y /app/releases/v2-abc/go.mod)",
        "nice -n 19 ionice -c 3 tar -C /app/releases --sort=name --mtime=@$epoch --owner=0 "
        "--group=0 --numeric-owner --mode=go-w -cf /state/v2-abc.tar v2-abc",
        "nice -n 19 ionice -c 3 gzip -n -f /state/v2-abc.tar",
    ]
    with pytest.raises(ValueError):
        git.pack_release("/app/releases/v2-abc", "/state/v2-abc.tar")


def test_unpack_release_checks_the_sha256_before_anything_lands():
    cmd = git.unpack_release("/state/r.tar.gz", "ab" * 32, "/app/releases/r", "svc")
    steps = cmd.split(" && ")
    assert steps[3] == f"echo '{'ab' * 32}  /state/r.tar.gz' | sha256sum -c --quiet"
    assert steps.index(steps[2]) < steps.index("mkdir -p /app/releases/r.partial")
    assert steps[-1] == "mv -T /app/releases/r.partial /app/releases/r"
    assert steps[1:3] == ["tarball=/state/r.tar.gz", "trap 'rm -f \"$tarball\"' EXIT"]


def test_a_failed_build_leaves_no_partial_release(tmp_path):
    """The build command as built, run by a real shell with a `git` that fails (a full disk)."""
    fake = tmp_path / "bin" / "git"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(0o755)
    target = tmp_path / "releases" / "v1-abc"
    (tmp_path / "releases" / "v1-abc.partial").mkdir(parents=True)  # left by a killed run
    cache = tmp_path / "repo.git"
    cache.mkdir()
    done = subprocess.run(
        ["sh", "-c", git.build_release("git://h/r.git", "a" * 40, str(cache), str(target), "svc")],
        env={"PATH": f"{fake.parent}:/usr/bin:/bin"},
        check=False,
    )
    assert done.returncode != 0
    assert list((tmp_path / "releases").iterdir()) == []


def test_the_same_release_built_twice_packs_to_the_same_bytes(tmp_path):
    """The pack command as built, run by a real shell, tar and gzip on two copies of a release
    made at different times (only go.mod, dated by the commit's export, has the same time),
    with other modes; then the second copy unpacked and packed again."""
    digests = []
    for n, mode in enumerate((0o755, 0o775)):
        release = tmp_path / f"place{n}" / "v1-abc"
        (release / "bin").mkdir(parents=True)
        (release / "go.mod").write_text("module x\n")
        os.utime(release / "go.mod", (1_767_225_600, 1_767_225_600))
        binary = release / "bin" / "monitoring-dashboard-api"
        binary.write_bytes(b"\x7fELF same bytes")
        binary.chmod(mode)
        os.utime(binary, (1_000_000 + n * 5000, 1_000_000 + n * 5000))
        tarball = tmp_path / f"place{n}" / "v1-abc.tar.gz"
        subprocess.run(["sh", "-c", git.pack_release(str(release), str(tarball))], check=True)
        digests.append(hashlib.sha256(tarball.read_bytes()).hexdigest())
        time.sleep(1.1)  # gzip would stamp a time of its own
    received = tmp_path / "received"
    received.mkdir()
    subprocess.run(["tar", "-xzf", str(tarball), "-C", str(received)], check=True)
    again = tmp_path / "again.tar.gz"
    subprocess.run(["sh", "-c", git.pack_release(str(received / "v1-abc"), str(again))], check=True)
    digests.append(hashlib.sha256(again.read_bytes()).hexdigest())
    assert len(set(digests)) == 1


def test_haproxy_api_sends_one_line_to_the_admin_socket():
    assert haproxy.haproxy_api(
        "/run/p/admin.sock", "set server slots/blue state maint", "show stat"
    ) == (
        "echo 'set server slots/blue state maint; show stat' | socat -t 5 stdio "
        "UNIX-CONNECT:/run/p/admin.sock"
    )


def test_haproxy_wait_is_bounded_and_knows_what_it_waits_for():
    up = haproxy.haproxy_wait("/s.sock", "slots", "green", "up", 10)
    assert "for i in $(seq 100)" in up and '[ "$status" = UP ]' in up
    drained = haproxy.haproxy_wait("/s.sock", "app_servers", "app2", "drained", 2.5)
    assert "for i in $(seq 25)" in drained and '[ "$cur" = 0 ] && [ "$queued" = 0 ]' in drained
    assert "-v b=app_servers -v s=app2" in drained
    with pytest.raises(ValueError):
        haproxy.haproxy_wait("/s.sock", "b", "s", "down", 1)


def _fake_tools(tmp_path, active_units: list[str], running_containers: list[str]) -> dict:
    """A PATH whose systemctl and docker answer like a host where ACTIVE_UNITS are active and
    RUNNING_CONTAINERS run (and that logs every call to calls.log)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    units, containers = " ".join(active_units), " ".join(running_containers)
    (bin_dir / "systemctl").write_text(
        f'#!/bin/sh\necho "systemctl $*" >> {log}\nfor a; do u="$a"; done\n'
        f'case "$1" in is-active) for x in {units}; do [ "$x" = "$u" ] && '
        '{ [ "$2" = -q ] || echo active; exit 0; }; done; '
        '[ "$2" = -q ] || echo inactive; exit 3;; esac\n'
    )
    (bin_dir / "docker").write_text(
        f'#!/bin/sh\necho "docker $*" >> {log}\nfor a; do c="$a"; done\n'
        f'case "$1" in inspect) for x in {containers}; do [ "$x" = "$c" ] && '
        "{ echo true; exit 0; }; done; exit 1;; esac\n"
    )
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    return {"PATH": f"{bin_dir}:/usr/bin:/bin", "LOG": str(log)}


def test_slot_state_prints_one_line_per_fact_whatever_form_the_slots_run_in(tmp_path):
    (tmp_path / "active").write_text("blue\n")
    (tmp_path / "blue").symlink_to("/app/releases/v2")
    env = _fake_tools(tmp_path, ["a@blue", "a-proxy"], ["c-green"])
    cmd = units.slot_state(
        str(tmp_path / "active"),
        [str(tmp_path / "blue"), str(tmp_path / "green")],
        [("a@blue", "c-blue"), ("a@green", "c-green")],
        "a-proxy",
    )
    done = subprocess.run(["sh", "-c", cmd], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.splitlines() == [
        "blue",
        "/app/releases/v2",
        "",
        "systemd",
        "docker",
        "active",
    ]


def test_an_instance_stops_in_both_forms_and_needs_no_docker(tmp_path):
    env = _fake_tools(tmp_path, [], [])
    done = subprocess.run(
        ["sh", "-c", units.instance_stop("a@blue", "c-blue")], env=env, check=False
    )
    assert done.returncode == 0
    assert Path(env["LOG"]).read_text().splitlines() == [
        "systemctl disable --now a@blue",
        "docker rm -f c-blue",
    ]
    no_docker = {"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin"}
    (tmp_path / "bin" / "docker").unlink()
    assert (
        subprocess.run(
            ["sh", "-c", units.instance_form("u", "c")],
            env=no_docker,
            capture_output=True,
            text=True,
        ).stdout
        == "\n"
    )


def test_a_container_runs_as_the_checklist_says_on_a_network_without_secrets_in_its_flags():
    s = replace(
        S,
        app_port=8080,
        app_log_file="/var/log/md/app.log",
        docker_network="md",
        app_dir="/app/md",
        deploy_state_dir="/var/lib/md",
    )
    cmd = docker.container_run(s, "api-blue", "api:v2-abc", "127.0.0.1:8081", "svc", "redis-cache")
    assert cmd.startswith(docker.container_remove("api-blue") + "; docker run -d --name api-blue ")
    for flag in (
        "--restart unless-stopped",
        "--network md",
        "-p 127.0.0.1:8081:8080",
        "-v /app/md/.env:/run/monitoring-dashboard/.env:ro",
        "-v /var/log/md:/var/log/md",
        "--read-only",
        "--cap-drop ALL",
        "--security-opt no-new-privileges",
        "-e REDIS_HOST=redis-cache",
        '--user "$(id -u svc):$(id -g svc)" api:v2-abc --env-file /run/monitoring-dashboard/.env',
    ):
        assert flag in cmd, flag
    assert "--link" not in cmd and "--env-file /app" not in cmd
    assert "REDIS_HOST" not in docker.container_run(s, "api", "api:v2", "8080", "svc", None)


def test_images_are_pruned_with_their_release_folders(tmp_path):
    releases = tmp_path / "releases"
    (releases / "v2-bbb").mkdir(parents=True)
    env = _fake_tools(tmp_path, [], [])
    (tmp_path / "bin" / "docker").write_text(
        f'#!/bin/sh\necho "docker $*" >> {env["LOG"]}\n'
        '[ "$1" = images ] && printf "v1-aaa\\nv2-bbb\\n"; exit 0\n'
    )
    subprocess.run(["sh", "-c", docker.prune_images("api", str(releases))], env=env, check=True)
    calls = Path(env["LOG"]).read_text().splitlines()
    assert calls[1:] == ["docker rmi api:v1-aaa"]
    no_docker = {"PATH": str(tmp_path / "empty")}
    done = subprocess.run(
        ["/bin/sh", "-c", docker.prune_images("api", str(releases))],
        env=no_docker,
        capture_output=True,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")


def test_the_network_is_created_and_joined_only_when_missing():
    ready = docker.network_ready("md", "redis-cache")
    assert ready.startswith(
        "(docker network inspect md >/dev/null 2>&1 || docker network create md"
    )
    assert "grep -qF '\"md\":' || docker network connect md redis-cache)" in ready
    assert "connect" not in docker.network_ready("md", None)
    assert docker.network_state("md", None) == (
        "if docker network inspect md >/dev/null 2>&1; then echo ready; else echo missing; fi"
    )


def test_an_index_estimate_follows_its_columns_and_rows():
    statement = (
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_c\n    ON metrics (type, recorded_at DESC) "
        "INCLUDE (host, value);"
    )
    assert migration_sql.index_columns(statement) == (
        "metrics",
        ["type", "recorded_at", "host", "value"],
    )
    assert (
        migration_sql.index_columns("CREATE MATERIALIZED VIEW v AS SELECT 1 FROM metrics;") is None
    )
    assert migration_sql.index_estimate_bytes(1_000_000, [26]) == int(1_000_000 * 38 / 0.9)
    sql = migration_sql.index_inputs_sql("metrics", ["type", "host"])
    assert "c.relname = 'metrics'" in sql and "st.attname IN ('type', 'host')" in sql


def test_git_cat_files_reads_a_commit_from_the_cache_or_a_fetch_that_leaves_nothing(tmp_path):
    git_ = ["git", "-c", "user.name=t", "-c", "user.email=t@x"]
    work, origin = tmp_path / "work", tmp_path / "origin.git"
    (work / "db").mkdir(parents=True)
    (work / "db" / "001_a.sql").write_text("CREATE TABLE a (id int);")  # no final newline
    (work / "db" / "notes.txt").write_text("not sql\n")
    subprocess.run([*git_, "init", "-q", "-b", "main", str(work)], check=True)
    subprocess.run([*git_, "-C", str(work), "add", "-A"], check=True)
    subprocess.run([*git_, "-C", str(work), "commit", "-qm", "m"], check=True)
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(origin)], check=True)
    commit = subprocess.run(
        ["git", "-C", str(work), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    cache = tmp_path / "cache.git"
    for label in ("fetched", "cached"):
        cmd = git.git_cat_files(str(origin), str(cache), commit, "db", "@@ ")
        done = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, check=True)
        assert done.stdout == "@@ 001_a.sql\nCREATE TABLE a (id int);\n", label
        assert not cache.exists() or label == "cached"
        if label == "fetched":  # now the cache has the commit (as a build leaves it)
            subprocess.run(["git", "clone", "-q", "--bare", str(origin), str(cache)], check=True)


def test_dropped_objects_names_what_a_migration_drops():
    sql = "DROP INDEX CONCURRENTLY IF EXISTS idx_a;\n-- DROP INDEX b;\nDROP MATERIALIZED VIEW v;\n"
    assert migration_sql.dropped_objects(sql) == ["idx_a", "v"]


def test_an_image_made_from_one_release_in_two_places_is_the_same_image(tmp_path):
    """The image command as built, run by a real shell with a `docker` that keeps what it was
    asked to load: two copies of a release made at different times (only the time of go.mod,
    the commit's, is the same) give the same archive, hence the same image ID, and the image
    holds the binary alone, run as nobody, as FROM scratch with the binary would."""
    fake = tmp_path / "bin" / "docker"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\ncp "$4" "$KEEP"\n')  # docker load -q -i FILE
    fake.chmod(0o755)
    config = docker.image_config({"b": "2", "a": "1"}, "/monitoring-dashboard-api", 8080)
    loaded = []
    for n in range(2):
        release = tmp_path / f"place{n}" / "v1-abc"
        (release / "bin").mkdir(parents=True)
        (release / "go.mod").write_text("module x\n")
        os.utime(release / "go.mod", (1_767_225_600, 1_767_225_600))
        binary = release / "bin" / "monitoring-dashboard-api"
        binary.write_bytes(b"\x7fELF")
        binary.chmod(0o775 if n else 0o755)
        os.utime(binary, (1_000_000 * (n + 2), 1_000_000 * (n + 2)))
        keep = tmp_path / f"image{n}.tar"
        command = docker.image_load(str(release), "bin/monitoring-dashboard-api", "api:v1", config)
        subprocess.run(
            ["sh", "-c", command],
            env={"PATH": f"{fake.parent}:/usr/bin:/bin", "KEEP": str(keep)},
            check=True,
        )
        loaded.append(keep.read_bytes())
    assert loaded[0] == loaded[1]
    with tarfile.open(tmp_path / "image0.tar") as archive:
        manifest = json.load(archive.extractfile("manifest.json"))[0]
        image = json.load(archive.extractfile(manifest["Config"]))
        layer = tarfile.open(fileobj=archive.extractfile(manifest["Layers"][0]))
        assert [(m.name, m.mode, m.uid) for m in layer.getmembers()] == [
            ("monitoring-dashboard-api", 0o755, 0)
        ]
    assert manifest["RepoTags"] == ["api:v1"]
    assert image["created"] == "2026-01-01T00:00:00Z"
    assert image["config"] == {
        "Entrypoint": ["/monitoring-dashboard-api"],
        "ExposedPorts": {"8080/tcp": {}},
        "Labels": {"a": "1", "b": "2"},
        "User": "65534:65534",
    }
    digest = manifest["Layers"][0].split("/")[0]
    assert image["rootfs"]["diff_ids"] == [f"sha256:{digest}"]


def test_a_probe_prints_status_and_seconds_then_the_body(tmp_path):
    curl = tmp_path / "curl"
    curl.write_text(  # writes the body to -o, prints -w's status line
        '#!/bin/sh\nwhile [ $# -gt 1 ]; do case "$1" in -o) out="$2";; esac; shift; done\n'
        'echo \'{"status":"ok"}\' > "$out"; printf "200 0.012\\n"\n'
    )
    curl.chmod(0o755)
    cmd = http.http_probe("http://127.0.0.1:8080/health")
    assert cmd == (
        "curl -s -m 5 -o /tmp/.mdd-probe -w '%{http_code} %{time_total}\\n' "
        "http://127.0.0.1:8080/health; cat /tmp/.mdd-probe 2>/dev/null; rm -f /tmp/.mdd-probe"
    )
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin"}
    done = subprocess.run(["sh", "-c", cmd], env=env, capture_output=True, text=True, check=True)
    assert done.stdout == '200 0.012\n{"status":"ok"}\n'


def test_a_unit_stops_and_is_disabled_whether_it_exists_or_not(tmp_path):
    env = _fake_tools(tmp_path, [], [])
    assert units.unit_stop("a@blue") == "systemctl disable --now a@blue >/dev/null 2>&1"
    done = subprocess.run(["sh", "-c", units.unit_stop("a@blue")], env=env, check=False)
    assert done.returncode == 0
    assert Path(env["LOG"]).read_text() == "systemctl disable --now a@blue\n"


def test_durations_reach_postgres_in_its_own_units():
    assert [postgres.pg_duration(d) for d in ("5s", "500ms", "2m", "1h")] == [
        "5s",
        "500ms",
        "2min",
        "1h",
    ]


def test_history_tables_are_created_if_missing_and_grown_in_place():
    sql = migration_sql.history_table_sql()
    assert sql[0].startswith(
        "CREATE TABLE IF NOT EXISTS schema_backfills (version text PRIMARY KEY"
    )
    assert sql[1].startswith("CREATE TABLE IF NOT EXISTS schema_migrations (version text PRIMARY")
    assert sql[2:] == [
        "ALTER TABLE schema_migrations ADD COLUMN IF NOT EXISTS down_sql text",
        "ALTER TABLE schema_migrations ADD COLUMN IF NOT EXISTS phase text NOT NULL "
        "DEFAULT 'expand'",
    ]


def test_a_backfill_fixes_its_key_range_once_then_reads_its_progress():
    sql = migration_sql.backfill_start_sql("004", "metrics", "id")
    assert sql[:-2] == migration_sql.history_table_sql()
    assert sql[-2:] == [
        "INSERT INTO schema_backfills (version, next_key, end_key) SELECT '004', "
        "coalesce(min(id), 0), coalesce(max(id), -1) + 1 FROM metrics "
        "ON CONFLICT (version) DO NOTHING",
        "SELECT next_key, end_key, rows_done, finished_at IS NOT NULL FROM schema_backfills "
        "WHERE version = '004'",
    ]


def test_a_backfill_batch_runs_only_from_its_recorded_progress_in_one_transaction():
    update = "UPDATE metrics SET x = 1 WHERE id >= :lo AND id < :hi"
    assert migration_sql.backfill_batch_script(S, "004", update) == (
        "\\set ON_ERROR_STOP on\n"
        "SET lock_timeout = '5s';\n"
        "SET statement_timeout = '30min';\n"
        "BEGIN;\n"
        "SELECT next_key = :lo AS at_lo FROM schema_backfills WHERE version = '004' "
        "AND finished_at IS NULL FOR UPDATE \\gset\n"
        "\\if :at_lo\n"
        "WITH batch AS (\n"
        f"{update}\n"
        "RETURNING 1)\n"
        "UPDATE schema_backfills SET next_key = :hi, rows_done = rows_done + "
        "(SELECT count(*) FROM batch), updated_at = now(), finished_at = CASE WHEN :hi >= "
        "end_key THEN now() END WHERE version = '004' RETURNING rows_done;\n"
        "COMMIT;\n"
        "\\else\n"
        "ROLLBACK;\n"
        "\\warn backfill 004: its progress is not at :lo (another run moved it)\n"
        "\\endif\n"
    )


def test_redis_runs_with_the_checklist_flags_and_reads_a_password_only_from_a_file():
    flags = ["--maxmemory", "1gb", "--maxmemory-policy", "allkeys-lru", "--save", ""]
    flags += ["--appendonly", "no"]
    assert rediscli.redis_server_args(S, False) == ["redis-server", *flags]
    assert rediscli.redis_server_args(S, True) == [
        "redis-server",
        rediscli.REDIS_AUTH_IN_CONTAINER,
        *flags,
    ]


def test_the_env_values_follow_the_checklist_order_with_their_comments():
    values = dotenv.env_values(S, "pw", "rp")
    assert values[:6] == [
        ("# Managed by monitoring-dashboard-deploy; changes are overwritten.", None),
        ("LISTEN_ADDR", ":8080"),
        ("LOG_FILE", "/var/log/monitoring-dashboard/app.log"),
        ("# Database", None),
        ("DB_HOST", "db1"),
        ("DB_PORT", 5432),
    ]
    assert ("DB_PASSWORD", "pw") in values and ("REDIS_PASSWORD", "rp") in values


def standin_haproxy_maps(tmp_path):
    """A PATH whose socat answers `show map`, `add map` and `del map` as HAProxy's admin socket
    does, its live map kept in LIVE (one `key value` per line)."""
    live = tmp_path / "live.map"
    live.write_text("")
    socat = tmp_path / "bin" / "socat"
    socat.parent.mkdir()
    socat.write_text(
        f"""#!/bin/sh
read line
echo "$line" | tr ';' '\\n' | while read cmd what file key value; do
  case "$cmd $what" in
    "show map") awk '{{print "0x1", $0}}' {live} ;;
    "add map") echo "$key $value" >> {live} ;;
    "del map") grep -v "^$key " {live} > {live}.t; mv {live}.t {live} ;;
  esac
done
"""
    )
    socat.chmod(0o755)
    return live, {"PATH": f"{socat.parent}:/usr/bin:/bin"}


def test_a_map_flag_is_set_in_the_file_and_live_once_and_removed_once(tmp_path):
    live, env = standin_haproxy_maps(tmp_path)
    map_file = tmp_path / "drain.map"
    map_file.write_text("drain 1\n")

    def flag(on: bool) -> str:
        command = haproxy.map_flag("/run/x.sock", str(map_file), "maintenance", on)
        done = subprocess.run(["sh", "-c", command], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert flag(True) == "changed"
    assert map_file.read_text() == "drain 1\nmaintenance 1\n"
    assert live.read_text() == "maintenance 1\n"
    assert flag(True) == ""  # already so: nothing changes
    live.write_text("")  # a proxy restarted from an older file: live only is missing
    assert flag(True) == "changed" and live.read_text() == "maintenance 1\n"
    assert flag(False) == "changed"
    assert map_file.read_text() == "drain 1\n" and live.read_text() == ""
    assert flag(False) == ""


def test_server_statuses_reads_one_backends_servers_from_show_stat(tmp_path):
    socat = tmp_path / "socat"
    socat.write_text(
        "#!/bin/sh\ncat >/dev/null\n"
        "echo '# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,"
        "eresp,wretr,wredis,status'\n"
        "echo 'api,FRONTEND,,,0,1,4096,9,0,0,0,0,0,,,,,OPEN'\n"
        "echo 'slots,blue,0,0,0,1,,5,0,0,,0,,0,0,0,0,UP'\n"
        "echo 'slots,green,0,0,0,1,,4,0,0,,0,,0,0,0,0,DRAIN'\n"
        "echo 'slots,BACKEND,0,0,0,1,410,9,0,0,0,0,,0,0,0,0,UP'\n"
        "echo 'other,blue,0,0,0,1,,5,0,0,,0,,0,0,0,0,MAINT'\n"
    )
    socat.chmod(0o755)
    done = subprocess.run(
        ["sh", "-c", haproxy.server_statuses("/run/x.sock", "slots")],
        env={"PATH": f"{tmp_path}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout == "blue UP\ngreen DRAIN\n"


def test_in_service_counts_only_up_servers_outside_the_leaving_batch():
    statuses = "app1 UP\napp2 DRAIN\napp3 UP 1/2\napp4 MAINT\napp5 DOWN\n"
    assert haproxy.in_service(statuses, ["app1"]) == ["app3"]
    assert haproxy.in_service(statuses, ["app1", "app3"]) == []
    assert haproxy.in_service("", ["app1"]) == []


@contextmanager
def _local_server(status: Callable[[int], int]) -> Iterator[tuple[str, list[str]]]:
    """An HTTP server on a free loopback port for the block: answers the Nth GET (from 1) with
    STATUS(N); yields its base URL and the paths asked so far."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the stdlib's name
            seen.append(self.path)
            self.send_response(status(len(seen)))
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", seen
    finally:
        server.shutdown()


def test_warm_up_sends_its_requests_in_parallel_and_reports_what_answered(tmp_path):
    with _local_server(lambda n: 200 if n % 4 else 500) as (base, seen):
        url = f"{base}/api/v1/metrics/history?type=cpu"
        cmd = http.warm_up(url, 8, 4)
        assert "--parallel-max 4" in cmd and cmd.count(url) == 8
        done = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("6 of 8 answered 200, slowest ")
    assert seen == ["/api/v1/metrics/history?type=cpu"] * 8


def test_timed_gets_prints_a_status_and_seconds_line_per_request(tmp_path):
    with _local_server(lambda n: 200 if n != 2 else 503) as (base, seen):
        url = f"{base}/api/v1/metrics/history?type=cpu"
        done = subprocess.run(
            ["sh", "-c", http.timed_gets(url, 3)], capture_output=True, text=True, timeout=30
        )
    closed = subprocess.run(
        ["sh", "-c", http.timed_gets("http://127.0.0.1:1/", 1, timeout=2)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    lines = [line.split() for line in done.stdout.splitlines()]
    assert [code for code, _ in lines] == ["200", "503", "200"]
    assert all(0 < float(seconds) < 5 for _, seconds in lines)
    assert seen == ["/api/v1/metrics/history?type=cpu"] * 3
    assert closed.stdout.split()[0] == "000"


def test_missing_tools_names_those_not_on_the_path(tmp_path):
    (tmp_path / "git").write_text("#!/bin/sh\n")
    (tmp_path / "git").chmod(0o755)
    cmd = shell.missing_tools(["git", "go", "psql"])
    done = subprocess.run(
        ["/bin/sh", "-c", cmd], env={"PATH": str(tmp_path)}, capture_output=True, text=True
    )
    assert done.returncode == 0
    assert done.stdout.split() == ["go", "psql"]


def _guard(sample: str, stop: bool, max_wait: float = 1) -> tuple[str, str, float]:
    cmd = guard.wait_for_p99(sample, 500, max_wait, 20, stop, "migration 003, CREATE INDEX x")
    started = time.monotonic()
    done = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip(), done.stderr.strip(), time.monotonic() - started


def test_the_guard_goes_on_at_once_while_the_p99_is_under_its_limit():
    out, err, took = _guard("seq 1 100", stop=True)  # p99 99 ms of 100 requests
    assert (out, err) == (
        "t",
        "guard: ok p99=99 requests=100 waited=0 before migration 003, CREATE INDEX x",
    )
    assert took < 1


def test_the_guard_waits_while_the_p99_is_over_then_stops_or_goes_on_as_told():
    out, err, took = _guard("seq 1 1000", stop=True, max_wait=2)  # p99 990 ms
    assert out == "f" and err.startswith("guard: over p99=990 requests=1000 waited=2 ")
    assert took >= 2
    out, err, _ = _guard("seq 1 1000", stop=False, max_wait=1)
    assert out == "t" and err.startswith("guard: over p99=990 ")


def test_the_guard_lets_a_step_through_when_too_few_requests_came_to_judge():
    out, err, _ = _guard("seq 1000 1010", stop=True)  # 11 slow requests: fewer than 20
    assert out == "t" and err.startswith("guard: ok p99=- requests=11 waited=0")


def test_the_guard_waits_until_the_latency_recovers(tmp_path):
    """The sample is slow the first two times it is read, then fast."""
    count = tmp_path / "n"
    sample = (
        f"n=$(cat {count} 2>/dev/null || echo 0); echo $((n + 1)) > {count}; "
        'if [ "$n" -lt 2 ]; then seq 1000 1100; else seq 1 100; fi'
    )
    out, err, took = _guard(sample, stop=True, max_wait=30)
    assert out == "t" and err.startswith("guard: ok p99=99 requests=100 waited=")
    assert 1.5 < took < 10 and count.read_text().strip() == "3"


def test_the_guard_reads_the_total_milliseconds_from_the_proxys_ring(tmp_path):
    now = time.time()
    socat = tmp_path / "socat"
    socat.write_text(
        "#!/bin/sh\ncat >/dev/null\n"
        + "".join(f"echo '{now - age:.3f} 200 {ms}'\n" for age, ms in ((100, 7), (2, 12), (1, 3)))
    )
    socat.chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin"}
    cmd = guard.ring_latencies("/run/p/admin.sock", "access", 5)
    done = subprocess.run(["sh", "-c", cmd], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["12", "3"]
    missing = subprocess.run(
        ["sh", "-c", cmd], capture_output=True, text=True, env={"PATH": "/bin"}
    )
    assert (missing.returncode, missing.stdout, missing.stderr) == (0, "", "")


def test_the_guards_probes_print_answers_and_timeouts_but_not_a_refused_connection():
    with _local_server(lambda n: 200) as (base, _):
        answered = subprocess.run(
            ["sh", "-c", guard.probe_latencies(f"{base}/api/v1/metrics/history", 3, 2)],
            capture_output=True,
            text=True,
        )
    refused = subprocess.run(
        ["sh", "-c", guard.probe_latencies("http://127.0.0.1:1/", 2, 2)],
        capture_output=True,
        text=True,
    )
    assert len(answered.stdout.split()) == 3
    assert all(0 < float(ms) < 2000 for ms in answered.stdout.split())
    assert refused.stdout == ""


def test_a_guarded_migration_waits_before_each_index_build_and_each_transaction():
    sql = (
        "CREATE INDEX CONCURRENTLY a ON metrics (x);\n"
        "CREATE INDEX CONCURRENTLY b ON metrics (y);\n"
        "CREATE MATERIALIZED VIEW v AS SELECT 1;\n"
    )
    script = migration_sql.migration_script(
        S, [("003", "idx", "c", sql, None, "expand")], [], "me", lambda before: f"G {before!r}"
    )
    lines = script.splitlines()
    guarded = [lines[i + 5] for i, line in enumerate(lines) if line.startswith("\\set guard_go")]
    assert guarded == [
        "CREATE INDEX CONCURRENTLY a ON metrics (x);",
        "CREATE INDEX CONCURRENTLY b ON metrics (y);",
        "BEGIN;",
    ]
    first = lines.index(
        "\\set guard_go `G 'migration 003, CREATE INDEX CONCURRENTLY a ON metrics (x)'`"
    )
    assert lines[first + 1 : first + 3] == ["\\if :guard_go", "\\else"]
    assert lines[first + 3].startswith("DO $$BEGIN RAISE EXCEPTION 'deploy guard: stopped before")
    assert lines[first + 4] == "\\endif"
    unguarded = migration_sql.migration_script(
        S, [("003", "idx", "c", sql, None, "expand")], [], "me"
    )
    assert "guard" not in unguarded
    batch = migration_sql.backfill_batch_script(S, "004", "UPDATE t SET a = 1", lambda b: "G")
    assert batch.splitlines()[1] == "\\set guard_go `G`"


def test_recent_events_keeps_the_lines_of_the_hosts_last_seconds(tmp_path):
    """A stand-in socat prints a ring with events 100 s, 20 s and 1 s old."""
    now = time.time()
    socat = tmp_path / "socat"
    socat.write_text(
        "#!/bin/sh\ncat >/dev/null\n"
        + "".join(f"echo '{now - age:.3f} 200 {age}'\n" for age in (100, 20, 1))
        + "echo\n"
    )
    socat.chmod(0o755)
    cmd = haproxy.recent_events("/run/p/admin.sock", "access", 30)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin"}
    done = subprocess.run(["sh", "-c", cmd], env=env, capture_output=True, text=True, check=True)
    assert [line.split()[2] for line in done.stdout.splitlines()] == ["20", "1"]


def test_a_link_is_read_and_a_missing_one_reads_as_nothing(tmp_path):
    (tmp_path / "current").symlink_to(tmp_path / "releases" / "v2")
    done = subprocess.run(
        ["sh", "-c", shell.read_link(str(tmp_path / "current"))], text=True, capture_output=True
    )
    assert (done.returncode, done.stdout.strip()) == (0, str(tmp_path / "releases" / "v2"))
    missing = subprocess.run(
        ["sh", "-c", shell.read_link(str(tmp_path / "nothing"))], capture_output=True
    )
    assert (missing.returncode, missing.stdout) == (0, b"")


def test_the_manifests_are_listed_newest_first_one_line_each(tmp_path):
    for stamp, version in (("20261201-100000", "v1"), ("20261203-090000", "v2")):
        (tmp_path / f"{stamp}.json").write_text(f'{{\n  "version": "{version}"\n}}\n')
    (tmp_path / "latest.json").write_text("{}")  # a link name, not a deploy's
    done = subprocess.run(
        ["sh", "-c", host_state.manifests(str(tmp_path))], capture_output=True, text=True
    )
    lines = [line.split("\t") for line in done.stdout.splitlines()]
    assert [(Path(p).name, json.loads(j)["version"]) for p, j in lines] == [
        ("20261203-090000.json", "v2"),
        ("20261201-100000.json", "v1"),
    ]


def test_the_log_is_read_from_an_offset_and_since_the_last_start(tmp_path):
    log = tmp_path / "app.log"
    log.write_text(
        "Starting monitoring-dashboard-api\nERROR old\nStarting monitoring-dashboard-api\n"
    )
    offset = log.stat().st_size
    with log.open("a") as f:
        f.write("INFO ok\nERROR new\n")

    def run(command: str) -> str:
        return subprocess.run(["sh", "-c", command], capture_output=True, text=True).stdout

    assert run(logs.size(str(log))).strip() == str(log.stat().st_size)
    assert run(logs.size(str(tmp_path / "none"))).strip() == "0"
    assert run(logs.errors_after(str(log), offset)).splitlines() == ["ERROR new"]
    assert run(logs.since_start(str(log))).splitlines() == [
        "Starting monitoring-dashboard-api",
        "INFO ok",
        "ERROR new",
    ]
