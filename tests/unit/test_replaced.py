"""Replacing the files the service reads (tasks/commands/replaced.py), run in a real shell with
the real checkers: the previous content kept, a candidate checked before it replaces anything,
and every kept file moved back."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tasks.commands import replaced


def sh(command: str) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=30)


def test_the_first_content_a_run_replaces_is_the_one_put_back(tmp_path):
    env, folder = tmp_path / "app" / ".env", str(tmp_path / "state" / "replaced")
    env.parent.mkdir()
    env.write_text("A=1\n")
    env.chmod(0o600)
    assert sh(replaced.keep_previous(str(env), folder)).returncode == 0
    env.write_text("A=2\n")
    assert sh(replaced.keep_previous(str(env), folder)).returncode == 0  # a second change
    env.write_text("A=3\n")
    done = sh(replaced.restore_previous(folder))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(env)]
    assert env.read_text() == "A=1\n" and env.stat().st_mode & 0o777 == 0o600
    assert not Path(folder).exists()


def test_a_new_file_keeps_nothing_and_nothing_kept_restores_nothing(tmp_path):
    folder = str(tmp_path / "replaced")
    assert sh(replaced.keep_previous(str(tmp_path / "new.cfg"), folder)).returncode == 0
    assert not Path(folder).exists()
    done = sh(replaced.restore_previous(folder))
    assert (done.returncode, done.stdout) == (0, "")


def test_every_kept_file_goes_back_to_its_own_path(tmp_path):
    folder = str(tmp_path / "replaced")
    files = [tmp_path / "etc" / "proxy.cfg", tmp_path / "etc" / "systemd" / "x@.service"]
    for path in files:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"old {path.name}\n")
        assert sh(replaced.keep_previous(str(path), folder)).returncode == 0
        path.write_text("new\n")
    assert sorted(sh(replaced.restore_previous(folder)).stdout.split()) == sorted(map(str, files))
    assert [p.read_text() for p in files] == ["old proxy.cfg\n", "old x@.service\n"]
    assert sh(replaced.forget_previous(folder)).returncode == 0


def test_a_candidate_that_fails_its_check_is_removed_with_the_checks_exit_code(tmp_path):
    candidate = tmp_path / "proxy.cfg.upload"
    candidate.write_text("x")
    done = sh(replaced.checked("echo 'line 3: bad' >&2; exit 3", str(candidate)))
    assert (done.returncode, done.stderr.strip()) == (3, "line 3: bad")
    assert not candidate.exists()
    candidate.write_text("x")
    assert sh(replaced.checked("true", str(candidate))).returncode == 0 and candidate.exists()


def needs(program: str) -> str:
    path = shutil.which(program)
    if path is None:
        pytest.fail(f"{program} is missing: `make deps` installs it (scripts/install-deps.sh)")
    return path


def test_haproxy_checks_a_configuration_file(tmp_path):
    needs("haproxy")
    good, bad = tmp_path / "good.cfg", tmp_path / "bad.cfg"
    good.write_text("defaults\n    mode http\nfrontend f\n    bind 127.0.0.1:8080\n")
    bad.write_text("defaults\n    mode http\nfrontend f\n    bind 127.0.0.1:99999\n")
    assert sh(replaced.haproxy_check(str(good))).returncode == 0
    done = sh(replaced.haproxy_check(str(bad)))
    assert done.returncode != 0 and "99999" in done.stdout + done.stderr


UNIT = """[Unit]
Description=x
[Service]
ExecStart={exec}
{extra}
[Install]
WantedBy=multi-user.target
"""


@pytest.mark.parametrize(
    "exec_start, extra, ok",
    [
        ("/bin/true", "", True),
        ("/opt/x/slots/%i/bin/api", "", True),  # the release brings its binary later
        ("/bin/true", "Type=bogus", False),
        ("/bin/true", "FooBar=1", False),
        ("relative/api", "", False),
    ],
)
def test_systemd_verifies_a_unit_under_its_own_name(tmp_path, exec_start, extra, ok):
    needs("systemd-analyze")
    candidate = tmp_path / "x@.service.upload"
    candidate.write_text(UNIT.format(exec=exec_start, extra=extra))
    done = sh(replaced.unit_verify(str(candidate), "x@.service"))
    assert (done.returncode == 0) == ok, done.stderr
    assert candidate.exists()  # verify only reads it
