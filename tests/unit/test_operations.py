"""The facts of the deploy's own operations, their commands run against real files here."""

import getpass
import grp
import os
import subprocess

from tasks.operations import FileState, FolderStates


def _lines(command: str) -> list[str]:
    done = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True)
    return done.stdout.splitlines()


def test_a_files_mode_owner_and_checksum_come_in_one_command(tmp_path):
    path = tmp_path / "unit"
    path.write_text("hello\n")
    path.chmod(0o640)
    fact = FileState()
    state = fact.process(_lines(fact.command(str(path))))
    me, group = getpass.getuser(), grp.getgrgid(os.getgid()).gr_name
    assert state == {
        "mode": 640,
        "user": me,
        "group": group,
        "sha256": "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03",
    }
    assert fact.process(_lines(fact.command(str(tmp_path / "none")))) is None
    assert fact.process(_lines(fact.command(str(tmp_path)))) is None  # a folder is no file


def test_the_folders_that_exist_come_with_their_modes_and_owners(tmp_path):
    (tmp_path / "a").mkdir(mode=0o700)
    (tmp_path / "a b").mkdir(mode=0o755)
    (tmp_path / "f").write_text("")
    fact = FolderStates()
    paths = tuple(str(tmp_path / n) for n in ("a", "a b", "missing", "f"))
    found = fact.process(_lines(fact.command(paths)))
    me, group = getpass.getuser(), grp.getgrgid(os.getgid()).gr_name
    assert found == {paths[0]: (700, me, group), paths[1]: (755, me, group)}
    assert _lines(fact.command(paths[2:])) == []  # a fresh host: pyinfra gives the default
    assert fact.default() == {}
