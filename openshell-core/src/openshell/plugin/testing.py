"""pytest plugin for OpenShell plugin authors (entry point ``pytest11``).

Importing this module must have no side effects: pytest loads it in every run
of every project that has ``openshell-core`` installed.
"""

from __future__ import annotations
