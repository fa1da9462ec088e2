"""An in-memory host for the orchestration's unit tests: a Remote (tasks/remote.py) that records
every command, file and line said, and answers each command from a script."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from tasks.remote import DeployError

# an answer: (ok, stdout) or (ok, stdout, stderr), or a function of the command giving one, or
# a DeployError to raise (a command that timed out or lost its connection)
Reply = tuple[bool, str] | tuple[bool, str, str]
Answer = Reply | Callable[[str], Reply] | DeployError


@dataclass
class FakeRemote:
    name: str
    script: list[tuple[str, Answer]] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    said: list[str] = field(default_factory=list)

    def answer(self, pattern: str, answer: Answer) -> FakeRemote:
        """Commands matching PATTERN (a regular expression) get ANSWER; the latest rule that
        matches wins, a command no rule matches succeeds with no output."""
        self.script.append((pattern, answer))
        return self

    def run(
        self, command: str, timeout: int = 60, what: str | None = None, check: bool = True
    ) -> tuple[bool, str, str]:
        self.commands.append(command)
        answer: Answer = (True, "")
        for pattern, found in reversed(self.script):
            if re.search(pattern, command):
                answer = found
                break
        if isinstance(answer, DeployError):
            raise answer
        ok, out, err = (*(answer(command) if callable(answer) else answer), "")[:3]
        if check and not ok:
            detail = (err or out).strip()
            raise DeployError(f"{what or 'a command'} failed on {self.name}: {detail}")
        return ok, out, err

    def put_text(self, text: str, dest: str, mode: str = "600") -> None:
        self.files[dest] = text

    def say(self, message: str) -> None:
        self.said.append(message)

    def ran(self, pattern: str) -> list[str]:
        """The commands that matched PATTERN, in order."""
        return [c for c in self.commands if re.search(pattern, c)]
