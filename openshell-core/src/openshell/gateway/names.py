"""Two-word names for sandboxes created without one (``brave-otter``).

The words are short, lower-case ASCII and inoffensive, so a generated name is
valid wherever a user-given one is (DNS label, directory name, CLI argument).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Container

ADJECTIVES: tuple[str, ...] = (
    "able",
    "agile",
    "amber",
    "ample",
    "azure",
    "bold",
    "brave",
    "breezy",
    "bright",
    "brisk",
    "calm",
    "candid",
    "cheery",
    "civil",
    "clever",
    "cosmic",
    "cozy",
    "crisp",
    "curious",
    "dapper",
    "daring",
    "deft",
    "dusty",
    "eager",
    "early",
    "easy",
    "elated",
    "epic",
    "fair",
    "fancy",
    "fast",
    "fearless",
    "fluffy",
    "frank",
    "fresh",
    "friendly",
    "gentle",
    "giddy",
    "glad",
    "golden",
    "grand",
    "happy",
    "hardy",
    "hazy",
    "honest",
    "humble",
    "jolly",
    "keen",
    "kind",
    "lively",
    "lucky",
    "lunar",
    "magic",
    "mellow",
    "merry",
    "mighty",
    "misty",
    "modest",
    "neat",
    "nimble",
    "noble",
    "patient",
    "plucky",
    "polite",
    "proud",
    "quick",
    "quiet",
    "rapid",
    "ready",
    "regal",
    "rosy",
    "rustic",
    "sandy",
    "shiny",
    "silent",
    "silver",
    "simple",
    "sleek",
    "smooth",
    "snowy",
    "solar",
    "sparkly",
    "spry",
    "steady",
    "stellar",
    "sturdy",
    "sunny",
    "swift",
    "tidy",
    "tranquil",
    "trusty",
    "upbeat",
    "vivid",
    "warm",
    "wily",
    "windy",
    "wise",
    "witty",
    "young",
    "zesty",
)

NOUNS: tuple[str, ...] = (
    "acorn",
    "albatross",
    "anchor",
    "badger",
    "beacon",
    "beaver",
    "bison",
    "boulder",
    "breeze",
    "brook",
    "cactus",
    "canyon",
    "capybara",
    "cedar",
    "cheetah",
    "comet",
    "condor",
    "coral",
    "cricket",
    "dingo",
    "dolphin",
    "dune",
    "eagle",
    "ember",
    "falcon",
    "fern",
    "finch",
    "fjord",
    "gazelle",
    "gecko",
    "glacier",
    "grove",
    "harbor",
    "hawk",
    "hedgehog",
    "heron",
    "ibis",
    "iguana",
    "island",
    "jackal",
    "jaguar",
    "kestrel",
    "koala",
    "lagoon",
    "lantern",
    "lemur",
    "lynx",
    "maple",
    "marmot",
    "meadow",
    "meerkat",
    "mesa",
    "moose",
    "narwhal",
    "nebula",
    "newt",
    "oasis",
    "ocelot",
    "orca",
    "osprey",
    "otter",
    "owl",
    "panda",
    "pebble",
    "pelican",
    "penguin",
    "pine",
    "planet",
    "puffin",
    "quail",
    "quokka",
    "raven",
    "reef",
    "river",
    "robin",
    "salmon",
    "sparrow",
    "spruce",
    "squirrel",
    "summit",
    "swan",
    "tapir",
    "thistle",
    "tiger",
    "toucan",
    "tundra",
    "turtle",
    "valley",
    "walrus",
    "willow",
    "wombat",
    "wren",
    "yak",
    "zebra",
    "aurora",
    "bamboo",
    "delta",
    "galaxy",
    "harvest",
    "meteor",
)

NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
"""What a sandbox name may look like: a DNS label (lower-case letters, digits, '-')."""


class NamesExhausted(RuntimeError):
    """No free two-word name was found (every combination is taken)."""


def is_valid_name(name: str) -> bool:
    """Return True when ``name`` is a valid sandbox name (see :data:`NAME_RE`)."""
    return bool(NAME_RE.match(name))


def generate_name(taken: Container[str] = (), *, rng: Callable[[], float] | None = None, attempts: int = 200) -> str:
    """Return ``"<adjective>-<noun>"`` not in ``taken``.

    :param taken: names already in use.
    :param rng: a ``random()``-like callable (tests pass a seeded one).
    :param attempts: random tries before falling back to a full scan.
    :raises NamesExhausted: every one of the ~10 000 combinations is taken.
    """
    pick = random.SystemRandom().random if rng is None else rng
    for _ in range(attempts):
        name = f"{ADJECTIVES[int(pick() * len(ADJECTIVES))]}-{NOUNS[int(pick() * len(NOUNS))]}"
        if name not in taken:
            return name
    # Random picks keep colliding only when nearly every name is taken; scan.
    for adjective in ADJECTIVES:
        for noun in NOUNS:
            name = f"{adjective}-{noun}"
            if name not in taken:
                return name
    raise NamesExhausted("every generated sandbox name is taken; pass a name explicitly")
