"""Exports mean what the query says: for every snapshot filter, `db export` writes exactly the
snapshots `db query` lists (and the count an independent reading of the seeds expects).

A real SQLite database (and, for some filters, the real PostgreSQL server) seeded with snapshots
of several source formats, platforms, licences, labels, tags and processing dates.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from destill3d_tui.cli import main
from destill3d_tui.engine import licenses
from destill3d_tui.engine.store.db import Store
from destill3d_tui.engine.store.filters import FilterError, SnapshotFilter
from destill3d_tui.engine.store.snapshot import Snapshot

from .conftest import clone, store_snapshot

PLATFORMS = ("thingiverse", "sketchfab", "local")
LICENCES = ("CC-BY-4.0", "CC-BY-NC-4.0", "CC-BY-ND-4.0", "MIT")  # all open: the research policy takes every one


@dataclass
class Seed:
    """What one stored snapshot was given (the oracle the counts are checked against)."""

    platform: str
    source_format: str
    label: str | None
    confidence: float | None
    spdx: str
    title: str
    tags: tuple[str, ...]
    processed: dt.datetime

    @property
    def commercial(self) -> bool:
        return bool(licenses.from_spdx(self.spdx).commercial)

    @property
    def derivatives(self) -> bool:
        return bool(licenses.from_spdx(self.spdx).derivatives)


def seed_database(store: Store, families: dict[str, list[Snapshot]]) -> list[Seed]:
    """16 snapshots: 4 families x 3 files (STL, OFF, OBJ sources) and 4 more copies, attributes cycled."""
    snaps = [(name, s) for name, group in families.items() for s in group]
    snaps += [(name, group[0]) for name, group in families.items()]
    seeds = []
    for i, (family, snap) in enumerate(snaps):
        copy = clone(snap)
        label = None if i % 7 == 3 else family  # two unlabelled ones
        tags = ("kitchen",) if i % 2 == 0 else ()
        copy.provenance.tags = [*tags, "workshop"] if i % 5 == 0 else list(tags)
        seed = Seed(
            platform=PLATFORMS[i % 3], source_format=copy.provenance.original_format.upper(), label=label,
            confidence=None if label is None else round(0.5 + (i % 6) * 0.09, 2), spdx=LICENCES[i % 4],
            title=f"{family} model {i}" if i % 2 else f"object {i}",
            tags=tuple(copy.provenance.tags) + ((label,) if label else ()),
            processed=dt.datetime(2026, 1, i % 10 + 1, 12, 0, 0),
        )  # fmt: skip
        sid = store_snapshot(store, copy, platform=seed.platform, label=label, confidence=seed.confidence,
                             license_spdx=seed.spdx, title=seed.title)  # fmt: skip
        store.execute("UPDATE snapshots SET processed_at = ? WHERE snapshot_id = ?",
                      (seed.processed if store.is_postgres else seed.processed.isoformat(" "), sid))  # fmt: skip
        seeds.append(seed)
    return seeds


Case = tuple[str, list[str], list[str], Callable[[Seed], bool]]
CASES: list[Case] = [
    # (name, db query flags, db export flags, which seeds it means)
    ("platform", ["--platform", "Thingiverse"], ["--platform", "Thingiverse"], lambda s: s.platform == "thingiverse"),
    ("source format", ["--format", "obj"], ["--source-format", "obj"], lambda s: s.source_format == "OBJ"),
    ("label", ["--label", "Teapot"], ["--label", "Teapot"], lambda s: s.label == "teapot"),
    ("min confidence", ["--min-confidence", "80%"], ["--min-confidence", "80%"],
     lambda s: s.confidence is not None and s.confidence >= 0.8),
    ("licence", ["--license", "cc-by-nc-4.0"], ["--license", "cc-by-nc-4.0"], lambda s: s.spdx == "CC-BY-NC-4.0"),
    ("commercial", ["--commercial", "yes"], ["--commercial", "yes"], lambda s: s.commercial),
    ("derivatives", ["--derivatives", "no"], ["--derivatives", "no"], lambda s: not s.derivatives),
    ("tags", ["--tag", "kitchen", "--tag", "Workshop"], ["--tag", "kitchen", "--tag", "Workshop"],
     lambda s: {"kitchen", "workshop"} <= set(s.tags)),
    ("predicted tag", ["--tag", "socket"], ["--tag", "socket"], lambda s: "socket" in s.tags),
    ("text (title or label)", ["--text", "POT"], ["--text", "POT"],
     lambda s: "pot" in s.title.lower() or "pot" in (s.label or "")),
    ("dates", ["--since", "2026-01-04", "--until", "2026-01-07"], ["--since", "2026-01-04", "--until", "2026-01-07"],
     lambda s: dt.datetime(2026, 1, 4) <= s.processed < dt.datetime(2026, 1, 8)),
    ("combined", ["--format", "STL", "--commercial", "yes", "--min-confidence", "0.6"],
     ["--source-format", "STL", "--commercial", "yes", "--min-confidence", "0.6"],
     lambda s: s.source_format == "STL" and s.commercial and (s.confidence or 0) >= 0.6),
]  # fmt: skip


@pytest.fixture(scope="module")
def seeded_db(tmp_path_factory: pytest.TempPathFactory,
              family_snapshots: dict[str, list[Snapshot]]) -> tuple[Path, list[Seed]]:  # fmt: skip
    path = tmp_path_factory.mktemp("filters") / "filters.db"
    store = Store(f"sqlite:///{path}")
    seeds = seed_database(store, family_snapshots)
    store.close()
    return path, seeds


def _lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def query_and_export(db: str, query_flags: list[str], export_flags: list[str], out: Path,
                     capsys: pytest.CaptureFixture[str]) -> tuple[int, int, int]:  # fmt: skip
    """(rows db query lists, count db export reports, objects in the export's attribution manifest)."""
    assert main(["--db", db, "db", "query", "--limit", "1000", "--json", *query_flags]) == 0
    listed = len(_lines(capsys.readouterr().out))
    code = main(["--db", db, "db", "export", "--format", "numpy", "--output", str(out), "--json", *export_flags])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    result = _lines(captured.out)[0]
    written = len(json.loads((out / "attribution.json").read_text())["objects"])
    assert result["skipped_total"] == 0  # every seeded licence is open: nothing is left out by the policy
    return listed, result["count"], written


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_export_writes_what_query_lists(case: Case, seeded_db: tuple[Path, list[Seed]], tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    _name, query_flags, export_flags, means = case
    path, seeds = seeded_db
    expected = sum(map(means, seeds))
    assert 0 < expected < len(seeds)  # the filter narrows and still leaves something to export
    listed, exported, written = query_and_export(str(path), query_flags, export_flags, tmp_path / "out", capsys)
    assert listed == exported == written == expected


def test_query_count_and_export_plan_agree(seeded_db: tuple[Path, list[Seed]],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """`db query --count` and the engine's export plan use the same WHERE; the policy's refusals are counted."""
    from destill3d_tui.engine import Destill3D

    path, seeds = seeded_db
    assert main(["--db", str(path), "db", "query", "--count", "--json", "--text", "model"]) == 0
    counted = _lines(capsys.readouterr().out)[0]
    assert counted["count"] == sum("model" in s.title for s in seeds) and counted["filter"] == {"text": "model"}
    with Destill3D(db=path) as d3d:
        flt = SnapshotFilter(text="model")
        plan = d3d.db.export_plan(flt, license_policy="commercial")
        refused = sum("model" in s.title and not (s.commercial and s.derivatives) for s in seeds)
        assert plan.matched == d3d.db.count(flt) == counted["count"]
        assert plan.count == plan.matched - refused and plan.skipped_total == refused > 0


def test_bad_filter_values_are_refused_with_a_reason(seeded_db: tuple[Path, list[Seed]], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    path, _ = seeded_db
    code = main(["--db", str(path), "db", "export", "--format", "numpy", "--output", str(tmp_path / "x"),
                 "--min-confidence", "high"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and "filter_invalid" in err and "'high'" in err
    assert not (tmp_path / "x").exists()
    with pytest.raises(FilterError, match="2026-13-01"):
        SnapshotFilter.parse("since:2026-13-01")
    with pytest.raises(FilterError, match="unknown filter 'colour'"):
        SnapshotFilter.from_mapping({"colour": "red"})


def test_typed_filter_text() -> None:
    """The F4 box and F5's search field read terms the way the CLI flags do."""
    flt = SnapshotFilter.parse('"tea pot" format:.stl tag:Kitchen tag=workshop commercial:yes conf:80% '
                               "until:2026-01-07")
    assert flt == SnapshotFilter(text="tea pot", source_format="STL", tags=("kitchen", "workshop"), commercial=True,
                                 min_confidence=0.8, until=dt.datetime(2026, 1, 8))  # fmt: skip
    assert SnapshotFilter.parse("a:b [WIP]").text == "a:b [WIP]"  # not a filter name: searched as text
    assert flt.describe().startswith("format=STL, min_confidence=0.8, commercial=yes, tags=kitchen+workshop")
    assert not SnapshotFilter() and SnapshotFilter().describe() == "no filters"


def test_text_search_takes_wildcards_literally(tmp_path: Path, family_snapshots: dict[str, list[Snapshot]]) -> None:
    store = Store(f"sqlite:///{tmp_path / 'w.db'}")
    try:
        snap = family_snapshots["teapot"][0]
        store_snapshot(store, clone(snap), title="100% cotton_pot")
        store_snapshot(store, clone(snap), title="1000 cottonXpot")
        from destill3d_tui.engine.store.service import StoreService

        service = StoreService(store)
        assert service.count(text="0% c") == 1 and service.count(text="n_p") == 1 and service.count(text="cotton") == 2
    finally:
        store.close()


@pytest.mark.parametrize("case", [c for c in CASES if c[0] in ("source format", "tags", "text (title or label)",
                                                                "dates", "commercial")],
                         ids=lambda c: c[0])  # fmt: skip
def test_export_writes_what_query_lists_on_postgres(case: Case, pg_store: Store, tmp_path: Path,
                                                    family_snapshots: dict[str, list[Snapshot]],
                                                    capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    _name, query_flags, export_flags, means = case
    seeds = seed_database(pg_store, family_snapshots)
    url = pg_store.url
    listed, exported, written = query_and_export(url, query_flags, export_flags, tmp_path / "out", capsys)
    assert listed == exported == written == sum(map(means, seeds))


def _mixed_collection(store: Store, families: dict[str, list[Snapshot]]) -> list[str]:
    """Snapshots the plan must tell apart: open and closed licences, a local file with none, a
    rejected one, and a point count that differs from the rest."""
    from destill3d_tui.engine.services.review import Review

    snap = families["teapot"][0]
    ids = [store_snapshot(store, clone(snap), license_spdx=spdx, platform=platform, label="teapot")
           for spdx, platform in [("CC-BY-4.0", "thingiverse"), ("CC-BY-NC-4.0", "sketchfab"), ("", "local"),
                                  ("", "thingiverse"), ("MIT", "github"), ("CC-BY-ND-4.0", "thingiverse")]]  # fmt: skip
    Review(store, user="ada").reject([ids[4]], "broken")
    store.execute("UPDATE snapshots SET point_count = 1024 WHERE snapshot_id = ?", (ids[0],))
    return ids


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_export_plan_counts_in_sql_what_the_selection_writes(
    backend: str, tmp_path: Path, family_snapshots: dict[str, list[Snapshot]], request: pytest.FixtureRequest
) -> None:
    """The plan (one GROUP BY, what the export dialog shows) equals the selection the export writes,
    reason by reason, under each policy and with the rejected asked for."""
    from destill3d_tui.engine.store.export import selection as sel
    from destill3d_tui.engine.store.service import where_sql

    store = Store(f"sqlite:///{tmp_path / 'plan.db'}") if backend == "sqlite" else request.getfixturevalue("pg_store")
    _mixed_collection(store, family_snapshots)
    seen = set()
    for flt in (SnapshotFilter(), SnapshotFilter(review="rejected"), SnapshotFilter(platform="thingiverse")):
        where, params = where_sql(store, flt)
        keep = flt.review == "rejected"
        for policy in ("research", "commercial", "any"):
            chosen = sel.select(store, where, params, taxonomy=None, policy=policy, fractions=(0.8, 0.1, 0.1),
                                keep_rejected=keep)  # fmt: skip
            for covered in (True, False):  # the two groupings count alike
                counted = sel.tally(store, where, params, policy=policy, keep_rejected=keep, covered=covered)
                assert counted == (chosen.matched, chosen.count, chosen.skipped), (flt, policy, covered)
            seen.update(chosen.skipped)
    # the cases were all there: a rejection, a refusal, a differing point count
    assert sel.REJECTED in seen and "point count differs from 2048" in seen
    assert any(reason.startswith("licence (commercial)") for reason in seen)
    if backend == "sqlite":
        # the unfiltered count streams off the covering index (the rows' columns lie past the blob);
        # a label filter keeps its own index rather than read every row for it
        def plan(flt: SnapshotFilter, covered: bool) -> str:
            where, params = where_sql(store, flt)
            sql = "EXPLAIN QUERY PLAN " + sel.tally_sql(where, covered)
            return " ".join(r[-1] for r in store.execute(sql, params).fetchall())

        unfiltered = plan(SnapshotFilter(), True)
        assert "COVERING INDEX idx_snapshots_export_plan" in unfiltered and "TEMP B-TREE" not in unfiltered
        assert "INDEX idx_snapshots_label" in plan(SnapshotFilter(label="teapot"), False)
        store.close()
