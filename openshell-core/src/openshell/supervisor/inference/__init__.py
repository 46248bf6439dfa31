"""The inference router: what ``https://inference.local`` serves inside a sandbox.

The proxy hands every connection to ``inference.local`` (CONNECT on any port,
or an absolute-form ``http://inference.local/...`` request) to
:class:`InferenceRouter` before the policy engine sees it. The router runs in
the supervisor, in the root network namespace, so a backend on the host's
loopback (vLLM on 127.0.0.1:8000, LM Studio on 127.0.0.1:1234) is reachable by
the router while the sandbox itself can never reach it.

Modules, one job each: ``paths`` (which calls are inference calls),
``router`` (TLS termination, request rewriting, streaming to the backend),
``bundle`` (the route the gateway sent, swapped atomically on refresh).
"""

from openshell.inference.bundle import RouteBundle
from openshell.supervisor.inference.paths import InferenceCall, classify
from openshell.supervisor.inference.router import INFERENCE_HOST, InferenceRouter

__all__ = ["INFERENCE_HOST", "InferenceCall", "InferenceRouter", "RouteBundle", "classify"]
