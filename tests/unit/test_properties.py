"""Property-based tests of the command builders and the variable validation: whatever a
variable holds (quotes, spaces, `$()`, `;`, newlines), it reaches a shell as one quoted word
and SQL as one escaped literal, and validation reports a problem instead of crashing."""

from __future__ import annotations

import re
import shlex
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.commands import deploy_lock, dotenv, git, haproxy, migration_sql, postgres, rediscli
from tasks.config import VARIABLES, validate

BASE = {"deploy_env": "t", "app_repo_url": "git://h/r.git", "db_host": "db1"}
ENV = {"DB_PASSWORD": "x"}
S, _ = validate(BASE, ENV)

# what a hostile or careless value looks like: shell and SQL punctuation, spaces, newlines
hostile = st.text(
    alphabet=st.sampled_from(list("aZ09 _-./:'\"`$()[]{};&|<>*?!#~\\\n\t=%@,^+")),
    min_size=1,
    max_size=40,
)
examples = settings(max_examples=150, deadline=None)


def words(command: str) -> list[str]:
    """The words a POSIX shell makes of COMMAND (quotes removed, operators such as `;` and
    `&&` their own words, nothing expanded)."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    return list(lexer)


@examples
@given(hostile)
def test_database_settings_reach_psql_as_single_words(value):
    s = replace(S, db_host=value, db_user=value, db_name=value, db_sslmode=value)
    argv = words(postgres.psql(s, "SELECT 1"))
    assert argv[argv.index("-h") + 1] == value
    assert argv[argv.index("-U") + 1] == value
    assert argv[argv.index("-d") + 1] == value
    assert f"PGSSLMODE={value}" in argv


@examples
@given(hostile)
def test_sql_reaches_psql_as_one_word(value):
    argv = words(postgres.psql(S, value, None, value))
    assert argv.count("-c") == 2 and argv[argv.index("-c") + 1] == value


@examples
@given(hostile)
def test_backup_paths_reach_pg_dump_and_rm_as_single_words(value):
    argv = words(postgres.pg_dump(S, value))
    assert argv[argv.index("-f") + 1] == value + ".partial"
    assert argv[argv.index("mv") + 2] == value


@examples
@given(hostile, hostile)
def test_git_url_ref_and_user_reach_git_as_single_words(url, user):
    assert words(git.ls_remote(url, "v1"))[2] == url
    argv = words(git.build_release(url, "a" * 40, "/cache", "/r/x", user))
    assert url in argv
    assert f"root:{user}" in argv


@examples
@given(hostile)
def test_redis_settings_reach_docker_as_single_words(value):
    s = replace(S, redis_container=value, redis_image=value, redis_bind=value)
    argv = words(rediscli.redis_run(s, "hash", "/state/redis-auth.conf"))
    assert argv[argv.index("--name") + 1] == value
    assert f"{value}:/" in argv and argv[argv.index("start") + 1] == value
    assert f"{value}:6379:6379" in argv
    assert argv[argv.index("redis-server") - 1] == value


@examples
@given(hostile, hostile)
def test_sockets_folders_and_links_reach_their_programs_as_single_words(value, other):
    api = words(haproxy.haproxy_api(value, other))
    assert api[1] == other and api[-1] == f"UNIX-CONNECT:{value}"
    assert words(git.cat_files(value, "*.sql", "@@ "))[1] == value
    assert words(git.switch_current(value, other))[2] == other


LITERAL = re.compile(r"'(?:[^']|'')*'")


def skeleton(sql: str) -> str:
    """SQL with every string literal replaced by '?': what is left is what was not data."""
    return LITERAL.sub("'?'", sql)


@examples
@given(hostile)
def test_a_value_becomes_one_sql_literal_that_reads_back_as_itself(value):
    literal = postgres.sql_literal(value)
    assert LITERAL.fullmatch(literal)
    assert literal[1:-1].replace("''", "'") == value


@examples
@given(hostile, hostile, hostile)
def test_values_in_generated_sql_never_change_its_shape(a, b, d):
    benign = ("x", "y", "z")
    for build in (
        lambda v, w, u: migration_sql.record_migration_sql(v, w, u, v, w),
        lambda v, w, u: migration_sql.revert_migration_sql(v),
        lambda v, w, u: deploy_lock.acquire_sql(v, w, u),
        lambda v, w, u: deploy_lock.heartbeat_sql(v, w),
        lambda v, w, u: deploy_lock.holder_sql(v),
        lambda v, w, u: postgres.objects_state_sql([v, w, u]),
        lambda v, w, u: postgres.lock_holders_sql(v),
    ):
        assert skeleton(build(a, b, d)) == skeleton(build(*benign))


@examples
@given(hostile)
def test_an_env_file_value_is_one_line_or_refused(value):
    try:
        text = dotenv.env_file_content(replace(S, db_name=value), "pw", "")
    except ValueError:
        assert "\n" in value
        return
    assert f"DB_NAME={value}\n" in text
    assert len(text.splitlines()) == len(dotenv.env_file_content(S, "pw", "").splitlines())


any_value = st.one_of(
    hostile,
    st.integers(min_value=-(10**6), max_value=10**6),
    st.floats(allow_nan=True),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=2),
)


@examples
@given(st.sampled_from([v.name for v in VARIABLES]), any_value)
def test_validation_reports_a_bad_value_and_never_crashes(name, value):
    settings_, problems = validate({**BASE, name: value}, ENV)
    assert all(isinstance(p, str) for p in problems)
    if not any(p.startswith(f"{name}:") for p in problems) and settings_ is not None:
        kind = next(v.kind for v in VARIABLES if v.name == name)
        if kind in ("path", "hostpath", "name", "ref", "duration", "size"):
            assert "\n" not in str(getattr(settings_, name))
