"""Registry: sha256 verification, card/graph agreement, import, download only on request."""

from __future__ import annotations

import http.server
import shutil
import threading
import tomllib
from pathlib import Path

import pytest

from destill3d_tui.engine import locations
from destill3d_tui.engine.classify.inference import OnnxClassifier
from destill3d_tui.engine.classify.registry import ModelRegistry, dumps_toml, load_card
from destill3d_tui.engine.errors import ModelIntegrityError, ModelNotFoundError

MODEL_ID = "destill3d_pointnet_mn40"


def _rewrite_card(card_path: Path, **changes: object) -> None:
    card = tomllib.loads(card_path.read_text())
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            card[section][field] = value
        else:
            card[section] = value
    card_path.write_text(dumps_toml(card))


def test_truncated_model_file_is_refused(model_copy: Path) -> None:
    onnx = model_copy / f"{MODEL_ID}.onnx"
    onnx.write_bytes(onnx.read_bytes()[: onnx.stat().st_size // 2])
    with pytest.raises(ModelIntegrityError) as err:
        OnnxClassifier(load_card(model_copy / f"{MODEL_ID}.toml"), device="cpu")
    assert err.value.reason == "model_corrupt" and "sha256" in str(err.value)


def test_mismatched_model_file_is_refused(model_copy: Path) -> None:
    onnx = model_copy / f"{MODEL_ID}.onnx"
    data = bytearray(onnx.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte different
    onnx.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError) as err:
        OnnxClassifier(load_card(model_copy / f"{MODEL_ID}.toml"), device="cpu")
    assert err.value.reason == "model_corrupt"


def test_altered_fast_graph_is_refused(model_copy: Path) -> None:
    fast = model_copy / f"{MODEL_ID}.ordered.onnx"
    fast.write_bytes(fast.read_bytes()[:1000])
    with pytest.raises(ModelIntegrityError) as err:
        OnnxClassifier(load_card(model_copy / f"{MODEL_ID}.toml"), device="cpu")
    assert err.value.reason == "model_corrupt" and "fast_sha256" in str(err.value)


def test_altered_int8_graph_is_refused(model_copy: Path) -> None:
    int8 = model_copy / f"{MODEL_ID}.int8.onnx"
    int8.write_bytes(int8.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ModelIntegrityError) as err:
        OnnxClassifier(load_card(model_copy / f"{MODEL_ID}.toml"), device="cpu")
    assert err.value.reason == "model_corrupt" and "int8_sha256" in str(err.value)


def test_card_without_int8_graph_runs_fp32_unless_int8_is_demanded(model_copy: Path) -> None:
    from destill3d_tui.engine.errors import InferenceError

    card = model_copy / f"{MODEL_ID}.toml"
    text = tomllib.loads(card.read_text())
    del text["int8_file"], text["int8_sha256"]
    card.write_text(dumps_toml(text))
    assert OnnxClassifier(load_card(card), device="cpu").session_path.name == text["fast_file"]
    with pytest.raises(InferenceError, match="no int8 graph"):
        OnnxClassifier(load_card(card), device="cpu", precision="int8")


@pytest.mark.parametrize(("int8_accuracy", "auto_takes_int8"), [(0.9355, True), (0.9300, False), (None, False)])
def test_auto_takes_int8_only_within_half_a_point(model_copy: Path, int8_accuracy: float | None,
                                                 auto_takes_int8: bool) -> None:
    card = model_copy / f"{MODEL_ID}.toml"
    text = tomllib.loads(card.read_text())
    text["metrics"]["val_overall_accuracy"] = 0.9360
    if int8_accuracy is None:
        del text["metrics"]["val_overall_accuracy_int8"]
    else:
        text["metrics"]["val_overall_accuracy_int8"] = int8_accuracy
    card.write_text(dumps_toml(text))
    chosen = OnnxClassifier(load_card(card), device="cpu").session_path.name
    assert chosen == (text["int8_file"] if auto_takes_int8 else text["fast_file"])
    assert OnnxClassifier(load_card(card), device="cpu", precision="int8").session_path.name == text["int8_file"]
    assert OnnxClassifier(load_card(card), device="cpu", precision="fp32").session_path.name == text["fast_file"]


def test_card_that_lies_about_input_size_is_refused(model_copy: Path) -> None:
    card = model_copy / f"{MODEL_ID}.toml"
    _rewrite_card(card, input__points=2048)
    with pytest.raises(ModelIntegrityError) as err:
        OnnxClassifier(load_card(card), device="cpu")
    assert err.value.reason == "model_card_mismatch"
    assert "2048" in str(err.value) and "512" in str(err.value)


def test_card_that_lies_about_labels_is_refused(model_copy: Path) -> None:
    card = model_copy / f"{MODEL_ID}.toml"
    labels = tomllib.loads(card.read_text())["labels"]
    _rewrite_card(card, labels=labels[:30])
    with pytest.raises(ModelIntegrityError) as err:
        OnnxClassifier(load_card(card), device="cpu")
    assert err.value.reason == "model_card_mismatch" and "30 labels" in str(err.value)


def test_broken_card_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('model_id = "x"\n')  # no sha256, no input section
    with pytest.raises(ModelIntegrityError) as err:
        load_card(bad)
    assert err.value.reason == "model_card_mismatch"


def test_unknown_model_is_not_found() -> None:
    with pytest.raises(ModelNotFoundError) as err:
        ModelRegistry().get("nope")
    assert MODEL_ID in str(err.value)


def _user_variant(model_copy: Path, new_id: str) -> tuple[Path, Path]:
    card = model_copy / f"{MODEL_ID}.toml"
    _rewrite_card(card, model_id=new_id)
    return model_copy / f"{MODEL_ID}.onnx", card


def test_import_copies_into_user_models_dir(model_copy: Path) -> None:
    onnx, card = _user_variant(model_copy, "my_model")
    registry = ModelRegistry()
    assert not locations.user_models_dir().exists()  # nothing written before asked
    model = registry.import_model(onnx, card)
    assert model.source == "user" and model.weights_path.parent == locations.user_models_dir()
    assert (locations.user_models_dir() / "my_model.onnx").read_bytes() == onnx.read_bytes()
    assert {m.model_id for m in registry.list()} >= {MODEL_ID, "my_model"}
    assert OnnxClassifier(registry.get("my_model"), device="cpu").model_id == "my_model"


def test_import_refuses_a_bad_file(model_copy: Path) -> None:
    onnx, card = _user_variant(model_copy, "my_model")
    onnx.write_bytes(b"not onnx")
    with pytest.raises(ModelIntegrityError):
        ModelRegistry().import_model(onnx, card)
    assert not (locations.user_models_dir() / "my_model.onnx").exists()


def test_download_fetches_from_configured_url_only(model_copy: Path, tmp_path: Path) -> None:
    served = tmp_path / "served"
    served.mkdir()
    onnx, card = _user_variant(model_copy, "remote_model")
    shutil.copy(onnx, served / f"{MODEL_ID}.onnx")
    shutil.copy(card, served / "remote_model.toml")
    seen: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(served), **kw)

        def log_message(self, *args: object) -> None:
            seen.append(self.path)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        registry = ModelRegistry()
        with pytest.raises(ModelNotFoundError):
            registry.download("remote_model", "")  # no URL configured: nothing fetched
        assert seen == []
        model = registry.download("remote_model", f"http://127.0.0.1:{server.server_port}/")
        assert model.model_id == "remote_model" and model.source == "user"
        assert seen == ["/remote_model.toml", f"/{MODEL_ID}.onnx"]
        with pytest.raises(ModelNotFoundError):
            registry.download("missing", f"http://127.0.0.1:{server.server_port}/")
    finally:
        server.shutdown()
