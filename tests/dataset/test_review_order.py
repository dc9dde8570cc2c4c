"""The review order (issue 19): unknown first, then near-duplicate clusters, quality flags, lowest
confidence, never classified; reviewed snapshots never. Real extractions of corpus meshes and of
their rotated / re-tessellated copies (the duplicates finder's own near-copies)."""

from __future__ import annotations

import pytest

from destill3d_tui.engine.services.dataset import DatasetService
from destill3d_tui.engine.services.review import ReviewService
from destill3d_tui.engine.store.db import Store
from destill3d_tui.engine.store.snapshot import Snapshot

from .conftest import clone, store_snapshot


def _flagged(snap: Snapshot) -> Snapshot:
    copy = clone(snap)
    copy.features.quality.too_simple = True
    return copy


@pytest.fixture
def seeded(store: Store, family_snapshots: dict[str, list[Snapshot]]) -> dict[str, str]:
    f = family_snapshots
    return {
        "unknown_low": store_snapshot(store, f["socket"][0], label="unknown", confidence=0.1),
        "unknown_high": store_snapshot(store, f["fandisk"][0], label="unknown", confidence=0.2),
        "flagged": store_snapshot(store, _flagged(f["featuretype"][0]), label="bracket", confidence=0.99),
        "unsure": store_snapshot(store, f["teapot"][0], label="teapot", confidence=0.5),
        "sure": store_snapshot(store, f["teapot"][1], label="teapot", confidence=0.9),
        "plain": store_snapshot(store, f["teapot"][2]),
        "done": store_snapshot(store, clone(f["socket"][0]), label="unknown", confidence=0.05),
    }


def test_order_without_clusters(store: Store, seeded: dict[str, str]) -> None:
    service = ReviewService(store, user="ada")
    service.accept([seeded["done"]])  # reviewed: not offered again, however unsure the model was
    items = service.order(duplicates=False)
    assert [(i.snapshot_id, i.why) for i in items] == [
        (seeded["unknown_low"], "unknown"), (seeded["unknown_high"], "unknown"), (seeded["flagged"], "quality"),
        (seeded["unsure"], "uncertain"), (seeded["sure"], "uncertain"), (seeded["plain"], "unlabelled"),
    ]  # fmt: skip
    assert items[0].confidence == pytest.approx(0.1) and items[2].label == "bracket"
    assert [i.snapshot_id for i in service.order(duplicates=False, limit=2)] == [seeded["unknown_low"],
                                                                                 seeded["unknown_high"]]
    # a filter narrows the order as it narrows db query
    assert [i.why for i in service.order({"label": "teapot"}, duplicates=False)] == ["uncertain", "uncertain"]


def test_duplicate_clusters_come_together_and_one_key_rejects_the_rest(store: Store, seeded: dict[str, str]) -> None:
    service = ReviewService(store, user="ada", duplicates=lambda: DatasetService(store).duplicates())
    items = service.order()
    dupes = [i for i in items if i.why == "duplicate"]
    teapots = {seeded["unsure"], seeded["sure"], seeded["plain"]}
    assert {i.snapshot_id for i in dupes} == teapots and len({i.cluster for i in dupes}) == 1
    first = items.index(dupes[0])
    assert items[first : first + 3] == dupes  # members together, right after the unknowns
    assert [i.why for i in items[:first]] == ["unknown"] * 3  # "done" is unreviewed here (and a copy of a socket)
    keep, *rest = [i.snapshot_id for i in dupes]
    assert len(service.reject(rest, "duplicate").changed) == 2
    after = service.order()
    assert not [i for i in after if i.why == "duplicate"]  # one unreviewed member left: nothing to decide
    assert keep in {i.snapshot_id for i in after} and not set(rest) & {i.snapshot_id for i in after}
