"""OpenShell benchmarks: the proxy, the policy engine and the sandbox lifecycle
measured against the physical limit and against peers, in one run.

Run ``python bench/run.py [--quick] [figure ...]`` (or ``nox -s bench``);
BENCHMARKS.md explains each figure. Benchmarks never run in the test suite and
never assert times.
"""
