"""Which requests on ``inference.local`` are inference calls.

Recognised, each with and without the ``/v1`` prefix, with any query string:

==========  ==========================  =========
method      path (after ``/v1``)        protocol
==========  ==========================  =========
POST        /chat/completions           openai
POST        /completions                openai
POST        /responses                  openai
POST        /embeddings                 openai
GET         /models, /models/{id}       either
POST        /messages                   anthropic
POST        /messages/count_tokens      anthropic
==========  ==========================  =========

``HEAD /`` and ``GET /`` are answered by the router itself (Claude Code probes
``HEAD /`` before its first call). Everything else is refused with 403.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_CALLS: dict[tuple[str, str], str] = {
    ("POST", "chat/completions"): "openai",
    ("POST", "completions"): "openai",
    ("POST", "responses"): "openai",
    ("POST", "embeddings"): "openai",
    ("GET", "models"): "any",
    ("POST", "messages"): "anthropic",
    ("POST", "messages/count_tokens"): "anthropic",
}
_MODEL_ID = re.compile(r"^models/[A-Za-z0-9._:@/-]{1,256}$")

#: human list for the 403 body
ALLOWED = sorted({f"{m} /v1/{p}" for (m, p) in _CALLS} | {"GET /v1/models/{id}"})


@dataclass(frozen=True)
class InferenceCall:
    """A recognised call.

    :ivar protocol: ``openai``, ``anthropic`` or ``any`` (models listing).
    :ivar subpath: the path below the version prefix, without leading slash
        (``chat/completions``); appended to the route's base URL.
    :ivar rewrites_model: True when the JSON body's ``model`` must be replaced.
    """

    protocol: str
    subpath: str
    rewrites_model: bool


def classify(method: str, path: str) -> InferenceCall | None:
    """Return the call ``method path`` is, or None when it is not an inference call.

    :param path: the raw path (no query); ``//``, ``..`` and percent-escapes are
        never normalised into a recognised path — such requests are refused.
    """
    if "%" in path or "//" in path or "/." in path:
        return None
    sub = path[4:] if path.startswith("/v1/") else path[1:] if path.startswith("/") else None
    if sub is None:
        return None
    sub = sub.rstrip("/") if sub != "/" else sub
    method = method.upper()
    protocol = _CALLS.get((method, sub))
    if protocol is not None:
        return InferenceCall(protocol, sub, method == "POST")
    if method == "GET" and _MODEL_ID.match(sub) and ".." not in sub:
        return InferenceCall("any", sub, False)
    return None
