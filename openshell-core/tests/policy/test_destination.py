"""Destination safety (POLICY.md §2.5)."""

from __future__ import annotations

import pytest
from openshell.policy.destination import check_destination
from openshell.policy.model import Endpoint

EXACT = Endpoint(host="db.corp.test", ports=(5432,))
WILD = Endpoint(host="*.corp.test", ports=(443,))
WILD_IPS = Endpoint(host="*.corp.test", ports=(443,), allowed_ips=("10.1.0.0/16", "10.9.9.9"))
ANY_IPS = Endpoint(host="", ports=(8080,), allowed_ips=("10.199.0.0/24",))


@pytest.mark.parametrize("addr", ["127.0.0.1", "127.8.8.8", "::1", "169.254.169.254", "fe80::1", "0.0.0.0", "::", "::ffff:127.0.0.1", "0.1.2.3"])
def test_always_blocked_addresses_are_denied_whatever_the_policy(addr):
    for ep in (EXACT, WILD, WILD_IPS):
        r = check_destination("db.corp.test", ep, [addr])
        assert not r.ok and r.check == "always-blocked"
        assert "always" in r.reason


def test_every_resolved_address_is_checked():
    r = check_destination("db.corp.test", EXACT, ["10.0.0.5", "127.0.0.1"])
    assert not r.ok


def test_exact_host_accepts_private_answers():
    r = check_destination("db.corp.test", EXACT, ["10.0.5.7", "100.64.1.1", "fd00::5"])
    assert r.ok and r.addresses == ("10.0.5.7", "100.64.1.1", "fd00::5")


@pytest.mark.parametrize("addr", ["10.1.2.3", "192.168.1.1", "172.16.0.1", "100.64.0.1", "fd12::1"])
def test_wildcard_host_without_allowed_ips_needs_public_addresses(addr):
    r = check_destination("api.corp.test", WILD, [addr])
    assert not r.ok and r.check == "public-only"


def test_wildcard_host_accepts_public_addresses():
    assert check_destination("api.corp.test", WILD, ["93.184.215.14"]).ok


def test_allowed_ips_must_contain_every_address():
    assert check_destination("api.corp.test", WILD_IPS, ["10.1.2.3", "10.9.9.9"]).ok
    r = check_destination("api.corp.test", WILD_IPS, ["10.1.2.3", "10.2.0.1"])
    assert not r.ok and r.check == "allowed_ips"
    assert "10.2.0.1" in r.reason


def test_allowed_ips_also_bind_exact_hosts_to_their_ranges():
    ep = Endpoint(host="db.corp.test", ports=(5432,), allowed_ips=("10.0.0.0/8",))
    assert not check_destination("db.corp.test", ep, ["93.184.215.14"]).ok


def test_hostless_endpoint_allows_names_inside_allowed_ips():
    assert check_destination("up.example.test", ANY_IPS, ["10.199.0.2"]).ok
    assert not check_destination("up.example.test", ANY_IPS, ["10.198.0.2"]).ok


def test_ip_literal_host_is_its_own_address_and_resolution_is_ignored():
    ep = Endpoint(host="10.199.0.2", ports=(8080,))
    r = check_destination("10.199.0.2", ep, ["93.184.215.14"])
    assert r.ok and r.addresses == ("10.199.0.2",)


def test_ip_literal_loopback_is_denied():
    assert not check_destination("127.0.0.1", Endpoint(host="127.0.0.1", ports=(80,)), []).ok


def test_name_without_addresses_is_denied():
    r = check_destination("db.corp.test", EXACT, [])
    assert not r.ok and r.check == "resolution"


def test_garbage_address_is_denied():
    assert not check_destination("db.corp.test", EXACT, ["not-an-ip"]).ok


def test_duplicate_addresses_are_returned_once():
    assert check_destination("db.corp.test", EXACT, ["10.0.0.1", "10.0.0.1"]).addresses == ("10.0.0.1",)


@pytest.mark.parametrize("addr", ["10.200.1.1", "10.200.255.2", "::ffff:10.200.3.1"])
def test_sandbox_link_network_is_always_blocked_even_for_an_exact_host(addr):
    # Found by a fresh-user test: an --add-host entry pointing an exact host at
    # 10.200.x.x made the proxy dial it from the root namespace, where that range
    # has no route and followed the default route off the machine.
    ep = Endpoint(host="link.example.test", ports=(3128,))
    res = check_destination("link.example.test", ep, [addr])
    assert not res.ok and "sandbox link network" in res.reason
    lit = check_destination(addr, Endpoint(host=addr, ports=(3128,)), [])
    assert not lit.ok
