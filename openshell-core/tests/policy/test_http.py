"""Request-target canonicalisation and query parsing (POLICY.md §3)."""

from __future__ import annotations

import pytest
from openshell.policy.http import PathError, canonical_path, parse_query, split_target


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("/", "/"),
        ("/a/../b", "/b"),
        ("/a/./b", "/a/b"),
        ("/a//b", "/a/b"),
        ("/a/b/", "/a/b/"),
        ("/a/b/..", "/a/"),
        ("/%61%62c", "/abc"),
        ("/%7euser", "/~user"),
        ("/a%20b", "/a%20b"),
        ("/a%3fb", "/a%3Fb"),
        ("/%2e%2e/x".replace("%2e%2e", "a/%2e%2e"), "/x"),
        ("/a;jsessionid=1/b;v=2", "/a/b"),
        ("/repos/acme/../../admin", "/admin"),
    ],
)
def test_canonical_path(raw, canonical):
    assert canonical_path(raw) == canonical


def test_canonical_path_is_idempotent():
    for raw in ("/a/%7e/../b%20c/", "/x;p/./y//z"):
        once = canonical_path(raw)
        assert canonical_path(once) == once


@pytest.mark.parametrize(
    "raw", ["/..", "/a/../..", "/%2e%2e", "/a%2Fb", "/a%2fb", "/a\x01b", "/a%00b", "/a%7Fb", "a/b", "/a#frag", "/a%zz", "/a b", "/caf\u00e9"]
)
def test_refused_paths(raw):
    with pytest.raises(PathError):
        canonical_path(raw)


def test_split_target_keeps_the_raw_query():
    assert split_target("/a/../b?x=1&y=%20") == ("/b", "x=1&y=%20")
    with pytest.raises(PathError):
        split_target("/a?x=1#f")


def test_parse_query_is_an_ordered_multimap():
    assert parse_query("tag=v-1&tag=v-2&flag&&e=") == (("tag", "v-1"), ("tag", "v-2"), ("flag", ""), ("e", ""))
    assert parse_query("q=a%20b+c&k%3D=1") == (("q", "a b c"), ("k=", "1"))
