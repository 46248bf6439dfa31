"""NSSH1 preface: what the supervisor accepts before any SSH byte."""

import pytest
from openshell.nssh import MAX_SKEW, PrefaceError, PrefaceVerifier, make_preface

SECRET = b"s" * 32


def test_good_preface_is_accepted_and_returns_token():
    v = PrefaceVerifier(SECRET)
    assert v.verify(make_preface(SECRET, "tok-1")) == "tok-1"


def test_preface_signed_with_another_secret_is_rejected():
    v = PrefaceVerifier(SECRET)
    with pytest.raises(PrefaceError, match="HMAC"):
        v.verify(make_preface(b"x" * 32, "tok"))


def test_tampered_token_is_rejected():
    line = make_preface(SECRET, "tok").replace(b"tok", b"tak", 1)
    with pytest.raises(PrefaceError, match="HMAC"):
        PrefaceVerifier(SECRET).verify(line)


@pytest.mark.parametrize("skew", [MAX_SKEW + 1, -(MAX_SKEW + 1), 3600])
def test_timestamp_outside_window_is_rejected(skew):
    import time

    line = make_preface(SECRET, "tok", now=time.time() + skew)
    with pytest.raises(PrefaceError, match="skew"):
        PrefaceVerifier(SECRET).verify(line)


def test_timestamp_inside_window_is_accepted():
    import time

    assert PrefaceVerifier(SECRET).verify(make_preface(SECRET, "tok", now=time.time() - MAX_SKEW + 5)) == "tok"


def test_replayed_nonce_is_rejected():
    v = PrefaceVerifier(SECRET)
    line = make_preface(SECRET, "tok")
    v.verify(line)
    with pytest.raises(PrefaceError, match="replayed"):
        v.verify(line)


@pytest.mark.parametrize(
    "line",
    [b"", b"NSSH1\n", b"NSSH2 a 1 n " + b"0" * 64 + b"\n", b"NSSH1 a b n " + b"0" * 64 + b"\n", b"NSSH1 " + b"a" * 600 + b"\n"],
)
def test_malformed_prefaces_are_rejected(line):
    with pytest.raises(PrefaceError):
        PrefaceVerifier(SECRET).verify(line)
