"""The pipeline's classification stage hook.

``load_stage_classifier(settings)`` returns an object with
``classify_batch(snapshots: list[Snapshot]) -> None`` that fills each snapshot's
``predictions``, ``embedding`` and ``embedding_model`` in place, or None when no model is
configured/available (the pipeline then passes snapshots through unclassified).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..config import Settings
    from ..store.snapshot import Snapshot


class StageClassifier(Protocol):
    model_id: str

    def classify_batch(self, snapshots: list[Snapshot]) -> None: ...


def load_stage_classifier(settings: Settings) -> StageClassifier | None:
    return None
