"""How remote commands are run over pyinfra (transport.PyinfraRemote): at most a few channels
per host, a refused channel asked again. The pyinfra host here is a stand-in that records
calls; no command runs anywhere."""

from __future__ import annotations

import socket
from types import SimpleNamespace

import gevent
import pytest
from paramiko.ssh_exception import ChannelException, SSHException

from tasks import transport
from tasks.remote import DeployError
from tasks.transport import PyinfraRemote


class Host:
    """What PyinfraRemote asks of a pyinfra host: a name and run_shell_command."""

    def __init__(self, name: str, refusals: int = 0, seconds: float = 0.0) -> None:
        self.name, self.refusals, self.seconds = name, refusals, seconds
        self.calls = self.running = self.most = 0

    def run_shell_command(self, command: str, _timeout: int, _sudo: bool):
        self.calls += 1
        if self.refusals:
            self.refusals -= 1
            if self.refusals % 2:  # paramiko's two ways of saying it
                raise ChannelException(2, "Connect failed")
            raise SSHException("Unable to open channel.")
        self.running += 1
        self.most = max(self.most, self.running)
        gevent.sleep(self.seconds)
        self.running -= 1
        return True, SimpleNamespace(stdout=f"ran {command}", stderr="")


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch):
    monkeypatch.setattr(gevent, "sleep", lambda _seconds: None)  # no wait between two tries


def test_a_refused_channel_is_asked_again_and_the_command_runs_once():
    h = Host("lb1", refusals=3)
    assert PyinfraRemote(h).run("true") == (True, "ran true", "")
    assert h.calls == 4


def test_a_channel_refused_every_time_is_an_error_naming_the_host():
    h = Host("lb1", refusals=transport.CHANNEL_TRIES)
    with pytest.raises(DeployError, match="draining on lb1 lost its connection"):
        PyinfraRemote(h).run("true", what="draining")
    assert h.calls == transport.CHANNEL_TRIES


class Lost(Host):
    def run_shell_command(self, command: str, _timeout: int, _sudo: bool):
        self.calls += 1
        raise SSHException("Socket is closed")


def test_a_connection_lost_is_not_asked_again():
    h = Lost("lb1")
    with pytest.raises(DeployError, match="lost its connection"):
        PyinfraRemote(h).run("true")
    assert h.calls == 1


def test_no_more_commands_run_on_one_host_at_once_than_its_channels(monkeypatch):
    monkeypatch.undo()  # real sleeps: the commands overlap
    lb1, app1 = Host("lb1", seconds=0.05), Host("app1", seconds=0.05)
    on_lb1, on_app1 = PyinfraRemote(lb1), PyinfraRemote(app1)
    greenlets = [gevent.spawn(on_lb1.run, f"c{i}") for i in range(20)]
    greenlets += [gevent.spawn(on_app1.run, f"c{i}") for i in range(3)]
    gevent.joinall(greenlets, timeout=10, raise_error=True)
    assert lb1.calls == 20 and lb1.most == transport.CHANNELS_PER_HOST
    assert app1.most == 3  # another host's commands do not wait on lb1's


def test_a_connection_set_to_send_at_once_has_nagle_off():
    listener = socket.create_server(("127.0.0.1", 0))
    with listener, socket.create_connection(listener.getsockname()) as sock:
        paramiko_transport = SimpleNamespace(sock=sock)
        ssh = SimpleNamespace(client=SimpleNamespace(get_transport=lambda: paramiko_transport))
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
        assert transport.send_at_once(SimpleNamespace(connector=ssh)) is True
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def test_a_connection_without_a_socket_is_left_as_it_is():
    """pyinfra's @local connector, or an SSH client whose transport is closed."""
    assert transport.send_at_once(SimpleNamespace(connector=SimpleNamespace())) is False
    closed = SimpleNamespace(client=SimpleNamespace(get_transport=lambda: None))
    assert transport.send_at_once(SimpleNamespace(connector=closed)) is False
