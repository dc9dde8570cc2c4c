"""``d3d.classify`` and ``d3d.models``: classification services over the stored snapshots.

Stored snapshots that are (re)classified are written back through the store's
``update_classification`` (blob, classifications rows, embedding in one transaction).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from ..classify import fewshot, zeroshot
from ..classify.inference import OnnxClassifier
from ..classify.registry import ModelRegistry, RegisteredModel
from ..config import ClassificationSettings
from ..errors import ClassificationError, ModelNotFoundError
from ..store.service import StoreService, update_classification
from ..store.snapshot import Prediction, Snapshot


def label_prototypes(model: RegisteredModel) -> np.ndarray | None:
    """(C, E) unit prototypes of the model's labels when its card ships them, else None."""
    name = model.card.get("label_prototypes")
    if not name or model.card_path is None:
        return None
    path = model.card_path.parent / str(name)
    return fewshot.unit(np.load(path).astype(np.float32)) if path.exists() else None


def load_text_embeddings(model: RegisteredModel) -> dict[str, np.ndarray]:
    """An encoder card's ``text_embeddings`` file (npz: names (K,), embeddings (K, E))."""
    name = model.card.get("text_embeddings")
    if not name or model.card_path is None:
        return {}
    data = np.load(model.card_path.parent / str(name), allow_pickle=False)
    return {zeroshot.normalise_name(str(n)): v.astype(np.float32) for n, v in
            zip(data["names"], data["embeddings"], strict=True)}  # fmt: skip


class ClassifyService:
    """Classify stored snapshots or .d3d files; zero-shot and few-shot answers.

    ``settings``: the classification section (read at each call: changes to it apply);
    ``snapshots``: reads and the classification write-back of the database.
    """

    def __init__(self, settings: ClassificationSettings, snapshots: StoreService) -> None:
        self._settings = settings
        self._snapshots = snapshots
        self.registry = ModelRegistry()
        self._cache: dict[tuple[str, int], OnnxClassifier] = {}
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- models
    def classifier(self, model: str | None = None, tta: int | None = None, top_k: int | None = None) -> OnnxClassifier:
        cfg = self._settings
        model_id = model or cfg.default_model
        key = (model_id, tta or cfg.tta)
        with self._lock:
            if key not in self._cache:
                self._cache[key] = OnnxClassifier(self.registry.get(model_id), device=cfg.device, threads=1,
                                                  tta=key[1], top_k=cfg.top_k,
                                                  unknown_threshold=cfg.unknown_threshold,
                                                  precision=cfg.precision,
                                                  azimuth_search=cfg.azimuth_search)  # fmt: skip
            clf = self._cache[key]
        clf.top_k = top_k or cfg.top_k
        return clf

    def _load(self, ref: str | Path) -> tuple[Snapshot, bool]:
        """A snapshot from a .d3d path or a stored id (stored=True)."""
        path = Path(str(ref))
        if path.suffix.lower() == ".d3d" or path.is_file():
            if not path.is_file():
                raise ClassificationError(f"no such snapshot file: {path}", reason="not_found")
            return Snapshot.load(path), False
        return self._snapshots.get(str(ref)), True

    # ---------------------------------------------------------------- classify
    def snapshot(self, snapshot_id_or_path: str | Path, model: str | None = None, top_k: int = 5,
                 tta: int | None = None) -> list[Prediction]:  # fmt: skip
        """Classify one snapshot; a stored one is updated in the database, a file is left as it is."""
        snap, stored = self._load(snapshot_id_or_path)
        clf = self.classifier(model, tta, top_k)
        clf.classify_batch([snap])
        if stored:
            update_classification(self._snapshots.store, snap)
        return [p for p in snap.predictions if p.model_name == clf.model_id]

    def all(self, model: str | None = None, batch_size: int | None = None, progress: Any = None) -> int:
        """Classify every stored snapshot with ``model``; returns how many were classified."""
        clf = self.classifier(model)
        ids = self._all_ids()
        size = batch_size or self._settings.batch_size
        for start in range(0, len(ids), size):
            snaps = [self._snapshots.get(i) for i in ids[start : start + size]]
            clf.classify_batch(snaps)
            for s in snaps:
                update_classification(self._snapshots.store, s)
            if progress is not None:
                progress(min(start + size, len(ids)), len(ids))
        return len(ids)

    def _all_ids(self) -> list[str]:
        ids: list[str] = []
        while True:
            rows = self._snapshots.query(limit=1000, offset=len(ids))
            ids += [r.snapshot_id for r in rows]
            if len(rows) < 1000:
                return ids

    # ---------------------------------------------------------------- zero- / few-shot
    def zero_shot(self, classes: list[str], snapshot_ids: list[str] | None = None,
                  model: str | None = None) -> list[zeroshot.ZeroShotAnswer]:  # fmt: skip
        """Answer for each snapshot (ids or .d3d paths; None = every stored snapshot)."""
        classes = [c.strip() for c in classes if c.strip()]
        if not classes:
            raise ClassificationError("no class names given", reason="invalid_request")
        refs = list(snapshot_ids) if snapshot_ids is not None else self._all_ids()
        clf = self.classifier(model, tta=1)
        protos = fewshot.PrototypeStore(clf.model_id).load()
        mapper = zeroshot.NameMapper(clf.model.labels)
        encoder = self._encoder()
        answers: list[zeroshot.ZeroShotAnswer] = []
        for start in range(0, len(refs), 32):
            snaps = [self._load(r)[0] for r in refs[start : start + 32]]
            ready, _ = clf.prepare_snapshots(snaps)
            probs_t, emb, _ = clf.predict_arrays(ready, tta=1)
            enc_scores = None
            if encoder is not None:
                enc_clf, text = encoder
                keyed = {zeroshot.normalise_name(c): c for c in classes}
                point_emb = enc_clf.embed(enc_clf.prepare_snapshots(snaps)[0])
                raw = zeroshot.encoder_text_scores(point_emb, text, list(keyed))
                enc_scores = {keyed[k]: v for k, v in raw.items()}
            answers += zeroshot.answer([s.snapshot_id for s in snaps], classes, probs_t.mean(axis=0), emb,
                                       clf.model.labels, mapper, protos, label_prototypes(clf.model),
                                       enc_scores)  # fmt: skip
        return answers

    def _encoder(self) -> tuple[OnnxClassifier, dict[str, np.ndarray]] | None:
        name = self._settings.zero_shot_encoder
        if not name:
            return None
        model = self.registry.get(name)
        if model.kind != "point_encoder":
            raise ModelNotFoundError(f"{name} is not a point encoder (card kind {model.kind!r})")
        return OnnxClassifier(model, device=self._settings.device), load_text_embeddings(model)

    def few_shot(self, name: str, example_ids: list[str], model: str | None = None) -> fewshot.Prototype:
        """Define (or replace) a new class from example snapshots (ids or .d3d paths)."""
        if not example_ids:
            raise ClassificationError(f"few-shot class {name!r} needs at least one example", reason="invalid_request")
        clf = self.classifier(model, tta=1)
        snaps = [self._load(r)[0] for r in example_ids]
        ready, _ = clf.prepare_snapshots(snaps)
        _, emb, _ = clf.predict_arrays(ready, tta=1)
        proto = fewshot.build(name.strip(), emb, [s.snapshot_id for s in snaps])
        fewshot.PrototypeStore(clf.model_id).add(proto)
        return proto

    def few_shot_classes(self, model: str | None = None) -> dict[str, fewshot.Prototype]:
        return fewshot.PrototypeStore(model or self._settings.default_model).load()

    def close(self) -> None:
        self._cache.clear()


class ModelsService:
    """``d3d.models``: list, info, import, download (the last only when asked)."""

    def __init__(self, settings: ClassificationSettings) -> None:
        self._settings = settings
        self.registry = ModelRegistry()

    def list(self) -> list[RegisteredModel]:
        return self.registry.list()

    def info(self, model_id: str) -> RegisteredModel:
        return self.registry.get(model_id)

    def import_model(self, onnx_path: str | Path, card_path: str | Path) -> RegisteredModel:
        return self.registry.import_model(Path(onnx_path), Path(card_path))

    def download(self, name: str, http: Any = None) -> RegisteredModel:
        return self.registry.download(name, self._settings.models_url, http=http)

    def close(self) -> None:
        """Nothing to release: the registry reads files per call and keeps no handle."""
