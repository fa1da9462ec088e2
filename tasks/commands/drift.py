"""Drift, as pure functions: the shell that lists what the deploy manages on an app host, the
SQL and commands that dump a schema, PostgreSQL's schema dump cut into objects, and the
comparison of what a record or the migration history expects with what is found.

A host's state is a dict {object: value}: `file PATH` (sha256, mode, owner), `link PATH`
(its target), `releases` (the release folders), `unit-file NAME` (enabled or not), `unit NAME`
(running: the active ones), `container NAME`
(image, command, restart policy), `.env key NAME` (a digest of the line, kept only in the
host's own 0600 record beside the 0600 .env; never printed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tasks.commands import postgres
from tasks.commands.deploy_lock import TABLE as LOCK_TABLE
from tasks.commands.pgbackrest import as_postgres
from tasks.commands.shell import paths, q
from tasks.config import Settings

ENV_KEY = ".env key "
# the tool's own tables: what the deploy writes, not the service's schema
OWN_TABLES = (postgres.HISTORY_TABLE, postgres.BACKFILL_TABLE, LOCK_TABLE)
HEADER = re.compile(r"^-- Name: (?P<name>.+?); Type: (?P<type>.+?); Schema: (?P<schema>[^;]*);")


@dataclass(frozen=True)
class Difference:
    """One object that is not as expected; EXPECTED and FOUND are printable (no secret)."""

    object: str
    expected: str
    found: str

    def line(self) -> str:
        return f"{self.object}: expected {self.expected}, found {self.found}"


def host_state_script(s: Settings) -> str:
    """Shell printing `KIND<TAB>NAME<TAB>VALUE` lines for what the deploy manages on an app
    host. Read-only; a value never reaches a command line (the .env lines go through printf,
    a shell builtin, into sha256sum's stdin)."""
    app, p = s.app_service, paths(s)
    env = q(p["env_file"])
    units = f"/etc/systemd/system/{app}*.service /etc/systemd/system/{app}*.service.d/*"
    slots = q(s.app_dir + "/slots") + "/*"
    lines = [
        "set --",
        f"for f in {units} /etc/{app}/* {slots} {env}; do",
        '  [ -L "$f" ] || { [ -f "$f" ] && set -- "$@" "$f"; }',
        "done",
        'if [ "$#" -gt 0 ]; then',  # one sha256sum and one stat for every file
        '  sha256sum -- "$@" | awk \'{printf "sha\\t%s\\t%s\\n", substr($0, 67), $1}\'',
        "  stat -c 'stat\t%n\t%a %U:%G' -- \"$@\"",
        "fi",
        f"if [ -f {env} ]; then",
        '  while IFS= read -r line || [ -n "$line" ]; do',
        "    case \"$line\" in ''|'#'*) continue;; esac",
        "    printf 'env\\t%s\\t' \"${line%%=*}\"",
        "    printf '%s' \"$line\" | sha256sum",
        f"  done < {env}",
        "fi",
        f"for l in {q(p['current'])} {slots}; do",
        '  [ -L "$l" ] && printf \'link\\t%s\\t%s\\n\' "$l" "$(readlink "$l")"',
        "done",
        f"[ -d {q(p['releases'])} ] && printf 'releases\\t-\\t%s\\n' "
        f"\"$(ls -1 {q(p['releases'])} | tr '\\n' ' ')\"",
        f"systemctl list-unit-files --no-legend --plain {q(app + '*')} 2>/dev/null "
        "| awk '{printf \"unit-file\\t%s\\t%s\\n\", $1, $2}'",
        f"systemctl list-units --state=active --no-legend --plain {q(app + '*')} 2>/dev/null "
        "| awk '{printf \"unit\\t%s\\t%s\\n\", $1, $4}'",
    ]
    if s.redis_mode == "container":
        fmt = "{{.Config.Image}} {{json .Config.Cmd}} restart={{.HostConfig.RestartPolicy.Name}}"
        name = q(s.redis_container)
        lines += [
            f"c=$(docker inspect --format {q(fmt)} {name} 2>/dev/null) || c=absent",
            f"printf 'container\\t%s\\t%s\\n' {name} \"$c\"",
        ]
    lines.append("true")
    return "\n".join(lines)


def parse_host_state(out: str) -> dict[str, str]:
    """{object: value} from host_state_script's output."""
    state: dict[str, str] = {}
    for line in out.splitlines():
        parts = line.split("\t", 2)
        if len(parts) != 3:
            continue
        kind, name, value = parts
        if kind == "env":
            state[ENV_KEY + name] = value.split()[0]
        elif kind == "sha":
            state[f"file {name}"] = value + state.get(f"file {name}", "")
        elif kind == "stat":
            state[f"file {name}"] = state.get(f"file {name}", "") + f" {value}"
        elif kind == "releases":
            state["releases"] = value.strip()
        else:
            state[f"{kind} {name}"] = value.strip()
    return state


def _shown(obj: str, value: str | None) -> str:
    """VALUE as printed: a file's digest shortened, an .env line never."""
    if value is None:
        return "absent"
    if obj.startswith(ENV_KEY):
        return "present"
    if obj.startswith("file "):
        digest, _, rest = value.partition(" ")
        return f"sha256 {digest[:12]} mode {rest}" if rest else value
    return value


def compare_hosts(expected: dict[str, str], found: dict[str, str]) -> list[Difference]:
    """Every object of EXPECTED or FOUND whose value differs, in a stable order; an .env line
    that changed is named, its value never shown."""
    differences = []
    for obj in sorted(set(expected) | set(found)):
        want, got = expected.get(obj), found.get(obj)
        if want == got:
            continue
        if obj.startswith(ENV_KEY) and want is not None and got is not None:
            differences.append(Difference(obj, "the recorded value", "another value"))
        else:
            differences.append(Difference(obj, _shown(obj, want), _shown(obj, got)))
    return differences


def schema_dump(database: str, port: int = 5432) -> str:
    """pg_dump's schema of DATABASE as the cluster's superuser (on the database server),
    without owners and grants, without the tool's own tables."""
    excluded = "".join(f" -T {q(table)}" for table in OWN_TABLES)
    return as_postgres(
        f"pg_dump --schema-only --no-owner --no-privileges --no-comments "
        f"--lock-wait-timeout=10s -p {int(port)} -d {q(database)}{excluded}"
    )


def replay(database: str, port: int = 5432) -> str:
    """psql as the cluster's superuser into DATABASE, reading its script from stdin, stopping
    at the first error."""
    return as_postgres(f"psql -X -q -v ON_ERROR_STOP=1 -p {int(port)} -d {q(database)} -f -")


def drop_scratch_sql(name: str) -> str:
    """The scratch database gone, whoever is still connected to it (a killed run's psql)."""
    return f"DROP DATABASE IF EXISTS {postgres.sql_ident(name)} WITH (FORCE)"


def schema_objects(dump: str) -> dict[str, str]:
    """{`TYPE schema.name`: its statements, normalised} from a pg_dump --schema-only: cut at
    pg_dump's own `-- Name: ...; Type: ...` headers; comments, blank lines, SET lines and
    the \\restrict lines (a random key per dump) dropped."""
    objects: dict[str, str] = {}
    key = None
    for line in dump.splitlines():
        header = HEADER.match(line)
        if header:
            schema = header["schema"].strip()
            name = header["name"].strip()
            key = f"{header['type']} {schema + '.' if schema not in ('', '-') else ''}{name}"
            objects[key] = ""
            continue
        text = line.rstrip()
        if key is None or not text.strip() or text.startswith("--"):
            continue
        if text.startswith(("SET ", "SELECT pg_catalog.set_config", "\\restrict", "\\unrestrict")):
            continue
        objects[key] += text.strip() + "\n"
    return {k: v.strip() for k, v in objects.items() if not k.startswith("SCHEMA ")}


def dumped_versions(dump: str) -> list[str]:
    """pg_dump's header lines naming the server's and its own version: a schema dumped
    elsewhere compares only under the same two."""
    return [x for x in dump.splitlines()[:12] if x.startswith(("-- Dumped from", "-- Dumped by"))]


def _lines(text: str) -> set[str]:
    return {line.rstrip(",") for line in text.splitlines()}


def compare_schemas(expected: dict[str, str], found: dict[str, str]) -> list[Difference]:
    """Objects missing, added, or defined otherwise; for an object defined otherwise, the
    lines added and missing (a column added shows that column)."""
    differences = []
    for obj in sorted(set(expected) | set(found)):
        want, got = expected.get(obj), found.get(obj)
        if want == got:
            continue
        if want is None:
            differences.append(Difference(obj, "absent (no applied migration makes it)", "present"))
        elif got is None:
            differences.append(Difference(obj, "present (an applied migration makes it)", "absent"))
        else:
            missing = sorted(_lines(want) - _lines(got))
            added = sorted(_lines(got) - _lines(want))
            changes = [f"added {x}" for x in added] + [f"missing {x}" for x in missing]
            differences.append(
                Difference(obj, "as the migrations define it", "; ".join(changes) or want)
            )
    return differences


def invalid_indexes_sql() -> str:
    """The indexes of the database that are not valid (a CONCURRENTLY build that failed)."""
    return (
        "SELECT i.indexrelid::regclass FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE NOT i.indisvalid "
        "AND n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1"
    )


def scratch_name(s: Settings) -> str:
    return f"{s.db_name}_drift_scratch"
