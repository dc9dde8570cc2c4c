"""``ReviewService`` (``d3d.review``): curation for the CLI and the app over :mod:`..store.review`.

Decisions, a person's labels and tags, undo and history come from the store's :class:`Review`;
this service adds what needs more than the database: ids from prefixes or a filter, label
completion from the classifier's taxonomy, the near-duplicate clusters of the review order, and
teaching a new class from examples (a few-shot prototype saved where ``classify few-shot`` keeps
them, then the nearest unlabelled snapshots offered with their similarity).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..classify import fewshot
from ..store.db import Store
from ..store.filters import SnapshotFilter
from ..store.review import (
    REJECT_REASONS,
    ActionResult,
    HistoryEntry,
    Review,
    ReviewError,
    ReviewItem,
    ReviewState,
    prototype,
)
from ..store.service import StoreService

__all__ = ["REJECT_REASONS", "ReviewError", "ReviewService", "TeachResult"]


@dataclass
class TeachResult:
    """A class taught from examples: its prototype's model and the suggested snapshots."""

    name: str
    model_id: str
    examples: list[str]
    known_class: bool  # the classifier already has a label of this name
    suggestions: list[tuple[str, float]] = field(default_factory=list)  # (snapshot id, cosine similarity)

    def to_dict(self) -> dict[str, Any]:
        suggestions = [{"snapshot_id": s, "similarity": round(v, 4)} for s, v in self.suggestions]
        return {"name": self.name, "model": self.model_id, "examples": self.examples, "known_class": self.known_class,
                "suggestions": suggestions}  # fmt: skip


class ReviewService:
    """Curation over one database, as one user (``review.user``, else the OS user)."""

    def __init__(self, store: Store, *, user: str | None = None, default_model: str = "",
                 duplicates: Callable[[], list[list[str]]] | None = None,
                 prototype_folder: Any = None) -> None:  # fmt: skip
        self.store = store
        self.review = Review(store, user)
        self._rows = StoreService(store)
        self._default_model = default_model
        self._duplicates = duplicates
        self._prototype_folder = prototype_folder

    @property
    def user(self) -> str:
        return self.review.user

    # ------------------------------------------------------------ which snapshots

    def resolve(self, refs: Sequence[str]) -> list[str]:
        """Full ids from ids or unique prefixes (NotFoundError names the first that matches none)."""
        return list(dict.fromkeys(self._rows.resolve_id(r) for r in refs))

    def ids(self, flt: SnapshotFilter | None = None, limit: int | None = None) -> list[str]:
        return self.review.ids(flt, limit)

    def count(self, flt: SnapshotFilter | None = None) -> int:
        return self._rows.count(flt)

    # ------------------------------------------------------------ deciding (ids: full ids or prefixes)

    def accept(self, ids: Sequence[str]) -> ActionResult:
        return self.review.accept(self.resolve(ids))

    def reject(self, ids: Sequence[str], reason: str) -> ActionResult:
        return self.review.reject(self.resolve(ids), reason)

    def unreview(self, ids: Sequence[str]) -> ActionResult:
        return self.review.unreview(self.resolve(ids))

    def set_label(self, ids: Sequence[str], label: str | None, source: str = "human") -> ActionResult:
        return self.review.set_label(self.resolve(ids), label, source)

    def tag(self, ids: Sequence[str], tags: Sequence[str]) -> ActionResult:
        return self.review.tag(self.resolve(ids), tags)

    def untag(self, ids: Sequence[str], tags: Sequence[str]) -> ActionResult:
        return self.review.untag(self.resolve(ids), tags)

    def undo(self, action_id: int | None = None, *, any_user: bool = False) -> ActionResult:
        return self.review.undo(action_id, any_user=any_user)

    # ------------------------------------------------------------ reading

    def states(self, ids: Sequence[str]) -> dict[str, ReviewState]:
        return self.review.states(ids)

    def state(self, snapshot_id: str) -> ReviewState:
        return self.review.state(self._rows.resolve_id(snapshot_id))

    def history(self, snapshot_id: str | None = None, limit: int = 50) -> list[HistoryEntry]:
        sid = self._rows.resolve_id(snapshot_id) if snapshot_id else None
        return self.review.history(sid, limit)

    def summary(self) -> dict[str, int]:
        return self.review.summary()

    def titles(self, ids: Sequence[str]) -> dict[str, str]:
        """snapshot id -> its title (its model id when it has none), for lists of suggestions."""
        out: dict[str, str] = {}
        for start in range(0, len(ids), 500):
            part = list(ids[start : start + 500])
            rows = self.store.execute("SELECT snapshot_id, COALESCE(NULLIF(title, ''), model_id) FROM snapshots "
                                      f"WHERE snapshot_id IN ({', '.join('?' * len(part))})", part).fetchall()
            out.update({r[0]: r[1] for r in rows})
        return out

    def order_rows(self, flt: SnapshotFilter | None = None, limit: int = 200,
                   duplicates: bool = True) -> list[dict[str, Any]]:  # fmt: skip
        """:meth:`order` with each snapshot's title: what the app's review view lists."""
        items = self.order(flt, limit, duplicates)
        titles = self.titles([i.snapshot_id for i in items])
        return [{**i.to_dict(), "title": titles.get(i.snapshot_id, i.snapshot_id)} for i in items]

    def reject_reasons(self) -> tuple[str, ...]:
        return REJECT_REASONS

    def taxonomy_labels(self) -> list[str]:
        """The default classifier's labels (empty when no model is installed)."""
        if not self._default_model:
            return []
        from ..classify.registry import ModelRegistry

        try:
            return list(ModelRegistry().get(self._default_model).labels)
        except Exception:  # completion is a help: a missing or damaged model leaves it out
            return []

    def label_choices(self, prefix: str = "", limit: int = 50) -> list[str]:
        """Completion for a label: labels in use first (most used), then the taxonomy's, by prefix."""
        low = prefix.strip().lower()
        in_use = self.review.labels_in_use(low, limit)
        taxonomy = sorted(x for x in self.taxonomy_labels() if x.lower().startswith(low))
        seen = {x.lower() for x in in_use}
        return [*in_use, *(x for x in taxonomy if x.lower() not in seen)][:limit]

    def order(self, flt: SnapshotFilter | None = None, limit: int = 200, duplicates: bool = True) -> list[ReviewItem]:
        """Unreviewed snapshots, what most needs a person first (see :meth:`Review.order`)."""
        clusters = self._duplicates() if duplicates and self._duplicates is not None else None
        return self.review.order(flt, limit, clusters)

    # ------------------------------------------------------------ teaching from examples

    def teach(self, name: str, examples: Sequence[str] | None = None, k: int = 20,
              min_similarity: float = 0.0) -> TeachResult:  # fmt: skip
        """A few-shot class from the snapshots a person labelled ``name`` (or the given examples).

        The prototype (unit mean of the examples' classifier embeddings) is saved for its model,
        so ``classify few-shot``/zero-shot use it too; the ``k`` nearest snapshots that have no
        person's label and are not rejected come back with their similarity, for :meth:`apply`.
        """
        label = (name or "").strip()
        if not label:
            raise ReviewError("a class needs a name")
        ids = self.resolve(examples) if examples else self._labelled(label)
        if not ids:
            raise ReviewError(f"no snapshot has the label {label!r} set by a person: label a few, then teach")
        model_id, embeddings = self.review.examples_space(ids)
        proto = fewshot.Prototype(label, prototype(embeddings), list(ids))
        fewshot.PrototypeStore(model_id, self._prototype_folder).add(proto)
        known = label.lower() in {x.lower() for x in self._labels_of(model_id)}
        suggestions = self.review.nearest(proto.vector, model_id, k, exclude=ids, min_similarity=min_similarity)
        return TeachResult(label, model_id, list(ids), known, suggestions)

    def apply(self, name: str, ids: Sequence[str]) -> ActionResult:
        """Give the suggested snapshots a person accepted the taught label (source ``few_shot``)."""
        return self.review.set_label(self.resolve(ids), name, source="few_shot")

    def _labelled(self, label: str) -> list[str]:
        rows = self.store.execute("SELECT snapshot_id FROM snapshots WHERE label_source = 'human' "
                                  "AND LOWER(human_label) = ? ORDER BY snapshot_id", (label.lower(),)).fetchall()
        return [r[0] for r in rows]

    def _labels_of(self, model_id: str) -> list[str]:
        from ..classify.registry import ModelRegistry

        try:
            return list(ModelRegistry().get(model_id).labels)
        except Exception:  # an embedding model no longer installed: nothing to compare with
            return []

    def close(self) -> None:
        """Nothing held beyond the store's connections (the facade closes the store)."""
