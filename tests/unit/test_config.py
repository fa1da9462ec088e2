from pathlib import Path

import pytest
import yaml

from tasks import config

ROOT = Path(config.__file__).resolve().parents[1]

BASE = {"deploy_env": "t", "app_repo_url": "git://x/r.git", "db_host": "db"}
ENV = {"DB_PASSWORD": "pw"}


def test_defaults_follow_the_checklist():
    s, problems = config.validate(BASE, ENV)
    assert problems == []
    assert s.app_dir == "/app/monitoring-dashboard-api"
    assert s.app_service == "monitoring-dashboard"
    assert s.app_port == 8080
    assert s.app_log_file == "/var/log/monitoring-dashboard/app.log"
    assert (s.redis_container, s.redis_maxmemory, s.redis_maxmemory_policy) == (
        "redis-cache",
        "1gb",
        "allkeys-lru",
    )
    assert (s.db_max_open_conns, s.db_max_idle_conns) == (100, 50)
    assert s.db_name == "monitoring"


def test_every_problem_is_reported_at_once():
    data = {
        "app_port": "abc",
        "redis_mode": "cluster",
        "redis_maxmemroy": "1gb",
        "migrate_lock_timeout": 5,
        "backup_keep": 0,
        "app_version": "a..b",
    }
    _, problems = config.validate(data, {})
    text = "\n".join(problems)
    for expected in (
        "deploy_env: required",
        "app_repo_url: required",
        "db_host: required",
        "app_port: must be a whole number, got 'abc'",
        "redis_mode: must be one of container, external, got 'cluster'",
        "redis_maxmemroy: unknown variable (did you mean redis_maxmemory?)",
        "migrate_lock_timeout: must be a duration",
        "backup_keep: must be at least 1, got 0",
        "app_version: must be a git tag, branch or commit",
        "DB_PASSWORD: required",
    ):
        assert expected in text
    assert len(problems) == 10


def test_values_are_coerced_to_their_types():
    s, problems = config.validate(
        {**BASE, "app_port": "9090", "redis_enabled": "false", "verify_min_hit_ratio": "0.5"}, ENV
    )
    assert problems == []
    assert (s.app_port, s.redis_enabled, s.verify_min_hit_ratio) == (9090, False, 0.5)


def test_cross_field_checks():
    _, problems = config.validate({**BASE, "db_max_idle_conns": 200}, ENV)
    assert problems == ["db_max_idle_conns: must not exceed db_max_open_conns"]
    _, problems = config.validate({**BASE, "redis_mode": "external"}, ENV)
    assert problems == ["redis_host: external mode needs the endpoint's address, not localhost"]


def test_keys_without_a_phase_prefix_are_left_alone():
    _, problems = config.validate({**BASE, "ssh_hostname": "x", "anything": 1}, ENV)
    assert problems == []


def test_check_or_exit_lists_problems_and_says_nothing_changed():
    with pytest.raises(SystemExit) as exc:
        config.check_or_exit({"app_port": "x"}, "here")
    assert "nothing was changed" in str(exc.value) and "  - app_port" in str(exc.value)


def test_seconds():
    assert config.seconds("500ms") == 0.5
    assert config.seconds("30m") == 1800
    with pytest.raises(ValueError):
        config.seconds("soon")


def test_the_variables_page_lists_every_variable():
    text = (ROOT / "docs" / "variables.md").read_text()
    assert config.markdown_table() in text


def test_all_yml_states_the_schemas_defaults_and_nothing_else():
    """group_vars/all.yml documents defaults; docs/variables.md's table (from the schema) must
    agree."""
    stated = yaml.safe_load((ROOT / "group_vars" / "all.yml").read_text())
    assert {k: v for k, v in stated.items() if config.BY_NAME[k].default != v} == {}


@pytest.mark.parametrize(
    "message, ok",
    [
        ("back at noon (we're upgrading)", True),
        ('say "hi"', False),
        ("costs $HOME", False),
        ("a\\b", False),
        ("two\nlines", False),
        ("", False),
        ("x" * 201, False),
    ],
)
def test_the_maintenance_message_is_one_the_proxy_configuration_holds_literally(message, ok):
    _, problems = config.validate({**BASE, "runbook_maintenance_message": message}, environ=ENV)
    assert bool(problems) != ok, problems


def test_maintenance_needs_the_local_proxy():
    data = {**BASE, "runbook": "maintenance-on", "release_strategy": "restart"}
    _, problems = config.validate(data, environ=ENV)
    assert problems == [
        "runbook: maintenance mode needs the app hosts' local proxy (release_strategy "
        "blue_green, release_method systemd or docker): it answers the 503"
    ]


@pytest.mark.parametrize(
    "data, problem",
    [
        ({"app_port": 99999}, "app_port: must be a TCP port, 1 to 65535, got 99999"),
        ({"app_port": "0"}, "app_port: must be a TCP port, 1 to 65535, got 0"),
        ({"db_port": 70000}, "db_port: must be a TCP port"),
        ({"app_port": 8081}, "app_port, app_blue_port, app_green_port: must differ"),
        ({"redis_port": 8082}, "redis_port: the redis-cache container publishes it"),
        ({"app_health_timeout": 2**31}, "app_health_timeout: must be at most 2147483647"),
        ({"redis_cache_ttl": "600h"}, "redis_cache_ttl: must be at most 24 days"),
        ({"redis_maxmemory": "2048gb"}, "redis_maxmemory: must be at most 1024gb"),
        ({"app_health_path": "/a b"}, "app_health_path: must be an HTTP path"),
        ({"app_liveness_path": "/x#y"}, "app_liveness_path: must be an HTTP path"),
        ({"verify_history_path": "history"}, "verify_history_path: must be an HTTP path"),
        ({"db_host": "db;reboot"}, "db_host: must be a host name or an IP address"),
        ({"db_host": "db1\n"}, "db_host: must be a host name or an IP address"),
        ({"app_dir": "/app\n"}, "app_dir: must be an absolute path on the host"),
        ({"app_dir": "app"}, "app_dir: must be an absolute path on the host"),
        ({"app_log_file": "/var/log/%i.log"}, "app_log_file: must be an absolute path"),
        ({"app_health_path": "/health\n"}, "app_health_path: must be an HTTP path"),
        ({"redis_host": "a b"}, "redis_host: must be a host name or an IP address"),
        ({"runbook": "nope"}, "runbook: must be one of (empty), redis-disable, redis-enable"),
    ],
)
def test_a_value_the_tools_would_refuse_is_refused_here(data, problem):
    s, problems = config.validate({**BASE, **data}, ENV)
    assert s is None and any(p.startswith(problem) for p in problems), problems


@pytest.mark.parametrize(
    "data",
    [
        {"app_port": 80, "redis_port": 8080, "release_strategy": "restart", "app_blue_port": 6379},
        {"app_port": "65535", "db_port": 1},
        {"db_host": "10.0.0.5"},
        {"db_host": "::1", "redis_mode": "external", "redis_host": "cache.example.com"},
        {"migrate_probe_path": "/api/v1/metrics/history?type=cpu&duration={n}s"},
        {"migrate_statement_timeout": "24h", "redis_maxmemory": "1024gb"},
    ],
)
def test_values_the_tools_take_are_accepted(data):
    assert config.validate({**BASE, **data}, ENV)[1] == []


def test_the_settings_class_has_one_typed_field_per_variable():
    """tasks/settings_type.py is generated from VARIABLES (scripts/settings_type.py): a variable
    added without regenerating it fails here."""
    assert (ROOT / "tasks" / "settings_type.py").read_text() == config.settings_module()
    fields = config.Settings.__dataclass_fields__
    assert list(fields) == [v.name for v in config.VARIABLES]
    assert fields["app_port"].type is int and fields["redis_enabled"].type is bool
