"""OpenShell compute driver ``kubernetes``: one Agent Sandbox pod per sandbox.

Registers :class:`~openshell_driver_kubernetes.driver.KubernetesDriver`
(``openshell.drivers``). It manages ``Sandbox`` objects (group
``agents.x-k8s.io``, from kubernetes-sigs/agent-sandbox) whose controller turns
each into a pod.
"""

from __future__ import annotations

from typing import Callable

from openshell.plugin import hookimpl


@hookimpl
def register_compute_drivers(register: Callable[[type], None]) -> None:
    from openshell_driver_kubernetes.driver import KubernetesDriver

    register(KubernetesDriver)
