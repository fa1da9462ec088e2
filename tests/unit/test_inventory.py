import pytest

from tasks import inventory


def test_layers_apply_in_order_with_later_files_winning(tmp_path, monkeypatch):
    (tmp_path / "all.yml").write_text("a: 1\nb: 1\n")
    (tmp_path / "staging.yml").write_text("b: 2\nc: 2\n")
    (tmp_path / "lab.yml").write_text("c: 3\n")
    monkeypatch.setattr(inventory, "GROUP_VARS_DIR", tmp_path)
    assert inventory.layered_vars("staging", "lab") == {"a": 1, "b": 2, "c": 3}


def test_a_missing_layer_is_empty_and_a_non_mapping_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setattr(inventory, "GROUP_VARS_DIR", tmp_path)
    assert inventory.read_vars("nope") == {}
    (tmp_path / "bad.yml").write_text("- a\n- b\n")
    with pytest.raises(SystemExit) as exc:
        inventory.read_vars("bad")
    assert "bad.yml: expected a mapping" in str(exc.value)
    assert "Nothing was changed." in str(exc.value)


@pytest.mark.parametrize(
    "text, where, problem",
    [
        ("app_port: 8080\napp_user: [a, b\n", ":3:1:", "expected ',' or ']'"),
        ("a: 1\n  b: 2\n", ":2:4:", "mapping values are not allowed here"),
        ("a: 'open\n", ":2:1:", "found unexpected end of stream"),
        ("a: 1\nb: *nothing\n", ":2:4:", "found undefined alias"),
    ],
)
def test_a_malformed_file_names_itself_its_line_and_the_problem(
    tmp_path, monkeypatch, text, where, problem
):
    monkeypatch.setattr(inventory, "GROUP_VARS_DIR", tmp_path)
    (tmp_path / "staging.yml").write_text(text)
    with pytest.raises(SystemExit) as exc:
        inventory.layered_vars("staging")
    message = str(exc.value)
    assert message.startswith(f"{tmp_path / 'staging.yml'}{where} ")
    assert problem in message and "Traceback" not in message


def test_the_repos_lab_layer_names_a_local_redis_image():
    assert inventory.layered_vars("staging")["redis_image"] == "redis:7-alpine"
    assert inventory.layered_vars("staging", "lab")["redis_image"] == "mdd-lab/redis:7"


def test_hosts_are_taken_in_the_order_people_count_them():
    names = ["app10", "app2", "app1", "web-02.b", "web-10.a", "lb1"]
    assert sorted(names, key=inventory.host_order) == [
        "app1",
        "app2",
        "app10",
        "lb1",
        "web-02.b",
        "web-10.a",
    ]


def test_the_command_lines_data_is_read_as_pyinfra_reads_it():
    argv = ["pyinfra", "-y", "inventories/lab.py", "deploy.py", "--data", "app_port=99999"]
    argv += ["--data=auto_rollback=false", "--data", "report_notes=a=b", "--limit", "app1"]
    assert inventory.cli_data(argv) == {
        "app_port": 99999,
        "auto_rollback": False,
        "report_notes": "a=b",
    }
    assert inventory.cli_data(["pyinfra", "inv.py", "deploy.py", "--data"]) == {}


def test_a_bad_data_value_stops_before_pyinfra_connects(monkeypatch, tmp_path):
    monkeypatch.setattr(inventory, "GROUP_VARS_DIR", tmp_path)
    (tmp_path / "all.yml").write_text("deploy_env: t\napp_repo_url: x\ndb_host: db\n")
    monkeypatch.setenv("DB_PASSWORD", "pw")
    assert inventory.checked_vars(argv=["--data", "app_port=8080"])["db_host"] == "db"
    with pytest.raises(SystemExit) as exc:
        inventory.checked_vars(argv=["--data", "app_port=99999", "--data", "app_verison=x"])
    message = str(exc.value)
    assert "2 problem(s)" in message and "app_port: must be a TCP port" in message
    assert "app_verison: unknown variable (did you mean app_version?)" in message
