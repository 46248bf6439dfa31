"""``openshell gateway add``: connect the CLI to a gateway it did not start (in a cluster, elsewhere).

The client files come from the Helm chart's client Secret (``--from-secret``,
read with ``kubectl``) or from PEM files (``--ca``/``--cert``/``--key``); they
are written like a local gateway's (key 0600) and the gateway is asked for
``/healthz`` once, so a wrong endpoint or certificate shows at once.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import click
from openshell.client.config import GatewayConfigError, active_name, list_gateways, load_gateway_config, set_active, write_gateway_config
from openshell.gateway.paths import InvalidGatewayName, check_name

from openshell_cli.commands.gateway import gateway, gateway_status
from openshell_cli.errors import CliError
from openshell_cli.output import OUTPUT_OPTION, render

#: the keys of the chart's client Secret (``<release>-openshell-client``)
SECRET_KEYS = ("ca.crt", "client.crt", "client.key")
KUBECTL_TIMEOUT = 30.0  # seconds


def read_secret(ref: str, kubectl: str, kubeconfig: str | None, context: str | None) -> dict[str, bytes]:
    """The CA, client certificate and key of Secret ``NAMESPACE/NAME`` (``ca.crt``, ``client.crt``, ``client.key``).

    :raises CliError: not ``NAMESPACE/NAME``, no kubectl, kubectl failed, or a key is missing.
    """
    namespace, sep, name = ref.partition("/")
    if not sep or not namespace or not name or "/" in name:
        raise CliError(f"--from-secret {ref!r} is not NAMESPACE/NAME (e.g. openshell/openshell-client)")
    exe = shutil.which(kubectl)
    if exe is None:
        raise CliError(f"--from-secret needs kubectl ({kubectl!r} is not on PATH); pass --kubectl PATH, or --ca/--cert/--key files")
    argv = [exe, "get", "secret", name, "-n", namespace, "-o", "json"]
    if kubeconfig:
        argv[1:1] = ["--kubeconfig", kubeconfig]
    if context:
        argv[1:1] = ["--context", context]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=KUBECTL_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise CliError(f"kubectl did not answer within {KUBECTL_TIMEOUT:.0f}s reading secret {ref}") from None
    if out.returncode != 0:
        raise CliError(f"kubectl could not read secret {ref}: {out.stderr.strip()[-500:] or f'{exe} exited with code {out.returncode} and said nothing'}")
    try:
        data = json.loads(out.stdout).get("data") or {}
        files = {k: base64.b64decode(data[k], validate=True) for k in SECRET_KEYS if k in data}
    except (ValueError, AttributeError) as exc:
        raise CliError(f"secret {ref} is not readable as a client Secret: {exc}") from None
    missing = [k for k in SECRET_KEYS if k not in files]
    if missing:
        raise CliError(f"secret {ref} lacks {', '.join(missing)}; use the chart's client Secret (<release>-openshell-client)")
    return files


def _read_pem(path: str, what: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if b"-----BEGIN " not in data:
        raise CliError(f"{what} {path} is not a PEM file")
    return data


@gateway.command("add")
@click.argument("name")
@click.option("--endpoint", required=True, help="The gateway's URL, https://HOST:PORT (e.g. a NodePort or a port-forward).")
@click.option(
    "--from-secret",
    "secret",
    metavar="NAMESPACE/NAME",
    help="Read the client files from this Kubernetes Secret with kubectl: the chart's client Secret, which 'helm install' prints (openshell-client for a release named openshell).",
)
@click.option("--kubeconfig", default=None, help="kubeconfig for --from-secret (default: kubectl's).")
@click.option("--context", "kube_context", default=None, help="kubeconfig context for --from-secret.")
@click.option("--kubectl", default="kubectl", show_default=True, help="kubectl to run for --from-secret.")
@click.option("--ca", type=click.Path(dir_okay=False), help="CA certificate (PEM) instead of --from-secret.")
@click.option("--cert", type=click.Path(dir_okay=False), help="Client certificate (PEM) instead of --from-secret.")
@click.option("--key", type=click.Path(dir_okay=False), help="Client key (PEM) instead of --from-secret.")
@click.option("--select/--no-select", "select", default=None, help="Make it the active gateway (default: when none is active).")
@click.option("--force", is_flag=True, help="Replace the client files of an existing gateway NAME.")
@OUTPUT_OPTION
def add_cmd(
    name: str,
    endpoint: str,
    secret: str | None,
    kubeconfig: str | None,
    kube_context: str | None,
    kubectl: str,
    ca: str | None,
    cert: str | None,
    key: str | None,
    select: bool | None,
    force: bool,
    output: str,
) -> None:
    """Connect the CLI to a running gateway NAME it did not start (e.g. one installed with Helm).

    Writes NAME's client files (mTLS; the key 0600), then asks the gateway for
    /healthz once and shows whether it answered. Nothing is started or stopped.

    \b
    Examples:
      openshell gateway add k8s --endpoint https://10.0.0.5:30443 \\
          --from-secret openshell/openshell-client
      openshell gateway add lab --endpoint https://lab:8080 --ca ca.crt --cert tls.crt --key tls.key
    """
    try:
        check_name(name)
    except InvalidGatewayName as exc:
        raise CliError(str(exc)) from None
    url = urlsplit(endpoint)
    try:
        port = url.port
    except ValueError:
        port = None
    if url.scheme != "https" or not url.hostname or not port or url.path not in ("", "/"):
        raise CliError(f"--endpoint {endpoint!r} is not https://HOST:PORT")
    if name in list_gateways():
        if not force:
            raise CliError(f"gateway '{name}' is already configured; pass --force to replace its client files, or pick another name")
        try:
            local = bool(load_gateway_config(name).metadata.get("state_dir"))
        except GatewayConfigError:
            local = False
        if local:  # its files come from its own PKI; replacing them would orphan it
            raise CliError(f"gateway '{name}' was started on this machine ('gateway start'); pick another name for the one you add")
    files_given = [f for f in (ca, cert, key) if f]
    if secret and files_given:
        raise CliError("pass either --from-secret or --ca/--cert/--key, not both")
    if secret:
        files = read_secret(secret, kubectl, kubeconfig, kube_context)
    elif len(files_given) == 3:
        assert ca and cert and key
        files = {"ca.crt": _read_pem(ca, "--ca"), "client.crt": _read_pem(cert, "--cert"), "client.key": _read_pem(key, "--key")}
    else:
        raise CliError("the client files are missing: pass --from-secret NAMESPACE/NAME, or all of --ca, --cert and --key")
    try:
        write_gateway_config(
            name,
            f"https://{url.hostname}:{port}" if ":" not in url.hostname else f"https://[{url.hostname}]:{port}",
            files["ca.crt"],
            files["client.crt"],
            files["client.key"],
        )
        if select or (select is None and active_name() is None):
            set_active(name)
    except GatewayConfigError as exc:
        raise CliError(str(exc)) from None
    status = gateway_status(name)
    row = {"name": name, "endpoint": status["endpoint"], "healthy": status["healthy"], "active": active_name() == name}
    render(row, output, columns=("name", "endpoint", "healthy", "active"))
    if not status["healthy"]:
        click.echo(f"warning: gateway '{name}' did not answer /healthz at {status['endpoint']}; check the endpoint and that the files match its CA", err=True)


COMMANDS: list[click.Command] = []  # registered on the `gateway` group above
