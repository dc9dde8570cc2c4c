"""Which stored snapshots a list, a count or an export means: one frozen value, :class:`SnapshotFilter`.

Every reader builds one (from keyword arguments, CLI flags, a screen's form or typed text such as
``vase format:stl tag:chair since:2026-01-01``) and hands it to the engine, where
:func:`..service.where_sql` turns it into the one SQL ``WHERE`` that queries, counts, export plans
and exports all use, so what a screen counts is what an export writes.
"""

from __future__ import annotations

import datetime as dt
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from ..errors import Destill3DError


class FilterError(Destill3DError):
    """A filter value that cannot mean anything (a confidence of "high", a date of "soon")."""

    reason = "filter_invalid"


REVIEW_STATES = ("accepted", "rejected", "unreviewed")
"""What ``review:`` takes: a decision, or none yet."""
LABEL_SOURCES = ("human", "few_shot", "model", "any")
"""What ``label_source:`` takes (``any`` does not narrow)."""

ALIASES = {"format": "source_format", "original_format": "source_format", "tag": "tags", "licence": "license",
           "confidence": "min_confidence", "conf": "min_confidence", "q": "text", "from": "since", "to": "until",
           "reviewed": "review", "label-source": "label_source"}
"""Other names a filter is known by (``format`` is the source format in ``db query``)."""

_TRUE = {"1", "true", "yes", "y", "on", "ok"}
_FALSE = {"0", "false", "no", "n", "off"}


@dataclass(frozen=True)
class SnapshotFilter:
    """Conditions a snapshot must meet, all of them (empty fields do not narrow).

    platform, source_format, label, license : exact, case-insensitive (licence: SPDX id or raw string)
    min_confidence : the stored top prediction's confidence is at least this (0..1)
    commercial, derivatives : the recorded licence flag is exactly this
    tags : every one of these tags (platform or predicted) is attached
    text : a substring of the title, label, author, platform or model id, case-insensitive
    since, until : processed at ``since`` or later, and before ``until`` (naive UTC)
    review : the curator's decision: accepted, rejected or unreviewed
    label_source : whose label the snapshot goes by: human, few_shot, model (the classifier's
        top prediction, no person's label) or any
    """

    platform: str | None = None
    source_format: str | None = None
    label: str | None = None
    min_confidence: float | None = None
    license: str | None = None
    commercial: bool | None = None
    derivatives: bool | None = None
    tags: tuple[str, ...] = ()
    text: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    review: str | None = None
    label_source: str | None = None

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None = None, **more: Any) -> SnapshotFilter:
        """A filter from keyword-style values (strings are parsed); unknown names are an error."""
        known = {f.name for f in fields(cls)}
        out: dict[str, Any] = {}
        for key, value in {**(values or {}), **more}.items():
            name = ALIASES.get(key, key)
            if name not in known:
                raise FilterError(f"unknown filter {key!r}: expected one of {', '.join(sorted(known))}")
            parsed = _parse(name, value)
            if parsed is not None and parsed != ():
                out[name] = parsed
        return cls(**out)

    @classmethod
    def coerce(cls, value: SnapshotFilter | Mapping[str, Any] | None = None, **more: Any) -> SnapshotFilter:
        """A filter from a filter (plus overrides), a mapping, or keyword arguments."""
        if isinstance(value, SnapshotFilter):
            return value.merged(**more) if more else value
        return cls.from_mapping(value, **more)

    @classmethod
    def parse(cls, text: str) -> SnapshotFilter:
        """Typed filter text: ``key:value`` (or ``key=value``) terms, the rest is the text search.

        ``vase format:stl tag:chair commercial:yes since:2026-01-01``; quotes group words.
        """
        try:
            words = shlex.split(text)
        except ValueError:  # an unbalanced quote: read the words as typed
            words = text.split()
        terms: dict[str, Any] = {}
        rest: list[str] = []
        known = {f.name for f in fields(cls)} | set(ALIASES)
        for word in words:
            key, sep, value = word.replace("=", ":", 1).partition(":")
            if sep and key.lower() in known and value:
                name = ALIASES.get(key.lower(), key.lower())
                terms[name] = [*terms.get(name, []), value] if name == "tags" else value
            else:
                rest.append(word)
        if rest:
            terms["text"] = " ".join(rest)
        return cls.from_mapping(terms)

    def merged(self, **changes: Any) -> SnapshotFilter:
        """This filter with some fields replaced (values parsed like :meth:`from_mapping`)."""
        parsed = SnapshotFilter.from_mapping(changes)
        names = {ALIASES.get(k, k) for k in changes}
        return replace(self, **{n: getattr(parsed, n) for n in names})

    def items(self) -> list[tuple[str, Any]]:
        """(field, value) for the fields that narrow, in declaration order."""
        return [(f.name, getattr(self, f.name)) for f in fields(self) if getattr(self, f.name) not in (None, ())]

    def to_dict(self) -> dict[str, Any]:
        """The narrowing fields as JSON-ready values (the dataset card records them)."""
        return {k: _show(v) for k, v in self.items()}

    def describe(self) -> str:
        """``format=STL, label=vase`` for status lines; ``no filters`` when nothing narrows."""
        names = {"source_format": "format"}
        return ", ".join(f"{names.get(k, k)}={_show(v)}" for k, v in self.items()) or "no filters"

    def __bool__(self) -> bool:
        return bool(self.items())


def _show(value: Any) -> Any:
    if isinstance(value, tuple):
        return "+".join(value)
    if isinstance(value, dt.datetime):
        return value.isoformat(" ", "seconds")
    if isinstance(value, bool):
        return "yes" if value else "no"
    return value


def _parse(name: str, value: Any) -> Any:
    """One field's value from what a user or caller gave (None or "" means no condition)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if name == "min_confidence":
        return _confidence(value)
    if name in ("commercial", "derivatives"):
        return _flag(name, value)
    if name == "tags":
        items = [value] if isinstance(value, str) else list(value)
        words = [w.strip().lower() for item in items for w in str(item).split(",")]
        return tuple(sorted({w for w in words if w}))
    if name in ("since", "until"):
        return _instant(name, value)
    if name == "review":
        return _choice(name, value, REVIEW_STATES)
    if name == "label_source":
        choice = _choice(name, value, LABEL_SOURCES, {"few-shot": "few_shot", "fewshot": "few_shot"})
        return None if choice == "any" else choice
    text = str(value).strip()
    if name == "source_format":
        return text.lstrip(".").upper()
    return text.lower() if name in ("platform", "label") else text


def _choice(name: str, value: Any, allowed: tuple[str, ...], aliases: Mapping[str, str] | None = None) -> str:
    text = str(value).strip().lower()
    text = (aliases or {}).get(text, text)
    if text not in allowed:
        raise FilterError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
    return text


def _confidence(value: Any) -> float:
    text = str(value).strip()
    try:
        number = float(text.rstrip("%")) / (100.0 if text.endswith("%") else 1.0)
    except ValueError:
        raise FilterError(f"minimum confidence must be a number like 0.8 or 80%, not {text!r}") from None
    if not 0.0 <= number <= 1.0:
        raise FilterError(f"minimum confidence must be between 0 and 1 (or 0% and 100%), not {text!r}")
    return number


def _flag(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise FilterError(f"{name} must be yes or no, not {value!r}")


def _instant(name: str, value: Any) -> dt.datetime:
    """A naive UTC datetime; a bare date ``until`` means through the end of that day."""
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, dt.date):
        moment = dt.datetime.combine(value, dt.time()) + (dt.timedelta(days=1) if name == "until" else dt.timedelta())
    else:
        text = str(value).strip()
        try:
            moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise FilterError(f"{name} must be a date like 2026-01-31 or 2026-01-31T12:00, not {text!r}") from None
        if name == "until" and len(text) == 10:  # a bare date: the whole day is in
            moment += dt.timedelta(days=1)
    return moment.astimezone(dt.UTC).replace(tzinfo=None) if moment.tzinfo else moment


def review_conditions(flt: SnapshotFilter) -> list[tuple[str, list[Any]]]:
    """The SQL conditions (``?`` placeholders) of the review fields, for :func:`..service.where_sql`.

    Over the v5 columns of ``snapshots`` (migrations): ``review`` NULL is unreviewed, and
    ``label_source`` NULL means the label is the model's own top prediction.
    """
    out: list[tuple[str, list[Any]]] = []
    if flt.review == "unreviewed":
        out.append(("review IS NULL", []))
    elif flt.review:
        out.append(("review = ?", [flt.review]))
    if flt.label_source == "model":
        out.append(("label_source IS NULL AND label IS NOT NULL", []))
    elif flt.label_source:
        out.append(("label_source = ?", [flt.label_source]))
    return out
