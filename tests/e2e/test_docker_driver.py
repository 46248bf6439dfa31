"""The ``docker`` compute driver end to end, on OpenShell's private Docker Engine.

A real gateway with ``--driver docker`` (the ``docker_gateway`` fixture), real
containers of the default image built by debootstrap + ``docker import``. The
isolation checks run on this driver too (``test_isolation_checks.py``).
"""

from __future__ import annotations

import io
import json
import tarfile


def _client():
    import docker
    from openshell_plugin_docker import dockerd

    return docker.DockerClient(base_url=dockerd.engine_url())


def _container(name: str, gw):
    from openshell_plugin_docker.driver import LABEL_NAME

    found = [c for c in _client().containers.list(all=True, filters={"label": f"{LABEL_NAME}={name}"})]
    assert len(found) == 1, [c.name for c in found]
    return found[0]


def _err(p) -> str:
    return (p.stderr or b"").decode()


def test_create_runs_in_a_container_of_the_default_image(docker_gateway):
    gw = docker_gateway
    gw.cli("sandbox", "create", "--name", "dk-basic", "--cpu", "0.5", "--memory", "256Mi", "--detach", check=True)
    try:
        p = gw.sx("dk-basic", "sh", "-c", "id -un; cat /etc/debian_version; python -c 'import cloudpickle; print(7)'; git --version; node -v")
        assert p.returncode == 0, _err(p)
        out = p.stdout.decode().splitlines()
        assert out[0] == "sandbox" and out[2] == "7" and out[3].startswith("git version") and out[4].startswith("v")
        c = _container("dk-basic", gw)
        hc = c.attrs["HostConfig"]
        assert c.labels["openshell.sandbox.workspace"] and c.labels["openshell.sandbox.id"]
        assert hc["Privileged"] is False and hc["CapDrop"] == ["ALL"] and "SYS_ADMIN" in hc["CapAdd"]
        assert hc["Memory"] == 256 * 2**20 and hc["NanoCpus"] == 500_000_000 and hc["PidsLimit"] > 0
        assert c.attrs["Config"]["Image"] == "openshell/sandbox:latest"
        # The supervisor's runtime is read-only; the container's own file system is the image's.
        p = gw.sx("dk-basic", "sh", "-c", "touch /.openshell/x; echo $?")
        assert p.stdout.decode().strip() != "0"
    finally:
        gw.cli("sandbox", "delete", "dk-basic")
    from openshell_plugin_docker.driver import LABEL_NAME

    assert not _client().containers.list(all=True, filters={"label": f"{LABEL_NAME}=dk-basic"})


def test_stop_start_keep_the_container_and_workdir_and_delete_removes_it(docker_gateway):
    gw = docker_gateway
    gw.cli("sandbox", "create", "--name", "dk-stop", "--detach", check=True)
    try:
        assert gw.sx("dk-stop", "sh", "-c", "echo kept > /sandbox/f").returncode == 0
        cid = _container("dk-stop", gw).id
        gw.cli("sandbox", "stop", "dk-stop", check=True)
        got = json.loads(gw.cli("sandbox", "get", "dk-stop", "-o", "json", check=True).stdout)
        assert got["phase"] == "STOPPED", got
        assert _container("dk-stop", gw).status == "exited"
        gw.cli("sandbox", "start", "dk-stop", check=True)
        assert _container("dk-stop", gw).id == cid
        assert gw.sx("dk-stop", "cat", "/sandbox/f").stdout.decode() == "kept\n"
    finally:
        gw.cli("sandbox", "delete", "dk-stop", check=True)
    assert not _client().containers.list(all=True, filters={"id": cid})


def test_gateway_restart_finds_running_containers(docker_gateway):
    gw = docker_gateway
    gw.cli("sandbox", "create", "--name", "dk-restart", "--detach", check=True)
    try:
        gw.cli("gateway", "stop", "--name", gw.name, check=True)
        assert _container("dk-restart", gw).status == "running"  # the sandbox outlives its gateway
        gw.cli("gateway", "start", "--name", gw.name, "--port", str(gw.port), "--driver", "docker", check=True, timeout=60)
        p = gw.sx("dk-restart", "echo", "still here")
        assert p.stdout.decode() == "still here\n", _err(p)
    finally:
        gw.cli("sandbox", "delete", "dk-restart")


def test_from_a_dockerfile_directory(docker_gateway, tmp_path):
    gw = docker_gateway
    (tmp_path / "Dockerfile").write_text("FROM openshell/sandbox:latest\nRUN echo built-here > /usr/local/share/built.txt\n")
    p = gw.cli("sandbox", "create", "--name", "dk-from", "--from", str(tmp_path), "--no-keep", "--", "cat", "/usr/local/share/built.txt", timeout=300)
    assert p.returncode == 0, _err(p)
    assert p.stdout.decode() == "built-here\n"
    rows = json.loads(gw.cli("images", "list", "-o", "json", check=True).stdout)
    assert any(r["kind"] == "built" for r in rows) and any(r["image"] == "openshell/sandbox:latest" for r in rows)


def test_a_missing_image_is_one_clear_error(docker_gateway):
    gw = docker_gateway
    p = gw.cli("sandbox", "create", "--name", "dk-missing", "--from", "openshell-test/nosuch:1", "--", "true")
    try:
        assert p.returncode != 0
        err = _err(p).strip().splitlines()
        assert len(err) == 1 and "openshell-test/nosuch:1" in err[0] and "not in the docker engine" in err[0], err
    finally:
        gw.cli("sandbox", "delete", "dk-missing")


def test_an_image_without_a_shell_is_one_clear_error(docker_gateway):
    gw = docker_gateway
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = b"no shell in here\n"
        info = tarfile.TarInfo("hello.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    _client().api.import_image_from_data(buf.getvalue(), repository="openshell-test/noshell", tag="1")
    p = gw.cli("sandbox", "create", "--name", "dk-noshell", "--from", "openshell-test/noshell:1", "--", "true")
    try:
        assert p.returncode != 0
        err = _err(p).strip().splitlines()
        assert len(err) == 1 and "has no /bin/sh" in err[0], err
    finally:
        gw.cli("sandbox", "delete", "dk-noshell")


def test_an_image_is_refused_by_the_local_driver(gateway):
    p = gateway.cli("sandbox", "create", "--name", "local-img", "--from", "openshell/sandbox:latest", "--", "true")
    assert p.returncode != 0 and "has no images" in _err(p)


def test_engine_events_reach_watch(docker_gateway):
    """An OOM kill at the container's memory limit and the container's exit on stop are
    platform events of source ``driver`` on ``sandbox watch``."""
    import queue
    import subprocess
    import threading

    from conftest import OPENSHELL  # noqa: E402 - tests/ is on sys.path (conftest)

    gw = docker_gateway
    gw.cli("sandbox", "create", "--name", "dk-events", "--memory", "160Mi", "--detach", check=True)
    watch = subprocess.Popen([OPENSHELL, "sandbox", "watch", "dk-events", "--no-logs", "-o", "json"], env=gw.env, stdout=subprocess.PIPE)
    lines: queue.Queue = queue.Queue()

    def read() -> None:
        assert watch.stdout is not None
        for raw in watch.stdout:
            lines.put(json.loads(raw))

    threading.Thread(target=read, daemon=True).start()

    def until(pred) -> dict:
        while True:
            ev = lines.get(timeout=60)
            if pred(ev):
                return ev

    try:
        until(lambda e: e["kind"] == "status" and e["sandbox"]["phase"] == "READY")
        p = gw.sx("dk-events", "python3", "-c", "b = bytearray(600 * 2**20)", timeout=120)
        assert p.returncode != 0
        oom = until(lambda e: e["kind"] == "event" and e["reason"] == "OOMKilled" and e["source"] == "driver")
        assert "memory limit" in oom["message"]
        gw.cli("sandbox", "stop", "dk-events", check=True)
        exited = until(lambda e: e["kind"] == "event" and e["reason"] == "ContainerExited")
        assert "on request" in exited["message"]
    finally:
        watch.terminate()
        watch.wait(timeout=10)
        gw.cli("sandbox", "delete", "dk-events")
