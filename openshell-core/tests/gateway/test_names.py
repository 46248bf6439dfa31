"""Generated sandbox names (openshell.gateway.names)."""

from __future__ import annotations

import random

import pytest
from openshell.gateway import names


def test_word_lists_are_large_distinct_and_valid():
    assert len(set(names.ADJECTIVES)) == len(names.ADJECTIVES) >= 100
    assert len(set(names.NOUNS)) == len(names.NOUNS) >= 100
    for word in names.ADJECTIVES + names.NOUNS:
        assert word.isascii() and word.isalpha() and word.islower()


def test_generated_name_is_two_lowercase_words_joined_by_dash():
    name = names.generate_name()
    adjective, noun = name.split("-")
    assert adjective in names.ADJECTIVES and noun in names.NOUNS
    assert names.is_valid_name(name)


def test_generated_name_avoids_taken_names():
    rng = random.Random(7).random
    first = names.generate_name(rng=random.Random(7).random)
    assert names.generate_name({first}, rng=rng) != first


def test_generation_falls_back_to_scan_when_random_picks_collide():
    taken = {f"{a}-{n}" for a in names.ADJECTIVES for n in names.NOUNS} - {"witty-zebra"}
    assert names.generate_name(taken, attempts=5) == "witty-zebra"


def test_exhausted_names_raise():
    taken = {f"{a}-{n}" for a in names.ADJECTIVES for n in names.NOUNS}
    with pytest.raises(names.NamesExhausted):
        names.generate_name(taken, attempts=1)


@pytest.mark.parametrize("name", ["demo", "a", "my-box-2", "x" * 63])
def test_valid_names(name):
    assert names.is_valid_name(name)


@pytest.mark.parametrize("name", ["", "Demo", "-a", "a-", "a_b", "a.b", "x" * 64, "a b"])
def test_invalid_names(name):
    assert not names.is_valid_name(name)
