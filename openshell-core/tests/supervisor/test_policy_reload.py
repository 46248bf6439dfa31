"""The supervisor's PolicyReloader with the real ``opa`` engine (POLICY.md §6).

The proxy is a recorder of ``set_policy`` calls here; the real proxy closing
tunnels on reload is covered by tests/e2e/test_policy_reload.py.
"""

from __future__ import annotations

import asyncio
import ipaddress

import pytest
from openshell.plugin.loader import get_registry
from openshell.policy import parse_policy
from openshell.policy.decision import ConnectInput
from openshell.supervisor.policy_reload import PolicyReloader, check_reserved_networks, link_networks

CREATED = """\
version: 1
landlock: {compatibility: hard_requirement}
network_policies:
  a: {endpoints: [{host: a.test, port: 80}], binaries: [{path: /usr/bin/curl}]}
"""
UPDATE = """\
version: 1
network_policies:
  b: {endpoints: [{host: b.test, port: 80}], binaries: [{path: /usr/bin/curl}]}
"""
LINK = ipaddress.ip_network("10.200.0.0/16")


class RecordingProxy:
    def __init__(self) -> None:
        self.compiled = []

    def set_policy(self, compiled) -> None:
        self.compiled.append(compiled)


class Reports:
    def __init__(self, fail_first: int = 0) -> None:
        self.calls: list[tuple[int, str | None]] = []
        self.fail_first = fail_first

    async def __call__(self, *, policy_revision: int, policy_error: str | None) -> bool:
        self.calls.append((policy_revision, policy_error))
        return len(self.calls) > self.fail_first


@pytest.fixture
def engine():
    return get_registry().require("policy", "opa")()


def make(engine, reports=None):
    proxy = RecordingProxy()
    reports = reports or Reports()
    reloader = PolicyReloader(engine, proxy, parse_policy(CREATED), 1, reports, reserved=[LINK])
    return reloader, proxy, reports


def allowed(engine, compiled, host: str) -> bool:
    return engine.decide_connect(compiled, ConnectInput(host=host, port=80, binary="/usr/bin/curl")).allowed


def test_new_revision_reaches_the_proxy_and_is_reported_loaded(engine):
    reloader, proxy, reports = make(engine)
    assert asyncio.run(reloader.apply(2, UPDATE)) is True
    (compiled,) = proxy.compiled
    assert allowed(engine, compiled, "b.test") and not allowed(engine, compiled, "a.test")
    assert reports.calls == [(2, None)] and reloader.revision == 2
    # Omitted static sections kept the ones in force.
    assert reloader.policy.landlock.compatibility == "hard_requirement"


def test_static_change_fails_the_revision_and_keeps_the_last_good_one(engine):
    reloader, proxy, reports = make(engine)
    assert asyncio.run(reloader.apply(2, UPDATE.replace("network_policies", "landlock: {compatibility: best_effort}\nnetwork_policies"))) is False
    assert proxy.compiled == [] and reloader.revision == 1
    ((rev, error),) = reports.calls
    assert rev == 2 and error.startswith("landlock.compatibility:") and "recreate the sandbox" in error


def test_sandbox_link_network_is_refused(engine):
    reloader, proxy, reports = make(engine)
    doc = UPDATE.replace("port: 80}", "port: 80, allowed_ips: [10.0.0.0/8]}")
    assert asyncio.run(reloader.apply(2, doc)) is False
    assert proxy.compiled == []
    assert reports.calls[0][1].startswith("network_policies.b.endpoints[0].allowed_ips:")
    assert "10.200.0.0/16" in reports.calls[0][1]


def test_engine_failure_is_reported_with_its_reason(engine):
    class Broken(type(engine)):
        def load(self, policy, version=0):
            raise RuntimeError("rego bundle could not be built")

    reloader, proxy, reports = make(Broken())
    assert asyncio.run(reloader.apply(2, UPDATE)) is False
    assert reports.calls == [(2, "rego bundle could not be built")] and proxy.compiled == []


def test_old_and_repeated_revisions_are_ignored(engine):
    reloader, proxy, reports = make(engine)
    asyncio.run(reloader.apply(2, UPDATE))
    assert asyncio.run(reloader.apply(2, UPDATE)) is False
    assert asyncio.run(reloader.apply(1, CREATED)) is False
    assert len(proxy.compiled) == 1 and reports.calls == [(2, None)]


def test_a_lost_report_is_retried(engine):
    reloader, _, reports = make(engine, Reports(fail_first=2))
    asyncio.run(reloader.apply(2, UPDATE))
    assert reports.calls == [(2, None)] * 3


def test_link_networks_and_ip_literal_hosts():
    assert link_networks({"proxy_ip": "10.200.7.1", "sandbox_ip": "10.200.7.2"}) == [LINK]
    assert link_networks({}) == []
    with pytest.raises(Exception, match=r"network_policies\.x\.endpoints\[0\]\.host"):
        check_reserved_networks(
            parse_policy("version: 1\nnetwork_policies:\n  x: {endpoints: [{host: 10.200.3.2, port: 22}], binaries: [{path: /**}]}\n"), [LINK]
        )
    check_reserved_networks(
        parse_policy("version: 1\nnetwork_policies:\n  x: {endpoints: [{host: a.test, port: 1, allowed_ips: [10.199.0.0/16]}], binaries: [{path: /**}]}\n"),
        [LINK],
    )
