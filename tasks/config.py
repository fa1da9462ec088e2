"""Every variable the deploy reads: type, default, meaning and check, in one schema.

`validate()` reports every problem at once; the inventories call it before pyinfra connects to
any host, and `deploy.py` calls it again with `--data` overrides applied. docs/variables.md's
variables table is generated from `VARIABLES` (`python -m tasks.config`).
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tasks import secrets, windows
from tasks.settings_type import Settings

DURATION = re.compile(r"^\d+(ms|s|m|h)$")
SIZE = re.compile(r"^\d+(kb|mb|gb|KB|MB|GB)$")
NAME = re.compile(r"^[a-z_][a-z0-9_-]*$")
BATCH = re.compile(r"^([1-9]\d*|([1-9]\d?|100)%)$")
GIT_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")
# an HTTP path with its query: nothing a shell, HAProxy's configuration or an ACL reads as a
# separator, a quote or a comment (no space, quote, backslash, `#`, `$`, braces but `{n}`)
URL_PATH = re.compile(r"^/([A-Za-z0-9._~!&()*+,;=:@%/?-]|\{n\})*$")
# an absolute path on a host, as a unit file and HAProxy's configuration hold it literally
# (no `%`, which systemd expands, no space, quote or `#`)
HOST_PATH = re.compile(r"^(/[A-Za-z0-9._+-]+)+$")
# a host name (RFC 1123) or an IPv4 / IPv6 address
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOST = re.compile(rf"^{_LABEL}(\.{_LABEL})*$|^[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*$")
# what the tools that read a value accept: a TCP port; PostgreSQL's largest timeout (INT_MAX
# milliseconds, about 24.8 days); a whole number the service's Go and PostgreSQL read as int32
MAX_PORT = 65535
MAX_DURATION_SECONDS = (2**31 - 1) / 1000
MAX_INT = 2**31 - 1
MAX_SIZE_BYTES = 2**40  # 1 TB: Redis maxmemory and PostgreSQL's memory settings
# printable, nothing HAProxy's double quotes interpret (the maintenance message); fullmatch
MESSAGE = re.compile(r'[^"\\$\x00-\x1f\x7f]{1,200}')
# a Kubernetes name (RFC 1123 label) and an image tag
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
IMAGE_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
# an image repository without tag: [registry[:port]/]path, lowercase components
IMAGE = re.compile(r"^[a-z0-9]+([._-]+[a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-]+[a-z0-9]+)*)*$")
# restore drills: a restore point's name (ours: mdd_<env>_<stamp>) or a time PostgreSQL reads
RESTORE_POINT = re.compile(r"[A-Za-z0-9_.:-]{1,63}")
DRILL_TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d(:\d\d)?([+-]\d\d(:?\d\d)?| UTC)?")
LOOPBACK = ("localhost", "127.0.0.1", "::1")
PREFIXES = (
    "app_",
    "db_",
    "backup_",
    "migrate_",
    "redis_",
    "server_",
    "verify_",
    "loadtest_",
    "monitor_",
    "report_",
    "release_",
    "deploy_",
    "rollback_",
    "rollout_",
    "lb_",
    "lock_",
    "runbook",
    "docker_",
    "helm_",
    "drill_",
    "build_",
    "artifact_",
    "promote_",
    "secrets_",
    "dora_",
    "metrics_",
    "grafana_",
    "otel_",
)
SECRETS = {
    "DB_PASSWORD": "password of the login role (db_login_role, else db_user) on db_host",
    "REDIS_PASSWORD": "password of the Redis endpoint or container (empty: no password)",
    "DB_LOGIN_ROLE": "the role the password opens, kept with it by rotate-db-password "
    "(empty: db_user)",
    "AGE_IDENTITY": "secrets_from age: a file holding the age identity (AGE-SECRET-KEY-1...)",
    "AGE_IDENTITY_KEY": "secrets_from age: the identity itself (a CI secret)",
    "NEW_DB_PASSWORD": "rotate-db-password with secrets_from env or command: the new password",
    "NEW_REDIS_PASSWORD": "rotate-redis-password with secrets_from env or command: the new "
    "password",
    "GRAFANA_TOKEN": "grafana_url: a service account token allowed to write annotations",
    "NOTIFY_WEBHOOK_URL": "Slack-compatible webhook told when a run starts and ends (optional)",
}


@dataclass(frozen=True)
class Var:
    name: str
    default: Any
    doc: str
    # str, int, port, bool, duration, size, path, hostpath, urlpath, host, choice, ref, name,
    # number, rules (a string of rules separated by `;`, or a YAML list of them)
    kind: str = "str"
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    required: bool = False


VARIABLES: list[Var] = [
    # deploy_: the run as a whole
    Var(
        "deploy_env", None, "environment name, used in reports and the lock", "name", required=True
    ),
    Var(
        "deploy_state_dir",
        "/var/lib/monitoring-dashboard-deploy",
        "on each app host: manifests, deployment records, deploy-only secrets (0700)",
        "hostpath",
    ),
    Var(
        "auto_rollback",
        True,
        "roll back by itself when verify, the load test or the "
        "monitoring window fails (migrations are never reverted automatically)",
        "bool",
    ),
    Var(
        "lock_wait",
        0,
        "seconds to wait for the deploy lock while a live run holds it (0: refuse at once; a "
        "stale lock is never waited for)",
        "int",
        minimum=0,
    ),
    Var(
        "deploy_guard_p99_ms",
        250,
        "before each heavy step on what serves (the backup, each migration and index build, "
        "each backfill batch), pause while the serving release's p99 over the last "
        "deploy_guard_window seconds is above this (ms; 0: never pause)",
        "int",
        minimum=0,
    ),
    Var(
        "deploy_guard_over_baseline",
        2,
        "a release already slow before the deploy: pause only above this many times the p99 "
        "it had before the first heavy step, where that is above deploy_guard_p99_ms (0: the "
        "fixed limit only)",
        "number",
        minimum=0,
    ),
    Var(
        "deploy_guard_window",
        "5s",
        "the serving release's requests the guard judges: those of this last window",
        "duration",
    ),
    Var(
        "deploy_guard_max_wait",
        "2m",
        "longest pause before one step; then deploy_guard_on_timeout decides",
        "duration",
    ),
    Var(
        "deploy_guard_on_timeout",
        "continue",
        "continue: the step runs anyway after deploy_guard_max_wait (and the run says so); "
        "stop: the deploy stops before it, the previous release serving",
        "choice",
        choices=("continue", "stop"),
    ),
    Var(
        "deploy_migration_host",
        "",
        "app host that runs backup and migrations (default: the first app host)",
    ),
    Var(
        "deploy_windows",
        "",
        "when a deploy may start, in deploy_timezone: days and hours, `;` between them (or a "
        "YAML list), e.g. `Mon-Thu 09:00-16:00; Fri 09:00-12:00`; empty: any time (rollbacks "
        "and runbooks are always allowed)",
        "rules",
    ),
    Var(
        "deploy_freeze",
        "",
        "days no deploy may start: a day or a range, then the reason, `;` between them (or a "
        "YAML list), e.g. `2026-12-20..2027-01-05 holidays; 2027-03-01 launch`",
        "rules",
    ),
    Var("deploy_timezone", "UTC", "the time zone of deploy_windows and deploy_freeze"),
    Var(
        "deploy_plan",
        "",
        "the id of a plan made by plan.py (plans/<env>-<id>.json): the deploy refuses to start "
        "when what it would do differs from it, and names the difference",
    ),
    Var(
        "deploy_override",
        "",
        "deploy outside the windows or inside a freeze, for this reason (kept in the "
        "deployment record and told in the notification)",
    ),
    # app_: the service and its releases
    Var(
        "app_version",
        "main",
        "git ref to deploy (tag, branch or commit); `--data app_version=REF`",
        "ref",
    ),
    Var("app_repo_url", None, "git URL the app hosts fetch the service from", required=True),
    Var(
        "app_dir",
        "/app/monitoring-dashboard-api",
        "application directory (releases/, current, .env)",
        "hostpath",
    ),
    Var("app_service", "monitoring-dashboard", "systemd unit name", "name"),
    Var("app_user", "monitoring-dashboard", "non-root user the service runs as", "name"),
    Var("app_port", 8080, "port the service listens on", "port"),
    Var(
        "app_log_file",
        "/var/log/monitoring-dashboard/app.log",
        "the service's log file",
        "hostpath",
    ),
    Var("app_keep_releases", 3, "releases kept on each host (current included)", "int", minimum=2),
    Var(
        "app_build",
        "once",
        "once: built on the migration host, every other app host receives the same tarball "
        "(sha256 checked on arrival); each: every app host runs go build (the checklist's way)",
        "choice",
        choices=("once", "each"),
    ),
    Var("app_build_timeout", 600, "seconds allowed for fetch + go build", "int", minimum=10),
    Var(
        "build_host",
        "",
        "where the release is built and packed: empty, the migration host (the checklist's "
        "way; it serves meanwhile); local, this machine (git and go needed here); or a host "
        "of the inventory that gets no deploy (the app hosts receive the tarball)",
    ),
    Var(
        "artifact_dir",
        "artifacts",
        "local folder keeping each release's packed tarball under its sha256 (what "
        "promote_from ships; keep it as a CI artifact between stages)",
        "path",
    ),
    Var(
        "promote_from",
        "",
        "an environment (its deploy_env) whose passed deploys this one takes: a release-"
        "changing deploy ships only a tarball of artifact_dir that a deploy there passed with, "
        "monitoring window included, and builds nothing (empty: build here)",
    ),
    Var(
        "promote_ledger",
        "reports",
        "the folder of promote_from's run reports (its report_dir; in CI, the earlier stage's "
        "kept reports)",
        "path",
    ),
    Var(
        "promote_override",
        "",
        "with promote_from: ship the release's tarball although no deploy there passed with "
        "it, for this reason (kept in the deployment record and told in the notification)",
    ),
    Var("app_health_path", "/api/v1/auth/status", "health check path", "urlpath"),
    Var(
        "app_liveness_path",
        "/api/v1/version",
        "a path that answers while the process does, whatever the database does: the local "
        "proxy's check of each slot, the pods' startup and liveness probes (app_health_path "
        "stays the readiness check)",
        "urlpath",
    ),
    Var(
        "app_health_timeout",
        30,
        "seconds to wait for a healthy answer after a restart",
        "int",
        minimum=1,
    ),
    Var(
        "release_method",
        "systemd",
        "how the release runs: systemd (Option A of the checklist), docker (Option B: an image "
        "built on each app host from the release, one container per instance) or helm "
        "(Option C: the chart in files/helm, from the deploying machine)",
        "choice",
        choices=("systemd", "docker", "helm"),
    ),
    Var(
        "app_image",
        "monitoring-dashboard-api",
        "docker: the image built on each app host, tagged with the release (version-commit)",
        "image",
    ),
    Var(
        "app_container",
        "monitoring-dashboard-api",
        "docker: the container's name (blue_green slots add -blue and -green)",
        "name",
    ),
    Var(
        "docker_network",
        "monitoring-dashboard",
        "docker: the user-defined network on which the service reaches redis-cache by name",
        "name",
    ),
    Var("helm_chart", "files/helm/monitoring-dashboard", "helm: the chart (deploying machine)"),
    Var("helm_release", "monitoring-dashboard", "helm: the Helm release name", "name"),
    Var("helm_namespace", "default", "helm: the Kubernetes namespace", "name"),
    Var(
        "helm_kubeconfig",
        "",
        "helm: the kubeconfig file the deploying machine uses (required with helm)",
    ),
    Var("helm_kube_context", "", "helm: the kubeconfig context (empty: its current one)"),
    Var(
        "helm_image",
        "",
        "helm: the image repository the cluster pulls (required with helm), tagged app_version",
    ),
    Var("helm_replicas", 2, "helm: pods of the Deployment", "int", minimum=1),
    Var("helm_timeout", "5m", "helm: how long helm --wait and the rollout status wait", "duration"),
    Var(
        "release_strategy",
        "blue_green",
        "blue_green: the new release starts beside the old one behind a local proxy on "
        "app_port and takes traffic only once healthy, the old one drains (no failed request); "
        "restart: the checklist's stop/start",
        "choice",
        choices=("blue_green", "restart"),
    ),
    Var("app_blue_port", 8081, "blue_green: loopback port of slot blue", "port"),
    Var("app_green_port", 8082, "blue_green: loopback port of slot green", "port"),
    Var(
        "release_drain_timeout",
        30,
        "blue_green: seconds the old instance may take to finish the requests in flight",
        "int",
        minimum=0,
    ),
    Var(
        "release_warmup_requests",
        20,
        "blue_green: requests of verify_history_path the new instance answers on its own port "
        "once healthy, before it takes traffic (its database pool opened off the traffic's "
        "path; 0: none)",
        "int",
        minimum=0,
    ),
    Var(
        "release_warmup_parallel",
        10,
        "blue_green: how many of those warm-up requests run at once",
        "int",
        minimum=1,
    ),
    # rollout_: batches across the app hosts
    Var(
        "rollout_batch",
        "100%",
        "app hosts switched together after the canary: a count (2) or a share of them (25%)",
        "batch",
    ),
    Var(
        "rollout_canary",
        0,
        "app hosts in the first batch, switched and verified before any other (0: no canary)",
        "int",
        minimum=0,
    ),
    Var(
        "rollout_max_fail",
        0,
        "app hosts that may fail before the rollout stops and the hosts it switched go back",
        "int",
        minimum=0,
    ),
    Var(
        "rollout_analysis",
        True,
        "blue_green: judge the canary against the hosts still on the old release under the "
        "same traffic before any other batch (applies when there is a canary batch and a host "
        "left to compare with)",
        "bool",
    ),
    Var(
        "rollout_analysis_seconds",
        120,
        "seconds the canary takes real traffic beside the baseline before the verdict",
        "int",
        minimum=1,
    ),
    Var(
        "rollout_analysis_alpha",
        0.01,
        "significance level of the canary's tests (latency: Mann-Whitney U; errors: two "
        "proportions); a lower value rejects less",
        "number",
        minimum=0,
    ),
    Var(
        "rollout_analysis_latency_margin_ms",
        5,
        "the canary's median latency may exceed the baseline's by this much and pass",
        "number",
        minimum=0,
    ),
    Var(
        "rollout_analysis_latency_margin_pct",
        10,
        "... or by this share of the baseline's median, whichever is larger",
        "number",
        minimum=0,
    ),
    Var(
        "rollout_analysis_min_requests",
        200,
        "requests each side (canary, baseline) needs in the window for a verdict",
        "int",
        minimum=1,
    ),
    Var(
        "rollout_analysis_inconclusive",
        "fail",
        "what too few requests means: fail (the canary goes back) or pass",
        "choice",
        choices=("fail", "pass"),
    ),
    Var(
        "rollout_analysis_source",
        "log",
        "where the canary's figures come from: log (the balancer's ring, lb_haproxy_ring, or "
        "each host's local proxy) or prometheus (the balancer's HAProxy exporter, queried at "
        "rollout_analysis_prometheus: per-server average times and answers by class)",
        "choice",
        choices=("log", "prometheus"),
    ),
    Var(
        "rollout_analysis_prometheus",
        "",
        "rollout_analysis_source prometheus: the Prometheus that scrapes the lb_servers "
        "HAProxy's exporter (its URL)",
    ),
    # lb_: the load balancer in front of the app hosts
    Var(
        "lb_mode",
        "none",
        "haproxy: drain each host on the lb_servers HAProxy (admin socket); health_check: the "
        "host fails its balancer health check, then waits lb_health_wait (a cloud load "
        "balancer); none: no balancer",
        "choice",
        choices=("none", "haproxy", "health_check"),
    ),
    Var(
        "lb_haproxy_socket",
        "/run/haproxy/admin.sock",
        "haproxy: admin socket on the lb_servers host",
        "hostpath",
    ),
    Var(
        "lb_haproxy_backend",
        "app_servers",
        "haproxy: backend whose servers are named like the app hosts in the inventory",
        "name",
    ),
    Var(
        "lb_haproxy_ring",
        "",
        "haproxy: a ring on the lb_servers HAProxy that logs every request as `%Ts.%ms %ST %Ta "
        "%s` (time, status, total ms, server); the canary analysis reads it (empty: each app "
        "host's local proxy log)",
    ),
    Var(
        "lb_health_wait",
        30,
        "health_check: seconds the balancer needs to notice a health change (interval x "
        "threshold), waited after failing the check and after passing it again",
        "int",
        minimum=0,
    ),
    # db_: PostgreSQL
    Var("db_host", None, "PostgreSQL host", "host", required=True),
    Var("db_port", 5432, "PostgreSQL port", "port"),
    Var("db_name", "monitoring", "database name", "name"),
    Var("db_user", "postgres", "database user (owner of table metrics)", "name"),
    Var(
        "db_login_role",
        "",
        "the role the service and the deploy log in as (empty: db_user); DB_LOGIN_ROLE of "
        "the secrets, which rotate-db-password keeps, sets it",
    ),
    Var(
        "db_sslmode",
        "disable",
        "libpq sslmode",
        "choice",
        choices=("disable", "allow", "prefer", "require", "verify-ca", "verify-full"),
    ),
    Var("db_max_open_conns", 100, "DB_MAX_OPEN_CONNS of the service", "int", minimum=1),
    Var("db_max_idle_conns", 50, "DB_MAX_IDLE_CONNS of the service", "int", minimum=0),
    Var(
        "db_connections_headroom",
        10,
        "max_connections must exceed open conns x app hosts by this much",
        "int",
        minimum=0,
    ),
    # backup_: pg_dump before anything changes
    Var(
        "backup_dir",
        "/var/backups/monitoring-dashboard",
        "where backups are kept (on the migration host)",
        "hostpath",
    ),
    Var(
        "backup_keep",
        5,
        "backups kept (on the migration host and where copies go)",
        "int",
        minimum=1,
    ),
    Var(
        "backup_copy_to",
        "local",
        "where each backup is also copied, checksum checked: local (the deploying machine), "
        "a host of the inventory, or empty for no copy",
    ),
    Var(
        "backup_copy_dir",
        "",
        "folder for the copies (default: backups/<deploy_env> locally, backup_dir on a host)",
    ),
    Var("backup_timeout", 1800, "seconds allowed for pg_dump", "int", minimum=10),
    Var(
        "backup_method",
        "pg_dump",
        "pg_dump: a full dump before each change (the checklist's way); pgbackrest: WAL archived "
        "continuously to backup_repo_host, each deploy's backup a named restore point",
        "choice",
        choices=("pg_dump", "pgbackrest"),
    ),
    Var(
        "backup_repo_host",
        "",
        "pgbackrest: the host of the inventory keeping the repository (not the database "
        "server); the database server is the inventory's host in group db_servers",
    ),
    Var("backup_stanza", "monitoring", "pgbackrest: the stanza (the cluster's name)", "name"),
    Var("backup_repo_path", "/var/lib/pgbackrest", "pgbackrest: the repository folder", "hostpath"),
    Var(
        "backup_pg_data",
        "/var/lib/postgresql/15/main",
        "pgbackrest: the cluster's data directory on the database server",
        "hostpath",
    ),
    Var(
        "backup_pg_version",
        15,
        "pgbackrest: PostgreSQL's major version on the database and repository hosts",
        "int",
        minimum=10,
    ),
    Var(
        "backup_pg_service",
        "postgresql@15-main",
        "pgbackrest: the cluster's systemd unit on the database server",
    ),
    Var(
        "backup_max_age",
        "24h",
        "pgbackrest: pre-flight takes an incremental backup first when the newest is older",
        "duration",
    ),
    Var(
        "backup_retention_full",
        2,
        "pgbackrest: full backups kept (repo1-retention-full; WAL older than the oldest goes)",
        "int",
        minimum=1,
    ),
    Var(
        "backup_archive_timeout",
        60,
        "pgbackrest: seconds after which PostgreSQL archives a WAL segment even when it is "
        "not full (archive_timeout): the most writes a lost database server can take along",
        "int",
        minimum=1,
    ),
    Var(
        "backup_archive_wait",
        120,
        "pgbackrest: seconds the backup phase waits for the restore point's WAL to be archived",
        "int",
        minimum=5,
    ),
    Var(
        "drill_target",
        "latest",
        "restore drills: latest, a time (2026-12-05 10:00:00+00) or a restore point's name",
    ),
    Var("drill_port", 5499, "restore drills: the scratch cluster's port", "port"),
    Var(
        "drill_dir",
        "/var/lib/mdd-drill",
        "restore drills: the scratch cluster's folder on the repository host",
        "hostpath",
    ),
    # drift_: what changed outside the deploy (drift.py, and pre-flight)
    Var(
        "drift_policy",
        "warn",
        "pre-flight compares each app host with its last deployment record and the schema with "
        "the migration history: fail refuses a deploy on any difference, warn only prints them",
        "choice",
        choices=("warn", "fail"),
    ),
    Var(
        "drift_accept",
        "",
        "with drift_policy fail: deploy despite the differences found, for this reason (kept "
        "in the deployment record)",
    ),
    # migrate_: schema migrations
    Var(
        "migrate_dir",
        "internal/infrastructure/persistence/postgres/migrations",
        "migrations folder inside the release",
        "path",
    ),
    Var(
        "migrate_baseline",
        "",
        "for a database migrated by hand: the last migration already "
        "applied (e.g. 002); recorded once, never guessed",
    ),
    Var(
        "migrate_lint",
        "error",
        "squawk on every pending migration before any change: error refuses a statement that "
        "breaks the serving release outside a contract migration, warn only says it",
        "choice",
        choices=("error", "warn", "off"),
    ),
    Var(
        "migrate_probe_path",
        "/api/v1/metrics/history?type=cpu&duration={n}s",
        "after the expand migrations, asked of every host still serving the old release (with "
        "the health check); {n} becomes a number new to each probe, so that no cache answers",
        "urlpath",
    ),
    Var(
        "migrate_backfill_batch",
        10000,
        "rows of the key's range a backfill batch covers (one transaction each)",
        "int",
        minimum=1,
    ),
    Var(
        "migrate_backfill_pause",
        "100ms",
        "wait between two backfill batches, so the service keeps its latency",
        "duration",
    ),
    Var("migrate_lock_timeout", "5s", "lock_timeout for each migration statement", "duration"),
    Var(
        "migrate_lock_retries",
        4,
        "times a migration that met lock_timeout is tried again (what committed stays)",
        "int",
        minimum=0,
    ),
    Var(
        "migrate_lock_backoff",
        "2s",
        "wait before the first retry, doubled each time",
        "duration",
    ),
    Var(
        "migrate_statement_timeout",
        "30m",
        "statement_timeout for each migration statement",
        "duration",
    ),
    Var("migrate_maintenance_work_mem", "256MB", "maintenance_work_mem for index builds", "size"),
    # redis_: the cache
    Var(
        "redis_mode",
        "container",
        "container (Docker on each app host) or external (an endpoint)",
        "choice",
        choices=("container", "external"),
    ),
    Var("redis_enabled", True, "REDIS_ENABLED of the service", "bool"),
    Var("redis_image", "redis:7-alpine", "image of the redis-cache container"),
    Var("redis_container", "redis-cache", "container name", "name"),
    Var(
        "redis_uid",
        999,
        "uid redis-server runs as in redis_image (the official image drops to 999): the "
        "password file copied into the container belongs to it, mode 0400",
        "int",
        minimum=0,
    ),
    Var("redis_bind", "127.0.0.1", "address the container's port is published on", "host"),
    Var("redis_host", "localhost", "REDIS_HOST (the endpoint in external mode)", "host"),
    Var("redis_port", 6379, "REDIS_PORT", "port"),
    Var("redis_tls", False, "external endpoint speaks TLS", "bool"),
    Var("redis_db", 0, "REDIS_DB", "int", minimum=0),
    Var("redis_maxmemory", "1gb", "container --maxmemory", "size"),
    Var(
        "redis_maxmemory_policy",
        "allkeys-lru",
        "container --maxmemory-policy",
        "choice",
        choices=("allkeys-lru", "allkeys-lfu", "volatile-lru", "noeviction"),
    ),
    Var("redis_cache_ttl", "60s", "REDIS_CACHE_TTL", "duration"),
    Var("redis_pool_size", 100, "REDIS_POOL_SIZE", "int", minimum=1),
    Var("redis_min_idle_conns", 20, "REDIS_MIN_IDLE_CONNS", "int", minimum=0),
    Var("redis_dial_timeout", "5s", "REDIS_DIAL_TIMEOUT", "duration"),
    Var("redis_read_timeout", "3s", "REDIS_READ_TIMEOUT", "duration"),
    Var("redis_write_timeout", "3s", "REDIS_WRITE_TIMEOUT", "duration"),
    # server_: HTTP timeouts of the service
    Var("server_read_timeout", "30s", "SERVER_READ_TIMEOUT", "duration"),
    Var("server_write_timeout", "30s", "SERVER_WRITE_TIMEOUT", "duration"),
    Var("server_idle_timeout", "120s", "SERVER_IDLE_TIMEOUT", "duration"),
    # verify_: checklist step 6
    Var(
        "verify_history_path",
        "/api/v1/metrics/history?type=cpu&duration=1h",
        "endpoint timed and cached",
        "urlpath",
    ),
    Var("verify_latency_ms", 500, "history endpoint must answer faster (ms)", "int", minimum=1),
    Var(
        "verify_requests",
        10,
        "requests made to measure latency and the hit ratio",
        "int",
        minimum=2,
    ),
    Var(
        "verify_concurrency",
        8,
        "app hosts timing the history endpoint at once (the fleet shares the database and "
        "Redis: more at once measures their contention, not the release)",
        "int",
        minimum=1,
    ),
    Var("verify_min_hit_ratio", 0.7, "Redis hit ratio over those requests", "number", minimum=0),
    Var(
        "verify_max_db_connections", 100, "connections to db_name must stay under", "int", minimum=1
    ),
    # loadtest_: checklist step 7 (k6)
    Var("loadtest_enabled", True, "run k6 smoke and step tests", "bool"),
    Var("loadtest_base_url", "", "URL k6 targets (default: http://<host>:<app_port>)"),
    Var("loadtest_smoke_rate", 3, "smoke: requests per second", "int", minimum=1),
    Var("loadtest_smoke_duration", "30s", "smoke: length", "duration"),
    Var("loadtest_smoke_p95_ms", 500, "smoke: p95 threshold (ms)", "int", minimum=1),
    Var("loadtest_step_rate", 100, "step: peak requests per second", "int", minimum=1),
    Var("loadtest_step_ramp", "60s", "step: ramp to the peak", "duration"),
    Var("loadtest_step_hold", "60s", "step: time at the peak", "duration"),
    Var("loadtest_step_p95_ms", 800, "step: p95 threshold at the peak (ms)", "int", minimum=1),
    Var("loadtest_max_error_rate", 0.01, "step: error rate threshold", "number", minimum=0),
    # monitor_: checklist step 8
    Var(
        "monitor_duration", 1800, "seconds the monitoring window lasts (0: skip)", "int", minimum=0
    ),
    Var("monitor_interval", 5, "seconds between samples", "int", minimum=1),
    Var(
        "monitor_latency_ms",
        500,
        "a sample slower than this fails the window (ms)",
        "int",
        minimum=1,
    ),
    Var(
        "monitor_max_error_lines",
        0,
        "ERROR lines allowed in the log during the window",
        "int",
        minimum=0,
    ),
    # rollback_: rollback.py
    Var(
        "rollback_mode",
        "quick",
        "quick: switch back to the previous release; full: also revert every applied "
        "migration that release does not have and remove the Redis container the deploy created",
        "choice",
        choices=("quick", "full"),
    ),
    Var(
        "rollback_to",
        "",
        "release to go back to, by ref (v1.9.0) or folder name, if still on the hosts "
        "(default: the one the last deploy replaced)",
        "ref",
    ),
    Var("rollback_disable_redis", False, "also set REDIS_ENABLED=false in .env", "bool"),
    Var(
        "rollback_restore_backup",
        "no",
        "full mode: restore the pre-deploy backup (loses rows written since; only `yes` does it)",
        "choice",
        choices=("no", "yes"),
    ),
    # runbook: runbook.py (the checklist's Common Issues)
    Var(
        "runbook",
        "",
        "runbook.py: which runbook to run",
        "choice",
        choices=(
            "",
            "redis-disable",
            "redis-enable",
            "migration-memory",
            "terminate-idle",
            "reduce-memory",
            "maintenance-on",
            "maintenance-off",
            "reset",
            "backup-setup",
            "restore-drill",
            "restore-latest",
            "rotate-db-password",
            "rotate-redis-password",
        ),
    ),
    Var(
        "runbook_idle_minutes", 5, "terminate-idle: idle for more than (minutes)", "int", minimum=0
    ),
    Var(
        "runbook_max_open_conns",
        0,
        "terminate-idle: also lower DB_MAX_OPEN_CONNS to this (0: leave it)",
        "int",
        minimum=0,
    ),
    Var("runbook_redis_maxmemory", "512mb", "reduce-memory: Redis maxmemory", "size"),
    Var(
        "runbook_maintenance_work_mem",
        "1GB",
        "migration-memory: maintenance_work_mem for the migration role",
        "size",
    ),
    Var(
        "runbook_maintenance_message",
        "monitoring-dashboard is down for maintenance, back shortly",
        "maintenance-on: the body of the 503 every path but the health path answers",
    ),
    Var(
        "runbook_maintenance_retry_after",
        300,
        "maintenance-on: the 503's Retry-After (seconds)",
        "int",
        minimum=1,
    ),
    # secrets_: where DB_PASSWORD and REDIS_PASSWORD come from (tasks/secrets.py)
    Var(
        "secrets_from",
        "env",
        "the environment, an age file in the repository, or a command's KEY=value output",
        "choice",
        choices=("env", "age", "command"),
    ),
    Var(
        "secrets_file",
        "",
        "age: the encrypted file (empty: group_vars/<deploy_env>.secrets.age)",
    ),
    Var("secrets_command", "", "command: prints the secrets, e.g. `pass show monitoring/prod`"),
    Var(
        "secrets_drain_timeout",
        120,
        "rotations: how long to wait for the old password's connections to end (seconds)",
        "int",
        minimum=1,
    ),
    # dora_: releases.py's delivery figures
    Var(
        "dora_window",
        30,
        "releases.py: the days DORA's four keys are computed over",
        "int",
        minimum=1,
    ),
    # metrics_, grafana_: the run where a monitoring team looks (tasks/telemetry.py)
    Var(
        "metrics_pushgateway",
        "",
        "a Pushgateway's URL each run's metrics are pushed to (empty: none)",
    ),
    Var(
        "metrics_proxy_port",
        0,
        "blue_green: each app host's local proxy answers Prometheus on this port at /metrics "
        "(HAProxy's own exporter: the blue and green slots' requests and times); 0: not at all",
        "int",
        minimum=0,
    ),
    Var(
        "metrics_textfile_dir",
        "",
        "on each app host: node_exporter's textfile collector folder, where each run writes "
        "the host's metrics (empty: none)",
    ),
    Var(
        "grafana_url",
        "",
        "Grafana's URL: deploys, rollbacks and canary verdicts annotated (token: GRAFANA_TOKEN)",
    ),
    Var(
        "otel_exporter",
        "",
        "each run as one trace: otlp (OTLP over HTTP, OTEL_EXPORTER_OTLP_ENDPOINT) or "
        "file:<path> (JSON lines); empty: none",
    ),
    # report_: success metrics and the deployment record
    Var("report_dir", "reports", "local folder for JSON reports", "path"),
    Var("report_deployed_by", "", "who deploys (default: user@machine)"),
    Var("report_notes", "", "free text for the deployment record"),
]
BY_NAME = {v.name: v for v in VARIABLES}
PYTHON_TYPES = {"int": int, "port": int, "number": float, "bool": bool}


def seconds(duration: str) -> float:
    """A validated duration (500ms, 5s, 30m, 1h) in seconds."""
    match = re.match(r"^(\d+)(ms|s|m|h)$", duration)
    if not match:
        raise ValueError(f"not a duration: {duration!r}")
    return int(match.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[match.group(2)]


def size_bytes(size: str) -> int:
    """A validated size (512mb, 1GB) in bytes, as Redis and PostgreSQL count them: kb, mb, gb
    are powers of 1024."""
    match = re.match(r"^(\d+)(kb|mb|gb)$", size.lower())
    if not match:
        raise ValueError(f"not a size: {size!r}")
    return int(match.group(1)) * 1024 ** ("kmg".index(match.group(2)[0]) + 1)


def _check_number(var: Var, value: Any) -> str | None:
    """The problem with a whole number, a port, a number or a boolean, or None."""
    kind = var.kind
    if kind in ("int", "port"):
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            return f"must be a whole number, got {value!r}"
        if kind == "port" and not 1 <= value <= MAX_PORT:
            return f"must be a TCP port, 1 to {MAX_PORT}, got {value}"
        if var.minimum is not None and value < var.minimum:
            return f"must be at least {var.minimum:g}, got {value}"
        if value > MAX_INT:
            return f"must be at most {MAX_INT}, got {value}"
    elif kind == "number":
        try:
            number = float(value)
        except (TypeError, ValueError):
            return f"must be a number, got {value!r}"
        if var.minimum is not None and number < var.minimum:
            return f"must be at least {var.minimum:g}, got {value}"
    elif not isinstance(value, bool) and str(value).lower() not in ("true", "false"):
        return f"must be true or false, got {value!r}"
    return None


def _check(var: Var, value: Any) -> str | None:
    """The problem with one value, or None."""
    kind = var.kind
    if kind in ("int", "port", "number", "bool"):
        return _check_number(var, value)
    if kind == "rules":
        items = value if isinstance(value, list) else [value]
        if not all(isinstance(item, str) for item in items):
            return f"must be a string or a list of strings, got {value!r}"
    elif not isinstance(value, str) and kind not in ("duration", "size", "batch"):
        return f"must be a string, got {value!r}"
    elif kind == "duration" and not DURATION.match(str(value)):
        return f"must be a duration like 500ms, 5s, 30m or 1h, got {value!r}"
    elif kind == "duration" and seconds(str(value)) > MAX_DURATION_SECONDS:
        return f"must be at most 24 days (what PostgreSQL's timeouts take), got {value!r}"
    elif kind == "size" and not SIZE.match(str(value)):
        return f"must be a size like 512mb or 1gb, got {value!r}"
    elif kind == "size" and size_bytes(str(value)) > MAX_SIZE_BYTES:
        return f"must be at most 1024gb, got {value!r}"
    elif kind == "choice" and value not in var.choices:
        named = ", ".join(c or "(empty)" for c in var.choices)
        return f"must be one of {named}, got {value!r}"
    elif kind == "urlpath" and not URL_PATH.fullmatch(value):
        return (
            "must be an HTTP path starting with / (letters, digits and ._~!&()*+,;=:@%/?- "
            f"only), got {value!r}"
        )
    elif kind == "hostpath" and not HOST_PATH.fullmatch(value):
        return (
            "must be an absolute path on the host (letters, digits and ._+- between the "
            f"slashes), got {value!r}"
        )
    elif kind == "host" and not HOST.fullmatch(value):
        return f"must be a host name or an IP address, got {value!r}"
    elif kind == "image" and not IMAGE.match(value):
        return f"must be an image repository like registry.example.com/team/app, got {value!r}"
    elif kind == "name" and not NAME.match(value):
        return f"must be a simple name (a-z, 0-9, _ and -), got {value!r}"
    elif kind == "batch" and not BATCH.match(str(value)):
        return f"must be a count like 2 or a share like 25% (1-100%), got {value!r}"
    elif kind == "ref" and value != var.default and (not GIT_REF.match(value) or ".." in value):
        return f"must be a git tag, branch or commit, got {value!r}"
    elif kind == "path" and (not value or "\n" in value or " " in value):
        return f"must be a path without spaces, got {value!r}"
    return None


def _coerce(var: Var, value: Any) -> Any:
    if var.kind == "rules":
        return windows.joined(value)
    if var.kind == "batch":
        return str(value)
    if var.kind in ("int", "port"):
        return int(value)
    if var.kind == "number":
        return float(value)
    if var.kind == "bool":
        return value if isinstance(value, bool) else str(value).lower() == "true"
    return value


def validate(
    data: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
) -> tuple[Any, list[str]]:
    """The Settings, defaults filled in, and every problem found: (Settings, []) when all is
    well, (None, problems) otherwise."""
    environ = os.environ if environ is None else environ
    problems: list[str] = []
    settings: dict[str, Any] = {}
    for var in VARIABLES:
        value = data.get(var.name, var.default)
        if value is None or (var.required and value == ""):
            problems.append(f"{var.name}: required ({var.doc})")
            continue
        problem = _check(var, value)
        if problem:
            problems.append(f"{var.name}: {problem}")
        else:
            settings[var.name] = _coerce(var, value)
    for key in sorted(data):
        if key.startswith(PREFIXES) and key not in BY_NAME:
            close = difflib.get_close_matches(key, BY_NAME, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            problems.append(f"{key}: unknown variable{hint}")
    problems += _relations(settings, environ)
    problems += _secrets(settings, environ)
    if settings.get("release_method") == "helm":
        problems += _helm_problems(settings)
    return (None, problems) if problems else (Settings(**settings), [])


def _relations(settings: dict[str, Any], environ: Mapping[str, str]) -> list[str]:
    """The problems between values each valid on its own (ports that collide, options that
    need each other)."""
    problems: list[str] = []
    if settings.get("db_max_idle_conns", 0) > settings.get("db_max_open_conns", 1 << 30):
        problems.append("db_max_idle_conns: must not exceed db_max_open_conns")
    ports = [settings.get(k) for k in ("app_port", "app_blue_port", "app_green_port")]
    if settings.get("release_strategy") == "blue_green" and None not in ports:
        if len(set(ports)) != 3:
            problems.append(
                "app_port, app_blue_port, app_green_port: must differ from each other (the "
                f"local proxy listens on app_port, the slots on theirs), got {ports[0]}, "
                f"{ports[1]}, {ports[2]}"
            )
    listening = [settings.get("app_port")]
    if settings.get("release_strategy") == "blue_green":
        listening += ports[1:]
    if settings.get("redis_mode") == "container" and settings.get("redis_port") in listening:
        problems.append(
            "redis_port: the redis-cache container publishes it on the app host, where the "
            "service already listens on it (app_port, or a blue_green slot's port)"
        )
    metrics_port = settings.get("metrics_proxy_port") or 0
    if isinstance(metrics_port, int) and (metrics_port > 65535 or metrics_port in listening):
        problems.append(
            "metrics_proxy_port: a free port of the app host (1-65535, not app_port nor a "
            f"blue_green slot's port), or 0 for none; got {metrics_port}"
        )
    if settings.get("lb_mode") == "health_check" and settings.get("release_strategy") == "restart":
        problems.append(
            "lb_mode: health_check needs release_strategy blue_green (its local proxy fails the "
            "balancer's health check while the host drains)"
        )
    message = settings.get("runbook_maintenance_message", "")
    if not MESSAGE.fullmatch(message):
        problems.append(
            'runbook_maintenance_message: 1 to 200 printable characters without ", \\ or $ '
            f"(the local proxy's configuration holds it), got {message!r}"
        )
    if settings.get("runbook", "").startswith("maintenance") and (
        settings.get("release_strategy") == "restart" or settings.get("release_method") == "helm"
    ):
        problems.append(
            "runbook: maintenance mode needs the app hosts' local proxy (release_strategy "
            "blue_green, release_method systemd or docker): it answers the 503"
        )
    if settings.get("runbook", "").startswith("rotate-") and (
        settings.get("release_strategy") == "restart" or settings.get("release_method") == "helm"
    ):
        problems.append(
            "runbook: a password rotation switches each host with the blue/green switch "
            "(release_strategy blue_green, release_method systemd or docker): a restart would "
            "fail requests"
        )
    otel = settings.get("otel_exporter", "")
    if otel and otel != "otlp" and not (otel.startswith("file:") and len(otel) > 5):
        problems.append(f"otel_exporter: otlp or file:<path>, got {otel!r}")
    if settings.get("rollout_analysis_source") == "prometheus" and (
        settings.get("lb_mode") != "haproxy" or not settings.get("rollout_analysis_prometheus")
    ):
        problems.append(
            "rollout_analysis_source: prometheus reads the lb_servers HAProxy's per-server "
            "figures: it needs lb_mode haproxy and rollout_analysis_prometheus (a URL)"
        )
    for name in ("metrics_pushgateway", "grafana_url", "rollout_analysis_prometheus"):
        if settings.get(name) and not str(settings[name]).startswith(("http://", "https://")):
            problems.append(f"{name}: an http:// or https:// URL, got {settings[name]!r}")
    if settings.get("build_host") and settings.get("app_build") == "each":
        problems.append("build_host: names one place to build; app_build each builds on every host")
    if settings.get("backup_method") == "pgbackrest" and not settings.get("backup_repo_host"):
        problems.append(
            "backup_repo_host: backup_method pgbackrest needs the host of the inventory that "
            "keeps the repository"
        )
    target = settings.get("drill_target", "latest")
    if not (DRILL_TIME.fullmatch(target) or RESTORE_POINT.fullmatch(target)):
        problems.append(
            "drill_target: must be latest, a time like 2026-12-05 10:00:00+00 or a restore "
            f"point's name (letters, digits and ._:-), got {target!r}"
        )
    problems += windows.problems(
        settings.get("deploy_windows", ""),
        settings.get("deploy_freeze", ""),
        settings.get("deploy_timezone", "UTC"),
    )
    if settings.get("redis_mode") == "external" and settings.get("redis_host") in LOOPBACK:
        problems.append("redis_host: external mode needs the endpoint's address, not localhost")
    if settings.get("release_method") == "docker" and settings.get("db_host") in LOOPBACK:
        problems.append(
            "db_host: a container cannot reach the app host's localhost; with release_method "
            "docker, name the database by an address the container can reach"
        )
    return problems


def _secrets(settings: dict[str, Any], environ: Mapping[str, str]) -> list[str]:
    """The secrets' problems: where they come from cannot be read, DB_PASSWORD missing, a
    login role that is not db_user's, a rotation without its new value. Sets db_login_role
    from the secrets' DB_LOGIN_ROLE."""
    source, env = settings.get("secrets_from", "env"), settings.get("deploy_env", "")
    if source == "age" and not env and not settings.get("secrets_file"):
        return []  # the file is named after deploy_env, reported as required
    values, problems = secrets.load(
        source, settings.get("secrets_file", ""), settings.get("secrets_command", ""), env, environ
    )
    if problems:
        return problems
    if source == "age":
        path = secrets.file_path(settings.get("secrets_file", ""), env)
        where = f"in {secrets.shown(path)}"
    else:
        where = "in the environment" if source == "env" else "in secrets_command's output"
    if not values.get("DB_PASSWORD"):
        problems.append(f"DB_PASSWORD: required {where} ({SECRETS['DB_PASSWORD']})")
    owner = settings.get("db_user", "")
    role = values.get("DB_LOGIN_ROLE") or settings.get("db_login_role", "")
    if role and role not in login_roles(owner) + (owner,):
        problems.append(
            f"DB_LOGIN_ROLE: {role} is none of {owner}, {', '.join(login_roles(owner))} (the "
            "roles rotate-db-password alternates)"
        )
    elif role:
        settings["db_login_role"] = role
    runbook = settings.get("runbook", "")
    if runbook.startswith("rotate-") and source != "age":
        name = "NEW_DB_PASSWORD" if runbook == "rotate-db-password" else "NEW_REDIS_PASSWORD"
        if not environ.get(name):
            problems.append(
                f"{name}: required for {runbook} with secrets_from {source} (the deploy cannot "
                "write your secret store: give the new value here, store it after the run)"
            )
    return problems


def login_roles(owner: str) -> tuple[str, str]:
    """The two roles the service logs in as in turn, both members of OWNER."""
    return f"{owner}_a", f"{owner}_b"


def _helm_problems(settings: dict[str, Any]) -> list[str]:
    """What release_method helm needs of the other values."""
    problems: list[str] = []
    for name in ("helm_kubeconfig", "helm_image"):
        if not settings.get(name):
            problems.append(f"{name}: required with release_method helm")
    if settings.get("redis_mode") == "container":
        problems.append(
            "redis_mode: the chart runs no Redis; with release_method helm use external and "
            "name the cache's service in redis_host (the checklist's redis.host=redis-cache)"
        )
    release = settings.get("helm_release", "x")  # absent: reported above
    if not DNS_LABEL.match(release) or len(release) > 53:
        problems.append(
            "helm_release: Helm needs a DNS label of at most 53 characters (a-z, 0-9 and -)"
        )
    if not DNS_LABEL.match(settings.get("helm_namespace", "x")):
        problems.append("helm_namespace: Kubernetes needs a DNS label (a-z, 0-9 and -)")
    if not IMAGE_TAG.match(settings.get("app_version", "x")):
        problems.append(
            f"app_version: the chart's image.tag must be an image tag (A-Z, a-z, 0-9, _, . "
            f"and -, at most 128), got {settings.get('app_version')!r}"
        )
    if settings.get("helm_image") and not IMAGE.match(settings["helm_image"]):
        problems.append(f"helm_image: must be an image repository, got {settings['helm_image']!r}")
    return problems


def check_or_exit(
    data: Mapping[str, Any], where: str, exit: Callable[[str], Any] = SystemExit
) -> Any:
    """Validate; on any problem stop with all of them listed, before any host is touched."""
    settings, problems = validate(data)
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        raise exit(
            f"{where}: {len(problems)} problem(s) in the deploy variables, nothing was "
            f"changed:\n{lines}\nSee group_vars/ and docs/variables.md."
        )
    return settings


def settings_module() -> str:
    """tasks/settings_type.py: the Settings class, one typed field per variable (generated, so
    that a type checker sees every field; tests/unit/test_config.py checks it is current)."""
    fields = "\n".join(f"    {v.name}: {PYTHON_TYPES.get(v.kind, str).__name__}" for v in VARIABLES)
    return f'''"""One host's checked settings: one attribute per variable of VARIABLES
(tasks/config.py), typed by its kind (`s.app_port` is an int); frozen, so a phase never
changes what the next one reads (`dataclasses.replace(s, redis_enabled=False)` makes a
variant).

Generated by `.venv/bin/python scripts/settings_type.py`: edit VARIABLES, not this file.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
{fields}
'''


def markdown_table() -> str:
    """The variables table of docs/variables.md."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for var in VARIABLES:
        default = "(required)" if var.required else f"`{var.default}`"
        if var.kind == "choice":
            default += f" ({' / '.join(var.choices)})"
        rows.append(f"| `{var.name}` | {default} | {var.doc} |")
    rows += [f"| `{k}` (environment) | | {v} |" for k, v in SECRETS.items()]
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
