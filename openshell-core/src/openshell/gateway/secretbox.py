"""Encryption of provider credentials at rest.

The key is 32 random bytes (Fernet: AES-128-CBC + HMAC-SHA256) in
``<state_dir>/provider-credentials.key``, mode 0600, made on first use. The
database holds only ciphertext, so a copied ``gateway.db`` (backups, bug
reports) reveals no credential. Plaintext exists only in gateway memory while
a request is served and in the supervisor's memory.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

KEY_FILE = "provider-credentials.key"


class SecretBoxError(Exception):
    """The key is unreadable or a ciphertext does not decrypt with it."""


class SecretBox:
    """Encrypt and decrypt ``{name: value}`` credential maps.

    :param state_dir: the gateway's state directory (the key file lives there).
    :raises SecretBoxError: the key file exists but is not a Fernet key.
    """

    def __init__(self, state_dir: str | Path) -> None:
        path = Path(state_dir) / KEY_FILE
        try:
            key = path.read_bytes().strip()
        except FileNotFoundError:
            key = Fernet.generate_key()
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(key)
        try:
            self._fernet = Fernet(key)
        except ValueError as exc:
            raise SecretBoxError(f"{path}: not a provider credential key ({exc}); restore it from a backup") from None

    def seal(self, credentials: dict[str, str]) -> str:
        """Return the ciphertext (text) of ``credentials``."""
        return self._fernet.encrypt(json.dumps(credentials, sort_keys=True).encode()).decode()

    def open(self, ciphertext: str) -> dict[str, str]:
        """Return the credentials sealed in ``ciphertext``.

        :raises SecretBoxError: wrong key or corrupted data.
        """
        try:
            return dict(json.loads(self._fernet.decrypt(ciphertext.encode())))
        except (InvalidToken, ValueError) as exc:
            raise SecretBoxError("provider credentials do not decrypt with this gateway's key") from exc
