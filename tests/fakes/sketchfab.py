"""A fake Sketchfab Data API v3 (search with cursors, detail, download links) and a fake S3.

Download links carry an expiry (``exp`` epoch seconds); the fake S3 answers 403 with an
S3-style XML body once it has passed, like a real pre-signed URL.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

from tests.fakes.server import FakeServer, Reply, Request, json_reply
from tests.fakes.thingiverse import zipped

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
FIXTURES = SHARED / "platforms" / "fixtures" / "sketchfab"
CORPUS = SHARED / "corpus"
SLUGS = ("by", "by-sa", "by-nd", "by-nc", "by-nc-sa", "by-nc-nd", "cc0", "free-st", "st", "ed")


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


class FakeSketchfab:
    def __init__(self, n_extra: int = 30, token: str = "skfb-token", expires_s: int = 300) -> None:
        self.token = token
        self.expires_s = expires_s
        self.api = FakeServer(self.app)
        self.s3 = FakeServer(self.s3_app)
        self.models: list[dict[str, Any]] = []
        self.blobs: dict[str, bytes] = {}
        self.n_extra = n_extra
        self.expire_next_links = 0  # hand out this many already-expired links

    def __enter__(self) -> FakeSketchfab:
        self.api.start()
        self.s3.start()
        self._build()
        return self

    def __exit__(self, *exc: object) -> None:
        self.api.stop()
        self.s3.stop()

    @property
    def url(self) -> str:
        return self.api.url + "/v3"

    def _build(self) -> None:
        licences = {entry["slug"]: entry for entry in fixture("licenses.json")["results"]}
        base = fixture("search_models.json")["results"] + fixture("search_models_last_page.json")["results"]
        for n in range(self.n_extra):
            model = copy.deepcopy(base[n % len(base)])
            uid = f"{n:08x}" + "ab" * 12
            slug = SLUGS[n % 7]
            model.update(uid=uid, name=f"Chair variant {n}",
                         viewerUrl=f"https://sketchfab.com/3d-models/chair-variant-{n}-{uid}",
                         license={"uid": licences[slug]["uid"], "label": licences[slug]["label"]})
            base.append(model)
        glb = (CORPUS / "glb" / "BoxInterleaved.glb").read_bytes()
        gltf = zipped({"scene.gltf": (CORPUS / "gltf" / "AnimatedMorphCube.gltf").read_bytes(),
                       "AnimatedMorphCube.bin": (CORPUS / "gltf" / "AnimatedMorphCube.bin").read_bytes(),
                       "license.txt": b"CC"})
        for model in base:
            uid = model["uid"]
            model["uri"] = f"{self.url}/models/{uid}"
            self.blobs[f"{uid}/glb"] = glb + b"\0" * (len(self.blobs) % 4)  # unique hash per model
            self.blobs[f"{uid}/gltf"] = gltf
            for key in ("glb", "gltf"):
                model["archives"][key]["size"] = len(self.blobs[f"{uid}/{key}"])
            self.models.append(model)

    # ------------------------------------------------------------ API

    def _authorised(self, request: Request) -> bool:
        return request.headers.get("authorization") in (f"Token {self.token}", f"Bearer {self.token}")

    def app(self, request: Request) -> Reply:
        parts = [p for p in request.path.split("/") if p]
        if parts[:1] != ["v3"]:
            return json_reply(fixture("error_404.json"), 404)
        parts = parts[1:]
        if parts == ["search"]:
            return self.search(request)
        if parts == ["licenses"]:
            return json_reply(fixture("licenses.json"))
        if parts[:1] == ["models"] and len(parts) >= 2:
            model = next((m for m in self.models if m["uid"] == parts[1]), None)
            if model is None:
                return json_reply(fixture("error_404.json"), 404)
            if len(parts) == 2:
                detail = copy.deepcopy(model)
                detail["license"] = next(e for e in fixture("licenses.json")["results"]
                                         if e["uid"] == model["license"]["uid"])
                return json_reply(detail)
            if parts[2] == "download":
                if not self._authorised(request):
                    return json_reply(fixture("error_401.json"), 401)
                return json_reply(self.links(model))
        return json_reply(fixture("error_404.json"), 404)

    def links(self, model: dict[str, Any]) -> dict[str, Any]:
        expires = time.time() + self.expires_s
        if self.expire_next_links > 0:
            self.expire_next_links -= 1
            expires = time.time() - 1
        out = {}
        for key in ("glb", "gltf"):
            blob = self.blobs[f"{model['uid']}/{key}"]
            out[key] = {"url": f"{self.s3.url}/archives/{model['uid']}/{key}?X-Amz-Expires={self.expires_s}"
                               f"&exp={expires:.0f}&X-Amz-Signature=9f2c", "size": len(blob), "expires": self.expires_s}
        return out

    def search(self, request: Request) -> Reply:
        if request.query.get("type") != "models":
            return json_reply({"type": ["This field is required."]}, 400)
        licence = request.query.get("licenses")
        if licence and licence not in SLUGS:
            return json_reply({"licenses": [f"Select a valid choice. {licence} is not one of the available "
                                            "choices."]}, 400)
        query = request.query.get("q", "").lower()
        count = max(1, min(int(request.query.get("count", 24)), 24))
        cursor = int(request.query.get("cursor") or 0)
        hits = [m for m in self.models if query in m["name"].lower()]
        if licence:
            uid = next(e["uid"] for e in fixture("licenses.json")["results"] if e["slug"] == licence)
            hits = [m for m in hits if m["license"]["uid"] == uid]
        window = hits[cursor : cursor + count]
        more = cursor + count < len(hits)
        nxt = (f"{self.url}/search?count={count}&cursor={cursor + count}&downloadable=true&q={query}&type=models"
               + (f"&licenses={licence}" if licence else "")) if more else None
        return json_reply({"cursors": {"next": str(cursor + count) if more else None,
                                       "previous": str(cursor) if cursor else None},
                           "next": nxt, "previous": None, "results": window})

    # ------------------------------------------------------------ S3

    def s3_app(self, request: Request) -> Reply:
        parts = [p for p in request.path.split("/") if p]
        if "authorization" in request.headers:
            return Reply(400, "<Error><Code>InvalidArgument</Code>Only one auth mechanism allowed</Error>",
                         headers={"content-type": "application/xml"})
        if float(request.query.get("exp", 0)) < time.time():
            return Reply(403, "<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>",
                         headers={"content-type": "application/xml"})
        blob = self.blobs.get(f"{parts[1]}/{parts[2]}") if len(parts) == 3 else None
        return Reply(body=blob) if blob is not None else Reply(404, "<Error><Code>NoSuchKey</Code></Error>")
