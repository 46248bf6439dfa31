"""The netns layer's own rtnetlink client, against the real kernel in a scratch namespace."""

from __future__ import annotations

import errno
import os
import uuid

import pytest
from openshell.plugin import nsutil
from openshell_plugin_netns import _remove_named_netns, _run_in_thread, create_named_netns
from openshell_plugin_netns.rtnl import Rtnl, _attr, _attrs

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")


@pytest.fixture
def two_namespaces():
    names = [f"osbt-{uuid.uuid4().hex[:6]}", f"osbt-{uuid.uuid4().hex[:6]}"]
    try:
        for n in names:
            create_named_netns(n)
        yield names
    finally:
        for n in names:
            _remove_named_netns(n)


def test_veth_address_and_state(two_namespaces) -> None:
    a, b = two_namespaces

    def build():
        fd = os.open(nsutil.netns_path(b), os.O_RDONLY)
        try:
            with nsutil.in_netns(a), Rtnl() as rt:
                rt.add_veth("vta", "vtb", fd)
                idx, _ = rt.link("vta")
                rt.add_ipv4(idx, "10.201.7.1", 24)
                rt.set_up(idx)
                with pytest.raises(OSError) as dup:
                    rt.add_veth("vta", "vtc", fd)
                assert dup.value.errno == errno.EEXIST
                with pytest.raises(OSError) as missing:
                    rt.link("nosuch0")
                assert missing.value.errno == errno.ENODEV
            with nsutil.in_netns(b), Rtnl() as rt:
                idx, state = rt.link("vtb")  # the peer went to the other namespace
                assert idx > 0 and state == "DOWN"
                rt.add_ipv4(idx, "10.201.7.2", 24)
                rt.set_up(idx)
                rt.set_up(rt.link("lo")[0])
                assert rt.link("lo")[1] in ("UNKNOWN", "UP")
        finally:
            os.close(fd)

    _run_in_thread(build)
    out = os.popen(f"ip -n {b} -br addr show vtb").read()
    assert "10.201.7.2/24" in out


def test_names_and_attributes_are_parsed_strictly() -> None:
    with Rtnl() as rt:
        for bad in ("", "x" * 16, "a/b", "a\0b"):
            with pytest.raises(ValueError):
                rt.link(bad)
    assert _attrs(_attr(3, b"eth0\0") + _attr(16, b"\x06")) == {3: b"eth0\0", 16: b"\x06"}
    with pytest.raises(ValueError):
        _attrs(b"\xff\x00\x03\x00eth0")  # claims 255 bytes, has 8
