"""Sandbox objects map to OpenShell phases as a user reads them in `sandbox list`."""

from __future__ import annotations

from openshell_driver_kubernetes.phases import phase_of, pod_ip


def ready(status: str, reason: str, message: str = "") -> dict:
    return {"spec": {}, "status": {"conditions": [{"type": "Ready", "status": status, "reason": reason, "message": message}]}}


def test_no_object_is_an_error_with_a_reason() -> None:
    st = phase_of(None)
    assert st.phase == "ERROR" and "gone" in st.reason


def test_suspended_is_stopped_and_says_how_to_start() -> None:
    st = phase_of({"spec": {"operatingMode": "Suspended"}})
    assert st.phase == "STOPPED" and "sandbox start" in st.reason


def test_pod_failure_is_an_error_naming_the_reason() -> None:
    st = phase_of(ready("False", "PodFailed", "OOMKilled"))
    assert st.phase == "ERROR" and st.reason == "PodFailed: OOMKilled"


def test_pending_or_running_pod_is_provisioning_until_the_supervisor_reports() -> None:
    assert phase_of(ready("False", "DependenciesNotReady")).phase == "PROVISIONING"
    assert phase_of(ready("True", "DependenciesReady")).phase == "PROVISIONING"
    assert phase_of({"spec": {}}).phase == "PROVISIONING"


def test_being_deleted() -> None:
    assert phase_of({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}, "spec": {}}).phase == "DELETING"


def test_hostile_status_shapes_do_not_raise() -> None:
    assert phase_of({"status": {"conditions": [None, 3, {"type": 5}]}}).phase == "PROVISIONING"
    assert len(phase_of(ready("False", "PodFailed", "x" * 10_000)).reason) < 600
    assert pod_ip({"status": {"podIPs": ["10.199.128.5"]}}) == "10.199.128.5"
    assert pod_ip(None) == ""


def test_an_exited_supervisor_is_a_failure_with_its_last_words() -> None:
    from openshell_driver_kubernetes.phases import supervisor_failure

    assert supervisor_failure(None) is None
    running = {"status": {"containerStatuses": [{"name": "sandbox", "state": {"running": {}}}]}}
    assert supervisor_failure(running) is None
    crashed = {
        "status": {
            "containerStatuses": [
                {
                    "name": "sandbox",
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": {"exitCode": 127, "message": "openshell: the sandbox image needs python3 3.11\n"}},
                }
            ]
        }
    }
    assert supervisor_failure(crashed) == "the supervisor exited with code 127: openshell: the sandbox image needs python3 3.11"
    pull = {"status": {"containerStatuses": [{"name": "sandbox", "state": {"waiting": {"reason": "ErrImageNeverPull", "message": "not present"}}}]}}
    assert supervisor_failure(pull) == "ErrImageNeverPull: not present"
    init = {"status": {"initContainerStatuses": [{"name": "openshell-runtime", "state": {"terminated": {"exitCode": 1, "message": "cp: no such file"}}}]}}
    assert "init container openshell-runtime exited with code 1: cp: no such file" == supervisor_failure(init)
