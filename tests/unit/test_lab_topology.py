import ipaddress

import pytest

from lab.topology import BRIDGE_ADDRESS, ENVS, SUBNET, topology


def test_staging_has_one_app_host_a_database_and_a_backup_repository():
    hosts = {h.name: h for h in topology("staging")}
    assert set(hosts) == {"app1", "db1", "repo1"}
    assert hosts["app1"].groups == ("app_servers",)
    assert hosts["db1"].groups == ("db_servers",)
    assert hosts["repo1"].groups == ("backup_servers",)


def test_production_has_app_hosts_a_database_a_cache_a_balancer_a_repository_and_prometheus():
    hosts = {h.name: h for h in topology("production")}
    assert list(hosts) == ["app1", "app2", "app3", "db1", "cache1", "lb1", "repo1", "mon1"]
    assert hosts["lb1"].groups == ("lb_servers",)
    assert hosts["mon1"].groups == ("monitoring_servers",)
    assert hosts["mon1"].address == "10.231.7.77"


def test_more_app_hosts_keep_every_address_of_the_plan():
    three = {h.name: h.address for h in topology("production")}
    eight = {h.name: h.address for h in topology("production", app_hosts=8)}
    assert {k: eight[k] for k in three} == three
    assert [n for n in eight if n.startswith("app")] == [f"app{i}" for i in range(1, 9)]
    assert eight["app4"] == "10.231.7.47" and eight["app8"] == "10.231.7.51"
    assert [h.name for h in topology("production", app_hosts=1)][:2] == ["app1", "db1"]
    fleet = {h.name: h.address for h in topology("production", app_hosts=32)}
    assert {k: fleet[k] for k in eight} == eight and fleet["app32"] == "10.231.7.75"


def test_app_host_count_is_bounded():
    with pytest.raises(ValueError, match="app hosts must be 1 to 32"):
        topology("production", app_hosts=33)


def test_addresses_are_unique_inside_the_lab_subnet_and_avoid_the_bridge():
    addresses = [h.address for env in ENVS for h in topology(env, app_hosts=32)]
    assert len(addresses) == len(set(addresses))
    for address in addresses:
        assert ipaddress.ip_address(address) in SUBNET
        assert ipaddress.ip_address(address) != BRIDGE_ADDRESS


def test_kernel_names_are_unique_and_short_enough():
    hosts = [h for env in ENVS for h in topology(env, app_hosts=32)]
    for attr in ("machine", "netns", "veth"):
        values = [getattr(h, attr) for h in hosts]
        assert len(values) == len(set(values)), attr
    assert all(len(h.veth) <= 15 for h in hosts)


def test_unknown_environment_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown lab environment 'qa'"):
        topology("qa")
