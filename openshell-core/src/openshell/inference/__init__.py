"""Inference backends shipped with core: ``openai`` and ``anthropic``.

Each lives in its own module and is registered through the ``openshell.inference``
entry points exactly like third-party backends (nim, vllm, lmstudio).
``openshell.inference.http`` holds the small HTTP helpers every backend's
``probe()`` and ``list_models()`` use.
"""
