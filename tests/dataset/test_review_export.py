"""Exports follow the review (issue 19): rejected left out by default, a person's label wins,
the card counts label sources and reviewed objects; `db query`/`db export` take the review filters.

Real SQLite stores filled with real extractions (conftest), exported by the real exporters.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from destill3d_tui.cli import main
from destill3d_tui.engine.events import EventBus
from destill3d_tui.engine.services.dataset import DatasetService
from destill3d_tui.engine.store.db import Store
from destill3d_tui.engine.store.export.selection import REJECTED
from destill3d_tui.engine.store.review import Review
from destill3d_tui.engine.store.snapshot import Snapshot

from .conftest import clone, store_snapshot


@pytest.fixture
def reviewed(store: Store, family_snapshots: dict[str, list[Snapshot]]) -> tuple[Store, list[str]]:
    """Six chairs (by the model, licence MIT); a person labelled two teapots, one mug (few-shot),
    accepted two and rejected one."""
    snap = family_snapshots["teapot"][0]
    ids = [store_snapshot(store, clone(snap), label="chair", confidence=0.8, license="MIT License",
                          license_spdx="MIT", platform="github") for _ in range(6)]  # fmt: skip
    review = Review(store, user="ada")
    review.set_label(ids[:2], "teapot")
    review.set_label([ids[2]], "mug", source="few_shot")
    review.accept([ids[0], ids[3]])
    review.reject([ids[5]], "broken geometry")
    return store, ids


def test_rejected_left_out_and_the_persons_label_wins(reviewed: tuple[Store, list[str]], tmp_path: Path) -> None:
    store, _ = reviewed
    dataset = DatasetService(store, events=EventBus())
    plan = dataset.plan()
    assert (plan.matched, plan.count, plan.skipped) == (6, 5, {REJECTED: 1})
    result = dataset.export("numpy", return_arrays=True, split="1:0:0")
    arrays = result.arrays
    assert arrays is not None and result.count == 5 and result.skipped == {REJECTED: 1}
    names = [str(n) for n in arrays["label_names"]]
    labels = sorted(names[i] for i in arrays["labels"])
    assert labels == ["chair", "chair", "mug", "teapot", "teapot"]
    # asked for, the rejected come out (and only they)
    only = dataset.export("numpy", return_arrays=True, split="1:0:0", review="rejected")
    assert only.count == 1 and only.skipped == {}
    # a taxonomy relabels only what no person labelled: the classifier said chair in modelnet40
    taxonomy = dataset.export("numpy", return_arrays=True, split="1:0:0", taxonomy="modelnet40")
    tnames = [str(n) for n in taxonomy.arrays["label_names"]]
    assert sorted(tnames[i] for i in taxonomy.arrays["labels"]) == labels


def test_card_counts_label_sources_and_reviewed(reviewed: tuple[Store, list[str]], tmp_path: Path) -> None:
    store, _ = reviewed
    result = DatasetService(store, events=EventBus()).export("hdf5", tmp_path / "out", split="1:0:0")
    card = (tmp_path / "out" / "README.md").read_text()
    assert "## Labels and review" in card
    assert "| set by a person | 2 |" in card
    assert "| few-shot class, confirmed by a person | 1 |" in card
    assert "| the classifier's top prediction | 2 |" in card
    assert "2 of 5 objects were reviewed by a person" in card
    assert f"| {REJECTED} | 1 |" in card and result.count == 5


def test_db_query_and_export_review_flags(reviewed: tuple[Store, list[str]], tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    store, ids = reviewed
    db = str(store.sqlite_path)
    store.close()

    def query(*flags: str) -> list[str]:
        assert main(["--db", db, "db", "query", "--json", *flags]) == 0
        return sorted(json.loads(line)["snapshot_id"] for line in capsys.readouterr().out.splitlines())

    assert query("--review", "accepted") == sorted([ids[0], ids[3]])
    assert query("--review", "rejected") == [ids[5]]
    assert query("--review", "unreviewed") == sorted([ids[1], ids[2], ids[4]])
    assert query("--label-source", "human") == sorted(ids[:2])
    assert query("--label-source", "few_shot") == [ids[2]]
    assert query("--label-source", "model") == sorted(ids[3:])
    assert len(query("--label-source", "any")) == 6
    assert query("--label", "teapot", "--review", "accepted") == [ids[0]]
    out = tmp_path / "ds"
    assert main(["--db", db, "db", "export", "--format", "numpy", "--output", str(out), "--split", "1:0:0",
                 "--label-source", "human", "--json"]) == 0  # fmt: skip
    line = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert line["count"] == 2
    with np.load(next(out.glob("*.npz"))) as data:
        assert len(data["points"]) == 2
