"""The measuring client: one standalone stdlib script, run with ``/usr/bin/python3``.

The same code runs for every subject of a network figure: inside a sandbox
(through its proxy, the product path), in the root namespace straight to the
test host (direct, the limit), and in the root namespace through a peer proxy
on loopback. It prints one JSON document on stdout. It is passed to the
interpreter with ``-c`` (the sandbox cannot read the repository).

Usage (``PROXY`` is ``host:port``, ``env`` = ``$HTTPS_PROXY``, or ``-`` = direct)::

    python3 -c "$(cat loadclient.py)" bulk  PROXY IP PORT TOTAL_BYTES STREAMS
    python3 -c "$(cat loadclient.py)" setup PROXY IP PORT CONCURRENCY PER_WORKER
    python3 -c "$(cat loadclient.py)" https PROXY TARGET PORT SNI CA_PEM REQUESTS

``bulk``: STREAMS tunnels are opened first; then each downloads
TOTAL_BYTES/STREAMS bytes (``GET /bytes/N``) at once; prints
``{"bytes", "seconds", "streams"}`` (seconds from the first GET to the last byte).

``setup``: CONCURRENCY workers each open PER_WORKER fresh connections one after
another; one sample = connect + CONNECT + ``200`` + ``GET /`` + the whole small
answer (time to a complete tiny response; direct skips the CONNECT). Prints
``{"samples_ms": [...], "errors": n}``.

``https``: one kept-alive TLS connection to TARGET:PORT (through ``CONNECT
TARGET:PORT``, or dialed directly), TLS with server name SNI verified against
CA_PEM (the PEM text itself, since the sandbox cannot read the host's files,
or ``@PATH`` of a file the client can read),
REQUESTS sequential ``GET /r`` requests with ``Host: SNI:PORT``, each answer
read completely; prints ``{"requests", "seconds", "errors"}``.
"""

import json
import os
import socket
import ssl
import sys
import threading
import time

BUF = 1 << 20


def _proxy(arg):
    if arg == "-":
        return None
    if arg == "env":
        arg = os.environ.get("HTTPS_PROXY") or os.environ["https_proxy"]
    arg = arg.split("://", 1)[-1].rstrip("/")
    host, _, port = arg.rpartition(":")
    return host, int(port)


def _read_head(sock):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the end of the head: %r" % data[:200])
        data += chunk
        if len(data) > 65536:
            raise ConnectionError("head too long")
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def _open(proxy, ip, port, timeout=60):
    if proxy is None:
        s = socket.create_connection((ip, port), timeout=timeout)
    else:
        s = socket.create_connection(proxy, timeout=timeout)
        s.sendall(("CONNECT %s:%d HTTP/1.1\r\nHost: %s:%d\r\n\r\n" % (ip, port, ip, port)).encode())
        head, rest = _read_head(s)
        if not head.startswith(b"HTTP/1.1 200") and not head.startswith(b"HTTP/1.0 200"):
            raise ConnectionError("CONNECT refused: %r" % head[:300])
        if rest:
            raise ConnectionError("bytes after the CONNECT answer")
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def _content_length(head):
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return None


def bulk(proxy, ip, port, total, streams):
    per = total // streams
    socks = [_open(proxy, ip, port) for _ in range(streams)]
    got = [0] * streams
    errors = []
    start = threading.Barrier(streams + 1)

    def worker(i):
        s = socks[i]
        buf = bytearray(BUF)
        try:
            start.wait()
            s.sendall(("GET /bytes/%d HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (per, ip)).encode())
            head, rest = _read_head(s)
            n = len(rest)
            while True:
                k = s.recv_into(buf)
                if not k:
                    break
                n += k
            got[i] = n
        except Exception as exc:  # reported, not raised: the figure shows errors
            errors.append(repr(exc))
        finally:
            s.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(streams)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0
    return {"bytes": sum(got), "expected": per * streams, "seconds": seconds, "streams": streams, "errors": errors[:5]}


def _one_request(proxy, ip, port):
    t0 = time.perf_counter()
    s = _open(proxy, ip, port, timeout=30)
    try:
        s.sendall(("GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % ip).encode())
        head, rest = _read_head(s)
        want = _content_length(head)
        while want is not None and len(rest) < want:
            chunk = s.recv(65536)
            if not chunk:
                break
            rest += chunk
    finally:
        s.close()
    return (time.perf_counter() - t0) * 1000.0


def setup(proxy, ip, port, concurrency, per_worker):
    samples = []
    errors = []
    lock = threading.Lock()
    start = threading.Barrier(concurrency)

    def worker():
        mine = []
        start.wait()
        for _ in range(per_worker):
            try:
                mine.append(_one_request(proxy, ip, port))
            except Exception as exc:
                with lock:
                    errors.append(repr(exc))
        with lock:
            samples.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"samples_ms": samples, "errors": len(errors), "first_errors": errors[:3]}


def https(proxy, target, port, sni, ca_pem, requests):
    if ca_pem.startswith("@"):  # a file the client can read (the sandbox's CA bundle)
        ctx = ssl.create_default_context(cafile=ca_pem[1:])
    else:
        ctx = ssl.create_default_context(cadata=ca_pem)
    raw = _open(proxy, target, port)
    s = ctx.wrap_socket(raw, server_hostname=sni)
    host = sni
    errors = 0
    t0 = time.perf_counter()
    for _ in range(requests):
        s.sendall(("GET /r HTTP/1.1\r\nHost: %s:%d\r\n\r\n" % (host, port)).encode())
        head, rest = _read_head(s)
        if not head.startswith(b"HTTP/1.1 200"):
            errors += 1
        want = _content_length(head) or 0
        while len(rest) < want:
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("closed mid-answer")
            rest += chunk
    seconds = time.perf_counter() - t0
    s.close()
    return {"requests": requests, "seconds": seconds, "errors": errors}


def main(argv):
    mode, proxy = argv[0], _proxy(argv[1])
    if mode == "bulk":
        out = bulk(proxy, argv[2], int(argv[3]), int(argv[4]), int(argv[5]))
    elif mode == "setup":
        out = setup(proxy, argv[2], int(argv[3]), int(argv[4]), int(argv[5]))
    elif mode == "https":
        out = https(proxy, argv[2], int(argv[3]), argv[4], argv[5], int(argv[6]))
    else:
        raise SystemExit("unknown mode %s" % mode)
    sys.stdout.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
