"""The key bindings both views share, defined once (footer order = this order),
and the text of the ``?`` screen."""

from __future__ import annotations

from textual.binding import Binding

#: the actions on a sandbox (the selected one in the list, the open one in its view);
#: each screen implements ``action_steer(action)``
STEER_BINDINGS: list[Binding] = [
    Binding("c", "steer('connect')", "connect"),
    Binding("x", "steer('exec')", "exec"),
    Binding("s", "steer('stopstart')", "stop/start"),
    Binding("d", "steer('delete')", "delete"),
    Binding("p", "steer('policy')", "policy"),
]

#: on every view; quit early in each footer so it shows at 80 columns
QUIT_BINDING = Binding("q", "app.quit", "quit")
KEYS_BINDING = Binding("question_mark", "app.keys", "keys", key_display="?")

KEYS_HELP = """\
sandboxes view                      sandbox view
  ↑ ↓ / j k   move                    Esc    back to the sandboxes
  Enter       open the sandbox        ↑ ↓ / j k  move the cursor in the log
  /           filter by name          e      explain the denial under the cursor
  Esc         clear the filter               (the newest one without a cursor)
  o           sort by next column     G/End  back to the newest line (follow)
  r           read the list again     l      cycle the log level
  g / w       switch gateway / workspace    PgUp PgDn  scroll the log
either view
  c connect (interactive shell)   x exec a command   s stop / start
  d delete (asks first)           p set policy from a file
  ? these keys                    q quit
"""
