"""Modal dialogs of the terminal UI: confirm, ask for a line, pick one of a
list, show text, and set a policy from a file with its errors in place."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList, Static

MAX_POLICY_BYTES = 1 << 20  # a policy file larger than 1 MiB is refused before parsing

DIALOG_CSS = """
ModalScreen { align: center middle; }
.dialog { width: 90%; max-width: 100; height: auto; max-height: 90%; border: thick $accent; padding: 0 1; background: $surface; }
.dialog .title { text-style: bold; }
.dialog .errors { color: $error; }
.dialog .hint { color: $text-muted; }
"""


class ConfirmScreen(ModalScreen[bool]):
    """``question`` with y / n (Esc = no); dismisses with the answer."""

    DEFAULT_CSS = DIALOG_CSS
    BINDINGS = [Binding("y", "answer(True)", "yes"), Binding("n,escape", "answer(False)", "no")]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="confirm"):
            yield Label(self.question, classes="title")
            yield Label("y: yes   n / Esc: no", classes="hint")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class TextScreen(ModalScreen[None]):
    """Read-only text (an exec's output, an explanation); Esc, q or Enter closes it."""

    DEFAULT_CSS = DIALOG_CSS
    BINDINGS = [Binding("escape,q,enter", "close", "close")]

    def __init__(self, title: str, body: str | Text) -> None:
        super().__init__()
        self.title_text = title
        self.body = body

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog", id="text"):
            yield Label(self.title_text, classes="title")
            yield Static(self.body, id="body", markup=False) if isinstance(self.body, str) else Static(self.body, id="body")
            yield Label("Esc: close", classes="hint")

    def action_close(self) -> None:
        self.dismiss(None)


class AskScreen(ModalScreen[str | None]):
    """One line of input; Enter dismisses with it (stripped), Esc with None."""

    DEFAULT_CSS = DIALOG_CSS
    BINDINGS = [Binding("escape", "cancel", "cancel")]

    def __init__(self, title: str, placeholder: str = "", value: str = "") -> None:
        super().__init__()
        self.title_text = title
        self.placeholder = placeholder
        self.value = value

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.title_text, classes="title")
            yield Input(value=self.value, placeholder=self.placeholder, id="ask")
            yield Label("Enter: ok   Esc: cancel", classes="hint")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if event.value.strip():
            self.dismiss(event.value.strip())

    def action_cancel(self) -> None:
        self.dismiss(None)


class PickScreen(ModalScreen[str | None]):
    """Pick one of ``choices`` (arrows / j k, Enter); Esc dismisses with None."""

    DEFAULT_CSS = DIALOG_CSS
    BINDINGS = [Binding("escape", "cancel", "cancel"), Binding("j", "down", show=False), Binding("k", "up", show=False)]

    def __init__(self, title: str, choices: list[str], current: str = "") -> None:
        super().__init__()
        self.title_text = title
        self.choices = choices
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.title_text, classes="title")
            yield OptionList(*[f"{c}  (current)" if c == self.current else c for c in self.choices], id="pick")
            yield Label("Enter: choose   Esc: cancel", classes="hint")

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.choices[event.option_index])

    def action_down(self) -> None:
        self.query_one(OptionList).action_cursor_down()

    def action_up(self) -> None:
        self.query_one(OptionList).action_cursor_up()

    def action_cancel(self) -> None:
        self.dismiss(None)


def read_policy_file(path: str) -> tuple[str | None, list[str]]:
    """Read and validate a policy file offline.

    :returns: ``(text, [])`` when valid, else ``(None, errors)``: one ``FIELD: MESSAGE``
        per problem, or why the file cannot be read.
    """
    from openshell.policy import PolicyError, parse_policy

    p = Path(path).expanduser()
    try:
        with p.open("rb") as fh:
            data = fh.read(MAX_POLICY_BYTES + 1)
    except OSError as exc:
        return None, [f"cannot read {path}: {exc.strerror or exc}"]
    if len(data) > MAX_POLICY_BYTES:
        return None, [f"{path} is larger than {MAX_POLICY_BYTES} bytes"]
    try:
        parse_policy(data)
    except PolicyError as exc:
        return None, [f"{e.field}: {e.message}" for e in exc.errors]
    return data.decode("utf-8", "replace"), []


class PolicyFileScreen(ModalScreen[int | None]):
    """Ask for a policy file, validate it, store it with ``submit(text) -> revision``.

    Errors (the file's fields, or the gateway's refusal) show in the dialog,
    which stays open; dismisses with the stored revision, or None (Esc).
    ``submit`` runs in a thread (it calls the gateway) and raises on refusal.
    """

    DEFAULT_CSS = DIALOG_CSS
    BINDINGS = [Binding("escape", "cancel", "cancel")]

    def __init__(self, sandbox: str, submit: Callable[[str], int]) -> None:
        super().__init__()
        self.sandbox = sandbox
        self.submit = submit

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="policy-dialog"):
            yield Label(f"Set the policy of {self.sandbox} from a file", classes="title")
            yield Input(placeholder="path/to/policy.yaml", id="policy-path")
            yield Static("", id="policy-errors", classes="errors", markup=False)
            yield Label("Enter: validate and set   Esc: cancel", classes="hint")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        text, errors = read_policy_file(event.value.strip())
        if text is None:
            self.query_one("#policy-errors", Static).update("\n".join(f"error: {e}" for e in errors[:20]))
            return
        self.query_one("#policy-errors", Static).update("validated; storing…")
        self.run_worker(lambda: self._store(text), thread=True, exclusive=True)

    def _store(self, text: str) -> None:
        try:
            version = self.submit(text)
        except Exception as exc:  # noqa: BLE001 - the gateway's refusal is shown in place
            msg = str(exc).removeprefix("policy_yaml.")
            self.app.call_from_thread(self.query_one("#policy-errors", Static).update, f"error: {msg}")
            return
        self.app.call_from_thread(self.dismiss, version)

    def action_cancel(self) -> None:
        self.dismiss(None)
