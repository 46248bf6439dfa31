"""``$OPENSHELL_EXTRA_CA``: a PEM file of extra CA certificates that inspected
upstream TLS (``protocol: rest`` endpoints) trusts besides the system roots.

Checked by the gateway when it starts (a bad file refuses the start) and by each
supervisor (a bad file fails the sandbox's start: fail closed), with the same
message naming the variable and the file.
"""

from __future__ import annotations

import ssl

ENV = "OPENSHELL_EXTRA_CA"


class ExtraCAError(ValueError):
    """The file cannot be read or holds no usable CA certificate."""


def check_extra_ca(path: str) -> None:
    """Load ``path`` as trust roots once (``ssl`` only, ~1 ms).

    :raises ExtraCAError: unreadable, not PEM, or no certificate in it; the
        message names ``$OPENSHELL_EXTRA_CA`` and the path and says the fix.
    """
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=path)
        return
    except ssl.SSLError as exc:
        reason = f"no usable CA certificate in it ({exc.reason or exc})"
    except OSError as exc:
        reason = exc.strerror or str(exc)
    raise ExtraCAError(f"{ENV}={path}: {reason}; point it at a PEM file of CA certificates, or unset it")


__all__ = ["ENV", "ExtraCAError", "check_extra_ca"]
