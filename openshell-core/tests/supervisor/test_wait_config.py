"""``openshell-sandbox --wait-config``: the docker driver starts the container before it
copies the config in; the supervisor reads the file once it is complete."""

from __future__ import annotations

import json
import threading
import time

import pytest
from openshell.supervisor.main import _load_config

CONFIG = {
    "sandbox_id": "s1",
    "name": "n",
    "gateway_endpoint": "https://127.0.0.1:1",
    "ca_cert": "/x/ca.pem",
    "client_cert": "/x/c.pem",
    "client_key": "/x/c.key",
    "secret": "00",
    "netns_index": 1,
    "state_dir": "/x/state",
    "ssh_socket": "/x/ssh.sock",
    "container": True,
}


def test_a_config_that_appears_late_and_in_two_writes_is_read_once_complete(tmp_path):
    path = tmp_path / "supervisor.json"
    text = json.dumps(CONFIG)

    def copy_in() -> None:
        time.sleep(0.1)
        with open(path, "w") as f:
            f.write(text[:20])  # a half-copied file must not be taken
            f.flush()
            time.sleep(0.1)
            f.write(text[20:])

    threading.Thread(target=copy_in, daemon=True).start()
    cfg = _load_config(str(path), wait=30)
    assert cfg.sandbox_id == "s1" and cfg.container is True


def test_without_a_wait_or_after_it_a_missing_config_fails(tmp_path):
    with pytest.raises(OSError):
        _load_config(str(tmp_path / "none.json"), wait=0)
    with pytest.raises(OSError):
        _load_config(str(tmp_path / "none.json"), wait=0.05)
