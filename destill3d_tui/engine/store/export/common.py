"""What every export format shares: records, the exporter base class, splits, licence policy,
the attribution manifest, the dataset card and the registry of formats.

An exporter is a pure writer: :meth:`Exporter.begin` gets the :class:`ExportLayout` (label
names, how many records each split will get), :meth:`Exporter.write` one :class:`ExportRecord`
at a time, :meth:`Exporter.finish` returns the files written. It never reads the database;
:mod:`...services.dataset` selects, filters and splits the rows and feeds the records.

Splits are deterministic and stratified: within each label the records are ordered by the
SHA-256 of their snapshot id and cut by the split fractions (largest remainder), so the same
collection always splits the same way, every label gets its share, and adding objects moves at
most a boundary object per label and split.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ... import licenses
from ...errors import Destill3DError
from ...licenses import LicenseInfo
from .. import provenance

SPLIT_NAMES = ("train", "val", "test")
UNLABELLED = "unknown"
JSON_TEXT = json.JSONEncoder(ensure_ascii=False, default=str)
"""What ``json.dumps(value, ensure_ascii=False, default=str)`` writes (metadata, attribution lines),
without an encoder built per call: the same text in half the time."""
ENTRY_POINT_GROUP = "destill3d.exporters"


class ExportError(Destill3DError):
    """Bad export request (unknown format, bad split, output in the way, nothing to export)."""

    reason = "export_invalid"


@dataclass
class ExportRecord:
    """One object as the exporters see it.

    points, normals : (n, 3) float32, unit sphere; views : (v, h, w) uint8 or None
    metadata : title, author, source_url, license, license_spdx, platform, model_id, sha256, ...
    """

    snapshot_id: str
    points: np.ndarray
    normals: np.ndarray
    label: str
    label_index: int
    split: str
    metadata: dict[str, Any] = field(default_factory=dict)
    views: np.ndarray | None = None


@dataclass
class ExportLayout:
    """What an exporter knows before the first record arrives."""

    output: Path
    label_names: list[str]
    split_counts: dict[str, int]  # only splits that get records, in SPLIT_NAMES order
    points_per_object: int = 2048
    views: bool = False
    view_shape: tuple[int, int, int] | None = None


class Exporter(ABC):
    """Base of every format. Subclasses set ``name`` and ``description``."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""

    def __init__(self) -> None:
        self.layout: ExportLayout | None = None

    def begin(self, layout: ExportLayout) -> None:
        self.layout = layout
        layout.output.mkdir(parents=True, exist_ok=True)

    @abstractmethod
    def write(self, record: ExportRecord) -> str:
        """Store one record; returns where it went (``train.parquet#3``), for the manifest."""

    @abstractmethod
    def finish(self) -> list[Path]: ...

    def abort(self) -> None:  # noqa: B027 - optional hook, most writers hold nothing to close
        """Close open handles after a failure (files written so far stay for inspection)."""

    def loading_note(self) -> str:
        """A few lines for the dataset card: how to load what this exporter wrote."""
        return ""


@dataclass
class ExportResult:
    format: str
    output: Path | None
    files: list[Path] = field(default_factory=list)
    split_counts: dict[str, int] = field(default_factory=dict)
    label_names: list[str] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count
    manifest: Path | None = None
    card: Path | None = None
    seconds: float = 0.0
    arrays: dict[str, np.ndarray] | None = None  # return_arrays=True: flat arrays + "split"
    interrupted: bool = False

    @property
    def count(self) -> int:
        return sum(self.split_counts.values())

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "output": str(self.output) if self.output else None,
            "files": [str(f) for f in self.files],
            "count": self.count,
            "split_counts": self.split_counts,
            "label_names": self.label_names,
            "skipped": self.skipped,
            "skipped_total": self.skipped_total,
            "manifest": str(self.manifest) if self.manifest else None,
            "card": str(self.card) if self.card else None,
            "seconds": round(self.seconds, 3),
            "interrupted": self.interrupted,
        }


def flatten_arrays(parts: dict[str, dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Per-split arrays (in-memory NumPy export) -> one set of arrays + a ``split`` column."""
    out: dict[str, np.ndarray] = {}
    keys = [k for k in next(iter(parts.values())) if k != "label_names"]
    for key in keys:
        out[key] = np.concatenate([parts[s][key] for s in parts])
    out["label_names"] = next(iter(parts.values()))["label_names"]
    out["split"] = np.concatenate([np.full(len(parts[s]["labels"]), s) for s in parts])
    return out


# ---------------------------------------------------------------- registry


def available_formats() -> dict[str, type[Exporter]]:
    """Format name -> exporter class, from the ``destill3d.exporters`` entry points."""
    return dict(_exporter_classes())


@functools.cache
def _exporter_classes() -> dict[str, type[Exporter]]:
    # read once per process: the scan of every installed distribution's metadata costs ~4 ms
    return {ep.name: ep.load() for ep in entry_points(group=ENTRY_POINT_GROUP)}


def get_exporter(name: str) -> Exporter:
    formats = available_formats()
    if name not in formats:
        raise ExportError(f"unknown export format {name!r}: expected one of {', '.join(sorted(formats))}")
    return formats[name]()


# ---------------------------------------------------------------- splits


def parse_split(text: str | Iterable[float]) -> tuple[float, float, float]:
    """``"0.8:0.1:0.1"`` or a sequence -> (train, val, test) fractions summing to 1."""
    if isinstance(text, str):
        try:
            parts = [float(p) for p in text.split(":")]
        except ValueError as exc:
            raise ExportError(f"split {text!r}: expected train:val:test fractions like 0.8:0.1:0.1") from exc
    else:
        parts = [float(p) for p in text]
    parts = [*parts, 0.0, 0.0, 0.0][:3] if 1 <= len(parts) <= 3 else []
    total = sum(parts)
    if not parts or min(parts) < 0 or total <= 0:
        raise ExportError(f"split {text!r}: expected up to three non-negative fractions, not all zero")
    return (parts[0] / total, parts[1] / total, parts[2] / total)


def split_key(snapshot_id: str) -> str:
    return hashlib.sha256(snapshot_id.encode()).hexdigest()


def _quota(n: int, fractions: tuple[float, float, float]) -> list[int]:
    """Largest-remainder allocation of n items to the splits (ties go to the earlier split)."""
    raw = [n * f for f in fractions]
    counts = [int(r) for r in raw]
    order = sorted(range(3), key=lambda i: (-(raw[i] - counts[i]), i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    return counts


def assign_splits(
    items: Iterable[tuple[str, str]],
    fractions: tuple[float, float, float],
    groups: dict[str, str] | None = None,
) -> dict[str, str]:
    """(snapshot_id, label) pairs -> snapshot_id -> split name, stratified by label.

    ``groups`` (snapshot_id -> group id, e.g. a near-duplicate cluster) keeps each group in one
    split: groups are the units that are ordered and cut, under their most common label.
    """
    members: dict[str, list[tuple[str, str]]] = {}
    for sid, label in items:
        members.setdefault((groups or {}).get(sid, sid), []).append((sid, label))
    by_label: dict[str, list[str]] = {}
    for unit, pairs in members.items():
        label = Counter(lbl for _, lbl in pairs).most_common(1)[0][0]
        by_label.setdefault(label, []).append(unit)
    out: dict[str, str] = {}
    for units in by_label.values():
        units.sort(key=split_key)
        counts = _quota(len(units), fractions)
        start = 0
        for name, count in zip(SPLIT_NAMES, counts, strict=True):
            for unit in units[start : start + count]:
                out.update((sid, name) for sid, _ in members[unit])
            start += count
    return out


# ---------------------------------------------------------------- licence policy


def license_info(row: dict[str, Any]) -> LicenseInfo:
    """The licence of a candidate row from its stored flags, else its SPDX id."""
    flags = row.get("license_flags") or {}
    if isinstance(flags, str):
        try:
            flags = json.loads(flags)
        except ValueError:
            flags = {}
    info = licenses.from_spdx(row.get("license_spdx") or flags.get("spdx"), raw=row.get("license") or "")
    for key in ("commercial", "derivatives", "share_alike", "attribution"):
        if isinstance(flags.get(key), bool) and info.spdx:
            setattr(info, key, flags[key])
    return info


def license_refusal(row: dict[str, Any], policy: str) -> str | None:
    """None when ``policy`` lets this object into a dataset, else a short reason.

    A local file with no licence recorded is the user's own: research exports take it (the
    card says so); commercial exports refuse it like any unknown licence.
    """
    info = license_info(row)
    if policy == "research" and not info.spdx and not info.raw and row.get("platform") == "local":
        return None
    try:
        return licenses.why_refused(info, policy)
    except ValueError as exc:
        raise ExportError(str(exc)) from exc  # an unknown policy name


# ---------------------------------------------------------------- manifest and card


def attribution_entry(record: ExportRecord, item: str = "") -> dict[str, Any]:
    """One object of ``attribution.json``: where it is in the export, and its credit (one provenance mapping)."""
    return {"snapshot_id": record.snapshot_id, "item": item, "split": record.split, "label": record.label,
            **provenance.attribution(record.metadata)}  # fmt: skip


def write_manifest(output: Path, entries: list[dict[str, Any]]) -> Path:
    path = output / "attribution.json"
    path.write_text(json.dumps({"objects": entries}, indent=1, ensure_ascii=False) + "\n")
    return path


@dataclass
class CardFacts:
    format: str
    label_names: list[str]
    split_counts: dict[str, int]
    label_counts: dict[str, dict[str, int]]  # split -> label -> count
    licence_counts: dict[str, int]
    skipped: dict[str, int]  # reason -> count
    options: dict[str, Any]
    loading: str = ""
    generator: str = "Destill3D"
    label_sources: dict[str, int] = field(default_factory=dict)  # human | few_shot | model | none -> objects
    reviewed: int | None = None  # objects a curator decided on (None: not counted, the card says nothing)


def _front_matter(facts: CardFacts) -> str:
    """YAML header the Hugging Face Hub reads (licence, splits of the Parquet files)."""
    licences = sorted(k for k in facts.licence_counts if k and not k.startswith("("))
    lines = ["---", "license: " + ("other" if len(licences) != 1 else licences[0].lower())]
    if facts.format == "parquet":
        lines += ["configs:", "- config_name: default", "  data_files:"]
        for split in facts.split_counts:
            lines += [f"  - split: {split}", f"    path: data/{split}-*.parquet"]
    lines.append("---")
    return "\n".join(lines)


def write_card(output: Path, facts: CardFacts) -> Path:
    """README.md: counts, label distribution, licences, what was left out and how it was made."""
    total = sum(facts.split_counts.values())
    out = [_front_matter(facts), "", "# Destill3D point-cloud dataset", ""]
    out += [f"{total} objects in {len(facts.label_names)} classes, format `{facts.format}`.", ""]
    out += ["## Splits", "", "| split | objects |", "| --- | --- |"]
    out += [f"| {s} | {n} |" for s, n in facts.split_counts.items()]
    out += ["", "## Label distribution", "", "| label | " + " | ".join(facts.split_counts) + " | total |"]
    out.append("| --- " * (len(facts.split_counts) + 2) + "|")
    for label in facts.label_names:
        per = [facts.label_counts.get(s, {}).get(label, 0) for s in facts.split_counts]
        out.append(f"| {_cell(label)} | " + " | ".join(map(str, per)) + f" | {sum(per)} |")
    out += ["", "## Licences", "", "| licence | objects |", "| --- | --- |"]
    out += [f"| {_cell(k or '(none recorded)')} | {n} |" for k, n in sorted(facts.licence_counts.items())]
    out += ["", "Per-object attribution (title, author, source URL, licence, SHA-256 of the source file) is in",
            "`attribution.json`. Keep it with the data and credit the authors as their licences require.", ""]
    out += _review_section(facts, total)
    if facts.skipped:
        out += ["## Left out", "", "| reason | objects |", "| --- | --- |"]
        out += [f"| {_cell(k)} | {n} |" for k, n in sorted(facts.skipped.items())]
        out.append("")
    out += ["## How it was made", ""]
    out += [f"Exported by {facts.generator} from its snapshot database with these options:", "", "```json",
            json.dumps(facts.options, indent=1, sort_keys=True, default=str), "```", ""]
    out += ["Points are sampled from each model's surface, centred and scaled to the unit sphere; normals",
            "are unit vectors. Splits are stratified by label and deterministic: within a label objects are",
            "ordered by the SHA-256 of their snapshot id and cut by the split fractions.", ""]
    if facts.loading:
        out += ["## Loading", "", facts.loading, ""]
    path = output / "README.md"
    path.write_text("\n".join(out))
    return path


_SOURCE_NAMES = {"human": "set by a person", "few_shot": "few-shot class, confirmed by a person",
                 "model": "the classifier's top prediction", "none": "none (exported as `unknown`)"}  # fmt: skip


def _review_section(facts: CardFacts, total: int) -> list[str]:
    """Whose labels the objects carry and how many a person reviewed (rejected ones are left out)."""
    if facts.reviewed is None and not facts.label_sources:
        return []
    out = ["## Labels and review", "", "| label source | objects |", "| --- | --- |"]
    out += [f"| {_SOURCE_NAMES.get(k, k)} | {facts.label_sources.get(k, 0)} |" for k in _SOURCE_NAMES]
    out.append("")
    if facts.reviewed is not None:
        out += [f"{facts.reviewed} of {total} objects were reviewed by a person; a person's label wins over the "
                "model's, and snapshots a person rejected are left out unless asked for.", ""]
    return out


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def tally(records_meta: Iterable[tuple[str, str, str]]) -> tuple[dict[str, dict[str, int]], dict[str, int]]:
    """(split, label, licence) triples -> per-split label counts and licence counts."""
    labels: dict[str, Counter[str]] = {}
    licence: Counter[str] = Counter()
    for split, label, lic in records_meta:
        labels.setdefault(split, Counter())[label] += 1
        licence[lic] += 1
    return {s: dict(c) for s, c in labels.items()}, dict(licence)


_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(label: str) -> str:
    """A label as a folder/file name (ModelNet layout): spaces and slashes become ``_``."""
    cleaned = _SAFE.sub("_", label.strip()).strip("._") or UNLABELLED
    return cleaned
