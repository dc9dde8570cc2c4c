"""The review keys on F4 and F5 (issue 19), driven by Textual's pilot on a real seeded database.

Single row, marked selection, the whole query (with its confirmation and count), undo, the
review order view, and teaching a class (the shipped classifier's real embeddings).
"""

from __future__ import annotations

from textual.widgets import DataTable, Input, SelectionList

from destill3d_tui.engine.api import Destill3D
from destill3d_tui.screens.database import DatabaseScreen
from destill3d_tui.screens.review import Confirm, ReasonPicker, SuggestionPicker, TextPrompt
from destill3d_tui.screens.snapshots import SnapshotsScreen

from .test_app_pilot import SIZE, make_app, settle, wait_for


def _decisions(d3d: Destill3D) -> dict[str, str | None]:
    """title -> decision, read from the database."""
    rows = d3d.store.execute("SELECT title, review FROM snapshots").fetchall()
    return dict(rows)


def _cursor_title(table: DataTable) -> str:
    return str(table.get_row_at(table.cursor_row)[2])


async def test_accept_reject_label_on_f4_move_on_and_undo(seeded: Destill3D) -> None:
    app = make_app(seeded, initial_mode="snapshots")
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        assert isinstance(screen, SnapshotsScreen)
        table = screen.query_one("#snap-list", DataTable)
        await wait_for(pilot, lambda: table.row_count == 4)
        table.focus()
        first, second = _cursor_title(table), str(table.get_row_at(1)[2])
        await pilot.press("a")
        assert _cursor_title(table) == second  # on to the next item at once
        await wait_for(pilot, lambda: _decisions(seeded)[first] == "accepted")
        # the accepted row shows the mark wherever the list keeps it (found by its title, not its place)
        await wait_for(pilot, lambda: any(str(table.get_row_at(i)[2]) == first
                                          and str(table.get_row_at(i)[0]).startswith("✓ ")
                                          for i in range(table.row_count)))  # fmt: skip
        # reject: the reason picker, then the next row
        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(app.screen, ReasonPicker))
        await pilot.press("down", "enter")  # the second reason of the short list
        await wait_for(pilot, lambda: _decisions(seeded)[second] == "rejected")
        reason = seeded.store.execute("SELECT review_reason FROM snapshots WHERE title = ?", (second,)).fetchone()[0]
        assert reason == "off-topic"
        third = _cursor_title(table)
        assert third not in (first, second)
        # a label, with completion from the taxonomy and the labels in use
        await pilot.press("l")
        await wait_for(pilot, lambda: isinstance(app.screen, TextPrompt))
        prompt = app.screen.query_one("#prompt-text", Input)
        await pilot.press(*"va")
        await wait_for(pilot, lambda: prompt._suggestion == "vase")  # the teapot's model label is in use
        await pilot.press("right", "enter")
        await wait_for(pilot, lambda: seeded.review.state(_id(seeded, third)).human_label == "vase")
        # undo: the label goes, then the rejection
        await pilot.press("u")
        await wait_for(pilot, lambda: seeded.review.state(_id(seeded, third)).human_label is None)
        await pilot.press("u")
        await wait_for(pilot, lambda: _decisions(seeded)[second] is None)
        assert _decisions(seeded)[first] == "accepted"
        await settle(app)


def _id(d3d: Destill3D, title: str) -> str:
    return d3d.store.execute("SELECT snapshot_id FROM snapshots WHERE title = ?", (title,)).fetchone()[0]


async def test_marked_selection_and_tags_on_f5(seeded: Destill3D) -> None:
    app = make_app(seeded, initial_mode="database")
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        assert isinstance(screen, DatabaseScreen)
        table = screen.query_one("#db-results", DataTable)
        await wait_for(pilot, lambda: table.row_count == 4)
        table.focus()
        titles = [str(table.get_row_at(i)[2]) for i in range(4)]
        await pilot.press("space", "down", "space")  # mark rows 1 and 3
        assert "2 marked" in screen.sub_title
        await pilot.press("t")
        await wait_for(pilot, lambda: isinstance(app.screen, TextPrompt))
        await pilot.press(*"kitchen, set-a", "enter")
        tagged = {titles[0], titles[2]}
        await wait_for(pilot, lambda: {t for t in titles if seeded.review.state(_id(seeded, t)).tags} == tagged)
        assert seeded.review.state(_id(seeded, titles[0])).tags == ("kitchen", "set-a")
        assert "marked" not in screen.sub_title  # a decision uses the marks up
        table.move_cursor(row=3)
        await pilot.press("space", "x")  # one mark (row 4), rejected with typed words
        await wait_for(pilot, lambda: isinstance(app.screen, ReasonPicker))
        await pilot.press("tab", *"scanned upside down", "enter")
        await wait_for(pilot, lambda: seeded.review.state(_id(seeded, titles[3])).reason == "scanned upside down")
        await settle(app)


async def test_whole_query_asks_with_the_count(seeded: Destill3D) -> None:
    app = make_app(seeded, initial_mode="snapshots")
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        table = screen.query_one("#snap-list", DataTable)
        await wait_for(pilot, lambda: table.row_count == 4)
        await pilot.press("slash", *"format:stl", "enter")
        await wait_for(pilot, lambda: table.row_count == 3 and screen.total == 3)
        table.focus()
        await pilot.press("asterisk")
        assert "all 3 of this query" in screen.sub_title
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, Confirm))
        assert "all 3 snapshots of this query (format=STL)" in app.screen.question
        await pilot.press("n")  # no: nothing changes, and the switch is off again
        await wait_for(pilot, lambda: app.screen is screen)
        assert set(_decisions(seeded).values()) == {None} and "of this query" not in screen.sub_title
        await pilot.press("asterisk", "a")
        await wait_for(pilot, lambda: isinstance(app.screen, Confirm))
        await pilot.press("y")
        await wait_for(pilot, lambda: sorted(map(str, _decisions(seeded).values())) == ["None"] + ["accepted"] * 3)
        await wait_for(pilot, lambda: all(str(table.get_row_at(i)[0]).startswith("✓") for i in range(3)))
        await settle(app)


async def test_review_order_view(seeded: Destill3D) -> None:
    rabbit = _id(seeded, "rabbit")
    seeded.store.execute("UPDATE snapshots SET label = 'unknown', confidence = 0.2 WHERE snapshot_id = ?", (rabbit,))
    app = make_app(seeded, initial_mode="snapshots")
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        table = screen.query_one("#snap-list", DataTable)
        await wait_for(pilot, lambda: table.row_count == 4)
        table.focus()
        await pilot.press("o")
        # the title first, the reason after it: a narrow pane crops the reason, not the title (issue 19)
        await wait_for(pilot, lambda: screen.review_order and str(table.get_row_at(0)[2]) == "rabbit · unknown")
        assert str(table.get_row_at(1)[2]) == "teapot · uncertain"  # the only other classified one
        assert "this: unknown" in str(screen.query_one("#snap-count").content)  # the cursor row's reason, whole
        await pilot.press("a")  # decided: the next one comes up, and the decided one leaves the order
        await wait_for(pilot, lambda: seeded.review.state(rabbit).decision == "accepted")
        await wait_for(pilot, lambda: table.row_count == 3 and "rabbit" not in str(table.get_row_at(0)[2]))
        await pilot.press("o")  # back to the plain list
        await wait_for(pilot, lambda: not screen.review_order and table.row_count == 4)
        await settle(app)


async def test_keep_one_of_a_near_duplicate_cluster(seeded: Destill3D) -> None:
    from destill3d_tui.engine.store.service import insert_snapshot

    copy = seeded.db.get(_id(seeded, "teapot"))  # the same shape stored twice: a near-duplicate cluster
    copy.snapshot_id, copy.model_id = "0copy-of-the-teapot", "local:teapot-copy"
    copy.provenance.title, copy.provenance.original_file_hash = "teapot copy", "f" * 64
    with seeded.store.atomic():
        insert_snapshot(seeded.store, copy, copy.to_bytes())
    app = make_app(seeded, initial_mode="snapshots")
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        table = screen.query_one("#snap-list", DataTable)
        await wait_for(pilot, lambda: table.row_count == 5)
        table.focus()
        await pilot.press("o")
        await wait_for(pilot, lambda: screen.review_order and str(table.get_row_at(0)[2]).endswith(" · duplicate"))
        kept = _cursor_title(table).rsplit(" · ", 1)[0]
        await pilot.press("d")  # keep the one under the cursor, reject the rest of its cluster
        other = ({"teapot", "teapot copy"} - {kept}).pop()
        await wait_for(pilot, lambda: seeded.review.state(_id(seeded, other)).decision == "rejected")
        assert seeded.review.state(_id(seeded, other)).reason == "duplicate"
        assert seeded.review.state(_id(seeded, kept)).decision is None
        await wait_for(pilot, lambda: not any(str(table.get_row_at(i)[2]).endswith(" · duplicate")
                                              for i in range(table.row_count)))
        await settle(app)


async def test_teach_a_class_from_examples_and_label_the_nearest(seeded: Destill3D) -> None:
    seeded.classify.all()  # the shipped classifier: real embeddings
    benchy = _id(seeded, "low_poly_benchy")
    seeded.review.set_label([benchy], "boat-toy")
    app = make_app(seeded, initial_mode="snapshots")
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one("#snap-list", DataTable)
        await wait_for(pilot, lambda: table.row_count == 4)
        table.focus()
        await pilot.press("g")
        await wait_for(pilot, lambda: isinstance(app.screen, TextPrompt))
        await pilot.press(*"boat-toy", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, SuggestionPicker))
        picker = app.screen.query_one("#suggestions", SelectionList)
        assert picker.option_count == 3  # every unlabelled snapshot with an embedding, nearest first
        offered = list(picker.selected)
        assert benchy not in offered
        await pilot.press("space", "a")  # untick the nearest, label the other two
        await wait_for(pilot, lambda: sum(seeded.review.state(s).label_source == "few_shot" for s in offered) == 2)
        assert seeded.review.state(offered[0]).label_source == "model"
        assert seeded.review.state(offered[1]).label == "boat-toy"
        await settle(app)




async def test_unknown_shows_the_models_best_guess_beside_it(seeded: Destill3D) -> None:
    """Issue 12: `unknown · cup?` in F4's list and F5's results; a person's label replaces it."""
    from destill3d_tui.engine.store.service import insert_snapshot
    from destill3d_tui.engine.store.snapshot import Prediction, Snapshot

    sid = _id(seeded, "teapot")
    blob = seeded.store.execute("SELECT snapshot_data FROM snapshots WHERE snapshot_id = ?", (sid,)).fetchone()[0]
    snap = Snapshot.from_bytes(bytes(blob))
    model = "destill3d_pointnet_mn40_v2"  # as the classifier leaves an unknown: its ranking after it
    snap.predictions = [Prediction("unknown", 0.31, rank=1, model_name=model),
                        Prediction("cup", 0.31, rank=2, model_name=model),
                        Prediction("vase", 0.22, rank=3, model_name=model)]  # fmt: skip
    with seeded.store.atomic():
        seeded.store.execute("DELETE FROM snapshots WHERE snapshot_id = ?", (sid,))
        insert_snapshot(seeded.store, snap, snap.to_bytes())
    for mode, table_id in (("snapshots", "#snap-list"), ("database", "#db-results")):
        app = make_app(seeded, initial_mode=mode)
        async with app.run_test(size=SIZE) as pilot:
            table = app.screen.query_one(table_id, DataTable)

            def labels() -> dict[str, str]:
                return {str(table.get_row_at(i)[2]): str(table.get_row_at(i)[0]) for i in range(table.row_count)}  # noqa: B023

            await wait_for(pilot, lambda: labels().get("teapot") == "unknown · cup?")
            assert len(labels()) == 4, labels()
            assert not any("?" in text for title, text in labels().items() if title != "teapot")
            await settle(app)
    seeded.review.set_label([sid], "teapot")
    app = make_app(seeded, initial_mode="snapshots")
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one("#snap-list", DataTable)
        await wait_for(pilot, lambda: table.row_count == 4)
        await wait_for(pilot, lambda: "teapot*" in [str(table.get_row_at(i)[0]) for i in range(4)])
        await settle(app)
