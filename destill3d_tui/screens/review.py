"""The review keys of F4 and F5's result list, and their small modals.

One key each: ``a`` accept, ``x`` reject (a reason from a short list or your own words), ``l`` set
a label (completion from the labels in use and the classifier's taxonomy), ``t`` tag (``-name``
removes one), ``u`` undo, ``g`` teach a class from the rows a person labelled and apply it to the
nearest unlabelled snapshots. A decision applies to the marked rows (``space`` marks), else to the
row under the cursor, and after a ``*`` to every row of the query, once a confirmation showing
the count is answered. The cursor moves on to the next row at once, so a curator reviews at the
speed of reading; the rows' cells follow when the engine answers.

The screens reach the engine only through the bridge (``d3d.review``): nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.suggester import SuggestFromList
from textual.widgets import DataTable, Input, Label, OptionList, SelectionList
from textual.widgets.selection_list import Selection

from ..engine.api import REJECT_REASONS, SnapshotFilter
from ..engine.text import display, label_with_guess
from .base import MODE_HINT

REVIEW_BINDINGS: list[BindingType] = [
    Binding("a", "review_accept", "Accept", show=False, tooltip="Accept the row (or the marked rows)"),
    Binding("x", "review_reject", "Reject", show=False, tooltip="Reject, with a reason"),
    Binding("l", "review_label", "Set label", show=False, tooltip="Set a person's label"),
    Binding("t", "review_tag", "Tag", show=False, tooltip="Add tags (-name removes one)"),
    Binding("u", "review_undo", "Undo review", show=False, tooltip="Undo your latest review action"),
    Binding("space", "review_mark", "Mark row", show=False, tooltip="Mark or unmark the row for a decision"),
    Binding("asterisk", "review_whole_query", "Whole query", key_display="*", show=False,
            tooltip="The next decision applies to every row of this query (asks first)"),
    Binding("g", "review_teach", "Teach class", show=False,
            tooltip="A few-shot class from the rows a person labelled; label the nearest"),
]
"""Shown in F1's key list and the command palette; left off the footer (it keeps 80 columns)."""

MARKS = {"accepted": "✓ ", "rejected": "✗ "}
"""Prefixes of the label cell: the decision at a glance."""

_MODAL_CSS = """
ReviewModal { align: center middle; }
ReviewModal > Vertical { width: 64; height: auto; max-height: 90%; border: round $accent; padding: 0 1;
                         background: $surface; }
ReviewModal Label { width: 100%; margin: 0 0 1 0; }
ReviewModal OptionList, ReviewModal SelectionList { height: auto; max-height: 16; }
"""


def label_cell(label: str | None, decision: str | None, human: bool = False, best_guess: str | None = None) -> Text:
    """``✓ chair*``: the decision mark, the label, ``*`` when a person set it; ``unknown · car?``
    with the model's best guess beside an ``unknown``."""
    shown = label_with_guess(label, best_guess) or "–"
    return Text(MARKS.get(decision or "", "") + display(shown) + ("*" if human else ""))


class ReviewModal(ModalScreen[Any]):
    """Base of the review modals: escape answers None."""

    DEFAULT_CSS = _MODAL_CSS
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def action_cancel(self) -> None:
        self.dismiss(None)


class ReasonPicker(ReviewModal):
    """Why a rejection: one of the short list, or typed words. Answers the reason or None."""

    def __init__(self, count: int, reasons: tuple[str, ...] = REJECT_REASONS) -> None:
        super().__init__()
        self.count, self.reasons = count, reasons

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"Reject {self.count:,} snapshot(s): why?", markup=False)
            yield OptionList(*self.reasons, id="reasons")
            yield Input(placeholder="or your own words, enter", id="reason-text", compact=True)

    def on_mount(self) -> None:
        reasons = self.query_one("#reasons", OptionList)
        reasons.highlighted = 0
        reasons.focus()

    @on(OptionList.OptionSelected, "#reasons")
    def _picked(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.reasons[event.option_index])

    @on(Input.Submitted, "#reason-text")
    def _typed(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.dismiss(event.value.strip())


class TextPrompt(ReviewModal):
    """One line of text with completion (tab or → takes the suggestion). Answers the text or None."""

    def __init__(self, title: str, choices: list[str] | None = None, value: str = "", placeholder: str = "") -> None:
        super().__init__()
        self.prompt_title, self.choices, self.value, self.placeholder = title, choices or [], value, placeholder

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.prompt_title, markup=False)
            suggester = SuggestFromList(self.choices, case_sensitive=False) if self.choices else None
            yield Input(self.value, placeholder=self.placeholder, suggester=suggester, id="prompt-text", compact=True)

    def on_mount(self) -> None:
        self.query_one("#prompt-text", Input).focus()

    @on(Input.Submitted, "#prompt-text")
    def _submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)


class Confirm(ReviewModal):
    """A yes/no question: ``y`` or enter is yes; ``n`` or escape is no."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y,enter", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.question, markup=False)
            yield Label("y / enter: yes    n / esc: no", markup=False)

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class SuggestionPicker(ReviewModal):
    """The nearest unlabelled snapshots of a taught class, all ticked; space unticks one, ``a``
    labels the ticked ones (the others are left as they are). Answers the chosen ids or None."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("a", "apply", "Label the ticked"),
    ]

    def __init__(self, name: str, suggestions: list[tuple[str, float, str]]) -> None:
        super().__init__()
        self.class_name, self.suggestions = name, suggestions

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"Label as {display(self.class_name)!r}? similarity · title (space unticks, a applies)",
                        markup=False)  # fmt: skip
            yield SelectionList[str](*[Selection(f"{score:.3f}  {display(title)}", sid, True)
                                       for sid, score, title in self.suggestions], id="suggestions")  # fmt: skip

    def on_mount(self) -> None:
        picker = self.query_one("#suggestions", SelectionList)
        picker.highlighted = 0
        picker.focus()

    def action_apply(self) -> None:
        self.dismiss(list(self.query_one("#suggestions", SelectionList).selected))


class ReviewKeys:
    """The review actions for a screen with a result list (F4, F5): mixed into an EngineScreen.

    The host provides ``review_table()`` (its DataTable, row keys are snapshot ids),
    ``review_filter()`` (the query the list shows), ``review_total()`` (its match count) and
    ``review_reload()`` (read the list again, keeping the cursor where it is).
    """

    marked: set[str]
    whole_query: bool

    # the host's part ------------------------------------------------------------------------

    def review_table(self) -> DataTable: ...
    def review_filter(self) -> SnapshotFilter: ...
    def review_total(self) -> int: ...
    def review_reload(self) -> None: ...

    def review_moved(self, snapshot_id: str | None) -> None:
        """The cursor moved on after a decision (a host re-reading its list keeps it there)."""

    # helpers -------------------------------------------------------------------------------

    def _review_init(self) -> None:
        if not hasattr(self, "marked"):
            self.marked, self.whole_query = set(), False

    def _cursor_id(self) -> str | None:
        table = self.review_table()
        if table.row_count == 0:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    def _targets(self) -> tuple[list[str] | None, int]:
        """(ids, count): the marked rows, else the cursor's; (None, total) for the whole query."""
        self._review_init()
        if self.whole_query:
            return None, self.review_total()
        if self.marked:
            table = self.review_table()
            ordered = [k.value for k in table.rows if k.value in self.marked]  # list order, then marks off-page
            ordered += sorted(self.marked - set(ordered))
            return ordered, len(ordered)
        current = self._cursor_id()
        return ([current], 1) if current else ([], 0)

    def _decide(self, verb: str, job: Callable[[Any, list[str]], Any]) -> None:
        """Run ``job(review, ids)`` on the targets (asking first for a whole query); move on at once."""
        ids, count = self._targets()
        if ids is not None and not ids:
            return
        flt = self.review_filter()
        if ids is None:
            question = f"{verb} all {count:,} snapshots of this query ({flt.describe()})?"

            def answered(yes: bool | None) -> None:
                self.whole_query = False
                if yes:
                    self._run(verb, job, None, flt)
                self._show_scope()

            self.app.push_screen(Confirm(question), answered)  # type: ignore[attr-defined]
            return
        self._run(verb, job, ids, flt)
        if len(ids) == 1 and not self.marked:
            self.review_table().action_cursor_down()  # the next item, without waiting for the engine
            self.review_moved(self._cursor_id())

    def _run(self, verb: str, job: Callable[[Any, list[str]], Any], ids: list[str] | None,
             flt: SnapshotFilter) -> None:  # fmt: skip
        def work(d3d: Any) -> tuple[Any, dict[str, Any]]:
            review = d3d.review
            targets = ids if ids is not None else review.ids(flt)
            result = job(review, targets)
            return result, review.states(result.changed[:1000])

        self.ask(f"Could not {verb.lower()}", work, on_reply=self.review_done, exclusive=False)  # type: ignore[attr-defined]

    def review_done(self, reply: tuple[Any, dict[str, Any]]) -> None:
        result, states = reply
        self._review_init()
        self.marked.clear()
        self._refresh_cells(states)
        n = len(result.changed)
        kind = "undo" if result.undo_of is not None else result.kind
        tail = " · u undoes" if kind != "undo" and n else ""
        self.notify(f"{kind}: {n:,} snapshot(s){tail}", title="Review", markup=False)  # type: ignore[attr-defined]
        if n > len(states) or kind == "undo" or getattr(self, "review_order", False):
            self.review_reload()  # rows beyond the cells refreshed, or an order that the decision changed
        self._show_scope()

    def review_states_for(self, ids: list[str]) -> None:
        """Ask for the review state of listed rows; their label cells show it when it comes."""
        if ids and self.bridge.has("review"):  # type: ignore[attr-defined]
            self.ask("Could not read the review state", lambda d3d: d3d.review.states(ids),  # type: ignore[attr-defined]
                     on_reply=self._refresh_cells)

    def _refresh_cells(self, states: dict[str, Any]) -> None:
        table = self.review_table()
        column = next(iter(table.columns), None)
        for sid, state in states.items():
            if column is not None and sid in table.rows:
                cell = label_cell(state.label, state.decision, state.label_source != "model", state.best_guess)
                if table.get_cell(sid, column) != cell:  # an unchanged page re-read costs no redraw (issue 15)
                    table.update_cell(sid, column, cell)

    def _show_scope(self) -> None:
        """The marks and the whole-query switch, in the screen's sub-title."""
        self._review_init()
        parts = []
        if self.marked:
            parts.append(f"{len(self.marked)} marked")
        if self.whole_query:
            parts.append(f"next decision: all {self.review_total():,} of this query")
        self.sub_title = " · ".join(parts) if parts else MODE_HINT  # type: ignore[attr-defined]

    # actions -------------------------------------------------------------------------------

    def action_review_accept(self) -> None:
        self._decide("Accept", lambda review, ids: review.accept(ids))

    def action_review_reject(self) -> None:
        ids, count = self._targets()
        if ids is not None and not ids:
            return

        def picked(reason: str | None) -> None:
            if reason:
                self._decide("Reject", lambda review, targets: review.reject(targets, reason))

        self.app.push_screen(ReasonPicker(count), picked)  # type: ignore[attr-defined]

    def action_review_label(self) -> None:
        ids, _ = self._targets()
        if ids is not None and not ids:
            return
        self.ask("Could not read the labels", lambda d3d: d3d.review.label_choices("", 500),  # type: ignore[attr-defined]
                 on_reply=self._label_prompt)

    def _label_prompt(self, choices: list[str]) -> None:
        _, count = self._targets()

        def typed(label: str | None) -> None:
            if label:
                self._decide("Label", lambda review, ids: review.set_label(ids, label))

        self.app.push_screen(TextPrompt(f"Label for {count:,} snapshot(s)", choices,  # type: ignore[attr-defined]
                                        placeholder="tab completes"), typed)  # fmt: skip

    def action_review_tag(self) -> None:
        ids, count = self._targets()
        if ids is not None and not ids:
            return

        def typed(text: str | None) -> None:
            words = [w.strip() for w in (text or "").replace(",", " ").split() if w.strip()]
            add = [w for w in words if not w.startswith("-")]
            drop = [w[1:] for w in words if w.startswith("-") and len(w) > 1]

            def job(review: Any, targets: list[str]) -> Any:
                result = review.tag(targets, add) if add else None
                if drop:
                    result = review.untag(targets, drop)
                return result

            if add or drop:
                self._decide("Tag", job)

        self.app.push_screen(TextPrompt(f"Tags for {count:,} snapshot(s)",  # type: ignore[attr-defined]
                                        placeholder="kitchen, set-a, -old"), typed)  # fmt: skip

    def action_review_undo(self) -> None:
        def work(d3d: Any) -> tuple[Any, dict[str, Any]]:
            result = d3d.review.undo()
            return result, d3d.review.states(result.changed[:1000])

        self.ask("Could not undo", work, on_reply=self.review_done, exclusive=False)  # type: ignore[attr-defined]

    def action_review_mark(self) -> None:
        self._review_init()
        current = self._cursor_id()
        if current is None:
            return
        self.marked.symmetric_difference_update({current})
        table = self.review_table()
        table.action_cursor_down()
        self._show_scope()

    def action_review_whole_query(self) -> None:
        self._review_init()
        self.whole_query = not self.whole_query
        self._show_scope()

    # teaching ------------------------------------------------------------------------------

    def action_review_teach(self) -> None:
        self.ask("Could not read the labels", lambda d3d: d3d.review.label_choices("", 500),  # type: ignore[attr-defined]
                 on_reply=self._teach_prompt)

    def _teach_prompt(self, choices: list[str]) -> None:
        def typed(name: str | None) -> None:
            if name:
                self.ask("Could not teach the class", _teach_job(name), on_reply=self._teach_offer,  # type: ignore[attr-defined]
                         modal=True)

        self.app.push_screen(TextPrompt("Teach a class from the snapshots a person labelled:",  # type: ignore[attr-defined]
                                        choices, placeholder="label name"), typed)  # fmt: skip

    def _teach_offer(self, offer: tuple[str, list[tuple[str, float, str]]]) -> None:
        name, suggestions = offer
        if not suggestions:
            self.notify(f"No unlabelled snapshot is near {name!r}", title="Teach", markup=False)  # type: ignore[attr-defined]
            return

        def chosen(ids: list[str] | None) -> None:
            if ids:
                self._run("Label", lambda review, targets: review.apply(name, targets), ids, self.review_filter())

        self.app.push_screen(SuggestionPicker(name, suggestions), chosen)  # type: ignore[attr-defined]


def _teach_job(name: str) -> Callable[[Any], tuple[str, list[tuple[str, float, str]]]]:
    def work(d3d: Any) -> tuple[str, list[tuple[str, float, str]]]:
        taught = d3d.review.teach(name, k=20)
        titles = d3d.review.titles([sid for sid, _ in taught.suggestions])
        return taught.name, [(sid, score, titles.get(sid, sid)) for sid, score in taught.suggestions]

    return work
