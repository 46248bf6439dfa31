"""The proxy end to end: real curl/Python clients → ProxyServer → a test host in a netns.

POLICY.md §2.6 (what the client sees), §2.4 (identity from the kernel),
§2.5 (destination safety), §6 (reloads). Identity runs in host mode here; the
namespace mode has its own test module.
"""

from __future__ import annotations

import json
import os
import socket
import time

import pytest

CURL = "/usr/bin/curl"
BASH = os.path.realpath("/bin/bash")

pytestmark = pytest.mark.timeout(120)


def policy(upstream_ip: str, python: str) -> str:
    """web.test for curl, pyweb.test for the Python client, loopback/link-local traps for anyone."""
    return f"""
version: 1
network_policies:
  web:
    endpoints:
      - {{host: web.test, port: 8080, allowed_ips: [10.199.0.0/16]}}
      - {{host: dead.test, port: 8081, allowed_ips: [10.199.0.0/16]}}
      - {{host: "{upstream_ip}", port: 8080}}
    binaries: [{{path: {CURL}}}]
  pyweb:
    endpoints:
      - {{host: pyweb.test, port: 8080, allowed_ips: [10.199.0.0/16]}}
    binaries: [{{path: "{python}"}}]
  traps:
    endpoints:
      - {{host: trap.test, port: 8080}}
      - {{host: 127.0.0.1, port: 8080}}
      - {{host: 169.254.169.254, port: 80}}
      - {{host: "::1", port: 8080}}
    binaries: [{{path: "/**"}}]
"""


@pytest.fixture
def hosts(upstream):
    return {
        "web.test": [upstream.ip],
        "dead.test": [upstream.ip],
        "pyweb.test": [upstream.ip],
        "trap.test": ["127.0.0.1"],
    }


@pytest.fixture
def proxy(proxy_factory, upstream, hosts, clients):
    return proxy_factory(policy(upstream.ip, clients.python), hosts=hosts)


def split_response(data: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return lines[0], headers, body


# ------------------------------------------------------------------ CONNECT


def test_connect_allowed_for_curl_reaches_upstream(proxy, upstream, clients):
    res = clients.curl_get(proxy.url, "http://web.test:8080/hello", "-p")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["host"] == upstream.name and doc["path"] == "/hello"
    [line] = proxy.decisions()
    assert line["decision"] == "ALLOWED" and line["host"] == "web.test" and line["port"] == "8080"
    assert line["binary"] == CURL and line["policy"] == "web" and line["sandbox"] == proxy.server.sandbox_id
    assert line["engine"] == proxy.engine.name and "time" in line and "reason" in line and "ancestors" in line


def test_connect_answers_200_connection_established_then_tunnels(proxy, upstream, clients):
    data = clients.raw(
        proxy.hostport,
        "CONNECT pyweb.test:8080 HTTP/1.1\r\nHost: pyweb.test:8080\r\n\r\n",
        after_head="GET /t HTTP/1.1\r\nHost: pyweb.test\r\nConnection: close\r\n\r\n",
    )
    assert data.startswith(b"HTTP/1.1 200 Connection Established\r\n\r\nHTTP/1.1 200 OK\r\n")
    assert json.loads(data.split(b"\r\n\r\n", 2)[2])["path"] == "/t"


def test_connect_denied_for_binary_not_in_rule(proxy, clients):
    data = clients.raw(proxy.hostport, "CONNECT web.test:8080 HTTP/1.1\r\nHost: web.test:8080\r\n\r\n")
    status, headers, body = split_response(data)
    assert status == "HTTP/1.1 403 Forbidden"
    assert headers["content-type"] == "application/json" and headers["connection"] == "close"
    doc = json.loads(body)
    assert list(doc) == ["error", "detail", "reason"]
    assert doc["error"] == "policy_denied"
    assert doc["detail"] == "CONNECT web.test:8080 not permitted by policy"
    assert clients.python in doc["reason"]
    [line] = proxy.decisions()
    assert line["decision"] == "DENIED" and line["binary"] == clients.python


def test_connect_to_unknown_host_is_denied_naming_host_and_port(proxy, clients):
    data = clients.raw(proxy.hostport, "CONNECT nowhere.test:9999 HTTP/1.1\r\n\r\n")
    status, _, body = split_response(data)
    assert status.startswith("HTTP/1.1 403")
    doc = json.loads(body)
    assert doc["error"] == "policy_denied" and "nowhere.test:9999" in doc["reason"]
    assert doc["detail"] == "CONNECT nowhere.test:9999 not permitted by policy"
    # curl sees the refusal as a failed tunnel
    res = clients.curl_get(proxy.url, "http://nowhere.test:9999/", "-p")
    assert res.returncode != 0 and b"403" in res.stderr


@pytest.mark.parametrize(
    "target",
    ["trap.test:8080", "127.0.0.1:8080", "169.254.169.254:80", "[::1]:8080"],
    ids=["name-to-loopback", "loopback", "link-local", "ipv6-loopback"],
)
def test_connect_to_always_blocked_address_is_ssrf_denied(proxy, clients, target):
    data = clients.raw(proxy.hostport, f"CONNECT {target} HTTP/1.1\r\n\r\n")
    status, _, body = split_response(data)
    assert status.startswith("HTTP/1.1 403")
    doc = json.loads(body)
    assert doc["error"] == "ssrf_denied", doc
    assert doc["detail"] == f"CONNECT {target} not permitted by policy"
    assert "always-blocked" in doc["reason"]
    [line] = proxy.decisions()
    assert line["decision"] == "DENIED" and line["engine"] == "ssrf"


def test_connect_dial_failure_gives_502_and_never_200(proxy, clients):
    # dead.test maps to the test host, where nothing listens on 8081 (RST at once).
    res = clients.curl_get(proxy.url, "http://dead.test:8081/", "-p", "-v")
    assert res.returncode != 0
    assert b"502" in res.stderr and b"Connection Established" not in res.stderr
    assert proxy.events("dial_failed")


def test_connect_ipv6_literal_target_is_parsed_from_brackets(proxy, clients):
    data = clients.raw(proxy.hostport, "CONNECT [fe80::1]:443 HTTP/1.1\r\n\r\n")
    doc = json.loads(split_response(data)[2])
    assert doc["detail"] == "CONNECT [fe80::1]:443 not permitted by policy"


# ------------------------------------------------------------------ forward proxy


def test_forward_get_allowed_rewrites_to_origin_form(proxy, upstream, clients):
    res = clients.curl_get(proxy.url, "http://web.test:8080/a/b?x=1", "-H", "Proxy-Authorization: Basic c2VjcmV0")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["method"] == "GET" and doc["path"] == "/a/b?x=1" and doc["host"] == upstream.name
    sent = {k.lower(): v for k, v in doc["headers"]}
    assert sent["host"] == "web.test:8080"
    assert "proxy-authorization" not in sent and "proxy-connection" not in sent
    assert sent["connection"] == "close"
    [line] = proxy.decisions()
    assert line["decision"] == "ALLOWED" and line["method"] == "GET" and line["path"] == "/a/b"
    assert "c2VjcmV0" not in "\n".join(proxy.logs.lines)  # header values never logged


def test_forward_post_body_reaches_upstream(proxy, clients):
    res = clients.curl_get(proxy.url, "http://web.test:8080/submit", "--data-binary", "payload-123")
    doc = json.loads(res.stdout)
    assert doc["method"] == "POST" and doc["request_body"] == "payload-123"


def test_forward_get_denied_body(proxy, clients):
    data = clients.raw(proxy.hostport, "GET http://web.test:8080/secret?token=abc HTTP/1.1\r\nHost: web.test:8080\r\n\r\n")
    status, headers, body = split_response(data)
    assert status.startswith("HTTP/1.1 403") and headers["content-type"] == "application/json"
    doc = json.loads(body)
    assert doc["error"] == "policy_denied"
    assert doc["detail"] == "GET web.test:8080/secret not permitted by policy"
    assert "token=abc" not in "\n".join(proxy.logs.lines)


def test_forward_https_absolute_uri_is_400_use_connect(proxy, clients):
    data = clients.raw(proxy.hostport, "GET https://web.test/ HTTP/1.1\r\nHost: web.test\r\n\r\n")
    status, _, body = split_response(data)
    assert status.startswith("HTTP/1.1 400") and "CONNECT" in json.loads(body)["detail"]


# ------------------------------------------------------------------ malformed input


@pytest.mark.parametrize(
    "request_text",
    [
        "GARBAGE\r\n\r\n",
        "GET /origin-form HTTP/1.1\r\nHost: web.test\r\n\r\n",
        "CONNECT web.test HTTP/1.1\r\n\r\n",
        "CONNECT web.test:99999 HTTP/1.1\r\n\r\n",
        "CONNECT user@web.test:80 HTTP/1.1\r\n\r\n",
        "CONNECT web.test:8080 HTTP/1.1\r\nBad Header\r\n\r\n",
        "CONNECT web.test:8080 HTTP/1.1\r\n folded: x\r\n\r\n",
        "CONNECT web.test:8080 HTTP/2.0\r\n\r\n",
        "CONNECT  web.test:8080 HTTP/1.1\r\n\r\n",
    ],
)
def test_malformed_request_is_400(proxy, clients, request_text):
    status, _, body = split_response(clients.raw(proxy.hostport, request_text))
    assert status.startswith("HTTP/1.1 400"), (request_text, status)
    assert json.loads(body)["error"] in ("bad_request", "use_connect")
    assert not proxy.decisions()


def test_header_block_over_8_kib_is_431(proxy, clients):
    big = "X-Pad: " + "a" * (9 * 1024) + "\r\n"
    status, _, _ = split_response(clients.raw(proxy.hostport, f"CONNECT web.test:8080 HTTP/1.1\r\n{big}\r\n"))
    assert status.startswith("HTTP/1.1 431")


def test_idle_client_times_out(proxy_factory, upstream, hosts, clients):
    proxy = proxy_factory(policy(upstream.ip, clients.python), hosts=hosts, head_timeout=0.5)
    with socket.create_connection(("127.0.0.1", proxy.server.port), timeout=5) as s:
        s.sendall(b"CONNECT web.te")  # and never finish
        start = time.monotonic()
        data = b""
        while chunk := s.recv(4096):
            data += chunk
        assert time.monotonic() - start < 4
    assert data.startswith(b"HTTP/1.1 408")


@pytest.mark.parametrize(
    "greeting",
    [b"\x05\x01\x00", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"],
    ids=["socks5-greeting", "tls-client-hello"],
)
def test_non_http_client_gets_400_at_once_not_after_the_head_timeout(proxy, clients, greeting):
    # A client configured for SOCKS (or TLS to the proxy) waits for an answer to its
    # first bytes; the head deadline (10 s here) must not be what ends it.
    with socket.create_connection(("127.0.0.1", proxy.server.port), timeout=5) as s:
        start = time.monotonic()
        s.sendall(greeting)
        data = b""
        while chunk := s.recv(4096):
            data += chunk
        elapsed = time.monotonic() - start
    status, _, body = split_response(data)
    assert status.startswith("HTTP/1.1 400"), data[:200]
    assert "not an HTTP request" in json.loads(body)["detail"]
    assert elapsed < 3, elapsed
    assert not proxy.decisions()
    # A refusal: shown by `sandbox logs --level warning`, which is where a user looks first.
    assert any(line.startswith("event=bad_request ") and "not an HTTP request" in line for line in proxy.logs.warnings)


# ------------------------------------------------------------------ identity, reloads, hosts


def test_identity_of_child_process_lists_shell_as_ancestor(proxy, clients):
    res = clients.run(["/bin/bash", "-c", f"{CURL} -sS -p -x {proxy.url} http://web.test:8080/ ; true"])
    assert res.returncode == 0 and b"hello from" in res.stdout, res.stderr
    [line] = proxy.decisions()
    assert line["binary"] == CURL
    assert line["ancestors"].split(",")[0] == BASH


def test_set_policy_switches_decisions_for_new_connections(proxy, upstream, clients):
    assert clients.curl_get(proxy.url, "http://web.test:8080/", "-p").returncode == 0
    proxy.set_policy("version: 1\nnetwork_policies: {}\n")
    res = clients.curl_get(proxy.url, "http://web.test:8080/", "-p")
    assert res.returncode != 0 and b"403" in res.stderr
    assert proxy.decisions()[-1]["reason"] == "network connections not allowed by policy"
    proxy.set_policy(policy(upstream.ip, clients.python))
    assert clients.curl_get(proxy.url, "http://web.test:8080/", "-p").returncode == 0


def test_set_policy_closes_open_tunnels_it_no_longer_allows(proxy, clients):
    with socket.create_connection(("127.0.0.1", proxy.server.port), timeout=10) as s:
        # This test process (Python) is the client: pyweb.test allows it.
        s.sendall(b"CONNECT pyweb.test:8080 HTTP/1.1\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 200")
        proxy.set_policy("version: 1\nnetwork_policies: {}\n")
        s.settimeout(5)
        assert s.recv(4096) == b""  # closed by the proxy
    assert proxy.events("tunnel_closed")


def test_hosts_entries_are_used_before_dns(proxy_factory, upstream, clients):
    # "localhost" resolves to 127.0.0.1 through /etc/hosts (and would be ssrf_denied);
    # the sandbox's hosts entry must win.
    yaml_text = f"""
version: 1
network_policies:
  web:
    endpoints: [{{host: localhost, port: 8080, allowed_ips: [10.199.0.0/16]}}]
    binaries: [{{path: {CURL}}}]
"""
    proxy = proxy_factory(yaml_text, hosts={"localhost": [upstream.ip]})
    res = clients.curl_get(proxy.url, "http://localhost:8080/", "-p", "--noproxy", "")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["host"] == upstream.name


def test_decision_log_line_has_every_field(proxy, clients):
    clients.raw(proxy.hostport, "CONNECT web.test:8080 HTTP/1.1\r\n\r\n")
    [line] = proxy.decisions()
    for key in ("time", "sandbox", "decision", "engine", "host", "port", "binary", "ancestors", "policy", "reason"):
        assert key in line, key


# ------------------------------------------------------------------ relay


def test_tunnel_relays_large_bodies_both_ways_intact(proxy, clients, tmp_path):
    down = clients.curl_get(proxy.url, "http://web.test:8080/bytes/50000000", "-p", "-o", "/dev/null", "-w", "%{size_download}")
    assert down.returncode == 0 and down.stdout == b"50000000", down.stderr
    payload = tmp_path / "up.bin"
    payload.write_bytes(os.urandom(5_000_000))
    up = clients.curl_get(proxy.url, "http://web.test:8080/upload", "-p", "--data-binary", f"@{payload}")
    assert json.loads(up.stdout)["request_body_size"] == 5_000_000


def test_client_half_close_still_gets_the_whole_answer(proxy, clients):
    code = (
        "import socket,sys\n"
        f"s=socket.create_connection(('127.0.0.1',{proxy.server.port}))\n"
        "s.sendall(b'CONNECT pyweb.test:8080 HTTP/1.1\\r\\n\\r\\n')\n"
        "assert s.recv(100).startswith(b'HTTP/1.1 200')\n"
        "s.sendall(b'GET /half HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n')\n"
        "s.shutdown(socket.SHUT_WR)\n"
        "data=b''\n"
        "while c:=s.recv(65536): data+=c\n"
        "sys.stdout.buffer.write(data)\n"
    )
    out = clients.run([clients.python, "-c", code]).stdout
    assert out.startswith(b"HTTP/1.1 200 OK") and b'"/half"' in out
