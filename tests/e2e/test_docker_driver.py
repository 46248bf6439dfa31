"""The ``docker`` compute driver end to end, on OpenShell's private Docker Engine.

A real gateway with ``--driver docker`` (the ``docker_gateway`` fixture), real
containers of the default image built by debootstrap + ``docker import``. The
isolation checks run on this driver too (``test_isolation_checks.py``).
"""

from __future__ import annotations

import io
import json
import os
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
    tags = [t for r in rows for t in r["image"].split(", ")]  # an image may carry several tags
    assert any(r["kind"] == "built" for r in rows) and "openshell/sandbox:latest" in tags, rows


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


# --------------------------------------------------------------------------- disk limit

WRITE_48M = "b = bytes(2**20)\nwith open('/sandbox/big', 'wb') as f:\n    for _ in range(48):\n        f.write(b)\n        f.flush()\n"


def _sandbox_dir(gw, name: str):
    sid = _container(name, gw).labels["openshell.sandbox.id"]
    return gw.state_dir / "sandboxes" / sid


def test_disk_limit_bounds_the_workdir_and_survives_stop_start(docker_gateway):
    gw = docker_gateway
    gw.cli("sandbox", "create", "--name", "dk-disk", "--disk", "32Mi", "--detach", check=True)
    d = None
    try:
        d = _sandbox_dir(gw, "dk-disk")
        p = gw.sx("dk-disk", "sh", "-c", "df -k /sandbox | tail -1")
        assert p.returncode == 0 and 24 * 1024 < int(p.stdout.split()[1]) <= 32 * 1024, p.stdout
        p = gw.sx("dk-disk", "python3", "-c", WRITE_48M, timeout=120)
        assert p.returncode != 0 and "No space left on device" in _err(p), _err(p)
        # The workdir's image never takes more than the limit on the host.
        assert (d / "workdir.ext4").stat().st_blocks * 512 <= 32 * 2**20
        assert gw.sx("dk-disk", "sh", "-c", "rm /sandbox/big; echo kept > /sandbox/f").returncode == 0
        gw.cli("sandbox", "stop", "dk-disk", check=True)
        gw.cli("sandbox", "start", "dk-disk", check=True)
        assert gw.sx("dk-disk", "cat", "/sandbox/f").stdout.decode() == "kept\n"
        p = gw.sx("dk-disk", "sh", "-c", "df -k /sandbox | tail -1")
        assert int(p.stdout.split()[1]) <= 32 * 1024, p.stdout
    finally:
        gw.cli("sandbox", "delete", "dk-disk")
    # delete unmounts and removes the image
    assert d is not None and not (d / "workdir.ext4").exists()
    with open("/proc/self/mountinfo") as f:
        assert str(d) not in f.read()


# --------------------------------------------------------------------------- runtime cache


def test_a_gateway_start_prunes_old_runtimes_but_not_one_a_container_mounts(docker_gateway):
    import os
    import time

    from openshell_plugin_docker import runtime

    gw = docker_gateway
    long_ago = time.time() - 2 * runtime.PRUNE_GRACE
    tag = f"{os.getpid():x}"
    old, mounted = runtime.CACHE_ROOT / f"runtime-0ldtest{tag}", runtime.CACHE_ROOT / f"runtime-m0untedtest{tag}"
    for d in (old, mounted):
        (d / "bin").mkdir(parents=True)
        (d / "bin" / "python3").write_bytes(b"not really")
        os.utime(d, (long_ago, long_ago))
    holder = _client().containers.run(
        "openshell/sandbox:latest", ["sleep", "600"], volumes={str(mounted): {"bind": "/mnt/rt", "mode": "ro"}}, detach=True, network_mode="none"
    )
    try:
        gw.cli("gateway", "stop", "--name", gw.name, check=True)
        gw.cli("gateway", "start", "--name", gw.name, "--port", str(gw.port), "--driver", "docker", check=True, timeout=60)
        # The prune runs once the gateway's runtime is ready (a background thread).
        deadline = time.monotonic() + 120
        while old.exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not old.exists()
        assert (mounted / "bin" / "python3").exists()
        current = [d for d in runtime.CACHE_ROOT.iterdir() if d.name.startswith("runtime-") and time.time() - d.stat().st_mtime < 600]
        assert current, "the gateway's own runtime is kept (and marked used)"
    finally:
        holder.remove(force=True)
        import shutil

        shutil.rmtree(old, ignore_errors=True)
        shutil.rmtree(mounted, ignore_errors=True)


# --------------------------------------------------------------------------- access: forward, upload/download


def test_forward_reaches_a_server_on_the_sandbox_loopback(docker_gateway):
    import socket
    import subprocess
    import time

    from conftest import OPENSHELL, free_port  # noqa: E402 - tests/ is on sys.path (conftest)

    gw = docker_gateway
    port = free_port()
    gw.cli("sandbox", "create", "--name", "dk-fwd", "--detach", check=True)
    code = (
        "import http.server\nclass H(http.server.BaseHTTPRequestHandler):\n def do_GET(self):\n"
        "  self.send_response(200); self.end_headers(); self.wfile.write(b'from-docker-sandbox')\n"
        f"http.server.HTTPServer(('127.0.0.1', {port}), H).serve_forever()"
    )
    server = subprocess.Popen(
        [OPENSHELL, "sandbox", "exec", "dk-fwd", "--", "python3", "-c", code],
        env=gw.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        probe = f"import socket; socket.create_connection(('127.0.0.1', {port}), 1)"
        deadline = time.monotonic() + 30
        while gw.sx("dk-fwd", "python3", "-c", probe).returncode != 0:
            assert time.monotonic() < deadline, "server in the sandbox did not start"
            time.sleep(0.3)
        # The container shares the host's network namespace, the sandbox does not: the
        # port is free on the host until forwarded.
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))
        gw.cli("forward", "start", str(port), "dk-fwd", check=True)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            data = b""
            while chunk := s.recv(4096):
                data += chunk
        assert data.endswith(b"from-docker-sandbox"), data[-200:]
        gw.cli("forward", "stop", str(port), "dk-fwd", check=True)
    finally:
        gw.cli("forward", "stop", str(port), "dk-fwd")
        server.kill()
        server.wait()
        gw.cli("sandbox", "delete", "dk-fwd")


def test_upload_and_download_round_trip_modes_and_symlinks(docker_gateway, tmp_path):
    import os

    gw = docker_gateway
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "run.sh").write_text("#!/bin/sh\necho ran\n")
    os.chmod(src / "run.sh", 0o755)
    (src / "sub" / "data.bin").write_bytes(bytes(range(256)) * 64)
    os.symlink("sub/data.bin", src / "link")
    gw.cli("sandbox", "create", "--name", "dk-xfer", "--detach", check=True)
    try:
        gw.cli("sandbox", "upload", "dk-xfer", str(src), "/sandbox/tree", check=True)
        p = gw.sx("dk-xfer", "sh", "-c", "/sandbox/tree/run.sh; readlink /sandbox/tree/link; stat -c %U /sandbox/tree/sub/data.bin")
        assert p.stdout.decode().split() == ["ran", "sub/data.bin", "sandbox"], _err(p)
        back = tmp_path / "back"
        gw.cli("sandbox", "download", "dk-xfer", "/sandbox/tree", str(back), check=True)
        assert (back / "sub" / "data.bin").read_bytes() == (src / "sub" / "data.bin").read_bytes()
        assert os.readlink(back / "link") == "sub/data.bin"
        assert os.stat(back / "run.sh").st_mode & 0o100
    finally:
        gw.cli("sandbox", "delete", "dk-xfer")


# --------------------------------------------------------------------------- templates and images


def test_a_template_carries_an_image_the_driver_honours(docker_gateway):
    gw = docker_gateway
    _client().images.get("openshell/sandbox:latest").tag("openshell-test/tmpl", "1")
    gw.cli("template", "create", "dk-tmpl", "--image", "openshell-test/tmpl:1", "--memory", "300Mi", check=True)
    gw.cli("template", "create", "dk-tmpl-missing", "--image", "openshell-test/nosuch:2", check=True)
    try:
        p = gw.cli("sandbox", "create", "--name", "dk-from-tmpl", "--template", "dk-tmpl", "--detach")
        assert p.returncode == 0, _err(p)
        c = _container("dk-from-tmpl", gw)
        assert c.attrs["Config"]["Image"] == "openshell-test/tmpl:1"
        assert c.attrs["HostConfig"]["Memory"] == 300 * 2**20
        assert gw.sx("dk-from-tmpl", "id", "-un").stdout.decode() == "sandbox\n"
        p = gw.cli("sandbox", "create", "--name", "dk-tmpl-bad", "--template", "dk-tmpl-missing", "--", "true")
        err = _err(p).strip().splitlines()
        assert p.returncode != 0 and len(err) == 1 and "openshell-test/nosuch:2" in err[0] and "not in the docker engine" in err[0], err
    finally:
        gw.cli("sandbox", "delete", "dk-from-tmpl")
        gw.cli("sandbox", "delete", "dk-tmpl-bad")
        gw.cli("template", "delete", "dk-tmpl", "dk-tmpl-missing")
        _client().images.remove("openshell-test/tmpl:1")


def _busybox_image(repo: str, extra: dict[str, tuple[bytes, int]] | None = None) -> str:
    """An image with no C library at all: a static busybox as /bin/sh and its applets,
    /etc/passwd with the ``sandbox`` user, /sandbox; plus ``extra`` files
    (path in the image → content, mode; owned by root)."""
    import shutil
    import subprocess

    import pytest

    busybox = shutil.which("busybox")
    if busybox is None or b"statically linked" not in subprocess.run(["file", "-L", busybox], capture_output=True).stdout:
        pytest.skip("needs Debian's busybox-static")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:

        def add_dir(name: str, mode: int = 0o755) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)

        def add_file(name: str, data: bytes, mode: int = 0o644) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))

        made = {"bin", "etc", "tmp", "proc", "dev", "sys", "usr", "usr/bin", "var", "run"}
        for d in sorted(made):
            add_dir(d, 0o1777 if d == "tmp" else 0o755)
        with open(busybox, "rb") as f:
            add_file("bin/busybox", f.read(), 0o755)
        for applet in ("sh", "cat", "echo", "id", "ls", "ldd", "env", "true", "sleep", "mkdir", "tar", "df", "stat", "readlink", "rm", "touch"):
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
        add_file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nsandbox:x:1000:1000:sandbox:/sandbox:/bin/sh\n")
        for name, (data, mode) in (extra or {}).items():
            parent = name.rpartition("/")[0]
            if parent and parent not in made:
                add_dir(parent)
                made.add(parent)
            add_file(name, data, mode)
        add_file("etc/group", b"root:x:0:\nsandbox:x:1000:\n")
        info = tarfile.TarInfo("sandbox")
        info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, 0o755, 1000, 1000
        tar.addfile(info)
    _client().api.import_image_from_data(buf.getvalue(), repository=repo, tag="1")
    return f"{repo}:1"


def test_an_image_without_a_c_library_runs_the_sandbox(docker_gateway):
    """The supervisor brings its own loader and C library: an image holding only a
    static busybox (no glibc, no musl, no Python) runs sandboxes with the same isolation."""
    gw = docker_gateway
    image = _busybox_image("openshell-test/busybox-static")
    p = gw.cli("sandbox", "create", "--name", "dk-nolibc", "--from", image, "--detach")
    try:
        assert p.returncode == 0, _err(p)
        p = gw.sx("dk-nolibc", "sh", "-c", "id -un; ls /lib /lib64 /usr/lib 2>&1 | head -3; echo hi > /sandbox/f; cat /sandbox/f; cat /etc/shadow; echo $?")
        out = p.stdout.decode().split("\n")
        assert out[0] == "sandbox", (p.stdout, _err(p))
        assert "hi" in out and out[-2] != "0", out  # the workdir is writable; root's files are not readable
        assert "No such file" in out[1] or not out[1].strip(), out  # no C library in the image
    finally:
        gw.cli("sandbox", "delete", "dk-nolibc")
        _client().images.remove(image, force=True)


MUSL_PROGRAM = r"""
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
int main(void) {
    int fd = open("/etc/shadow", O_RDONLY);
    printf("musl program ran; /etc/shadow: %s\n", fd < 0 ? strerror(errno) : "opened");
    return 0;
}
"""


def test_an_image_whose_c_library_is_musl_runs_the_sandbox(docker_gateway, tmp_path):
    """Another C library than the host's: an image whose only dynamic loader is musl's
    (no glibc; a static busybox for /bin/sh) runs sandboxes, and a musl-linked program
    of the image runs in them under the same isolation (the sandbox user cannot read
    root's files)."""
    import shutil
    import subprocess

    import pytest

    musl_gcc = shutil.which("musl-gcc")
    loader = "/lib/ld-musl-x86_64.so.1"
    if musl_gcc is None or not os.path.exists(loader):
        pytest.skip("needs musl-tools (apt-get install musl-tools; scripts/setup.sh installs it)")
    src = tmp_path / "hello.c"
    src.write_text(MUSL_PROGRAM)
    subprocess.run([musl_gcc, "-O2", "-o", str(tmp_path / "hello-musl"), str(src)], check=True)
    exe = (tmp_path / "hello-musl").read_bytes()
    assert b"ld-musl-x86_64.so.1" in exe  # dynamically linked against musl, not static
    with open(os.path.realpath(loader), "rb") as f:
        musl = f.read()
    image = _busybox_image(
        "openshell-test/musl",
        {
            "lib/ld-musl-x86_64.so.1": (musl, 0o755),
            "usr/bin/hello-musl": (exe, 0o755),
            "etc/shadow": (b"root:*:19000:0:99999:7:::\n", 0o600),
        },
    )
    p = docker_gateway.cli("sandbox", "create", "--name", "dk-musl", "--from", image, "--detach")
    try:
        assert p.returncode == 0, _err(p)
        p = docker_gateway.sx("dk-musl", "sh", "-c", "id -un; hello-musl; ls /lib; ls /lib64 /usr/lib 2>&1 | grep -c libc.so.6 || true")
        out = p.stdout.decode().split("\n")
        assert p.returncode == 0, (p.stdout, _err(p))
        assert out[0] == "sandbox", out
        assert out[1] == "musl program ran; /etc/shadow: Permission denied", out
        assert out[2] == "ld-musl-x86_64.so.1" and out[3] == "0", out  # musl's loader only, no glibc
    finally:
        docker_gateway.cli("sandbox", "delete", "dk-musl")
        _client().images.remove(image, force=True)


# --------------------------------------------------------------------------- inference.local


def test_inference_local_routes_to_a_local_backend(docker_gateway, tmp_path_factory):
    """inference.local on a docker sandbox: the router in the container's supervisor reaches a
    fake model server on the host's loopback (the container shares the host's network
    namespace), with the backend's credential and model; the sandbox never sees the key.
    Own docker gateway: the route is gateway-wide and must not leak into other tests."""
    from conftest import _start_gateway  # noqa: E402 - tests/ is on sys.path (conftest)
    from fakes.model_server import ModelServer

    chat = json.dumps({"model": "ignored-by-router", "messages": [{"role": "user", "content": "hi"}]})
    with ModelServer(reply="routed from a container") as model:
        gw = _start_gateway(tmp_path_factory.mktemp("inf-docker"), "inf-docker", driver="docker")
        try:
            gw.cli("provider", "create", "--name", "inf-key", "--type", "openai", "--credential", "OPENAI_API_KEY=sk-backend-456", check=True)
            gw.cli("inference", "set", "--backend", "openai", "--model", "served-model", "--base-url", model.base_url, "--provider", "inf-key", check=True)
            gw.cli("sandbox", "create", "--name", "dk-inf", "--detach", check=True, timeout=180)
            p = gw.sx(
                "dk-inf",
                "curl", "-sS", "--max-time", "30", "https://inference.local/v1/chat/completions",
                "-H", "Content-Type: application/json", "-H", "Authorization: Bearer sandbox-made-this-up", "-d", chat,
            )  # fmt: skip
            assert p.returncode == 0, _err(p)
            assert json.loads(p.stdout)["choices"][0]["message"]["content"] == "routed from a container"
            seen = model.requests[-1]
            assert seen.body["model"] == "served-model" and seen.headers["Authorization"] == "Bearer sk-backend-456"
            env = gw.sx("dk-inf", "sh", "-c", "env; cat /proc/1/environ 2>/dev/null").stdout
            assert b"sk-backend-456" not in env
        finally:
            gw.cli("sandbox", "delete", "--all", timeout=180)
            gw.cli("gateway", "stop", "--name", gw.name, timeout=60)


def test_delete_keep_workdir_copies_the_disk_limited_workdir_out(docker_gateway):
    gw = docker_gateway
    gw.cli("sandbox", "create", "--name", "dk-keep", "--detach", check=True)
    d = _sandbox_dir(gw, "dk-keep")
    sid = d.name
    assert gw.sx("dk-keep", "sh", "-c", "echo keep-me > /sandbox/kept.txt").returncode == 0
    gw.cli("sandbox", "delete", "dk-keep", "--keep-workdir", check=True)
    out = gw.state_dir / "sandboxes" / f"{sid}-workdir.tar"
    try:
        with tarfile.open(out) as tar:
            member = tar.extractfile("workdir/kept.txt")
            assert member is not None and member.read() == b"keep-me\n"
        assert not (d / "workdir.ext4").exists()
    finally:
        out.unlink(missing_ok=True)
