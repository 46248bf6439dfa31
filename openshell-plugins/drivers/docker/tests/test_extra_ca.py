"""``$OPENSHELL_EXTRA_CA`` of the gateway reaches the supervisor in the container (no engine needed)."""

from __future__ import annotations

import pytest
from openshell_plugin_docker import driver


def test_no_extra_ca_means_only_path(monkeypatch):
    monkeypatch.delenv("OPENSHELL_EXTRA_CA", raising=False)
    assert driver._extra_ca() is None
    assert driver._container_env() == {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}


def test_extra_ca_is_copied_and_pointed_at(monkeypatch, tmp_path):
    pem = tmp_path / "ca.pem"
    pem.write_bytes(b"-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setenv("OPENSHELL_EXTRA_CA", str(pem))
    assert driver._extra_ca() == pem.read_bytes()
    assert driver._container_env()["OPENSHELL_EXTRA_CA"] == driver.EXTRA_CA == "/var/lib/openshell/tls/extra-ca.pem"


def test_an_unreadable_extra_ca_fails_the_create(monkeypatch, tmp_path):
    monkeypatch.setenv("OPENSHELL_EXTRA_CA", str(tmp_path / "missing.pem"))
    with pytest.raises(OSError):
        driver._extra_ca()
