"""Whatever validation accepts, the files the deploy writes from it are ones their own programs
accept: property-based. Generated values for every variable (plausible ones near the limits,
and hostile ones); for each set that `validate()` accepts, the local proxy's configuration is
checked by `haproxy -c`, the units by `systemd-analyze verify` (the deploy's own checks), the
.env line by line, and the chart by `helm template`."""

from __future__ import annotations

import shutil
import string
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_chart import NEWEST, template

from tasks import helm as deploy_helm
from tasks import method, slots
from tasks.commands import dotenv, helm, replaced
from tasks.config import VARIABLES, validate

# release_method helm, so that the chart's own checks apply as well (the proxy and the units
# are rendered from the same settings whatever the method)
BASE = {
    "deploy_env": "t",
    "app_repo_url": "git@example.com:team/app.git",
    "db_host": "db.internal",
    "release_method": "helm",
    "redis_mode": "external",
    "redis_host": "redis-cache",
    "helm_kubeconfig": "/home/ops/.kube/config",
    "helm_image": "registry.example.com/team/app",
}
ENV = {"DB_PASSWORD": "pw"}

hostile = st.text(
    alphabet=st.sampled_from(list("aZ09 _-./:'\"`$()[]{};&|<>*?!#~\\\n\t=%@,^+")),
    min_size=0,
    max_size=30,
)
plausible = st.text(alphabet=string.ascii_letters + string.digits + "._-/", max_size=30)
numbers = st.one_of(
    st.integers(min_value=-2, max_value=70000),
    st.sampled_from([0, 1, 1023, 65535, 65536, 2**31 - 1, 2**31]),
)
KINDS = {
    "int": numbers,
    "port": numbers,
    "number": st.one_of(st.floats(min_value=-1, max_value=1e6), numbers),
    "bool": st.booleans(),
    "duration": st.builds(
        "{}{}".format, st.integers(0, 10**9), st.sampled_from(["ms", "s", "m", "h"])
    ),
    "size": st.builds(
        "{}{}".format, st.integers(0, 10**7), st.sampled_from(["kb", "mb", "gb", "MB", "GB"])
    ),
    "urlpath": st.builds("/{}".format, hostile | plausible),
}


def values_for(var) -> st.SearchStrategy:
    """Values for VAR: those of its kind (its choices), plausible text and hostile text."""
    own = KINDS.get(var.kind)
    if var.kind == "choice":
        own = st.sampled_from(var.choices)
    return st.one_of(own, plausible, hostile) if own is not None else st.one_of(plausible, hostile)


changes = st.dictionaries(
    st.sampled_from(VARIABLES).map(lambda v: v.name), st.none(), min_size=1, max_size=3
).flatmap(
    lambda names: st.fixed_dictionaries(
        {name: values_for(next(v for v in VARIABLES if v.name == name)) for name in names}
    )
)


def sh(command: str) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=60)


def rendered(s) -> dict[str, tuple[str, str]]:
    """What the deploy writes from S, by role: (the file's name, its text); the chart's by the
    flags `helm upgrade` gets."""
    return {
        "proxy configuration": ("proxy.cfg", slots.proxy_config_text(s)),
        "proxy unit": (f"{slots.proxy_service(s)}.service", slots.proxy_unit_text(s)),
        "slot unit": (f"{s.app_service}@.service", slots.slot_unit_text(s)),
        "single unit": (f"{s.app_service}.service", method.unit_text(s)),
        "chart": ("chart", "\n".join(helm.set_flags(s))),
    }


def check(role: str, name: str, text: str, s, folder: Path) -> subprocess.CompletedProcess:
    """The program that reads the file checks it, as the deploy does before installing it."""
    if role == "chart":
        if not Path(helm.chart_path(s), "Chart.yaml").is_file():
            # no chart there: the deploy refuses it on the deploying machine, before any host
            refused = "has no Chart.yaml" in " ".join(deploy_helm.missing_tools(s))
            return subprocess.CompletedProcess([], 0 if refused else 1, "", "not refused")
        return template("4.1.4", s, NEWEST)
    candidate = folder / f"{name}.upload"
    if role == "proxy configuration":  # with the drain map the deploy creates before it
        (folder / "drain.map").write_text("")
        text = text.replace(slots._paths(s)["drain_map"], str(folder / "drain.map"))
        candidate.write_text(text)
        return sh(replaced.haproxy_check(str(candidate)))
    candidate.write_text(text)
    return sh(replaced.unit_verify(str(candidate), name))


def check_env_file(s) -> None:
    """One KEY=value a line, each value as the settings have it: nothing systemd's
    EnvironmentFile= would strip or join (quotes, surrounding blanks, a backslash at the end)."""
    pairs = dotenv.env_values(s, "pw", "")
    lines = dotenv.env_file_content(s, "pw", "").splitlines()
    assert len(lines) == len(pairs)
    for key, value in ((k, str(v)) for k, v in pairs if v is not None):
        assert f"{key}={value}" in lines
        assert value == value.strip() and not value.endswith("\\")
        assert not value.startswith(("'", '"'))


DEFAULTS, _ = validate(BASE, ENV)
KNOWN_GOOD = rendered(DEFAULTS)  # checked once by the first test below


def test_the_defaults_render_files_their_programs_accept(tmp_path):
    for program in ("haproxy", "systemd-analyze"):
        if shutil.which(program) is None:
            pytest.fail(f"{program} is missing: `make deps` installs it (scripts/install-deps.sh)")
    for role, (name, text) in KNOWN_GOOD.items():
        done = check(role, name, text, DEFAULTS, tmp_path)
        assert done.returncode == 0, f"{role}: {done.stdout}{done.stderr}"


def accepted_files_are_accepted(change: dict, folder: Path) -> None:
    """CHANGE applied to BASE: refused with a reason, or every file it renders differently
    from the defaults is accepted by its program."""
    s, problems = validate({**BASE, **change}, ENV)
    if s is None:
        assert problems and all(isinstance(p, str) for p in problems)
        return
    check_env_file(s)
    for role, (name, text) in rendered(s).items():
        if (name, text) != KNOWN_GOOD[role]:
            done = check(role, name, text, s, folder)
            assert done.returncode == 0, f"{change} -> {role}: {done.stdout}{done.stderr}"


examples = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.mark.parametrize("var", VARIABLES, ids=lambda v: v.name)
@examples
@given(data=st.data())
def test_every_accepted_value_of_a_variable_renders_files_their_programs_accept(
    tmp_path, var, data
):
    accepted_files_are_accepted({var.name: data.draw(values_for(var))}, tmp_path)


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(changes)
def test_every_accepted_set_of_values_renders_files_their_programs_accept(tmp_path, change):
    accepted_files_are_accepted(change, tmp_path)
