"""The key bindings both views share, defined once (footer order = this order),
and the text of the ``?`` screen."""

from __future__ import annotations

from textual.binding import Binding

#: the actions on a sandbox (the selected one in the list, the open one in its view);
#: each screen implements ``action_steer(action)``
STEER_BINDINGS: list[Binding] = [
    Binding("c", "steer('connect')", "shell"),  # connect: an interactive shell
    Binding("x", "steer('exec')", "run"),  # exec a command
    Binding("s", "steer('stopstart')", "stop/start"),
    Binding("d", "steer('delete')", "delete"),
    Binding("p", "steer('policy')", "policy"),
]

#: on every view; quit early in each footer so it shows at 80 columns
QUIT_BINDING = Binding("q", "app.quit", "quit")
KEYS_BINDING = Binding("question_mark", "app.keys", "keys", key_display="?")

KEYS_HELP = """\
sandboxes view
  ↑ ↓ j k  move                 Enter  open the sandbox
  /        filter by name       Esc    clear the filter
  o        sort by next column  r      read the list again
  g / w    switch gateway / workspace
sandbox view
  Esc      back to the list     ↑ ↓ j k  move the log cursor
  e        explain the denial under the cursor (else the newest)
  G / End  follow the newest    l        cycle the log level
  PgUp PgDn  scroll the log
either view
  c shell (connect)  x run (exec)  s stop/start  d delete  p policy
  ? these keys  q quit
"""
