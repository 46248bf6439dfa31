#!/usr/bin/env python3
"""Upload/download throughput of ``openshell sandbox upload|download`` vs a plain ``tar | tar`` pipe.

    python bench/transfer.py [--quick] [--json]

Builds a tree (200 MiB by default, 20 MiB with ``--quick``: a few large files
plus many small ones), starts its own gateway (free loopback port, config and
state in a temp dir) and one sandbox, then times, in one run:

- ``tar -c -C TREE . | tar -x -C DIR`` on this machine (the baseline: the faster
  of two copies, before and after the openshell commands; the tree, the copies
  and the download are on a fresh ext4 the bench makes and loop-mounts, see
  ``_fresh_ext4``);
- ``openshell sandbox upload`` of TREE (tar stream over SSH through the gateway,
  extracted inside the sandbox by tar under its isolation);
- ``openshell sandbox download`` of the uploaded copy back to a local directory.

Times are wall-clock seconds of the whole command (CLI start, session token,
TLS, SSH handshake included). ``run(quick) -> dict`` is what ``nox -s bench``
(bench/openshell_bench/fig_transfer.py) calls: ``{"title", "rows": [{"subject",
"metric", "value", "unit", "ratio", "baseline", "note"}], "tree_bytes", "files"}``.
Everything it starts is removed at the end, also on failure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OPENSHELL = str(Path(sys.executable).with_name("openshell"))
MiB = 1 << 20


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_tree(root: Path, total: int) -> tuple[int, int]:
    """Write a tree of ``total`` bytes: 80% in 8 big files, 20% in 4 KiB files over nested dirs.

    :returns: ``(bytes, files)`` written.
    """
    root.mkdir(parents=True)
    written = files = 0
    big = total * 8 // 10 // 8
    for i in range(8):
        (root / f"big{i}.bin").write_bytes(os.urandom(big))
        written += big
        files += 1
    small = 4096
    i = 0
    while written < total:
        d = root / f"d{i // 100:03d}" / f"s{i % 10}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i}.dat").write_bytes(os.urandom(small))
        written += small
        files += 1
        i += 1
    return written, files


def _timed(argv: list[str], env: dict, *, shell: bool = False) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(argv if not shell else " ".join(argv), env=env, shell=shell, capture_output=True, timeout=1800, check=False)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0] if not shell else 'pipeline'} failed ({proc.returncode}): {proc.stderr.decode(errors='replace').strip()[-300:]}")
    return elapsed


def _fresh_ext4(image: Path, mountpoint: Path, size: int) -> None:
    """Make ``image`` a sparse ``size``-byte ext4 and loop-mount it on ``mountpoint``.

    :raises RuntimeError: mkfs.ext4 or mount failed (their message).
    """
    with open(image, "wb") as f:
        f.truncate(size)
    mountpoint.mkdir()
    for argv in (["mkfs.ext4", "-q", "-F", "-m", "0", str(image)], ["mount", "-o", "loop,noinit_itable", str(image), str(mountpoint)]):
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed for the bench's scratch file system: {(proc.stderr or proc.stdout).strip()[-300:]}")


def run(quick: bool = False) -> dict:
    """Measure and return the rows (see the module docstring). Needs root (a real sandbox)."""
    if os.geteuid() != 0:
        raise RuntimeError("bench/transfer.py needs root (it creates a real sandbox)")
    total = (20 if quick else 200) * MiB
    base = Path(tempfile.mkdtemp(prefix="osbench-xfer-"))
    env = dict(os.environ)
    name = f"xfer{os.getpid()}"
    env.update(XDG_CONFIG_HOME=str(base / "config"), XDG_STATE_HOME=str(base / "state"), OPENSHELL_GATEWAY=name)
    env.pop("OPENSHELL_STATE_DIR", None)
    started = False
    scratch = base / "scratch"
    try:
        # The tree, the tar | tar copies and the download live on a fresh ext4 of
        # their own (a sparse image, loop-mounted): on the host's file system,
        # creating files within minutes of deleting many (an earlier run's
        # clean-up, another test run) is several times slower (ext4 skips
        # recently freed inodes), which made both sides of the ratio depend on
        # what ran before. Nothing is deleted until the end; the baseline is the
        # faster of two copies, one before the openshell commands, one after.
        _fresh_ext4(base / "scratch.ext4", scratch, 4 * total + 512 * MiB)
        tree = scratch / "tree"
        size, files = make_tree(tree, total)
        mib = size / MiB

        def pipe(n: int) -> float:
            (scratch / f"pipe{n}").mkdir()
            return _timed(["tar", "-c", "-f", "-", "-C", str(tree), ".", "|", "tar", "-x", "-f", "-", "-C", str(scratch / f"pipe{n}")], env, shell=True)

        t_pipe = pipe(1)
        _timed([OPENSHELL, "gateway", "start", "--name", name, "--port", str(_free_port())], env)
        started = True
        _timed([OPENSHELL, "sandbox", "create", "--name", "xfer", "--detach"], env)
        t_up = _timed([OPENSHELL, "sandbox", "upload", "xfer", str(tree), "/sandbox/tree", "--no-git-ignore"], env)
        down = scratch / "down"
        t_down = _timed([OPENSHELL, "sandbox", "download", "xfer", "/sandbox/tree", str(down)], env)
        t_pipe = min(t_pipe, pipe(2))
        got = sum(p.stat().st_size for p in down.rglob("*") if p.is_file() and not p.is_symlink())
        if got != size:
            raise RuntimeError(f"download returned {got} bytes, expected {size}")
        rate = {"tar | tar": mib / t_pipe, "upload": mib / t_up, "download": mib / t_down}
        note = f"{mib:.0f} MiB in {files} files"
        rows = [
            {"subject": "tar | tar", "metric": "local copy", "value": round(rate["tar | tar"], 1), "unit": "MiB/s", "note": note},
            {
                "subject": "openshell",
                "metric": "sandbox upload",
                "value": round(rate["upload"], 1),
                "unit": "MiB/s",
                "ratio": round(rate["upload"] / rate["tar | tar"], 3),
                "baseline": "tar | tar",
                "note": note,
            },
            {
                "subject": "openshell",
                "metric": "sandbox download",
                "value": round(rate["download"], 1),
                "unit": "MiB/s",
                "ratio": round(rate["download"] / rate["tar | tar"], 3),
                "baseline": "tar | tar",
                "note": note,
            },
        ]
        return {
            "title": "sandbox upload/download throughput vs tar | tar",
            "rows": rows,
            "tree_bytes": size,
            "files": files,
            "seconds": {"tar | tar": round(t_pipe, 3), "upload": round(t_up, 3), "download": round(t_down, 3)},
        }
    finally:
        if started:
            subprocess.run([OPENSHELL, "sandbox", "delete", "--all"], env=env, capture_output=True, timeout=300, check=False)
            subprocess.run([OPENSHELL, "gateway", "stop", "--name", name], env=env, capture_output=True, timeout=120, check=False)
        if os.path.ismount(scratch):
            subprocess.run(["umount", str(scratch)], capture_output=True, timeout=120, check=False)
        shutil.rmtree(base, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20 MiB instead of 200 MiB")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    out = run(quick=args.quick)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(out["title"])
    for row in out["rows"]:
        ratio = f"  ({row['ratio']:.2f}x {row['baseline']})" if row.get("ratio") else ""
        print(f"  {row['subject']:10} {row['metric']:18} {row['value']:8.1f} {row['unit']}{ratio}   {row['note']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
