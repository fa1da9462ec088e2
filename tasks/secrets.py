"""Where the deploy's secrets come from (`secrets_from`), and the `age` file's command line.

- `env` (the default): DB_PASSWORD, REDIS_PASSWORD and DB_LOGIN_ROLE from the environment.
- `age`: `group_vars/<deploy_env>.secrets.age` (or `secrets_file`), `KEY=value` lines encrypted
  with age to the public keys listed in `group_vars/<deploy_env>.secrets.recipients`; the
  identity comes from AGE_IDENTITY (a file) or AGE_IDENTITY_KEY (the key itself, for a CI
  secret). Encryption is age's own, through pyrage.
- `command` (`secrets_command`, e.g. `pass show monitoring/production`): its output, the same
  `KEY=value` lines; the adapter for any password manager.

    python -m tasks.secrets edit ENV              decrypt, $EDITOR, encrypt again
    python -m tasks.secrets show-keys ENV         the names in the file, never the values
    python -m tasks.secrets rotate-recipients ENV encrypt again to the recipients file

Every problem (no identity, a file that does not decrypt, a missing key) is reported with the
other configuration problems, before any host is touched; no value is ever printed.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

import pyrage
from pyrage import x25519

REPO_DIR = Path(__file__).resolve().parent.parent
NAMES = ("DB_PASSWORD", "REDIS_PASSWORD", "DB_LOGIN_ROLE")
KEY = re.compile(r"[A-Z][A-Z0-9_]*")
COMMAND_TIMEOUT = 60
TEMPLATE = "".join(f"{name}=\n" for name in NAMES)


class SecretsError(Exception):
    """The secrets cannot be read or written; the message names the file or the command."""


def file_path(secrets_file: str, deploy_env: str) -> Path:
    """The age file: SECRETS_FILE (relative to the repository), or the environment's own."""
    path = Path(secrets_file or f"group_vars/{deploy_env}.secrets.age")
    return path if path.is_absolute() else REPO_DIR / path


def recipients_path(path: Path) -> Path:
    """The public keys an age file is encrypted to: `<env>.secrets.recipients` beside it."""
    return path.with_name(path.name.removesuffix(".age") + ".recipients")


def shown(path: Path) -> str:
    """PATH as the operator reads it: relative to the repository when inside it."""
    return str(path.relative_to(REPO_DIR)) if path.is_relative_to(REPO_DIR) else str(path)


def parse(text: str, where: str) -> tuple[dict[str, str], list[str]]:
    """The KEY=value lines of TEXT (blank lines and # comments skipped), and the problems:
    a line that is not KEY=value, a key twice, an unknown key. A problem names the line,
    never its value."""
    values: dict[str, str] = {}
    problems: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not KEY.fullmatch(key):
            problems.append(f"{where}: line {number} is not KEY=value")
        elif key in values:
            problems.append(f"{where}: {key} is given twice")
        elif key not in NAMES:
            problems.append(f"{where}: {key} is not a secret the deploy reads ({', '.join(NAMES)})")
        else:
            values[key] = value
    return values, problems


def text_of(values: Mapping[str, str]) -> str:
    """VALUES as the file's KEY=value lines, in NAMES' order."""
    return "".join(f"{name}={values[name]}\n" for name in NAMES if name in values)


def identities(environ: Mapping[str, str]) -> list[x25519.Identity]:
    """The age identities from AGE_IDENTITY_KEY or the file AGE_IDENTITY."""
    if environ.get("AGE_IDENTITY_KEY"):
        source, text = "AGE_IDENTITY_KEY", environ["AGE_IDENTITY_KEY"]
    elif environ.get("AGE_IDENTITY"):
        source = f"AGE_IDENTITY ({environ['AGE_IDENTITY']})"
        try:
            text = Path(environ["AGE_IDENTITY"]).expanduser().read_text()
        except OSError as exc:
            raise SecretsError(f"{source}: cannot be read ({exc.strerror})") from None
    else:
        raise SecretsError("AGE_IDENTITY or AGE_IDENTITY_KEY: required to read an age file")
    keys = [line.strip() for line in text.splitlines()]
    keys = [k for k in keys if k and not k.startswith("#")]
    try:
        found = [x25519.Identity.from_str(k) for k in keys]
    except pyrage.IdentityError:
        raise SecretsError(f"{source}: not an age identity (AGE-SECRET-KEY-1...)") from None
    if not found:
        raise SecretsError(f"{source}: holds no age identity")
    return found


def recipients(path: Path) -> list[x25519.Recipient]:
    """The public keys (age1...) listed one per line in PATH's recipients file."""
    listed = recipients_path(path)
    try:
        lines = [line.split("#")[0].strip() for line in listed.read_text().splitlines()]
    except OSError:
        raise SecretsError(
            f"{shown(listed)}: missing; list the public keys (age1...) that may read "
            f"{shown(path)}, one per line"
        ) from None
    try:
        found = [x25519.Recipient.from_str(line) for line in lines if line]
    except pyrage.RecipientError:
        raise SecretsError(f"{shown(listed)}: a line is not an age public key (age1...)") from None
    if not found:
        raise SecretsError(f"{shown(listed)}: lists no public key")
    return found


def decrypt(path: Path, environ: Mapping[str, str]) -> str:
    """The clear text of the age file PATH."""
    keys = identities(environ)
    try:
        data = path.read_bytes()
    except OSError:
        raise SecretsError(
            f"{shown(path)}: missing (create it with `python -m tasks.secrets edit ENV`)"
        ) from None
    try:
        return pyrage.decrypt(data, keys).decode()
    except (pyrage.DecryptError, UnicodeDecodeError):
        raise SecretsError(
            f"{shown(path)}: does not decrypt with the given identity (is its public key in "
            f"{shown(recipients_path(path))}, and was the file encrypted again since?)"
        ) from None


def encrypt(path: Path, text: str) -> int:
    """PATH holds TEXT encrypted (ASCII armour) to its recipients, replaced whole, never left
    half written; how many recipients."""
    keys = recipients(path)
    data = pyrage.encrypt(text.encode(), keys, armored=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(data)
    partial.replace(path)
    return len(keys)


def from_command(command: str) -> str:
    """What COMMAND prints (the secrets as KEY=value lines)."""
    try:
        done = subprocess.run(
            command, shell=True, capture_output=True, text=True, timeout=COMMAND_TIMEOUT
        )
    except subprocess.TimeoutExpired:
        raise SecretsError(
            f"secrets_command `{command}`: no answer in {COMMAND_TIMEOUT}s"
        ) from None
    if done.returncode != 0:
        said = done.stderr.strip().splitlines()[-1:] or ["no message"]
        raise SecretsError(f"secrets_command `{command}`: exit {done.returncode} ({said[0]})")
    return done.stdout


@functools.lru_cache(maxsize=8)
def _read(source: str, where: str, stamp: int, identity: tuple[str, str]) -> tuple[str, str]:
    """(clear text, problem) of an age file or a command; read once per change of the file
    (STAMP: its mtime) or of the identity."""
    del stamp  # part of the cache key only
    try:
        if source == "age":
            environ = {"AGE_IDENTITY": identity[0], "AGE_IDENTITY_KEY": identity[1]}
            return decrypt(Path(where), environ), ""
        return from_command(where), ""
    except SecretsError as exc:
        return "", str(exc)


def load(
    source: str, secrets_file: str, command: str, deploy_env: str, environ: Mapping[str, str]
) -> tuple[dict[str, str], list[str]]:
    """The secrets (NAMES present) from SOURCE, and every problem found reading them."""
    if source == "env":
        return {name: environ[name] for name in NAMES if environ.get(name)}, []
    if source == "command":
        if not command:
            return {}, ["secrets_command: required with secrets_from command"]
        where, stamp, label = command, 0, f"secrets_command `{command}`"
    else:
        path = file_path(secrets_file, deploy_env)
        where, label = str(path), shown(path)
        stamp = path.stat().st_mtime_ns if path.exists() else 0
    identity = (environ.get("AGE_IDENTITY", ""), environ.get("AGE_IDENTITY_KEY", ""))
    text, problem = _read(source, where, stamp, identity)
    if problem:
        return {}, [problem]
    values, problems = parse(text, label)
    return {k: v for k, v in values.items() if v}, problems


def private_folder() -> str:
    """A folder only this user can read, in memory when the machine has one (/dev/shm or
    $XDG_RUNTIME_DIR): where `edit` keeps the clear copy."""
    for base in ("/dev/shm", os.environ.get("XDG_RUNTIME_DIR", "")):
        if base and os.access(base, os.W_OK):
            return tempfile.mkdtemp(prefix="mdd-secrets-", dir=base)
    raise SecretsError("no in-memory folder (/dev/shm, $XDG_RUNTIME_DIR) to edit secrets in")


def edit(path: Path, environ: Mapping[str, str]) -> str:
    """Decrypt PATH (a template when it does not exist) into a private 0600 file, run
    $EDITOR on it, encrypt the result again; the clear copy is removed whatever happens."""
    recipients(path)  # a missing recipients file stops before anything is decrypted
    text = decrypt(path, environ) if path.exists() else TEMPLATE
    folder = private_folder()
    clear = Path(folder) / "secrets.env"
    try:
        fd = os.open(clear, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(text)
        editor = shlex.split(environ.get("EDITOR") or "vi")
        if subprocess.run([*editor, str(clear)]).returncode != 0:
            raise SecretsError(f"the editor ({editor[0]}) failed: {shown(path)} is unchanged")
        edited = clear.read_text()
    finally:
        clear.unlink(missing_ok=True)
        os.rmdir(folder)
    _, problems = parse(edited, "the edited secrets")
    if problems:
        raise SecretsError("; ".join(problems) + f": {shown(path)} is unchanged")
    if edited == text and path.exists():
        return f"{shown(path)}: no change"
    return f"{shown(path)}: encrypted to {encrypt(path, edited)} recipient(s)"


def update(path: Path, environ: Mapping[str, str], changes: Mapping[str, str]) -> None:
    """PATH's secrets with CHANGES applied, encrypted again (what a rotation keeps)."""
    values, problems = parse(decrypt(path, environ), shown(path))
    if problems:
        raise SecretsError("; ".join(problems))
    encrypt(path, text_of({**values, **changes}))


def main(argv: list[str], environ: Mapping[str, str]) -> str:
    """The command line: what to print, or SecretsError."""
    usage = "usage: python -m tasks.secrets edit|show-keys|rotate-recipients ENV [--file PATH]"
    if len(argv) not in (2, 4) or argv[0] not in ("edit", "show-keys", "rotate-recipients"):
        raise SecretsError(usage)
    if len(argv) == 4 and argv[2] != "--file":
        raise SecretsError(usage)
    path = file_path(argv[3] if len(argv) == 4 else "", argv[1])
    if argv[0] == "edit":
        return edit(path, environ)
    text = decrypt(path, environ)
    if argv[0] == "show-keys":
        values, problems = parse(text, shown(path))
        return "\n".join([*values, *problems])
    return f"{shown(path)}: encrypted again to {encrypt(path, text)} recipient(s)"


if __name__ == "__main__":
    try:
        print(main(sys.argv[1:], os.environ))
    except SecretsError as error:
        sys.exit(str(error))
