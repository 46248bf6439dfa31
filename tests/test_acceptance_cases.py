"""The acceptance cases under tests/cases/ are a verbatim copy of the project's
shared acceptance data. The copy is what every test reads, so a user's clone
(which has no ``../shared``) runs the same checks as CI.

This file keeps the copy honest: it must match the checksums recorded beside it
(so an edited expected value fails everywhere), and, where the shared folder
exists (``../shared`` beside the clone, as on CI, or ``$OPENSHELL_SHARED_DIR``),
byte for byte the shared files (so a stale copy fails on CI).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

CASES = Path(__file__).resolve().parent / "cases"
SUMS = CASES / "SHA256SUMS"


def _recorded() -> dict[str, str]:
    sums = {}
    for line in SUMS.read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        sums[name] = digest
    return sums


def _shared_cases() -> Path | None:
    env = os.environ.get("OPENSHELL_SHARED_DIR")
    root = Path(env) if env else Path(__file__).resolve().parents[2] / "shared"
    cases = root / "cases"
    return cases if cases.is_dir() else None


def test_every_copied_case_file_matches_its_recorded_checksum():
    recorded = _recorded()
    present = sorted(p.name for p in CASES.iterdir() if p.is_file() and p != SUMS)
    assert present == sorted(recorded), "tests/cases/ and its SHA256SUMS list different files"
    for name, digest in recorded.items():
        assert hashlib.sha256((CASES / name).read_bytes()).hexdigest() == digest, f"tests/cases/{name} was edited; copy it verbatim from shared/cases"


def test_copy_matches_the_shared_acceptance_cases_where_they_exist():
    shared = _shared_cases()
    if shared is None:
        # A user's clone: nothing to compare with; the checksums above hold the copy.
        assert _recorded(), "tests/cases/SHA256SUMS is empty"
        return
    theirs = sorted(p.name for p in shared.iterdir() if p.is_file())
    ours = sorted(p.name for p in CASES.iterdir() if p.is_file() and p != SUMS)
    assert ours == theirs, f"tests/cases/ holds {ours}, {shared} holds {theirs}: copy the shared cases verbatim"
    for name in theirs:
        assert (CASES / name).read_bytes() == (shared / name).read_bytes(), (
            f"tests/cases/{name} differs from {shared / name}: copy it again (cp {shared / name} tests/cases/ and update SHA256SUMS)"
        )
