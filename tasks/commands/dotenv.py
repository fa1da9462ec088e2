"""The service's .env: every variable of the checklist's step 4, one per line."""

from __future__ import annotations

from typing import Any

from tasks.commands import postgres
from tasks.config import Settings

ENV_SECRETS = ("DB_PASSWORD", "REDIS_PASSWORD")


def env_values(s: Settings, db_password: str, redis_password: str) -> list[tuple[str, Any]]:
    """The service's environment in the .env's order: (KEY, value), or (comment, None)."""
    redis_host = s.redis_host if s.redis_mode == "external" else "localhost"
    return [
        ("# Managed by monitoring-dashboard-deploy; changes are overwritten.", None),
        ("LISTEN_ADDR", f":{s.app_port}"),
        ("LOG_FILE", s.app_log_file),
        ("# Database", None),
        ("DB_HOST", s.db_host),
        ("DB_PORT", s.db_port),
        ("DB_NAME", s.db_name),
        ("DB_USER", postgres.login_role(s)),
        ("DB_PASSWORD", db_password),
        ("DB_SSLMODE", s.db_sslmode),
        ("# Database Connection Pool", None),
        ("DB_MAX_OPEN_CONNS", s.db_max_open_conns),
        ("DB_MAX_IDLE_CONNS", s.db_max_idle_conns),
        ("# Redis Cache", None),
        ("REDIS_ENABLED", "true" if s.redis_enabled else "false"),
        ("REDIS_HOST", redis_host),
        ("REDIS_PORT", s.redis_port),
        ("REDIS_PASSWORD", redis_password),
        ("REDIS_DB", s.redis_db),
        ("REDIS_CACHE_TTL", s.redis_cache_ttl),
        ("REDIS_POOL_SIZE", s.redis_pool_size),
        ("REDIS_MIN_IDLE_CONNS", s.redis_min_idle_conns),
        ("REDIS_DIAL_TIMEOUT", s.redis_dial_timeout),
        ("REDIS_READ_TIMEOUT", s.redis_read_timeout),
        ("REDIS_WRITE_TIMEOUT", s.redis_write_timeout),
        ("# Server Timeouts", None),
        ("SERVER_READ_TIMEOUT", s.server_read_timeout),
        ("SERVER_WRITE_TIMEOUT", s.server_write_timeout),
        ("SERVER_IDLE_TIMEOUT", s.server_idle_timeout),
    ]


def env_file_content(s: Settings, db_password: str, redis_password: str) -> str:
    """The .env of the checklist's step 4, plus the database connection and the log file."""
    lines = []
    for key, value in env_values(s, db_password, redis_password):
        if value is None:
            lines.append(key)
        else:
            text = str(value)
            if "\n" in text:
                raise ValueError(f"{key} must be one line")
            lines.append(f"{key}={text}")
    return "\n".join(lines) + "\n"
