# ruff: noqa
"""Generated gRPC code (do not edit); regenerate with ``nox -s protos``.

Sources: ``openshell-core/proto/openshell/v1/*.proto``.
"""
