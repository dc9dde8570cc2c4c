"""Review decisions, a person's labels and tags, their history and undo (issue 19).

Every test runs on a real SQLite file and on the real PostgreSQL server (``db_url``); snapshots
are copies of a real extraction stored through the writer's own insert.
"""

from __future__ import annotations

import threading
import time

import pytest

from destill3d_tui.engine.errors import NotFoundError
from destill3d_tui.engine.store import service
from destill3d_tui.engine.store.db import Store
from destill3d_tui.engine.store.filters import FilterError, SnapshotFilter
from destill3d_tui.engine.store.review import Review, ReviewError, reviewer_name
from destill3d_tui.engine.store.service import StoreService

from .test_scale_totals import insert, make_snapshot, template  # noqa: F401 - the module fixture is used by name


def _ids(store: Store, template: bytes, n: int = 6) -> list[str]:  # noqa: F811
    return [s.snapshot_id for s in insert(store, template, 0, n)]


def test_decisions_labels_and_tags_are_stored_with_who_and_when(db_url: str, template: bytes) -> None:  # noqa: F811
    store = Store(db_url)
    ids = _ids(store, template)
    review = Review(store, user="ada")
    assert review.accept(ids[:2]).changed == ids[:2]
    rejected = review.reject([ids[2]], "off-topic")
    labelled = review.set_label([ids[3]], "Teapot")
    review.tag([ids[3], ids[4]], ["Keep", "set-a"])
    states = review.states(ids)
    assert states[ids[0]].decision == "accepted" and states[ids[0]].reviewed_by == "ada"
    assert states[ids[0]].reviewed_at is not None
    assert (states[ids[2]].decision, states[ids[2]].reason) == ("rejected", "off-topic")
    assert (states[ids[3]].label, states[ids[3]].label_source, states[ids[3]].human_label) == ("Teapot", "human",
                                                                                               "Teapot")
    assert states[ids[3]].tags == ("keep", "set-a") and states[ids[5]].tags == () and states[ids[5]].decision is None
    history = review.history(ids[3])
    assert [(h.field, h.old, h.new) for h in history] == [
        ("tags", [], ["keep", "set-a"]),
        ("label", {"label": None, "source": None}, {"label": "Teapot", "source": "human"}),
    ]
    assert all(h.actor == "ada" for h in history) and rejected.action_id != labelled.action_id
    # the same decision again changes nothing and records nothing
    again = review.accept([ids[0]])
    assert again.action_id is None and again.unchanged == 1 and len(review.history(ids[0])) == 1
    # the filters db query and exports use see the review
    svc = StoreService(store)
    assert svc.count(review="accepted") == 2 and svc.count(review="rejected") == 1
    assert svc.count(review="unreviewed") == 3
    assert svc.count(label_source="human") == 1 and svc.count(label="teapot") == 1
    assert svc.count(tags=["keep"]) == 2
    assert svc.count(SnapshotFilter.parse("review:accepted")) == 2
    with pytest.raises(FilterError):
        SnapshotFilter(review=None).merged(review="maybe")
    with pytest.raises(ReviewError):
        review.reject([ids[0]], "  ")
    with pytest.raises(NotFoundError):
        review.accept(["no-such-snapshot"])
    store.close()


def test_undo_restores_the_previous_value_and_is_recorded(db_url: str, template: bytes) -> None:  # noqa: F811
    store = Store(db_url)
    ids = _ids(store, template, 4)
    model_label = Review(store).state(ids[0]).label
    ada, bob = Review(store, user="ada"), Review(store, user="bob")
    ada.set_label(ids[:2], "mug")
    ada.reject(ids[:3], "broken geometry")
    bob.accept([ids[3]])
    undone = ada.undo()  # ada's latest: the rejection, not bob's accept
    assert undone.changed == ids[:3] and undone.undo_of is not None
    states = ada.states(ids)
    assert [states[i].decision for i in ids] == [None, None, None, "accepted"]
    assert states[ids[0]].label == "mug"
    ada.undo()  # one step further back: the label, and the model's label is what it goes by again
    assert ada.state(ids[0]).label == model_label and ada.state(ids[0]).label_source == "model"
    assert StoreService(store).count(label="mug") == 0
    with pytest.raises(ReviewError, match="nothing to undo"):
        ada.undo()
    kinds = [h.kind for h in ada.history(ids[0])]
    assert kinds == ["undo", "undo", "reject", "label"]  # undo is itself in the history
    undo_row = ada.history(ids[0])[1]
    assert undo_row.old == {"decision": "rejected", "reason": "broken geometry"}
    assert undo_row.new == {"decision": None, "reason": None} and undo_row.actor == "ada"
    with pytest.raises(ReviewError, match="already undone"):
        ada.undo(undone.undo_of)
    assert bob.undo().changed == [ids[3]] and bob.state(ids[3]).decision is None
    store.close()


def test_untag_and_undo_of_tags(db_url: str, template: bytes) -> None:  # noqa: F811
    store = Store(db_url)
    ids = _ids(store, template, 2)
    review = Review(store, user="ada")
    review.tag(ids, ["a", "b"])
    review.untag(ids, ["a"])
    assert review.state(ids[0]).tags == ("b",)
    review.undo()
    assert review.state(ids[1]).tags == ("a", "b")
    # predicted / platform tags are not a person's: untagging leaves them
    plain = store.execute("SELECT COUNT(*) FROM snapshot_tags WHERE source <> 'human'").fetchone()[0]
    review.untag(ids, ["a", "b"])
    assert store.execute("SELECT COUNT(*) FROM snapshot_tags WHERE source <> 'human'").fetchone()[0] == plain
    store.close()


def test_a_new_classification_never_replaces_a_persons_label(db_url: str, template: bytes) -> None:  # noqa: F811
    """update_classification is the write `classify snapshot|all` makes (the CLI test runs the real model)."""
    from destill3d_tui.engine.store.snapshot import Prediction

    store = Store(db_url)
    ids = _ids(store, template, 2)
    Review(store, user="ada").set_label([ids[0]], "lamp")
    for sid in ids:
        snap = StoreService(store).get(sid)
        snap.predictions = [Prediction(label="airplane", confidence=0.95, taxonomy="t", model_name="m2")]
        service.update_classification(store, snap)
    states = Review(store).states(ids)
    assert (states[ids[0]].label, states[ids[0]].label_source) == ("lamp", "human")
    assert (states[ids[1]].label, states[ids[1]].label_source) == ("airplane", "model")
    assert StoreService(store).count(label="lamp") == 1 == StoreService(store).count_rows(SnapshotFilter(label="lamp"))
    Review(store, user="ada").undo()  # the person's label goes: the newest model answer takes over
    assert Review(store).state(ids[0]).label == "airplane"
    store.close()


def test_bulk_action_runs_in_short_transactions_beside_a_writer(db_url: str, template: bytes) -> None:  # noqa: F811
    """A review of 1000 snapshots while the writer keeps inserting: neither fails, both land."""
    url = db_url
    store = Store(url)
    ids = [s.snapshot_id for s in insert(store, template, 0, 1000)]
    errors: list[BaseException] = []
    stop = threading.Event()

    def writer() -> None:
        n = 1000
        try:
            while not stop.is_set():
                with store.atomic(immediate=True):
                    snap, blob = make_snapshot(template, n)
                    service.insert_snapshot(store, snap, blob)
                    time.sleep(0.01)  # a writer transaction holding the lock a while
                n += 1
                # then a breath, as the pipeline's writer waits for its next batch between commits:
                # SQLite's lock has no queue, so a writer that re-takes it at once can starve any other
                time.sleep(0.002)
        except BaseException as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        result = Review(Store(url), user="ada").reject(ids, "duplicate")
    finally:
        stop.set()
        thread.join()
    assert not errors and len(result.changed) == 1000
    assert StoreService(store).count(review="rejected") == 1000
    assert StoreService(store).count() > 1000  # the writer got its turns too
    store.close()


def test_reviewer_name_prefers_the_configured_one() -> None:
    import getpass

    assert reviewer_name(" ada ") == "ada" and reviewer_name("") == getpass.getuser() == reviewer_name(None)
