"""A rule's binary cannot be borrowed: the connecting process is the one that called connect().

On both compute drivers (``local``; ``docker``: the same supervisor inside a container).

Each attack runs several times in a real sandbox against the test host and must
be denied every time (403 with the identity in the reason); the legitimate
shapes (curl itself, an ancestor rule, a program that connects and then hands
the socket to a reader it starts) keep working.
"""

from __future__ import annotations

import subprocess
import textwrap

import pytest

SANDBOX = "e2e-binid"
TRIES = 5

POLICY = """\
version: 1
network_policies:
  curl_up:
    endpoints: [{host: up.example.test, port: 8080, allowed_ips: [10.199.0.0/16]}]
    binaries: [{path: /usr/bin/curl}]
  sh_anc:
    endpoints: [{host: anc.example.test, port: 8080, allowed_ips: [10.199.0.0/16]}]
    binaries: [{path: /usr/bin/dash}]
  py_own:
    endpoints: [{host: py.example.test, port: 8080, allowed_ips: [10.199.0.0/16]}]
    binaries: [{path: "/usr/bin/python3*"}]
"""

# The raw CONNECT a borrower sends; a GET rides along so that an allowed tunnel
# would fetch the page (and then close: Connection: close).
_REQ = (
    "import os, socket\n"
    "proxy = os.environ['HTTP_PROXY'].split('//')[1].rstrip('/').split(':')\n"
    "def dial():\n"
    "    s = socket.create_connection((proxy[0], int(proxy[1])))\n"
    "    s.sendall(b'CONNECT up.example.test:8080 HTTP/1.1\\r\\nHost: up.example.test:8080\\r\\n\\r\\n'\n"
    "              b'GET / HTTP/1.1\\r\\nHost: up.example.test\\r\\nConnection: close\\r\\n\\r\\n')\n"
    "    return s\n"
)

# curl as the socket's last holder: reads the proxy's answer from stdin (the
# socket) until EOF and writes it to a file (file:// upload).
_CURL_READER = "['/usr/bin/curl', '-s', '-m', '5', '-T', '-', 'file:///tmp/answer']"


def _answer(gw, sb) -> str:
    p = gw.sx(sb, "sh", "-c", "cat /tmp/answer; rm -f /tmp/answer")
    return p.stdout.decode(errors="replace")


def _assert_denied(text: str, who: str) -> None:
    first = text.splitlines()[0] if text else ""
    assert first.startswith("HTTP/1.1 403"), text[:400]
    assert who in text and "200 OK" not in text, text[:600]


@pytest.fixture(scope="module")
def gw(any_gateway):
    """Each attack on both compute drivers (``local``, ``docker``)."""
    return any_gateway


@pytest.fixture(scope="module")
def sandbox(gw, upstream, tmp_path_factory):
    policy = tmp_path_factory.mktemp("binid") / "policy.yaml"
    policy.write_text(POLICY)
    gw.cli("sandbox", "delete", SANDBOX)
    hosts = [a for name in ("up", "anc", "py") for a in ("--add-host", f"{name}.example.test:{upstream.ip}")]
    gw.cli("sandbox", "create", "--name", SANDBOX, "--policy", str(policy), *hosts, "--detach", check=True, timeout=180)
    yield SANDBOX
    gw.cli("sandbox", "delete", SANDBOX)


def _py(gw, sb, code: str) -> subprocess.CompletedProcess:
    return gw.sx(sb, "python3", "-c", code, timeout=60)


def _code(gw, sb, *argv: str) -> str:
    return gw.sx(sb, *argv).stdout.decode().strip()


# --------------------------------------------------------------------------- legit


def test_curl_itself_allowed(gw, sandbox):
    assert _code(gw, sandbox, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://up.example.test:8080/") == "200"


def test_python_alone_denied(gw, sandbox):
    out = _code(
        gw, sandbox, "python3", "-c", "import urllib.request as u\ntry: u.urlopen('http://up.example.test:8080/')\nexcept Exception as e: print(e.code)"
    )
    assert out == "403"


def test_ancestor_rule_allows_child(gw, sandbox):
    # "; true": dash forks for the command instead of exec'ing it, so it stays the parent
    get = "import urllib.request as u; print(u.urlopen('http://anc.example.test:8080/').status)"
    out = _code(gw, sandbox, "sh", "-c", f'python3 -c "{get}"; true')
    assert out == "200"


def test_connect_then_helper_reads(gw, sandbox):
    # python3 (allowed for py.example.test) connects and asks, then execs cat on the socket.
    code = textwrap.dedent(
        """\
        import os, socket
        proxy = os.environ['HTTP_PROXY'].split('//')[1].rstrip('/').split(':')
        s = socket.create_connection((proxy[0], int(proxy[1])))
        s.sendall(b'GET http://py.example.test:8080/ HTTP/1.1\\r\\nHost: py.example.test:8080\\r\\nConnection: close\\r\\n\\r\\n')
        os.dup2(s.fileno(), 0)
        os.execv('/usr/bin/head', ['head', '-c', '12'])
        """
    )
    assert _py(gw, sandbox, code).stdout.decode().startswith("HTTP/1.1 200")


# --------------------------------------------------------------------------- attacks


@pytest.mark.parametrize("attempt", range(TRIES))
def test_exec_after_connect_denied(gw, sandbox, attempt):
    code = _REQ + f"s = dial()\nos.dup2(s.fileno(), 0)\nos.execv('/usr/bin/curl', {_CURL_READER})\n"
    _py(gw, sandbox, code)
    _assert_denied(_answer(gw, sandbox), "python3")


@pytest.mark.parametrize("attempt", range(TRIES))
def test_fd_passing_denied(gw, sandbox, attempt):
    code = _REQ + f"import subprocess\ns = dial()\np = subprocess.Popen({_CURL_READER}, stdin=s.fileno())\ns.close()\np.wait()\n"
    _py(gw, sandbox, code)
    _assert_denied(_answer(gw, sandbox), "python3")


@pytest.mark.parametrize("attempt", range(TRIES))
def test_reparenting_denied(gw, sandbox, attempt):
    # The child python connects after its parent became curl.
    code = _REQ + (
        "import time\n"
        "r, w = os.pipe()\n"
        "if os.fork() == 0:\n"
        "    os.close(r); time.sleep(0.5)\n"
        "    s = dial(); data = b''\n"
        "    while chunk := s.recv(65536): data += chunk\n"
        "    open('/tmp/answer', 'wb').write(data); os.close(w); os._exit(0)\n"
        "os.close(w); os.dup2(r, 0)\n"
        "os.execv('/usr/bin/curl', ['/usr/bin/curl', '-s', '-m', '5', '-o', '/dev/null', 'file:///dev/stdin'])\n"
    )
    _py(gw, sandbox, code)
    _assert_denied(_answer(gw, sandbox), "python3")


_PRELOAD_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/socket.h>
__attribute__((constructor)) static void borrow(void) {
    if (getenv("BORROWED")) return;
    setenv("BORROWED", "1", 1);
    char host[64] = {0}; int port = 0;
    sscanf(strstr(getenv("HTTP_PROXY"), "//") + 2, "%63[^:]:%d", host, &port);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, host, &a.sin_addr);
    if (connect(s, (struct sockaddr *)&a, sizeof a) == 0) {
        const char *req = "CONNECT up.example.test:8080 HTTP/1.1\r\nHost: up.example.test:8080\r\n\r\n";
        write(s, req, strlen(req));
        char buf[4096]; ssize_t n = read(s, buf, sizeof buf - 1);
        FILE *f = fopen("/tmp/answer", "w");
        if (f && n > 0) { fwrite(buf, 1, n, f); fclose(f); }
    }
    system("python3 -c \"import urllib.request as u\ntry: u.urlopen('http://up.example.test:8080/'); print('200')\nexcept Exception as e: print(e.code)\" > /tmp/child");
}
"""


@pytest.fixture(scope="module")
def preload_lib(gw, sandbox, tmp_path_factory):
    src = tmp_path_factory.mktemp("preload") / "borrow.c"
    src.write_text(_PRELOAD_C)
    lib = src.with_suffix(".so")
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    # Copied into the sandbox's /sandbox by the sandbox itself (a file it can write).
    p = gw.sx(sandbox, "sh", "-c", "cat > /sandbox/borrow.so", input=lib.read_bytes())
    assert p.returncode == 0, p.stderr
    return "/sandbox/borrow.so"


@pytest.mark.parametrize("attempt", range(TRIES))
def test_ld_preload_into_curl_denied(gw, sandbox, preload_lib, attempt):
    gw.sx(sandbox, "sh", "-c", f"LD_PRELOAD={preload_lib} /usr/bin/curl -s -o /dev/null http://127.0.0.1:9/; true")
    _assert_denied(_answer(gw, sandbox), "untrusted:/usr/bin/curl")
    assert _code(gw, sandbox, "sh", "-c", "cat /tmp/child; rm -f /tmp/child") == "403"


def test_a_subreaper_cannot_be_made(gw, sandbox):
    # A subreaper would adopt orphans it did not create and then vouch for them
    # as an ancestor; the filter refuses prctl(PR_SET_CHILD_SUBREAPER).
    code = "import ctypes, os; libc = ctypes.CDLL(None, use_errno=True); r = libc.prctl(36, 1, 0, 0, 0); print(r, os.strerror(ctypes.get_errno()))"
    assert _py(gw, sandbox, code).stdout.decode().strip() == "-1 Operation not permitted"
