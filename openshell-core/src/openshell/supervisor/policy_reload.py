"""The supervisor's policy reload: validate, load and apply new revisions (POLICY.md §6).

For each revision the gateway streams (``WatchPolicy``, pushed as soon as it is
stored, so pickup takes well under the 2 s the issue allows):

1. validate it in full again and against the policy in force: static sections
   (``filesystem_policy``, ``landlock``, ``process``) omitted keep the current
   ones, changed ones fail the revision (``check_static_unchanged``);
2. supervisor-side checks that need what only the supervisor knows
   (:func:`check_reserved_networks`: the sandbox link network of this host);
3. compile it with the policy engine (off the event loop);
4. hand it to the proxy (``set_policy``): new connections, and new requests
   on open inspected connections, are decided under it; open raw tunnels it no
   longer allows are closed;
5. report ``loaded``, or ``failed`` with the reason. A failed revision leaves
   the last good one in force, and the failure is logged for the sandbox's logs.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Callable, Sequence
from typing import Any

from openshell.policy import PolicyError, check_static_unchanged
from openshell.policy.model import Policy

log = logging.getLogger("openshell.supervisor")

REPORT_ATTEMPTS = 5  # a lost report would leave the revision pending forever


def link_networks(netns: dict[str, Any]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Return the networks of this host's sandbox links, from the netns layer's addresses.

    The netns layer gives every sandbox ``10.200.N.0/24`` out of one /16
    (``proxy_ip`` 10.200.N.1, ``sandbox_ip`` 10.200.N.2), so the /16 around
    ``proxy_ip`` covers every sandbox's link on this host.

    :param netns: ``IsolationContext.extra["netns"]`` after ``prepare``.
    :returns: the networks (empty when the layer reported no proxy address).
    """
    ip = netns.get("proxy_ip")
    if not ip:
        return []
    addr = ipaddress.ip_address(ip)
    prefix = 16 if addr.version == 4 else 48
    return [ipaddress.ip_network(f"{ip}/{prefix}", strict=False)]


def check_reserved_networks(policy: Policy, reserved: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> None:
    """Refuse a policy whose ``allowed_ips`` (or IP-literal hosts) reach into ``reserved``.

    The sandbox link network belongs to the supervisors: the proxy listens
    there and other sandboxes live there. A rule that names it would point the
    proxy at itself or at another sandbox, so no policy may (fail closed). The
    gateway cannot check this: the address plan is the isolation layer's, known
    only where the sandbox runs.

    :raises PolicyError: naming the first offending field
        (``network_policies.KEY.endpoints[I].allowed_ips``) and how to fix it.
    """
    if not reserved:
        return
    for rule in policy.network:
        for i, ep in enumerate(rule.endpoints):
            field = f"network_policies.{rule.key}.endpoints[{i}]"
            for entry in ep.allowed_ips:
                net = ipaddress.ip_network(entry, strict=False)
                for res in reserved:
                    if net.version == res.version and net.overlaps(res):
                        raise PolicyError(
                            f"{field}.allowed_ips",
                            f'"{entry}" overlaps the sandbox link network {res} of this host (the proxy and other '
                            f"sandboxes live there); narrow it so it leaves out {res}",
                        )
            try:
                literal = ipaddress.ip_address(ep.host.strip("[]")) if ep.host else None
            except ValueError:
                literal = None
            if literal is not None and any(literal in res for res in reserved if res.version == literal.version):
                raise PolicyError(f"{field}.host", f"{ep.host} is in the sandbox link network of this host; no policy can allow it")


class PolicyReloader:
    """Applies new policy revisions to a running sandbox.

    :param engine: the loaded ``PolicyEngine``.
    :param proxy: the sandbox's ``ProxyServer`` (``set_policy(compiled)``).
    :param policy: the :class:`Policy` in force (revision ``revision``).
    :param revision: its number.
    :param report: ``async report(policy_revision=N, policy_error=str|None)`` (``GatewayLink.report``).
    :param reserved: networks no policy may name (:func:`link_networks`).
    :param on_loaded: called with ``(revision, policy)`` after a revision is in force.
    """

    def __init__(
        self,
        engine: Any,
        proxy: Any,
        policy: Policy,
        revision: int,
        report: Callable[..., Any],
        *,
        reserved: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network] = (),
        on_loaded: Callable[[int, Policy], None] | None = None,
    ) -> None:
        self.engine = engine
        self.proxy = proxy
        self.policy = policy
        self.revision = revision
        self._report = report
        self.reserved = tuple(reserved)
        self.on_loaded = on_loaded

    def prepare(self, revision: int, document: str) -> tuple[Policy, Any]:
        """Validate ``document`` against the policy in force and compile it (blocking).

        :returns: ``(policy, compiled)``.
        :raises PolicyError: invalid, a static section changed, or a reserved network named.
        :raises Exception: whatever the engine raises when it cannot load the policy.
        """
        policy = check_static_unchanged(self.policy, document)
        check_reserved_networks(policy, self.reserved)
        return policy, self.engine.load(policy, revision)

    async def apply(self, revision: int, document: str) -> bool:
        """Load revision ``revision`` (YAML ``document``) and report the result.

        Revisions at or below the one in force are ignored (a reconnecting
        watch may repeat them). :returns: True when it is now in force.
        """
        if revision <= self.revision:
            return False
        try:
            policy, compiled = await asyncio.to_thread(self.prepare, revision, document)
        except Exception as exc:  # noqa: BLE001 - any failure: the last good revision stays in force
            reason = str(exc) or type(exc).__name__
            log.warning("event=policy_load_failed revision=%d in_force=%d reason=%s", revision, self.revision, reason)
            await self._send(revision, reason)
            return False
        self.proxy.set_policy(compiled)
        self.policy, self.revision = policy, revision
        log.info("event=policy_loaded revision=%d rules=%d", revision, len(policy.network))
        if self.on_loaded is not None:
            self.on_loaded(revision, policy)
        await self._send(revision, None)
        return True

    async def _send(self, revision: int, error: str | None) -> None:
        delay = 0.2
        for attempt in range(REPORT_ATTEMPTS):
            try:
                ok = await self._report(policy_revision=revision, policy_error=error)
            except Exception as exc:  # noqa: BLE001 - retried below
                log.warning("event=policy_report_failed revision=%d error=%s", revision, exc)
                ok = False
            if ok is not False:
                return
            if attempt < REPORT_ATTEMPTS - 1:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def run(self, watch: Callable[[int], Any]) -> None:
        """Apply every revision ``watch(after_revision)`` yields, until cancelled."""
        async for rev in watch(self.revision):
            await self.apply(rev.revision, rev.policy_yaml)
