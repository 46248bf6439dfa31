"""Isolation checks of tests/cases/isolation-checks.md, each inside a real sandbox.

The policy and the list of check ids are read from that file; every id must
have a check here (a new id in the file fails until it is implemented).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import cases_dir  # noqa: E402 - tests/ is on sys.path (conftest)

CHECKS_FILE = "isolation-checks.md"
SANDBOX = "iso-checks"
UPSTREAM_IP: list[str] = []  # set by the sandbox fixture (the test host's address)
UPSTREAM = "http://up.example.test:8080/"


def _checks_doc() -> str:
    return (cases_dir() / CHECKS_FILE).read_text()


def _policy_yaml() -> str:
    m = re.search(r"```yaml\n(.*?)```", _checks_doc(), re.S)
    assert m, "no yaml policy block in isolation-checks.md"
    return m.group(1)


def _check_ids() -> list[str]:
    return re.findall(r"^\| (I\d\d) \|", _checks_doc(), re.M)


@pytest.fixture(scope="module", params=["local", "docker"])
def gw(request):
    """The same checks on both compute drivers: host processes and docker containers."""
    return request.getfixturevalue("gateway" if request.param == "local" else "docker_gateway")


@pytest.fixture(scope="module")
def sandbox(gw, upstream, tmp_path_factory):
    gateway = gw
    UPSTREAM_IP[:] = [upstream.ip]
    policy = tmp_path_factory.mktemp("iso") / "policy.yaml"
    policy.write_text(_policy_yaml())
    gateway.cli("sandbox", "delete", SANDBOX)
    gateway.cli("sandbox", "create", "--name", SANDBOX, "--policy", str(policy), "--add-host", f"up.example.test:{upstream.ip}", "--detach", check=True)
    yield SANDBOX
    gateway.cli("sandbox", "delete", SANDBOX)


def _docker_containers():
    import docker
    from openshell_plugin_docker import dockerd
    from openshell_plugin_docker.driver import LABEL_ID

    client = docker.DockerClient(base_url=dockerd.engine_url())
    return client.containers.list(filters={"label": LABEL_ID})


def _host_workdirs(gw) -> list[Path]:
    """Every sandbox workdir as the host sees it (docker: the host mount of its disk-limited
    file system, as with local, or without one inside each container's upper layer)."""
    mounted = list((gw.state_dir / "sandboxes").glob("*/workdir"))
    if gw.driver != "docker":
        return mounted
    return mounted + [Path(c.attrs["GraphDriver"]["Data"]["UpperDir"]) / "var/lib/openshell/state/workdir" for c in _docker_containers()]


def _supervisor_configs(gw) -> list[dict]:
    """Every supervisor.json of the gateway's sandboxes (docker: read out of the containers)."""
    if gw.driver != "docker":
        return [json.loads(c.read_text()) for c in (gw.state_dir / "sandboxes").glob("*/supervisor.json")]
    import io
    import tarfile

    out = []
    for c in _docker_containers():
        stream, _ = c.get_archive("/var/lib/openshell/supervisor.json")
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            member = tar.extractfile("supervisor.json")
            assert member is not None
            out.append(json.loads(member.read()))
    return out


def py(gateway, sandbox, code: str):
    return gateway.sx(sandbox, "python3", "-c", code)


# --------------------------------------------------------------------------- checks


def check_I01(gw, sb):
    p = gw.sx(sb, "sh", "-c", "id -u; cat /proc/self/status")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.decode().splitlines()
    assert lines[0] != "0"
    status = dict(line.split(":\t", 1) for line in lines[1:] if ":\t" in line)
    for cap in ("CapEff", "CapPrm", "CapBnd", "CapAmb", "CapInh"):
        assert int(status[cap].strip(), 16) == 0, f"{cap} = {status[cap]}"
    assert status["NoNewPrivs"].strip() == "1"
    assert status["Seccomp"].strip() == "2"


def check_I02(gw, sb):
    p = py(gw, sb, "import os,errno\ntry:\n os.setuid(0); print('ROOT')\nexcept OSError as e: print(errno.errorcode[e.errno])")
    assert p.stdout.decode().strip() == "EPERM"


def check_I03(gw, sb):
    p = py(
        gw,
        sb,
        "import errno\nfor path in ('/etc/openshell-probe', '/usr/probe'):\n try:\n  open(path, 'w'); print('CREATED', path)\n except OSError as e: print(errno.errorcode[e.errno])\nprint(len(open('/etc/hostname').read()) > 0)",
    )
    out = p.stdout.decode().split()
    assert out[:2] in (["EACCES", "EACCES"], ["EPERM", "EPERM"], ["EACCES", "EPERM"], ["EPERM", "EACCES"]), out
    assert out[2] == "True"


def check_I04(gw, sb):
    script = (
        "set -e; for d in /sandbox /tmp; do cd $d; echo a > f1; mv f1 f2; mkdir -p sub; mv f2 sub/f3; "
        "cat sub/f3 >/dev/null; rm sub/f3; rmdir sub; done; echo OK"
    )
    p = gw.sx(sb, "sh", "-c", script)
    assert p.returncode == 0 and p.stdout.decode().strip() == "OK", p.stderr.decode()


def check_I05(gw, sb):
    # /var/lib/openshell-owned is owned by the sandbox user but outside the policy.
    import os
    import pwd

    owned = Path("/var/lib/openshell-e2e-owned")
    owned.mkdir(exist_ok=True)
    uid = pwd.getpwnam("sandbox").pw_uid
    os.chown(owned, uid, uid)
    try:
        code = (
            "import os\nfor p in ('/root','/home','/opt','/var/lib','%s'):\n try:\n  os.listdir(p); print('LISTED', p)\n except OSError as e: print('DENIED', p)"
            % owned
        )
        out = py(gw, sb, code).stdout.decode()
        assert "LISTED" not in out and out.count("DENIED") == 5, out
    finally:
        owned.rmdir()


def check_I06(gw, sb):
    # Another sandbox's workdir and the gateway's state directory, by host path.
    other = "iso-other"
    gw.cli("sandbox", "create", "--name", other, "--detach", check=True)
    try:
        gw.sx(other, "sh", "-c", "echo secret > /sandbox/mine")
        state = gw.state_dir
        other_work = [p for p in _host_workdirs(gw) if (p / "mine").exists()]
        assert other_work, "other sandbox's workdir not found on the host"
        code = "import sys\nfor p in sys.argv[1:]:\n try:\n  open(p).read(); print('READ', p)\n except OSError: print('DENIED', p)"
        paths = [str(other_work[0] / "mine"), str(state / "gateway.db"), str(state / "pki" / "ca.key")]
        if gw.driver == "docker":  # the supervisor's own files inside the sandbox's container
            paths += ["/var/lib/openshell/supervisor.json", "/var/lib/openshell/tls/client.key"]
        out = gw.sx(sb, "python3", "-c", code, *paths).stdout.decode()
        assert "READ" not in out and out.count("DENIED") == len(paths), out
    finally:
        gw.cli("sandbox", "delete", other)


def check_I07(gw, sb):
    p = gw.sx(sb, "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", UPSTREAM)
    assert p.stdout.decode() == "200", p.stderr.decode()


def check_I08(gw, sb):
    code = f"import urllib.request as u, json\ntry:\n u.urlopen('{UPSTREAM}'); print('200')\nexcept Exception as e:\n print(e.code); print(e.read().decode())"
    out = py(gw, sb, code).stdout.decode().splitlines()
    assert out[0] == "403", out
    assert json.loads(out[1])["error"] == "policy_denied"


def check_I09(gw, sb):
    code = (
        "import socket,time\nt=time.time()\ntry:\n socket.create_connection(('%s', 8080), timeout=5); print('CONNECTED')\nexcept OSError as e: print('FAILED', round(time.time()-t, 2))"
        % UPSTREAM_IP[0]
    )
    out = py(gw, sb, code).stdout.decode().split()
    assert out[0] == "FAILED" and float(out[1]) < 1.0, out


def check_I10(gw, sb):
    code = (
        "import os,socket\nproxy=os.environ['HTTP_PROXY'].split('//')[1].split(':')[0]\n"
        "for port in (22, 80, 8080, 50051, 3129):\n"
        " try:\n  socket.create_connection((proxy, port), timeout=3); print('OPEN', port)\n except OSError: print('CLOSED', port)\n"
        "socket.create_connection((proxy, 3128), timeout=3); print('PROXY OPEN')"
    )
    out = py(gw, sb, code).stdout.decode()
    assert "OPEN " not in out.replace("PROXY OPEN", "") and out.count("CLOSED") == 5 and "PROXY OPEN" in out, out


def check_I11(gw, sb):
    code = (
        "import socket\nq=b'\\x12\\x34\\x01\\x00\\x00\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x07example\\x03com\\x00\\x00\\x01\\x00\\x01'\n"
        "ok=0\nfor addr in ('%s', '10.200.0.1', '127.0.0.53', '10.199.0.53'):\n"
        " s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1)\n"
        " try:\n  s.sendto(q, (addr, 53)); s.recvfrom(512); print('ANSWER', addr); ok+=1\n except OSError as e: print('FAILED', addr)\n"
    ) % UPSTREAM_IP[0]
    out = py(gw, sb, code).stdout.decode()
    assert "ANSWER" not in out and out.count("FAILED") == 4, out
    p = py(gw, sb, "import socket\ntry:\n socket.getaddrinfo('example.com', 80); print('RESOLVED')\nexcept OSError: print('NO DNS')")
    assert p.stdout.decode().strip() == "NO DNS"


def check_I12(gw, sb):
    code = (
        "import socket,errno\n"
        "def t(*a):\n try:\n  socket.socket(*a).close(); return 'OK'\n except OSError as e: return errno.errorcode[e.errno]\n"
        "print(t(socket.AF_PACKET, socket.SOCK_RAW, 0))\nprint(t(socket.AF_NETLINK, socket.SOCK_RAW, 4))\nprint(t(socket.AF_NETLINK, socket.SOCK_RAW, 0))"
    )
    assert py(gw, sb, code).stdout.decode().split() == ["EPERM", "EPERM", "OK"]


def check_I13(gw, sb):
    code = r"""
import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
def r(ret):
    return 'OK' if ret >= 0 else errno.errorcode[ctypes.get_errno()]
print(r(libc.ptrace(0, 0, None, None)))
print(r(libc.unshare(0x10000000)))
print(r(libc.mount(b'none', b'/tmp', b'tmpfs', 0, None)))
print(r(libc.syscall(321, 0, None, 0)))
print(r(libc.syscall(319, b'x', 0)))
"""
    assert py(gw, sb, code).stdout.decode().split() == ["EPERM"] * 5


def check_I14(gw, sb):
    import os

    sup_pids = [int(p) for p in os.listdir("/proc") if p.isdigit() and _is_supervisor(int(p))]
    assert sup_pids, "no supervisor process found"
    pid = sup_pids[0]
    code = f"import os,signal\ntry:\n open('/proc/{pid}/environ','rb').read(); print('READ')\nexcept OSError: print('DENIED')\ntry:\n os.kill({pid}, signal.SIGTERM); print('SIGNALLED')\nexcept OSError: print('DENIED')"
    assert py(gw, sb, code).stdout.decode().split() == ["DENIED", "DENIED"]


def _is_supervisor(pid: int) -> bool:
    try:
        return b"openshell.supervisor" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def check_I15(gw, sb):
    env = dict(line.split("=", 1) for line in gw.sx(sb, "env").stdout.decode().splitlines() if "=" in line)
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy", "NO_PROXY"):
        assert var in env, var
    for var in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "GIT_SSL_CAINFO", "NODE_EXTRA_CA_CERTS"):
        assert var in env and env[var].startswith("/etc/openshell-tls/"), var
    assert gw.sx(sb, "test", "-s", env["SSL_CERT_FILE"]).returncode == 0
    leaked = [k for k in env if re.search(r"SECRET|TOKEN|PASSWORD|API_KEY|OPENSHELL_GATEWAY|XDG_", k)]
    assert not leaked, leaked
    # The sandbox's NSSH1 secret must not appear in any variable.
    secrets = [cfg["secret"] for cfg in _supervisor_configs(gw)]
    blob = "\n".join(f"{k}={v}" for k, v in env.items())
    assert secrets and not any(s in blob for s in secrets)


def check_I16(gw, sb):
    assert gw.sx(sb, "sh", "-c", "ulimit -H -c").stdout.decode().strip() == "0"


def check_I17(gw, sb):
    # A child of the agent's process gets the same isolation (I03 and I08 again).
    p = gw.sx(
        sb,
        "bash",
        "-c",
        "touch /usr/probe 2>/dev/null && echo CREATED || echo DENIED; python3 -c \"import urllib.request as u\ntry:\n u.urlopen('"
        + UPSTREAM
        + "')\nexcept Exception as e: print(e.code)\"",
    )
    assert p.stdout.decode().split() == ["DENIED", "403"]
    p = gw.sx(sb, "bash", "-c", "curl -sS -o /dev/null -w '%{http_code}' " + UPSTREAM)
    assert p.stdout.decode() == "200"


def _python_status(gw, sb) -> str:
    """HTTP status python3 gets for UPSTREAM (403 from the proxy while python3 is not in a rule)."""
    code = f"import urllib.request as u\ntry:\n print(u.urlopen('{UPSTREAM}').status)\nexcept Exception as e: print(e.code)"
    return py(gw, sb, code).stdout.decode().strip()


_I18_RULE = '  py_up: {endpoints: [{host: up.example.test, port: 8080, allowed_ips: [10.199.0.0/16]}], binaries: [{path: "/usr/bin/python3*"}]}\n'
_I18_FS = (
    "import errno, os\n"
    "for path in ('/usr/probe', '/etc/openshell-probe', '/sandbox/i18', '/tmp/i18'):\n"
    " try:\n  open(path, 'w').close(); print('WROTE', path)\n except OSError as e: print(errno.errorcode[e.errno], path)\n"
    "try:\n os.listdir('/opt'); print('LISTED /opt')\nexcept OSError: print('DENIED /opt')\n"
)


def check_I18(gw, sb):
    # A live update adding python3 to the network rules, static sections
    # omitted (so kept), is seen by the next `sandbox exec`; the filesystem
    # policy is unchanged. The module's policy is restored afterwards.
    import tempfile

    policy = _policy_yaml()
    assert _python_status(gw, sb) == "403"
    with tempfile.TemporaryDirectory() as tmp:
        update, original = Path(tmp) / "update.yaml", Path(tmp) / "original.yaml"
        update.write_text("version: 1\n" + policy[policy.index("network_policies:") :] + _I18_RULE)
        original.write_text(policy)
        gw.cli("policy", "set", sb, "--policy", str(update), "--wait", "--timeout", "30", check=True)
        try:
            assert _python_status(gw, sb) == "200"
            out = py(gw, sb, _I18_FS).stdout.decode().splitlines()
            assert [line.split()[0] in ("EACCES", "EPERM") for line in out[:2]] == [True, True], out
            assert out[2:] == ["WROTE /sandbox/i18", "WROTE /tmp/i18", "DENIED /opt"], out
            active = json.loads(gw.cli("policy", "get", sb, "-o", "json", check=True).stdout)
            assert active["revision"] >= 2 and "hard_requirement" in active["policy_yaml"]
        finally:
            gw.cli("policy", "set", sb, "--policy", str(original), "--wait", "--timeout", "30", check=True)
    assert _python_status(gw, sb) == "403"


CHECKS = {name[len("check_") :]: fn for name, fn in globals().items() if name.startswith("check_")}
NOT_YET: dict[str, str] = {}


@pytest.mark.parametrize("check_id", _check_ids())
def test_isolation_check(check_id, gw, sandbox):
    if check_id in NOT_YET:
        pytest.xfail(NOT_YET[check_id])
    assert check_id in CHECKS, f"isolation check {check_id} has no implementation"
    CHECKS[check_id](gw, sandbox)
