"""The OpenShell quick-start demo.

Starts a test host (an HTTP server in its own network namespace at
10.199.1.2:8080, reachable only from this machine; another address in
10.199.0.0/16 with ``OPENSHELL_DEMO_HOST_IP``), creates a sandbox from
examples/quickstart/policy.yaml and shows, from inside it, what the policy
allows and denies. Every byte stays on this machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OPENSHELL = str(Path(sys.executable).with_name("openshell"))
UPSTREAM = "http://up.example.test:8080/"
HOST_IP = os.environ.get("OPENSHELL_DEMO_HOST_IP") or "10.199.1.2"  # the policy allows 10.199.0.0/16
# Another address, another sandbox: two demos side by side must not delete each other's.
NAME = "quickstart-demo" if HOST_IP == "10.199.1.2" else "quickstart-demo-" + "-".join(HOST_IP.split(".")[2:])


def step(title: str) -> None:
    print(f"\n\033[1m== {title}\033[0m", flush=True)


def run(*args: str, expect: int | None = 0, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    print("$ openshell " + " ".join(args), flush=True)
    # One stream, so progress lines and the command's output keep their order.
    proc = subprocess.run([OPENSHELL, *args], input=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = proc.stdout.decode(errors="replace")
    if out.strip():
        print(out.rstrip())
    if expect is not None and proc.returncode != expect:
        print(f"unexpected exit code {proc.returncode} (expected {expect})", file=sys.stderr)
        sys.exit(1)
    return proc


def main() -> int:
    if os.geteuid() != 0:
        print("the demo needs root (network namespaces, Landlock, seccomp)", file=sys.stderr)
        return 1
    from openshell.testhost import TestHost, TestHostError

    try:
        # Named after its address: another address is another namespace, so the hint below fixes either clash.
        host = TestHost("demo-" + "-".join(HOST_IP.split(".")[2:]), HOST_IP)
        host.start()
    except (TestHostError, ValueError) as exc:  # ValueError: not an IP address
        print(f"cannot start the demo's test host: {exc}\nrun it with another address: OPENSHELL_DEMO_HOST_IP=10.199.N.2", file=sys.stderr)
        return 1
    with host:
        host.serve_http(8080)
        print(f"test host 'up.example.test' serving HTTP at {HOST_IP}:8080 (network namespace {host.netns})")
        subprocess.run([OPENSHELL, "sandbox", "delete", NAME], capture_output=True)
        try:
            step("create a sandbox with the quick-start policy, run curl in it (allowed: 200)")
            run(
                "sandbox",
                "create",
                "--name",
                NAME,
                "--policy",
                str(HERE / "policy.yaml"),
                "--add-host",
                f"up.example.test:{HOST_IP}",
                "--",
                "curl",
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "HTTP %{http_code}\\n",
                UPSTREAM,
            )

            step("a host the policy does not name (denied: 403 with the reason)")
            run("sandbox", "exec", NAME, "--", "curl", "-sS", "-w", "\\nHTTP %{http_code}\\n", "http://other.example.test:8080/", expect=None)

            step("the same allowed URL from python3, a binary the rule does not list (denied: 403)")
            run(
                "sandbox",
                "exec",
                NAME,
                "--",
                "python3",
                "-c",
                "import urllib.request as u\n"
                "try:\n    u.urlopen('" + UPSTREAM + "')\n"
                "except Exception as e:\n    print(e, e.read().decode() if hasattr(e, 'read') else '')",
                expect=None,
            )

            step("write outside the policy's writable paths (denied by Landlock)")
            run("sandbox", "exec", NAME, "--", "sh", "-c", "touch /usr/openshell-demo && echo wrote || echo 'write to /usr denied'")

            step("who am I inside the sandbox?")
            run("sandbox", "exec", NAME, "--", "id")

            step("list sandboxes")
            run("sandbox", "list")
        finally:
            step("delete the sandbox")
            run("sandbox", "delete", NAME, expect=None)
    print("\ndemo finished: see README.md for what to try next")
    return 0


if __name__ == "__main__":
    sys.exit(main())
