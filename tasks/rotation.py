"""Password rotations that fail no request: `runbook=rotate-db-password` and
`runbook=rotate-redis-password` (runbook.py).

PostgreSQL keeps one password per role, so the service logs in as one of two login roles,
`<db_user>_a` and `<db_user>_b`: members of db_user whose sessions act as db_user (`ALTER ROLE
... SET role`), so what they create belongs to db_user, which keeps owning every object. The
rotation gives the idle role the new password, switches every app host to it (.env and the
deploy's pgpass; the blue/green switch starts the new slot with it while the old one drains),
waits until no session of the old role is left, then takes the old role's password away
(PASSWORD NULL, NOLOGIN). Redis ACL lets its default user hold two passwords: the new one is
added, every host switched, the old one removed.

The new secret is kept where secrets_from keeps secrets before any host switches: the age file
is encrypted again; with env or command the new value comes from NEW_DB_PASSWORD or
NEW_REDIS_PASSWORD, and the run names what to update in the team's store. A run that finds a
rotation unfinished (a second role that can log in, a second Redis password) finishes it:
every host to the secret the store holds, the others retired; it starts no new one. Passwords
never travel on a command line: PostgreSQL is given a SCRAM verifier, Redis a SHA-256.
"""

from __future__ import annotations

import functools
import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import replace
from secrets import token_urlsafe
from typing import Any

from psycopg import pq
from pyinfra import host
from pyinfra.operations import python

from tasks import runbook_steps, secrets
from tasks.commands import dotenv, postgres, rediscli, shell
from tasks.config import Settings, login_roles
from tasks.context import RunContext
from tasks.hosts import inventory_app_hosts, migration_host_name
from tasks.operations import deploy
from tasks.probes import cache_address
from tasks.remote import DeployError
from tasks.settings import secret
from tasks.strategy import Strategy
from tasks.transport import remote, say, sh

RUNBOOKS = {
    "rotate-db-password": "a new database password on the idle login role, every host switched "
    "to it, the old role's password removed",
    "rotate-redis-password": "a second Redis password, every host switched to it, the old one "
    "removed",
}
SECRET_OF = {"rotate-db-password": "DB_PASSWORD", "rotate-redis-password": "REDIS_PASSWORD"}
POLL = 1.0  # seconds between two looks at the old role's sessions


def _step(body: Callable[..., bool]) -> Callable[..., bool]:
    """BODY(host, ctx, s, ...) as an operation's callback: a DeployError fails the host the way
    a failed runbook does, saying where the rotation stands."""

    @functools.wraps(body)
    def callback(state, host, ctx: RunContext, s: Settings, **kwargs: Any) -> bool:
        try:
            return body(host, ctx, s, **kwargs)
        except DeployError as exc:
            return runbook_steps.fail(ctx, host, s, exc, [_where_it_stands(ctx)])

    return callback


def _where_it_stands(ctx: RunContext) -> str:
    decided, switched = ctx.rotation.get("decided"), ctx.rotation.get("switched", {})
    if decided is None:
        return "nothing changed: every host serves with the credential it had"
    hosts = ", ".join(sorted(switched)) or "no host"
    return f"the store holds the new credential; switched: {hosts}; the old one still works"


def setup_sql(owner: str) -> str:
    """The two login roles, created once (NOLOGIN until a rotation gives one a password),
    members of OWNER, their sessions acting as OWNER."""
    o = postgres.sql_ident(owner)
    parts = []
    for role in login_roles(owner):
        r = postgres.sql_ident(role)
        parts.append(
            "DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = "
            f"{postgres.sql_literal(role)}) THEN CREATE ROLE {r} NOLOGIN; END IF; END$$; "
            f"GRANT {o} TO {r}; ALTER ROLE {r} SET role = {postgres.sql_literal(owner)};"
        )
    return " ".join(parts)


def can_login_sql(owner: str) -> str:
    """The roles among OWNER and its login roles that can log in."""
    names = ", ".join(postgres.sql_literal(r) for r in (owner, *login_roles(owner)))
    return f"SELECT rolname FROM pg_roles WHERE rolname IN ({names}) AND rolcanlogin ORDER BY 1"


def sessions_sql(roles: list[str]) -> str:
    """The open sessions of ROLES (other than this one): count, then where they come from."""
    names = ", ".join(postgres.sql_literal(r) for r in roles)
    return (
        "SELECT count(*), coalesce(string_agg(DISTINCT coalesce(host(client_addr), 'local'), "
        f"', '), '') FROM pg_stat_activity WHERE usename IN ({names}) AND pid <> pg_backend_pid()"
    )


def idle_role(owner: str, serving: str) -> str:
    """The login role that takes the next password: the other one (the first when OWNER
    itself still logs in)."""
    first, second = login_roles(owner)
    return second if serving == first else first


def scram_verifier(password: str, role: str) -> str:
    """PASSWORD as PostgreSQL stores it (SCRAM-SHA-256), computed by libpq: what ALTER ROLE
    is given, so the password itself is in no statement, log or process list."""
    conn = pq.PGconn.connect_start(b"")  # never connected: libpq only needs the object
    try:
        return conn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256").decode()
    finally:
        conn.finish()


def redis_hash(password: str) -> str:
    """How Redis ACL names a password: its SHA-256 (`#<hash>` adds it, ACL GETUSER lists it)."""
    return hashlib.sha256(password.encode()).hexdigest()


def redis_passwords(acl_getuser: str) -> list[str]:
    """The password hashes in redis-cli's ACL GETUSER output (one item per line)."""
    lines = [line.strip() for line in acl_getuser.splitlines()]
    if "passwords" not in lines:
        return []
    start = lines.index("passwords") + 1
    end = lines.index("commands") if "commands" in lines else len(lines)
    return [line for line in lines[start:end] if line]


def new_password(name: str) -> str:
    """The rotation's new value: NEW_<NAME> from the environment, else (an age file the run
    writes) a fresh random one."""
    given = os.environ.get(f"NEW_{name}", "")
    return given or token_urlsafe(24)


def _keep(s: Settings, changes: dict[str, str]) -> str:
    """CHANGES kept where secrets_from keeps secrets; what the operator is told."""
    if s.secrets_from == "age":
        path = secrets.file_path(s.secrets_file, s.deploy_env)
        try:
            secrets.update(path, os.environ, changes)
        except secrets.SecretsError as exc:
            raise DeployError(f"the new secret could not be kept: {exc}") from None
        return f"{secrets.shown(path)} encrypted again with the new {', '.join(changes)}"
    store = "your CI store" if s.secrets_from == "env" else "the store secrets_command reads"
    told = [
        f"{k}={v}" if k == "DB_LOGIN_ROLE" else f"{k} to the value of NEW_{k}"
        for k, v in changes.items()
    ]
    return f"set {' and '.join(told)} in {store} now: every later run reads them"


def _is_endpoint(h, s: Settings) -> bool:
    """Whether host H's run talks to the database or the Redis endpoint being rotated: the
    migration host does, and each app host for its own Redis container."""
    if s.runbook == "rotate-redis-password" and s.redis_mode == "container":
        return True
    return h.name == migration_host_name(s)


@_step
def _inspect(host, ctx: RunContext, s: Settings) -> bool:
    """What this endpoint holds now: the roles that can log in, or the Redis passwords."""
    if not _is_endpoint(host, s):
        return True
    if s.runbook == "rotate-db-password":
        ok, _, err = sh(host, postgres.psql(s, setup_sql(s.db_user)), check=False)
        if not ok:
            raise DeployError(
                f"the login roles could not be set up as {postgres.login_role(s)} "
                f"({err.strip()[-300:]}): the role needs CREATEROLE, or a DBA runs once: "
                f"{setup_sql(s.db_user)}"
            )
        ctx.rotation.setdefault("found", {})[host.name] = _can_login(host, s)
    else:
        address, port = cache_address(s)
        _, out, _ = sh(
            host, rediscli.redis_cli(s, "acl", "getuser", "default", host=address, port=port)
        )
        ctx.rotation.setdefault("found", {})[host.name] = redis_passwords(out)
    return True


def _unfinished(ctx: RunContext, s: Settings, current: str) -> bool:
    """Whether an endpoint holds a second credential besides the store's CURRENT."""
    kept = current if s.runbook == "rotate-db-password" else redis_hash(current)
    return any(set(found) - {kept} for found in ctx.rotation["found"].values())


@_step
def _prepare(host, ctx: RunContext, s: Settings, new: str) -> bool:
    """Give the endpoint the new credential (NEW), unless a rotation is unfinished; on the
    migration host, keep it in the store before any host switches."""
    name = SECRET_OF[s.runbook]
    current = postgres.login_role(s) if name == "DB_PASSWORD" else secret(s, name)
    if name == "REDIS_PASSWORD" and not current:
        raise DeployError(
            "REDIS_PASSWORD is empty: Redis has no password to rotate without failing requests "
            "(adding one refuses every client that sends none); set one with a deploy first"
        )
    finishing = _unfinished(ctx, s, current)
    role = idle_role(s.db_user, current) if name == "DB_PASSWORD" else ""
    if finishing:
        role = current if name == "DB_PASSWORD" else ""
        new = secret(s, name)
    elif _is_endpoint(host, s):
        if name == "DB_PASSWORD":
            verifier = postgres.sql_literal(scram_verifier(new, role))
            sql = f"ALTER ROLE {postgres.sql_ident(role)} LOGIN PASSWORD {verifier}"
            sh(host, postgres.psql(s, sql), what=f"giving {role} the new password")
        else:
            address, port = cache_address(s)
            add = rediscli.redis_cli(
                s, "acl", "setuser", "default", f"#{redis_hash(new)}", host=address, port=port
            )
            sh(host, add, what="adding the new Redis password")
    ctx.rotation["decided"] = {"finishing": finishing, "role": role, "password": new}
    if host.name != migration_host_name(s):
        return True
    if finishing:
        say(
            host,
            f"a rotation of {name} is unfinished: finishing it (every host to the "
            "secret the store holds, the other retired); no new rotation in this run",
        )
    else:
        changes = {name: new, **({"DB_LOGIN_ROLE": role} if role else {})}
        say(host, f"{name}: new value on {role or 'the Redis endpoint'}; {_keep(s, changes)}")
    return True


def _switched(s: Settings, decided: dict[str, Any]) -> tuple[Settings, str, str]:
    """(settings, DB_PASSWORD, REDIS_PASSWORD) every host has once switched."""
    if s.runbook == "rotate-db-password":
        return (
            replace(s, db_login_role=decided["role"]),
            decided["password"],
            secret(s, "REDIS_PASSWORD"),
        )
    return s, secret(s, "DB_PASSWORD"), decided["password"]


@_step
def _switch(host, ctx: RunContext, s: Settings, strategy: Strategy) -> bool:
    """This app host's .env and the deploy's password files hold the new credential, and the
    service serves with it (the blue/green switch)."""
    after, db_password, redis_password = _switched(s, ctx.rotation["decided"])
    p = shell.paths(s)
    content = dotenv.env_file_content(after, db_password, redis_password)
    r = remote(host)
    _, now, _ = sh(host, f"sha256sum {shell.q(p['env_file'])} 2>/dev/null || true")
    r.put_text(postgres.pgpass_line(after, db_password), p["pgpass"])
    if after.db_login_role != s.db_login_role:
        ctx.db_login_role = after.db_login_role  # the lock's heartbeat and release follow
    r.put_text(redis_password, p["redis_auth"])
    finishing = ctx.rotation["decided"]["finishing"]
    if now.split()[:1] == [hashlib.sha256(content.encode()).hexdigest()] and not finishing:
        ctx.rotation.setdefault("switched", {})[host.name] = "already"
        say(host, ".env already holds the new credential")
        return True
    # finishing: the run that wrote .env may have died before the service read it
    r.put_text(content, p["env_file"])
    sh(host, f"chown {shell.q(s.app_user)}: {shell.q(p['env_file'])}")
    ctx.rotation.setdefault("switched", {})[host.name] = runbook_steps.restart(host, s, strategy)
    say(host, f".env switched to the new credential; {ctx.rotation['switched'][host.name]}")
    return True


def _can_login(host, s: Settings) -> list[str]:
    """The roles among db_user and its login roles that can log in, read now."""
    _, out, _ = sh(host, postgres.psql(s, can_login_sql(s.db_user)))
    return out.split()


def _retire_roles(host, s: Settings, keep: str) -> list[str]:
    """Wait (secrets_drain_timeout) until no session of a role other than KEEP is left,
    then take their passwords away; the roles retired."""
    roles = [r for r in _can_login(host, s) if r != keep]
    if not roles:
        return []
    deadline = time.monotonic() + s.secrets_drain_timeout
    while True:
        _, out, _ = sh(host, postgres.psql(s, sessions_sql(roles)))
        count, _, clients = out.strip().partition("|")
        if int(count) == 0:
            break
        if time.monotonic() > deadline:
            raise DeployError(
                f"{count} session(s) of {', '.join(roles)} still open after "
                f"{s.secrets_drain_timeout}s (from {clients}): every app host logs in as {keep} "
                "now; find what else uses the old role, then run the runbook again (it finishes)"
            )
        time.sleep(POLL)
    for role in roles:
        sh(host, postgres.psql(s, f"ALTER ROLE {postgres.sql_ident(role)} NOLOGIN PASSWORD NULL"))
    return roles


@_step
def _retire(host, ctx: RunContext, s: Settings) -> bool:
    """Take the old credential away on this endpoint, and record the rotation."""
    decided = ctx.rotation["decided"]
    found: dict[str, Any] = {
        "secret": SECRET_OF[s.runbook],
        "finished_an_earlier_one": decided["finishing"],
    }
    done: list[str] = []
    switched = ctx.rotation.get("switched", {})
    waiting = [h.name for h in inventory_app_hosts() if h.name not in switched]
    if waiting and _is_endpoint(host, s):
        raise DeployError(
            f"{', '.join(waiting)} did not switch (failed, or left out by --limit): the old "
            "credential is kept for them; run the runbook again on every host to finish"
        )
    if _is_endpoint(host, s):
        after, _, _ = _switched(s, decided)
        if s.runbook == "rotate-db-password":
            retired = _retire_roles(host, after, decided["role"])
            found.update(role=decided["role"], retired=retired)
            done.append(
                f"the service logs in as {decided['role']}"
                + (f"; {', '.join(retired)} can no longer log in" if retired else "")
            )
        else:
            address, port = cache_address(s)
            only = rediscli.redis_cli(
                after,
                "acl",
                "setuser",
                "default",
                "resetpass",
                f"#{redis_hash(decided['password'])}",
                host=address,
                port=port,
            )
            sh(host, only, what="removing the old Redis password")
            if s.redis_mode == "container":
                conf = rediscli.requirepass_conf(decided["password"])  # what a restart reads
                remote(host).put_text(conf, shell.paths(s)["redis_conf"])
            done.append("Redis takes only the new password")
    if host.name in switched:
        done.append(f".env switched ({switched[host.name]})")
    runbook_steps.record(ctx, host, s, s.runbook, done, {"rotation": found})
    return True


@deploy("Password rotation")
def rotate(ctx: RunContext, s: Settings, strategy: Strategy) -> None:
    """The rotation of S's runbook, op by op across the hosts: look, prepare (and keep the new
    secret), switch every app host, retire the old credential."""
    ctx.on_failure(host, lambda error: runbook_steps.fail(ctx, host, s, error, None))
    new = ctx.rotation.setdefault("new", new_password(SECRET_OF[s.runbook]))
    python.call(name="Read the credentials the endpoint accepts", function=_inspect, ctx=ctx, s=s)
    python.call(
        name="Ensure the endpoint accepts the new credential and the store keeps it",
        function=_prepare,
        ctx=ctx,
        s=s,
        new=new,
    )
    python.call(
        name="Ensure the service serves with the new credential",
        function=_switch,
        ctx=ctx,
        s=s,
        strategy=strategy,
    )
    python.call(
        name="Ensure the old credential is refused, and record the rotation",
        function=_retire,
        ctx=ctx,
        s=s,
    )
