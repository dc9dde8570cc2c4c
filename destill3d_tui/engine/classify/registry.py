"""Model registry: shipped and user-imported ONNX classifiers, each described by a TOML card.

A card (``<model_id>.toml`` beside ``<model_id>.onnx``) states the input contract (points,
features, normals, up axis, normalisation), the labels, the calibration temperature, the
file's sha256 and the measured accuracy. :func:`verify` checks the file against its card before
any inference: a truncated or altered file (``model_corrupt``) or a card that disagrees with
the graph (``model_card_mismatch``) is refused with a clear message.

Shipped models live in this package (``classify/models/``); user models in
``locations.user_models_dir()`` (``models import``), and ``models download`` fetches a card +
file from ``classification.models_url`` only when asked.
"""

from __future__ import annotations

import hashlib
import shutil
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import locations
from ..errors import ModelIntegrityError, ModelNotFoundError
from .runtime import open_session

SHIPPED_DIR = Path(__file__).resolve().parent / "models"
COMPANION_KEYS = ("fast_file", "int8_file", "label_prototypes", "text_embeddings")  # card fields naming extra files


@dataclass
class RegisteredModel:
    """A classification model registered for use (spec 7.3, plus what inference needs)."""

    model_id: str
    name: str
    taxonomy: str
    architecture: str
    weights_url: str = ""
    weights_hash: str = ""  # "sha256:<hex>"
    weights_path: Path | None = None
    input_points: int = 2048
    input_features: list[str] = field(default_factory=lambda: ["xyz"])
    requires_normals: bool = False
    modelnet40_accuracy: float | None = None  # validation accuracy measured at training (see card)
    inference_time_ms: float | None = None
    format: str = "onnx"
    device: str = "auto"
    # what inference reads from the card
    labels: list[str] = field(default_factory=list)
    up_axis: str = "z"
    normalisation: str = "unit_sphere"
    temperature: float = 1.0
    tta_range_deg: float = 180.0  # rotations about up seen in training: +- this many degrees
    canonical: str = ""  # ground-frame canonicalisation the model expects ("pca_xy_skew"), "" none
    embedding_dim: int = 0
    input_name: str = "points"
    logits_name: str = "logits"
    embedding_name: str = "embedding"
    # the upright head (one logit: "this candidate up axis is right"), "" when the model has none;
    # the up-axis estimate weighs its log-sigmoid by ``upright_weight`` (card [up_axis] weight)
    upright_name: str = ""
    upright_weight: float = 0.0
    kind: str = "classifier"  # classifier | point_encoder (OpenShape-style, zero-shot)
    source: str = "shipped"  # shipped | user
    card_path: Path | None = None
    card: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        keys = ("model_id", "name", "taxonomy", "architecture", "weights_hash", "input_points", "input_features",
                "requires_normals", "modelnet40_accuracy", "format", "up_axis", "normalisation", "temperature",
                "embedding_dim", "kind", "source")  # fmt: skip
        out = {k: getattr(self, k) for k in keys}
        out["weights_path"] = str(self.weights_path) if self.weights_path else None
        out["num_classes"] = len(self.labels)
        out["metrics"] = self.card.get("metrics", {})
        return out


def load_card(card_path: Path, source: str = "user") -> RegisteredModel:
    """Parse a model card; the weights file is named by ``file`` relative to the card."""
    try:
        card = tomllib.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ModelIntegrityError(f"model card {card_path} unreadable: {exc}", reason="model_card_mismatch") from exc
    try:
        inp, out, cal = card.get("input", {}), card.get("output", {}), card.get("calibration", {})
        up_judge = card.get("up_axis", {})
        model_id = str(card["model_id"])
        return RegisteredModel(
            model_id=model_id,
            name=str(card.get("name", model_id)),
            taxonomy=str(card.get("taxonomy", "custom")),
            architecture=str(card.get("architecture", "unknown")),
            weights_url=str(card.get("weights_url", "")),
            weights_hash=str(card["sha256"]),
            weights_path=card_path.parent / str(card.get("file", f"{model_id}.onnx")),
            input_points=int(inp["points"]),
            input_features=list(inp.get("features", ["xyz"])),
            requires_normals=bool(inp.get("requires_normals", False)),
            modelnet40_accuracy=card.get("metrics", {}).get("val_overall_accuracy"),
            labels=[str(x) for x in card.get("labels", [])],
            up_axis=str(inp.get("up_axis", "z")),
            normalisation=str(inp.get("normalisation", "unit_sphere")),
            temperature=float(cal.get("temperature", 1.0)),
            tta_range_deg=float(inp.get("rotation_range_deg", 180.0)),
            canonical=str(inp.get("canonical", "")),
            embedding_dim=int(out.get("embedding_dim", 0)),
            input_name=str(inp.get("name", "points")),
            logits_name=str(out.get("logits", "logits")),
            embedding_name=str(out.get("embedding", "embedding")),
            upright_name=str(out.get("upright", "")),
            upright_weight=float(up_judge.get("weight", 0.0)),
            kind=str(card.get("kind", "classifier")),
            source=source,
            card_path=card_path,
            card=card,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelIntegrityError(f"model card {card_path} is missing or has a bad field: {exc}",
                                  reason="model_card_mismatch") from exc  # fmt: skip


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _expected_hash(model: RegisteredModel) -> str:
    return model.weights_hash.split(":", 1)[-1].lower()


def verify_file(model: RegisteredModel) -> Path:
    """The weights file exists and its sha256 matches the card (else ModelIntegrityError)."""
    path = model.weights_path
    if path is None or not path.exists():
        raise ModelNotFoundError(f"model {model.model_id}: weights file {path} is missing")
    actual = sha256_file(path)
    if actual != _expected_hash(model):
        raise ModelIntegrityError(
            f"model {model.model_id}: {path.name} is corrupt or not the file its card describes "
            f"(sha256 {actual[:16]}..., card says {_expected_hash(model)[:16]}...; size {path.stat().st_size} bytes)",
            reason="model_corrupt",
        )
    return path


def verify_fast(model: RegisteredModel, key: str = "fast") -> Path | None:
    """The card's ``<key>_file`` when present and intact.

    ``fast_file``: the same weights for FPS-ordered input (outputs equal to the full graph);
    ``int8_file``: a static int8 copy of it for the CPU provider.
    """
    name, digest = model.card.get(f"{key}_file"), model.card.get(f"{key}_sha256")
    if not name or not digest or model.card_path is None:
        return None
    path = model.card_path.parent / str(name)
    if not path.exists():
        return None  # optional: the self-contained graph serves alone
    if sha256_file(path) != str(digest).lower():
        raise ModelIntegrityError(f"model {model.model_id}: {path.name} does not match its card's {key}_sha256",
                                  reason="model_corrupt")  # fmt: skip
    return path


def check_graph(model: RegisteredModel, session: Any) -> None:
    """The ONNX graph's inputs/outputs agree with the card (points count, classes, embedding size)."""
    inputs = {i.name: i.shape for i in session.get_inputs()}
    outputs = {o.name: o.shape for o in session.get_outputs()}

    def mismatch(what: str) -> ModelIntegrityError:
        return ModelIntegrityError(f"model {model.model_id}: its card does not match the graph: {what}",
                                   reason="model_card_mismatch")  # fmt: skip

    if model.input_name not in inputs:
        raise mismatch(f"no input named {model.input_name!r} (graph has {sorted(inputs)})")
    shape = inputs[model.input_name]
    if len(shape) != 3:
        raise mismatch(f"input rank {len(shape)}, expected (batch, points, features)")
    if isinstance(shape[1], int) and shape[1] != model.input_points:
        raise mismatch(f"card says {model.input_points} input points, graph takes {shape[1]}")
    n_feat = 3 * len(model.input_features) if model.input_features else 3
    if isinstance(shape[2], int) and shape[2] != n_feat:
        raise mismatch(f"card says features {model.input_features}, graph takes {shape[2]} channels")
    if model.kind == "classifier":
        if model.logits_name not in outputs:
            raise mismatch(f"no output named {model.logits_name!r}")
        n_cls = outputs[model.logits_name][-1]
        if isinstance(n_cls, int) and n_cls != len(model.labels):
            raise mismatch(f"card lists {len(model.labels)} labels, graph outputs {n_cls} logits")
    if model.upright_name and model.upright_name not in outputs:
        raise mismatch(f"no output named {model.upright_name!r} (the card's upright head)")
    if model.embedding_name in outputs:
        dim = outputs[model.embedding_name][-1]
        if model.embedding_dim and isinstance(dim, int) and dim != model.embedding_dim:
            raise mismatch(f"card says embedding dim {model.embedding_dim}, graph outputs {dim}")


def _cards_in(folder: Path, source: str) -> list[RegisteredModel]:
    if not folder.is_dir():
        return []
    return [load_card(p, source) for p in sorted(folder.glob("*.toml"))]


class ModelRegistry:
    """Shipped models first, then user models (a user model may not shadow a shipped id)."""

    def __init__(self, user_dir: Path | None = None, shipped_dir: Path = SHIPPED_DIR) -> None:
        self.user_dir = user_dir or locations.user_models_dir()
        self.shipped_dir = shipped_dir

    def list(self) -> list[RegisteredModel]:
        seen: dict[str, RegisteredModel] = {}
        for m in _cards_in(self.shipped_dir, "shipped") + _cards_in(self.user_dir, "user"):
            seen.setdefault(m.model_id, m)
        return list(seen.values())

    def get(self, model_id: str) -> RegisteredModel:
        for m in self.list():
            if m.model_id == model_id:
                return m
        known = ", ".join(m.model_id for m in self.list()) or "none"
        raise ModelNotFoundError(f"no model {model_id!r} registered (known: {known})")

    def import_model(self, onnx_path: Path, card_path: Path) -> RegisteredModel:
        """Copy a local ONNX file + card into the user models folder after verifying both."""
        staged = load_card(card_path)
        staged.weights_path = onnx_path
        verify_file(staged)
        check_graph(staged, open_session(onnx_path, "cpu"))
        if any(m.model_id == staged.model_id and m.source == "shipped" for m in self.list()):
            raise ModelIntegrityError(f"{staged.model_id} is a shipped model id; choose another model_id",
                                      reason="model_card_mismatch")  # fmt: skip
        target = locations.ensure_dir(self.user_dir)
        card = dict(staged.card)
        card["file"] = f"{staged.model_id}.onnx"
        shutil.copyfile(onnx_path, target / card["file"])
        for key in COMPANION_KEYS:  # files the card names beside it travel with it, renamed per model id
            name = card.get(key)
            source = card_path.parent / str(name) if name else None
            if source is not None and source.is_file():
                card[key] = f"{staged.model_id}.{key}{''.join(source.suffixes[-1:])}"
                shutil.copyfile(source, target / card[key])
            elif name:
                card.pop(key)
        (target / f"{staged.model_id}.toml").write_text(dumps_toml(card), encoding="utf-8")
        return self.get(staged.model_id)

    def download(self, name: str, base_url: str, http: Any = None) -> RegisteredModel:
        """Fetch ``<base_url>/<name>.toml`` and the file it names, verify, install. Only on request."""
        if not base_url:
            raise ModelNotFoundError("classification.models_url is not set; nothing to download from")
        import tempfile

        import httpx

        client = http or httpx.Client(timeout=60.0, follow_redirects=True)
        base = base_url.rstrip("/")
        with tempfile.TemporaryDirectory() as tmp:
            card_path = Path(tmp) / f"{name}.toml"
            _fetch(client, f"{base}/{name}.toml", card_path)
            card = tomllib.loads(card_path.read_text(encoding="utf-8"))
            onnx_path = Path(tmp) / str(card.get("file", f"{name}.onnx"))
            _fetch(client, f"{base}/{onnx_path.name}", onnx_path)
            return self.import_model(onnx_path, card_path)


def _fetch(client: Any, url: str, target: Path) -> None:
    resp = client.get(url)
    if resp.status_code != 200:
        raise ModelNotFoundError(f"download {url} failed: HTTP {resp.status_code}")
    target.write_bytes(resp.content)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def dumps_toml(card: dict[str, Any]) -> str:
    """A small TOML writer for cards: scalars and lists at top level, then one level of tables."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in card.items() if not isinstance(v, dict)]
    for k, v in card.items():
        if isinstance(v, dict):
            lines += ["", f"[{k}]"] + [f"{kk} = {_toml_value(vv)}" for kk, vv in v.items()]
    return "\n".join(lines) + "\n"
