"""The pure parts of the password rotations (tasks/rotation.py): which role is next, the SQL,
the SCRAM verifier libpq computes, Redis's password hashes, what the operator is told."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import replace

import pytest

from tasks import config, rotation

S, _ = config.validate(
    {"deploy_env": "t", "app_repo_url": "git://x/r.git", "db_host": "db", "db_user": "mon"},
    {"DB_PASSWORD": "pw"},
)


@pytest.mark.parametrize(
    "serving, idle", [("mon", "mon_a"), ("mon_a", "mon_b"), ("mon_b", "mon_a")]
)
def test_the_idle_role_alternates(serving, idle):
    assert rotation.idle_role("mon", serving) == idle


def test_the_login_roles_are_made_once_as_members_acting_as_the_owner():
    sql = rotation.setup_sql("mon")
    for role in ("mon_a", "mon_b"):
        assert f"rolname = '{role}') THEN CREATE ROLE \"{role}\" NOLOGIN" in sql
        assert f'GRANT "mon" TO "{role}"; ALTER ROLE "{role}" SET role = \'mon\';' in sql
    assert rotation.can_login_sql("mon") == (
        "SELECT rolname FROM pg_roles WHERE rolname IN ('mon', 'mon_a', 'mon_b') AND "
        "rolcanlogin ORDER BY 1"
    )
    assert "usename IN ('mon_a') AND pid <> pg_backend_pid()" in rotation.sessions_sql(["mon_a"])


def test_the_verifier_is_scram_of_the_password_and_never_the_password():
    verifier = rotation.scram_verifier("n3w-Password", "mon_a")
    assert "n3w-Password" not in verifier
    method, _, rest = verifier.partition("$")
    iterations_salt, _, keys = rest.partition("$")
    iterations, salt = iterations_salt.split(":")
    stored_key, server_key = keys.split(":")
    assert method == "SCRAM-SHA-256"
    salted = hashlib.pbkdf2_hmac("sha256", b"n3w-Password", base64.b64decode(salt), int(iterations))
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    assert base64.b64decode(stored_key) == hashlib.sha256(client_key).digest()
    assert base64.b64decode(server_key) == hmac.new(salted, b"Server Key", "sha256").digest()


def test_redis_passwords_are_read_from_acl_getuser():
    out = "flags\non\npasswords\nabc\ndef\ncommands\n+@all\nkeys\n~*\n"
    assert rotation.redis_passwords(out) == ["abc", "def"]
    assert rotation.redis_passwords("flags\non\nnopass\npasswords\n\ncommands\n+@all\n") == []
    assert rotation.redis_hash("x") == hashlib.sha256(b"x").hexdigest()


def test_a_store_the_deploy_cannot_write_is_told_names_never_values(monkeypatch):
    told = rotation._keep(S, {"DB_PASSWORD": "v4lue", "DB_LOGIN_ROLE": "mon_b"})
    assert told == (
        "set DB_PASSWORD to the value of NEW_DB_PASSWORD and DB_LOGIN_ROLE=mon_b in your CI "
        "store now: every later run reads them"
    )
    command = replace(S, secrets_from="command", secrets_command="pass show x")
    assert "the store secrets_command reads" in rotation._keep(command, {"REDIS_PASSWORD": "v"})


def test_the_new_value_is_the_given_one_or_a_fresh_random_one(monkeypatch):
    monkeypatch.delenv("NEW_DB_PASSWORD", raising=False)
    one, two = rotation.new_password("DB_PASSWORD"), rotation.new_password("DB_PASSWORD")
    assert one != two and len(one) >= 32
    monkeypatch.setenv("NEW_DB_PASSWORD", "given")
    assert rotation.new_password("DB_PASSWORD") == "given"


def test_a_rotation_needs_the_blue_green_switch():
    _, problems = config.validate(
        {
            "deploy_env": "t",
            "app_repo_url": "git://x/r.git",
            "db_host": "db",
            "runbook": "rotate-db-password",
            "release_strategy": "restart",
        },
        {"DB_PASSWORD": "pw", "NEW_DB_PASSWORD": "n"},
    )
    assert [p.split(":")[0] for p in problems] == ["runbook"]
