"""`snapshot accept|reject|label|tag|untag|undo|history|teach|apply` (issue 19), through the real CLI.

Real corpus extractions in a SQLite file; `classify all` runs the shipped classifier; teaching
uses its real embeddings and saves a real few-shot prototype.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from destill3d_tui.cli import main
from destill3d_tui.engine import Destill3D
from destill3d_tui.engine.classify.fewshot import PrototypeStore
from destill3d_tui.engine.store.db import Store
from destill3d_tui.engine.store.snapshot import Snapshot

from .conftest import clone, store_snapshot


@pytest.fixture
def db_file(tmp_path: Path, family_snapshots: dict[str, list[Snapshot]]) -> tuple[str, dict[str, list[str]]]:
    """Each corpus mesh and its two near-copies, labelled by the 'model' with the family name."""
    path = tmp_path / "review.db"
    store = Store(f"sqlite:///{path}")
    ids = {name: [store_snapshot(store, clone(s), label=name, confidence=0.6, platform="thingiverse",
                                 license_spdx="CC-BY-4.0", title=f"{name} {n}") for n, s in enumerate(snaps)]
           for name, snaps in family_snapshots.items()}  # fmt: skip
    store.close()
    return str(path), ids


def _run(capsys: pytest.CaptureFixture[str], db: str, *args: str) -> list[dict]:
    assert main(["--db", db, *args, "--json"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]


def test_decisions_by_id_prefix_and_by_query_with_undo(db_file: tuple[str, dict], capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    db, ids = db_file
    monkeypatch.setenv("DESTILL3D_REVIEW__USER", "ada")  # the review.user setting
    teapot = ids["teapot"]
    [out] = _run(capsys, db, "snapshot", "accept", teapot[0][:10], teapot[1])
    assert out["changed"] == 2 and out["action"] == "accept" and out["action_id"] is not None
    [out] = _run(capsys, db, "snapshot", "reject", "--query", "label:socket", "--reason", "off-topic")
    assert out["changed"] == 3 and sorted(out["snapshot_ids"]) == sorted(ids["socket"])
    assert out["filter"] == {"label": "socket"}
    [out] = _run(capsys, db, "snapshot", "label", "kettle", teapot[2], "--label", "fandisk")  # ids + filter flags
    assert out["changed"] == 4
    [out] = _run(capsys, db, "snapshot", "tag", "set-a,Keep", "--review", "accepted")
    assert out["changed"] == 2
    [out] = _run(capsys, db, "snapshot", "untag", "keep", teapot[0])
    assert out["changed"] == 1
    rows = _run(capsys, db, "db", "query", "--review", "rejected")
    assert sorted(r["snapshot_id"] for r in rows) == sorted(ids["socket"])
    assert len(_run(capsys, db, "db", "query", "--label", "kettle", "--label-source", "human")) == 4
    assert len(_run(capsys, db, "db", "query", "--tag", "keep")) == 1
    history = _run(capsys, db, "snapshot", "history", teapot[0][:8])
    assert [h["field"] for h in history] == ["tags", "tags", "review"] and {h["actor"] for h in history} == {"ada"}
    assert history[0]["old"] == ["keep", "set-a"] and history[0]["new"] == ["set-a"]
    # undo steps back through ada's actions: untag, tag, then the label
    for expected in (1, 2, 4):
        [out] = _run(capsys, db, "snapshot", "undo")
        assert len(out["snapshot_ids"]) == expected and out["undo_of"] is not None
    assert _run(capsys, db, "db", "query", "--label", "kettle") == []
    assert len(_run(capsys, db, "db", "query", "--label", "fandisk")) == 3  # the model's labels are back
    assert main(["--db", db, "snapshot", "accept"]) == 2  # neither ids nor filters: a usage error
    capsys.readouterr()
    assert main(["--db", db, "snapshot", "accept", "no-such-id"]) == 1
    assert "no snapshot" in capsys.readouterr().err


def test_classify_all_keeps_a_persons_label(db_file: tuple[str, dict], capsys: pytest.CaptureFixture[str]) -> None:
    db, ids = db_file
    person = ids["teapot"][0]
    _run(capsys, db, "snapshot", "label", "my-teapot", person)
    [done] = _run(capsys, db, "classify", "all")
    assert done["classified"] == 12
    with Destill3D(db=db) as d3d:
        row = d3d.db.row(person)
        assert row["label"] == "my-teapot"
        answers = d3d.store.execute("SELECT label FROM classifications WHERE snapshot_id = ? AND rank = 1 "
                                    "AND model_id <> 'test-model'", (person,)).fetchall()  # fmt: skip
        assert answers and answers[0][0] != "my-teapot"  # the classifier's own answer is kept beside it
        state = d3d.review.state(person)
        assert (state.human_label, state.label_source) == ("my-teapot", "human")
    assert _run(capsys, db, "db", "query", "--label-source", "human")[0]["label"] == "my-teapot"
    [shown] = _run(capsys, db, "db", "show", person[:12])  # db show lists the review columns too
    assert (shown["human_label"], shown["label_source"], shown["review"]) == ("my-teapot", "human", None)


def test_teach_from_examples_suggests_and_applies(db_file: tuple[str, dict],
                                                  capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    db, ids = db_file
    _run(capsys, db, "classify", "all")
    teapot, *copies = ids["teapot"]
    _run(capsys, db, "snapshot", "label", "tea-thing", teapot)  # a class the classifier does not have
    [taught] = _run(capsys, db, "snapshot", "teach", "tea-thing", "--k", "3")
    assert taught["examples"] == [teapot] and taught["known_class"] is False
    suggested = [s["snapshot_id"] for s in taught["suggestions"]]
    similarities = [s["similarity"] for s in taught["suggestions"]]
    assert len(suggested) == 3 and similarities == sorted(similarities, reverse=True)
    assert set(copies) & set(suggested[:2])  # a copy of the same shape is among the nearest
    assert teapot not in suggested
    protos = PrototypeStore(taught["model"]).load()
    assert protos["tea-thing"].examples == [teapot]
    [applied] = _run(capsys, db, "snapshot", "apply", "tea-thing", *copies)
    assert applied["changed"] == 2
    assert sorted(r["snapshot_id"] for r in _run(capsys, db, "db", "query", "--label-source", "few_shot")) == sorted(
        copies)
    # taught again: labelled snapshots are examples or excluded, never suggested
    [again] = _run(capsys, db, "snapshot", "teach", "tea-thing", "--k", "5")
    assert not {s["snapshot_id"] for s in again["suggestions"]} & {teapot, *copies}
