"""Pages of a sorted listing, with opaque tokens naming the last item returned.

Tokens name a key (e.g. ``(workspace, name)``), not an offset, so they never
repeat and survive deletions between pages. Used by listings that sort by a
key of strings (workspaces, sandbox templates).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from typing import TypeVar

from openshell.gateway.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000

T = TypeVar("T")


def encode_token(key: Sequence[str]) -> str:
    """Return the opaque token for ``key`` (a tuple of strings)."""
    raw = json.dumps(list(key), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str, size: int) -> tuple[str, ...]:
    """Return the key a token of :func:`encode_token` names (``size`` strings).

    :raises InvalidArgument: (field ``page_token``) not such a token.
    """
    try:
        if len(token) > 4096:
            raise ValueError
        key = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if not isinstance(key, list) or len(key) != size or not all(isinstance(k, str) for k in key):
            raise TypeError
        return tuple(key)
    except (ValueError, TypeError, binascii.Error):
        raise InvalidArgument("page_token", "not a token this gateway issued; start without one") from None


def page(items: Sequence[T], key: Callable[[T], tuple[str, ...]], *, page_size: int, page_token: str, key_size: int) -> tuple[list[T], str]:
    """Return one page of ``items`` (sorted by ``key``) and the next token ("" on the last page).

    :param page_size: <= 0 means :data:`DEFAULT_PAGE_SIZE`; capped at :data:`MAX_PAGE_SIZE`.
    :param page_token: "" for the first page, else a previous next token.
    :raises InvalidArgument: a bad token.
    """
    after = decode_token(page_token, key_size) if page_token else None
    size = DEFAULT_PAGE_SIZE if page_size <= 0 else min(page_size, MAX_PAGE_SIZE)
    matching = [i for i in items if after is None or key(i) > after]
    chunk = list(matching[:size])
    return chunk, encode_token(key(chunk[-1])) if len(matching) > size else ""
