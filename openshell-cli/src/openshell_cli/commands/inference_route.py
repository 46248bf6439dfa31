"""``openshell inference set|get``: where ``https://inference.local`` goes.

Attached to the ``inference`` group of ``commands/plugins.py`` (which lists
the backends).
"""

from __future__ import annotations

import click

from openshell_cli import session
from openshell_cli.errors import CliError
from openshell_cli.output import OUTPUT_OPTION, render
from openshell_cli.session import GATEWAY_OPTION, WORKSPACE_OPTION, call


@click.command("set")
@click.option("--backend", required=True, help="Backend plugin (see 'openshell inference backends').")
@click.option("--model", required=True, help="Model id the backend serves; written into every request.")
@click.option("--base-url", default="", help="Backend URL including /v1 (default: the backend's).")
@click.option("--provider", default="", help="Provider whose credential authenticates at the backend (in the same workspace).")
@GATEWAY_OPTION
@WORKSPACE_OPTION
@OUTPUT_OPTION
def inference_set(backend, model, base_url, provider, gateway, output) -> None:
    """Route https://inference.local of every sandbox in the workspace to BACKEND/MODEL.

    Each workspace has its own route ('default' unless --workspace or
    $OPENSHELL_WORKSPACE names another). Running sandboxes switch without a restart. The router runs in the
    supervisor on this host, so a backend on 127.0.0.1 (vLLM, LM Studio) works
    while the sandbox itself can never reach it.

    \b
    Examples:
      openshell inference set --backend vllm --model meta-llama/Llama-3.1-8B-Instruct
      openshell inference set --backend anthropic --model claude-sonnet-4 --provider work
      openshell inference set --backend openai --model gpt-4o-mini --base-url http://127.0.0.1:8080/v1
      openshell inference set --workspace team-a --backend nim --model meta/llama-3.1-8b-instruct --provider team-nim
    """
    route = call(session.client(gateway, start_local=True).set_inference_route, backend, model, base_url=base_url, provider=provider)
    click.echo(f"inference.local → {route.backend} ({route.base_url or 'default URL'}), model {route.model}", err=True)
    if output != "table":
        render(route.to_dict(), output)


@click.command("get")
@GATEWAY_OPTION
@WORKSPACE_OPTION
@OUTPUT_OPTION
def inference_get(gateway, output) -> None:
    """Show the workspace's inference route (backend, model, base URL, provider; never a credential).

    \b
    Examples:
      openshell inference get -o json
      openshell inference get --workspace team-a
    """
    route = call(session.client(gateway).get_inference_route)
    if route is None:
        workspace = session.current_workspace()
        where = f" in workspace '{workspace}'" if workspace else ""
        again = f" --workspace {workspace}" if workspace else ""
        raise CliError(f"no inference route is set{where}; run 'openshell inference set{again} --backend B --model M'")
    row = route.to_dict()
    row["protocols"] = ",".join(route.protocols) if output == "table" else list(route.protocols)
    render(row, output, columns=["backend", "model", "base_url", "provider", "protocols"])
