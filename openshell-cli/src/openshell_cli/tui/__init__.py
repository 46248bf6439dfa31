"""``openshell term``: a Textual terminal UI to watch and steer sandboxes.

- :mod:`.model`: pure functions over watch items (denials, limits, rows).
- :mod:`.streams`: threads that follow ``WatchSandbox`` and post messages.
- :mod:`.screens`: the modal dialogs (confirm, input, text).
- :mod:`.sandbox_view`: one sandbox: log stream, policy, providers, limits.
- :mod:`.app`: the app and the sandboxes view.
"""
