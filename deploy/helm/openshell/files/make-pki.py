"""Pre-install hook: make the gateway's mTLS PKI and store it as two Secrets.

Run by the chart's PKI Job in the gateway image (it has OpenShell and the
`kubernetes` client). Uses the gateway's own PKI code (openshell.gateway.tls),
so the files are exactly what a local gateway makes. Idempotent: when the PKI
Secret exists it is kept (an upgrade or a reinstall does not rotate the CA).

Environment: NAMESPACE, PKI_SECRET, CLIENT_SECRET, SERVER_NAMES (comma-separated).
"""

from __future__ import annotations

import base64
import os
import sys
import tempfile
from pathlib import Path

from kubernetes import client, config
from kubernetes.client.rest import ApiException
from openshell.gateway.tls import ensure_pki

TIMEOUT = 30  # seconds per API call


def _secret(name: str, files: dict[str, bytes], component: str) -> client.V1Secret:
    return client.V1Secret(
        metadata=client.V1ObjectMeta(name=name, labels={"app.kubernetes.io/name": "openshell", "app.kubernetes.io/component": component}),
        type="Opaque",
        data={k: base64.b64encode(v).decode() for k, v in files.items()},
    )


def main() -> int:
    ns, pki_name, client_name = os.environ["NAMESPACE"], os.environ["PKI_SECRET"], os.environ["CLIENT_SECRET"]
    names = [n for n in os.environ.get("SERVER_NAMES", "").split(",") if n]
    config.load_incluster_config()
    api = client.CoreV1Api()
    try:
        api.read_namespaced_secret(pki_name, ns, _request_timeout=TIMEOUT)
        print(f"secret {pki_name} exists; keeping it")
        return 0
    except ApiException as exc:
        if exc.status != 404:
            raise
    with tempfile.TemporaryDirectory() as tmp:
        pki = ensure_pki(Path(tmp) / "pki", names)
        files = {p.name: p.read_bytes() for p in sorted(pki.root.iterdir())}
    gateway_files = {k: v for k, v in files.items() if k.split(".")[0] in ("ca", "server", "supervisor", "client")}
    client_files = {k: files[k] for k in ("ca.crt", "client.crt", "client.key")}
    # Client Secret first: a failure between the two leaves no PKI Secret, so a retry starts over.
    for name, data, component in ((client_name, client_files, "client-pki"), (pki_name, gateway_files, "gateway-pki")):
        try:
            api.create_namespaced_secret(ns, _secret(name, data, component), _request_timeout=TIMEOUT)
        except ApiException as exc:
            if exc.status != 409:
                raise
            api.replace_namespaced_secret(name, ns, _secret(name, data, component), _request_timeout=TIMEOUT)
        print(f"secret {name} written ({', '.join(sorted(data))})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
