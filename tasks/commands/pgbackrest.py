"""pgBackRest's configuration files and commands, and the SQL around them: pure builders.

The database server archives its WAL to a repository on another host over SSH, as user
postgres on both sides; backups run on the repository host, restores on the database server,
restore drills on the repository host into a scratch cluster of its own.
"""

from __future__ import annotations

from tasks.commands.postgres import sql_literal
from tasks.commands.shell import q
from tasks.config import Settings

PG_USER = "postgres"
CONFIG = "/etc/pgbackrest.conf"  # where Debian's package keeps it, and pgbackrest looks


def as_postgres(command: str) -> str:
    """COMMAND run by root as user postgres, from a folder postgres may read."""
    return f"cd / && runuser -u {PG_USER} -- {command}"


def pgbackrest(s: Settings, command: str, *options: str, config: str = CONFIG) -> str:
    """`pgbackrest COMMAND` on the stanza as user postgres; OPTIONS are already quoted."""
    extra = "".join(f" {o}" for o in options)
    return as_postgres(
        f"pgbackrest --config={q(config)} --stanza={q(s.backup_stanza)}{extra} {command}"
    )


def superuser_psql(
    sql: str, database: str = "postgres", port: int = 5432, socket_dir: str = ""
) -> str:
    """psql as the cluster's superuser on the database server (peer authentication)."""
    where = f" -h {q(socket_dir)}" if socket_dir else ""
    return as_postgres(
        f"psql -X -q -At -v ON_ERROR_STOP=1 -d {q(database)} -p {int(port)}{where} -c {q(sql)}"
    )


def _config(sections: dict[str, dict[str, str]]) -> str:
    lines: list[str] = []
    for section, options in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{key}={value}" for key, value in options.items()]
        lines.append("")
    return "\n".join(lines)


def db_config(s: Settings, repo_address: str) -> str:
    """/etc/pgbackrest.conf on the database server: its repository is on REPO_ADDRESS."""
    return _config(
        {
            "global": {
                "repo1-host": repo_address,
                "repo1-host-user": PG_USER,
                "repo1-path": s.backup_repo_path,
                "log-level-console": "warn",
                "log-level-file": "info",
            },
            s.backup_stanza: {"pg1-path": s.backup_pg_data},
        }
    )


def repo_config(s: Settings, db_address: str) -> str:
    """/etc/pgbackrest.conf on the repository host: its cluster is on DB_ADDRESS."""
    return _config(
        {
            "global": {
                "repo1-path": s.backup_repo_path,
                "repo1-retention-full": str(s.backup_retention_full),
                "start-fast": "y",
                "log-level-console": "warn",
                "log-level-file": "info",
            },
            s.backup_stanza: {
                "pg1-host": db_address,
                "pg1-host-user": PG_USER,
                "pg1-path": s.backup_pg_data,
            },
        }
    )


def drill_config(s: Settings, scratch: str) -> str:
    """The repository host's configuration for a drill: the repository is local, the cluster
    is the scratch one in SCRATCH, on drill_port."""
    return _config(
        {
            "global": {
                "repo1-path": s.backup_repo_path,
                "log-level-console": "warn",
                "log-level-file": "off",
            },
            s.backup_stanza: {
                "pg1-path": scratch,
                "pg1-port": str(s.drill_port),
                "pg1-socket-path": scratch,
            },
        }
    )


def archive_command(s: Settings) -> str:
    return f"pgbackrest --stanza={s.backup_stanza} archive-push %p"


def archive_settings_sql(s: Settings) -> list[str]:
    """ALTER SYSTEM statements that make the cluster archive to the stanza."""
    values = {
        "archive_mode": "on",
        "archive_command": archive_command(s),
        "archive_timeout": str(s.backup_archive_timeout),
    }
    return [f"ALTER SYSTEM SET {k} = {sql_literal(v)}" for k, v in values.items()]


def archive_state_sql(s: Settings) -> str:
    """One line: whether every archive setting has the wanted value (t/f), and whether the
    running server still waits for a restart to take one (t/f)."""
    wanted = {
        "archive_mode": "on",
        "archive_command": archive_command(s),
        "archive_timeout": str(s.backup_archive_timeout),  # pg_settings counts in seconds
    }
    rows = ", ".join(f"({sql_literal(k)}, {sql_literal(v)})" for k, v in wanted.items())
    return (
        "SELECT bool_and(setting = wanted), bool_or(pending_restart) FROM pg_settings "
        f"JOIN (VALUES {rows}) AS w(name, wanted) USING (name)"
    )


def ensure_ssh_key() -> str:
    """User postgres's SSH key (made once), its public half printed."""
    key = "~/.ssh/id_ed25519"
    return as_postgres(
        "sh -c "
        + q(
            f"umask 077 && mkdir -p ~/.ssh && {{ test -f {key} || ssh-keygen -q -t ed25519 "
            f"-N '' -C postgres@$(hostname) -f {key}; }} && cat {key}.pub"
        )
    )


def trust_peer(public_key: str, address: str) -> str:
    """User postgres accepts PUBLIC_KEY and knows ADDRESS's host key (read now, over the
    inventory's network); prints `added` for each line it added."""
    known = f"ssh-keyscan -T 5 -t ed25519 {q(address)} 2>/dev/null"
    script = (
        "umask 077 && mkdir -p ~/.ssh && touch ~/.ssh/authorized_keys ~/.ssh/known_hosts && "
        f"{{ grep -qxF {q(public_key)} ~/.ssh/authorized_keys || "
        f"{{ echo {q(public_key)} >> ~/.ssh/authorized_keys && echo added; }}; }} && "
        f'scanned=$({known}) && test -n "$scanned" && '
        f'{{ grep -qxF "$scanned" ~/.ssh/known_hosts || '
        f'{{ ssh-keygen -R {q(address)} >/dev/null 2>&1; echo "$scanned" >> ~/.ssh/known_hosts '
        "&& echo added; }; }"
    )
    return as_postgres("sh -c " + q(script))


def info(s: Settings) -> str:
    return pgbackrest(s, "info", "--output=json")


def restore_point_sql(name: str) -> str:
    """metrics' highest id (every row of it is in the point), a named restore point, then a
    WAL switch so that the segment holding it is archived; prints the segment's file name."""
    return (
        "SELECT (SELECT coalesce(max(id), 0) FROM metrics), "
        f"pg_walfile_name(pg_create_restore_point({sql_literal(name)})), "
        "pg_switch_wal() IS NOT NULL"
    )


def archived_sql() -> str:
    """The newest archived segment, failures since it, and its age in seconds."""
    return (
        "SELECT coalesce(last_archived_wal, ''), failed_count, coalesce(last_failed_wal, ''), "
        "coalesce(extract(epoch FROM now() - last_archived_time)::int, -1) FROM pg_stat_archiver"
    )


def restore(s: Settings, *options: str, config: str = CONFIG, delta: bool = True) -> str:
    """`pgbackrest restore` with OPTIONS (already quoted); with DELTA, a data directory that is
    partly there is brought to the backup by checksum, not copied whole again."""
    return pgbackrest(s, "restore", *(["--delta"] if delta else []), *options, config=config)


def target_options(target: str, backup_set: str = "") -> list[str]:
    """Recovery target options for TARGET (latest, a time, a restore point's name), from the
    backup set BACKUP_SET (empty: pgBackRest's choice)."""
    chosen = [f"--set={q(backup_set)}"] if backup_set else []
    if target == "latest":
        return chosen
    kind = "time" if target[:4].isdigit() and " " in target else "name"
    return [*chosen, f"--type={kind}", f"--target={q(target)}", "--target-action=promote"]


def scratch_start(s: Settings, scratch: str, log: str) -> str:
    """Start the restored cluster in SCRATCH as a scratch server: its own port, its socket in
    SCRATCH, no TCP, and never archiving (the repository keeps only the live cluster's WAL).
    Debian keeps the configuration outside the data directory, so it gets minimal files."""
    bin_dir = f"/usr/lib/postgresql/{s.backup_pg_version}/bin"
    options = (
        f"-c port={s.drill_port} -c listen_addresses='' -c unix_socket_directories={scratch} "
        "-c archive_mode=off -c hot_standby=off -c shared_buffers=64MB"
    )
    files = (
        f": > {q(scratch + '/postgresql.conf')} && : > {q(scratch + '/pg_ident.conf')} && "
        f"echo 'local all {PG_USER} peer' > {q(scratch + '/pg_hba.conf')}"
    )
    return as_postgres(
        "sh -c "
        + q(f"{files} && {bin_dir}/pg_ctl -D {scratch} -l {log} -w -t 600 -o {q(options)} start")
    )


def scratch_init(s: Settings, scratch: str) -> str:
    """An empty scratch cluster in SCRATCH (a pg_dump drill restores its dump into it)."""
    bin_dir = f"/usr/lib/postgresql/{s.backup_pg_version}/bin"
    return as_postgres(f"{bin_dir}/initdb -A peer -U {PG_USER} -D {q(scratch)}")


def dump_restore(s: Settings, scratch: str, dump: str) -> str:
    """The custom-format dump DUMP (root's, 0600) restored into database db_name of the
    scratch server in SCRATCH, read through a pipe: postgres never reads the file itself."""
    where = f"-h {q(scratch)} -p {int(s.drill_port)}"
    restore = (
        f"createdb {where} {q(s.db_name)} && "
        f"pg_restore --no-owner --no-acl --exit-on-error {where} -d {q(s.db_name)}"
    )
    return f"cd / && cat {q(dump)} | runuser -u {PG_USER} -- sh -c {q(restore)}"


def scratch_stop(s: Settings, scratch: str) -> str:
    """Stop a scratch server in SCRATCH if one runs (nothing when none does)."""
    bin_dir = f"/usr/lib/postgresql/{s.backup_pg_version}/bin"
    return as_postgres(
        "sh -c "
        + q(
            f"test ! -f {scratch}/postmaster.pid || "
            f"{bin_dir}/pg_ctl -D {scratch} -m immediate -w -t 60 stop"
        )
    )


def archive_listing(s: Settings) -> str:
    """Every WAL segment of the stanza's archive, in order, as `<segment> <ok|corrupt> <file>`:
    corrupt when the file does not decompress to the SHA-1 its name carries; then
    `newest <seconds since the newest segment was archived>`."""
    folder = f"{s.backup_repo_path}/archive/{s.backup_stanza}"
    segments = "find . -type f -name '[0-9A-F]*-*' ! -name '*.backup' ! -name '*.tmp'"
    script = (
        f"cd {q(folder)} && {segments} | sort -t/ -k4 | "
        "while read -r f; do b=${f##*/}; seg=${b%%-*}; sum=${b#*-}; sum=${sum%%.*}; "
        'case "$b" in *.gz) got=$(gzip -dc "$f" 2>/dev/null | sha1sum) ;; '
        '*) got=$(sha1sum < "$f") ;; esac; '
        '[ "${got%% *}" = "$sum" ] && echo "$seg ok $f" || echo "$seg corrupt $f"; done; '
        f"newest=$({segments} -printf '%T@\\n' | sort -n | tail -1); "
        'echo "newest $(( $(date +%s) - ${newest%.*} ))"'
    )
    return as_postgres("sh -c " + q(script))


def wal_problems(listing: str, start: str) -> tuple[list[str], int | None]:
    """What archive_listing() printed, read: the problems of the segments from START on (a
    corrupt file, a segment missing between two present), and the newest segment's age."""
    problems: list[str] = []
    age: int | None = None
    previous: dict[str, int] = {}  # per timeline, the last segment number seen
    for line in listing.splitlines():
        words = line.split()
        if words[:1] == ["newest"] and len(words) == 2:
            age = int(words[1])
            continue
        if len(words) != 3 or len(words[0]) != 24:
            continue
        segment, verdict, path = words
        if segment[8:] < start[8:]:
            continue
        timeline, number = segment[:8], int(segment[8:16], 16) * 256 + int(segment[16:], 16)
        if verdict != "ok":
            problems.append(f"{path}: does not match its checksum (corrupted)")
        last = previous.get(timeline)
        if last is not None and number > last + 1:
            first_missing = f"{timeline}{(last + 1) // 256:08X}{(last + 1) % 256:08X}"
            problems.append(f"WAL segment {first_missing}: missing from the archive")
        previous[timeline] = number
    return problems, age
