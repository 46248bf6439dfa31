"""Sandbox policy: YAML model, validation, normalisation, decisions (POLICY.md)."""
