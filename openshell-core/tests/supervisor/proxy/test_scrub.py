"""The response scrubber (``proxy/l7/scrub``): substituted secrets never come back to the sandbox.

Pure byte-level tests of the streaming replacer, the content decoder and the
re-framing sink, plus the credential hook registering what it substituted.
The inspector and a real upstream are covered by ``tests/security/test_secret_echo.py``.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import random
import zlib

import pytest
from openshell.providers.placeholders import Credential
from openshell.supervisor.credentials import CredentialHook
from openshell.supervisor.proxy.l7.hooks import L7Request
from openshell.supervisor.proxy.l7.scrub import DECODE_STEP, BodyDecoder, ScrubbingSink, ScrubError, SecretSet, secret_forms

SECRET = b"sk-live-9f8e7d6c5b4a"
PH = b"openshell:resolve:env:API_KEY"


def one_shot(secrets: SecretSet, data: bytes) -> bytes:
    s = secrets.stream()
    return s.feed(data) + s.flush()


def split_feed(secrets: SecretSet, pieces: list[bytes]) -> tuple[bytes, int]:
    """Feed ``pieces``; return (output, the most bytes ever held back)."""
    s = secrets.stream()
    out, most = b"", 0
    for p in pieces:
        out += s.feed(p)
        most = max(most, len(s.held))
    return out + s.flush(), most


def test_secret_split_at_every_boundary_is_replaced():
    secrets = SecretSet({SECRET: PH})
    body = b'data: {"echo": "Bearer ' + SECRET + b'"}\n\n'
    for cut in range(1, len(body)):
        out, most = split_feed(secrets, [body[:cut], body[cut:]])
        assert out == body.replace(SECRET, PH)
        assert most <= len(SECRET) - 1


def test_secret_fed_one_byte_at_a_time_is_replaced_and_held_back_is_bounded():
    secrets = SecretSet({SECRET: PH})
    body = (b"x" * 100 + SECRET) * 5 + SECRET[:-1]
    out, most = split_feed(secrets, [bytes([b]) for b in body])
    assert SECRET not in out and out.count(PH) == 5 and out.endswith(SECRET[:-1])
    assert most <= len(SECRET) - 1


def test_bytes_that_cannot_start_a_secret_go_out_at_once():
    """Server-sent events stay live: nothing is held back unless it may begin a secret."""
    s = SecretSet({SECRET: PH}).stream()
    assert s.feed(b"data: token\n\n") == b"data: token\n\n"
    assert s.feed(b"data: sk-li") == b"data: " and s.held == b"sk-li"
    assert s.feed(b"ght\n\n") == b"sk-light\n\n" and s.held == b""


def test_multiple_and_overlapping_secrets_match_one_shot_output_for_any_split():
    secrets = SecretSet({b"abcd": b"<A>", b"bcdef": b"<B>", b"abc": b"<C>", b"xyzxyz": b"<X>", b"zx": b"<Z>"})
    rnd = random.Random(7)
    for _ in range(2000):
        data = bytes(rnd.choice(b"abcdefxyz.") for _ in range(rnd.randint(0, 80)))
        pieces, i = [], 0
        while i < len(data):
            k = rnd.randint(1, 9)
            pieces.append(data[i : i + k])
            i += k
        out, most = split_feed(secrets, pieces)
        assert out == one_shot(secrets, data)
        assert most <= secrets.max_len - 1
        for secret in secrets.pairs:
            # A value can only survive if replacing an overlapping one consumed part of it; check none survives whole.
            assert secret not in out.replace(b"<A>", b"|").replace(b"<B>", b"|").replace(b"<C>", b"|").replace(b"<X>", b"|").replace(b"<Z>", b"|")


def test_longest_secret_wins_at_one_position():
    secrets = SecretSet({b"tok": b"<short>", b"tok-long-value": b"<long>"})
    assert one_shot(secrets, b"a tok-long-value b tok c") == b"a <long> b <short> c"
    out, _ = split_feed(secrets, [b"a tok", b"-long-", b"value b"])
    assert out == b"a <long> b"


def test_forms_cover_percent_and_json_escaping():
    forms = secret_forms('k/y+"z', "openshell:resolve:env:K")
    assert forms[b'k/y+"z'] == b"openshell:resolve:env:K"
    assert forms[b"k%2Fy%2B%22z"] == b"openshell%3Aresolve%3Aenv%3AK"
    assert forms[b'k/y+\\"z'] == b"openshell:resolve:env:K"
    assert secret_forms("", "x") == {}


def test_empty_set_passes_everything_and_union_reuses_itself():
    empty = SecretSet()
    assert not empty and one_shot(empty, SECRET) == SECRET
    s = empty.union({SECRET: PH})
    assert s.union({SECRET: PH}) is s


@pytest.mark.parametrize(
    "coding,blob",
    [
        ("gzip", gzip.compress(b"hello " + SECRET) + gzip.compress(b" second member")),
        ("x-gzip", gzip.compress(b"hello " + SECRET + b" second member")),
        ("deflate", zlib.compress(b"hello " + SECRET + b" second member")),
        ("deflate", zlib.compress(b"hello " + SECRET + b" second member")[2:-4]),  # raw deflate
    ],
)
def test_decoder_undoes_gzip_and_deflate_in_any_split(coding, blob):
    d = BodyDecoder(coding)
    out = b"".join(piece for i in range(0, len(blob), 3) for piece in d.feed(blob[i : i + 3]))
    d.finish()
    assert out == b"hello " + SECRET + b" second member"


def test_decoder_output_is_bounded_per_step():
    bomb = gzip.compress(b"\0" * (8 * DECODE_STEP + 5))
    d = BodyDecoder("gzip")
    sizes = [len(p) for p in d.feed(bomb)]
    d.finish()
    assert max(sizes) <= DECODE_STEP and sum(sizes) == 8 * DECODE_STEP + 5


def test_decoder_refuses_unknown_codings_and_truncation():
    with pytest.raises(ScrubError, match="'br'"):
        BodyDecoder("br")
    d = BodyDecoder("gzip")
    list(d.feed(gzip.compress(b"x" * 1000)[:20]))
    with pytest.raises(ScrubError):
        d.finish()
    with pytest.raises(ScrubError):
        list(BodyDecoder("gzip").feed(b"not gzip at all"))


class _Collect:
    def __init__(self) -> None:
        self.data = b""

    async def sendall(self, data: bytes) -> None:
        self.data += data


def _dechunk(data: bytes) -> bytes:
    out = b""
    while True:
        line, _, data = data.partition(b"\r\n")
        n = int(line, 16)
        if n == 0:
            assert data == b"\r\n"
            return out
        assert n > 0 and data[n : n + 2] == b"\r\n"
        out += data[:n]
        data = data[n + 2 :]


def test_sink_rechunks_decodes_and_scrubs():
    body = b"event: x\ndata: " + SECRET + b"\n\n"
    blob = gzip.compress(body)
    dst = _Collect()
    sink = ScrubbingSink(dst, SecretSet({SECRET: PH}), BodyDecoder("gzip"), chunked=True)

    async def run() -> None:
        for i in range(0, len(blob), 5):
            await sink.sendall(blob[i : i + 5])
        await sink.finish()

    asyncio.run(run())
    assert SECRET not in dst.data
    assert _dechunk(dst.data) == body.replace(SECRET, PH)


def _l7(headers: list[tuple[str, str]], target: str = "/x") -> L7Request:
    class _Flow:
        sandbox_id = "scrub-test"

    return L7Request("GET", target, "HTTP/1.1", headers, "api.scrub.test", 443, True, _Flow(), "api")  # type: ignore[arg-type]


def test_credential_hook_registers_every_substituted_value():
    hook = CredentialHook([Credential("API_KEY", SECRET.decode(), ("api.scrub.test",), "p"), Credential("OTHER", "unused-value", ("api.scrub.test",), "p")])
    basic = base64.b64encode(b"git:openshell:resolve:env:API_KEY").decode()
    req = _l7([("X-Api-Key", "openshell:resolve:env:API_KEY"), ("Authorization", f"Basic {basic}")], "/x?key=openshell%3Aresolve%3Aenv%3AAPI_KEY")
    hook.rewrite(req)
    new_basic = base64.b64encode(b"git:" + SECRET).decode()
    assert req.redactions == {SECRET.decode(): PH.decode(), new_basic: basic}
    untouched = _l7([("Accept", "*/*")])
    hook.rewrite(untouched)
    assert untouched.redactions == {}
