"""Where secrets come from (tasks/secrets.py): age files read and written with real age
encryption (pyrage), a command's output, and the `edit` command with a scripted $EDITOR."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pyrage import x25519

from tasks import config, secrets
from tasks.commands import dotenv, postgres

BASE = {"deploy_env": "t", "app_repo_url": "git://x/r.git", "db_host": "db", "db_user": "mon"}
VALUE = "s3cret-Value-42"


@pytest.fixture
def store(tmp_path):
    """An age file of DB_PASSWORD and REDIS_PASSWORD, its recipients file and identity."""
    me = x25519.Identity.generate()
    path = tmp_path / "t.secrets.age"
    secrets.recipients_path(path).write_text(f"# ops\n{me.to_public()}\n")
    secrets.encrypt(path, f"DB_PASSWORD={VALUE}\nREDIS_PASSWORD=r-{VALUE}\n")
    return path, {"AGE_IDENTITY_KEY": str(me)}


def _validate(path: Path, environ, **data):
    return config.validate(
        {**BASE, "secrets_from": "age", "secrets_file": str(path), **data}, environ
    )


def test_parse_reads_key_value_lines_and_names_bad_ones_without_their_values():
    values, problems = secrets.parse(
        f"# comment\n\nDB_PASSWORD={VALUE}=x\nnot a line {VALUE}\nDB_PASSWORD=again\n"
        f"API_TOKEN={VALUE}\n",
        "f.age",
    )
    assert values == {"DB_PASSWORD": f"{VALUE}=x"}
    assert problems == [
        "f.age: line 4 is not KEY=value",
        "f.age: DB_PASSWORD is given twice",
        "f.age: API_TOKEN is not a secret the deploy reads (DB_PASSWORD, REDIS_PASSWORD, "
        "DB_LOGIN_ROLE)",
    ]
    assert VALUE not in "".join(problems)


def test_an_age_file_gives_the_secrets(store):
    path, environ = store
    s, problems = _validate(path, environ)
    assert problems == []
    assert secrets.load("age", str(path), "", "t", environ)[0] == {
        "DB_PASSWORD": VALUE,
        "REDIS_PASSWORD": f"r-{VALUE}",
    }
    assert path.read_text().startswith("-----BEGIN AGE ENCRYPTED FILE-----")
    assert VALUE not in path.read_text()


def test_an_identity_file_works_as_the_key_does(store, tmp_path):
    path, environ = store
    key_file = tmp_path / "key.txt"
    key_file.write_text(f"# created: today\n{environ['AGE_IDENTITY_KEY']}\n")
    assert _validate(path, {"AGE_IDENTITY": str(key_file)})[1] == []


def test_the_wrong_identity_is_reported_with_every_other_problem_naming_the_file(store):
    path, _ = store
    other = {"AGE_IDENTITY_KEY": str(x25519.Identity.generate())}
    _, problems = _validate(path, other, app_port="abc")
    assert len(problems) == 2
    assert problems[0].startswith("app_port:")
    assert f"{path}: does not decrypt with the given identity" in problems[1]


@pytest.mark.parametrize(
    "environ, expected",
    [
        ({}, "AGE_IDENTITY or AGE_IDENTITY_KEY: required"),
        ({"AGE_IDENTITY_KEY": "AGE-SECRET-KEY-1NOPE"}, "AGE_IDENTITY_KEY: not an age identity"),
        ({"AGE_IDENTITY": "/nonexistent/key"}, "AGE_IDENTITY (/nonexistent/key): cannot be read"),
    ],
)
def test_a_missing_or_bad_identity_is_named(store, environ, expected):
    path, _ = store
    _, problems = _validate(path, environ)
    assert [p for p in problems if p.startswith(expected)], problems


def test_a_missing_file_and_a_missing_password_are_named(store, tmp_path):
    path, environ = store
    _, problems = _validate(tmp_path / "none.age", environ)
    assert "none.age: missing (create it with `python -m tasks.secrets edit ENV`)" in problems[0]
    secrets.encrypt(path, "REDIS_PASSWORD=x\n")
    _, problems = _validate(path, environ)
    assert problems == [f"DB_PASSWORD: required in {path} ({config.SECRETS['DB_PASSWORD']})"]


def test_the_login_role_comes_with_the_password_and_reaches_pgpass_and_env(store):
    path, environ = store
    secrets.update(path, environ, {"DB_LOGIN_ROLE": "mon_b"})
    s, problems = _validate(path, environ)
    assert problems == []
    assert s.db_login_role == "mon_b"
    assert postgres.pgpass_line(s, "pw") == "db:5432:monitoring:mon_b:pw\n"
    assert "DB_USER=mon_b\n" in dotenv.env_file_content(s, "pw", "")
    secrets.update(path, environ, {"DB_LOGIN_ROLE": "postgres"})
    _, problems = _validate(path, environ)
    assert problems == [
        "DB_LOGIN_ROLE: postgres is none of mon, mon_a, mon_b (the roles rotate-db-password "
        "alternates)"
    ]


def test_a_command_gives_the_secrets_and_its_failure_is_named():
    printed = f"printf 'DB_PASSWORD={VALUE}\\n'"
    s, problems = config.validate(
        {**BASE, "secrets_from": "command", "secrets_command": printed}, {}
    )
    assert problems == []
    _, problems = config.validate(
        {**BASE, "secrets_from": "command", "secrets_command": "echo no such entry >&2; exit 3"},
        {},
    )
    assert problems == ["secrets_command `echo no such entry >&2; exit 3`: exit 3 (no such entry)"]


def test_a_rotation_needs_the_new_value_where_the_deploy_cannot_write_the_store():
    _, problems = config.validate(
        {**BASE, "runbook": "rotate-redis-password"}, {"DB_PASSWORD": "x"}
    )
    assert [p.split(":")[0] for p in problems] == ["NEW_REDIS_PASSWORD"]
    _, problems = config.validate(
        {**BASE, "runbook": "rotate-db-password"}, {"DB_PASSWORD": "x", "NEW_DB_PASSWORD": "y"}
    )
    assert problems == []


def _secrets_command(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tasks.secrets", *args],
        cwd=Path(secrets.__file__).parents[1],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def _left_in_memory() -> set[str]:
    return {p.name for p in Path("/dev/shm").glob("mdd-secrets-*")}


def test_edit_encrypts_what_the_editor_wrote_and_leaves_no_clear_copy(store, tmp_path):
    path, environ = store
    editor = tmp_path / "editor.sh"
    editor.write_text(f"#!/bin/sh\nsed -i 's/^DB_PASSWORD=.*/DB_PASSWORD=new-{VALUE}/' \"$1\"\n")
    editor.chmod(0o755)
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "add", path.name], check=True)
    before = _left_in_memory()
    done = _secrets_command(
        "edit", "t", "--file", str(path), env={**environ, "EDITOR": str(editor)}
    )
    assert done.returncode == 0, done.stderr
    assert "encrypted to 1 recipient(s)" in done.stdout
    assert _left_in_memory() == before
    assert secrets.load("age", str(path), "", "t", environ)[0]["DB_PASSWORD"] == f"new-{VALUE}"
    diff = subprocess.run(
        ["git", "-C", str(tmp_path), "diff"], capture_output=True, text=True, check=True
    ).stdout
    assert "BEGIN AGE ENCRYPTED FILE" in diff and VALUE not in diff
    shown = _secrets_command("show-keys", "t", "--file", str(path), env=environ)
    assert shown.stdout.split() == ["DB_PASSWORD", "REDIS_PASSWORD"]
    assert VALUE not in shown.stdout + shown.stderr + done.stdout + done.stderr


def test_a_failed_edit_changes_nothing_and_leaves_no_clear_copy(store, tmp_path):
    path, environ = store
    before, kept = _left_in_memory(), path.read_bytes()
    done = _secrets_command(
        "edit", "t", "--file", str(path), env={**environ, "EDITOR": "sh -c 'exit 1' --"}
    )
    assert done.returncode == 1
    assert "the editor (sh) failed" in done.stderr and "is unchanged" in done.stderr
    broken = tmp_path / "broken.sh"
    broken.write_text("#!/bin/sh\necho 'not a key value line' >> \"$1\"\n")
    broken.chmod(0o755)
    done = _secrets_command(
        "edit", "t", "--file", str(path), env={**environ, "EDITOR": str(broken)}
    )
    assert done.returncode == 1 and "line 3 is not KEY=value" in done.stderr
    assert path.read_bytes() == kept
    assert _left_in_memory() == before


def test_rotate_recipients_encrypts_to_whoever_the_list_names_now(store):
    path, environ = store
    colleague = x25519.Identity.generate()
    listed = secrets.recipients_path(path)
    listed.write_text(listed.read_text() + f"{colleague.to_public()}\n")
    assert secrets.load("age", str(path), "", "t", {"AGE_IDENTITY_KEY": str(colleague)})[1]
    done = _secrets_command("rotate-recipients", "t", "--file", str(path), env=environ)
    assert done.returncode == 0, done.stderr
    assert "encrypted again to 2 recipient(s)" in done.stdout
    values, problems = secrets.load("age", str(path), "", "t", {"AGE_IDENTITY_KEY": str(colleague)})
    assert problems == [] and values["DB_PASSWORD"] == VALUE
