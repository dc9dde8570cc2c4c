"""The pipeline's classification stage hook.

``load_stage_classifier(settings)`` returns an object with
``classify_batch(snapshots: list[Snapshot]) -> None`` that fills each snapshot's
``predictions``, ``embedding`` and ``embedding_model`` in place, or None when no model is
configured/available (the pipeline then passes snapshots through unclassified). A model file
that fails its integrity check raises ModelIntegrityError rather than silently classifying
nothing.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

from ..errors import ModelNotFoundError

if TYPE_CHECKING:
    from ..config import Settings
    from ..store.snapshot import Snapshot

log = logging.getLogger(__name__)


class StageClassifier(Protocol):
    model_id: str

    def classify_batch(self, snapshots: list[Snapshot]) -> None: ...


def load_stage_classifier(settings: Settings) -> StageClassifier | None:
    cfg = settings.classification
    if not cfg.enabled or not cfg.default_model:
        return None
    from .inference import OnnxClassifier
    from .registry import ModelRegistry

    try:
        model = ModelRegistry().get(cfg.default_model)
    except ModelNotFoundError as exc:
        log.warning("classification off: %s", exc)
        return None
    # one intra-op thread: the pipeline already runs extraction workers on the other cores
    return OnnxClassifier(model, device=cfg.device, threads=1, tta=cfg.tta, top_k=cfg.top_k,
                          unknown_threshold=cfg.unknown_threshold, precision=cfg.precision,
                          azimuth_search=cfg.azimuth_search)  # fmt: skip
