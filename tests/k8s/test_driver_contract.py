"""The plugin API's compute-driver contract (openshell.plugin.testing) against the
kubernetes driver on the real test cluster, in a namespace of its own."""

from __future__ import annotations

from typing import Any

import pytest
from k8s_env import cluster_up, kubeconfig
from openshell.plugin import DriverContext
from openshell.plugin.testing import ComputeDriverContract
from openshell_driver_kubernetes.driver import KubernetesDriver
from test_cluster import driver_context, namespace, test_image  # noqa: F401 - module fixtures

pytestmark = pytest.mark.skipif(not cluster_up(), reason="no test cluster: run scripts/k8s/start.sh (or nox -s k8s)")


class TestKubernetesDriverContract(ComputeDriverContract):
    plugin_class = KubernetesDriver

    @pytest.fixture(autouse=True)
    def _cluster(self, monkeypatch: pytest.MonkeyPatch, namespace: str, test_image: str) -> None:  # noqa: F811 - the imported fixtures
        monkeypatch.setenv("OPENSHELL_K8S_KUBECONFIG", str(kubeconfig()))
        monkeypatch.setenv("OPENSHELL_K8S_NAMESPACE", namespace)
        monkeypatch.setenv("OPENSHELL_K8S_SANDBOX_IMAGE", test_image)
        monkeypatch.setenv("OPENSHELL_K8S_RUNTIME_IMAGE", test_image)
        monkeypatch.setenv("OPENSHELL_K8S_WORKDIR_SIZE", "64Mi")
        monkeypatch.setenv("OPENSHELL_K8S_WORKDIR_STORAGE_CLASS", f"{namespace}-workdir")
        monkeypatch.setenv("OPENSHELL_K8S_SANDBOX_IMAGE_PULL_POLICY", "Never")

    def driver_context(self, tmp_path: Any) -> DriverContext:
        return driver_context(tmp_path)
