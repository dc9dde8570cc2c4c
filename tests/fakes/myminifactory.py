"""A fake MyMiniFactory API v2: ``?key=`` auth, ``{total_count, items}`` pages, OAuth-only download URLs."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from tests.fakes.server import FakeServer, Reply, Request, json_reply

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
FIXTURES = SHARED / "platforms" / "fixtures" / "myminifactory"
CORPUS = SHARED / "corpus"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


class FakeMyMiniFactory:
    def __init__(self, key: str = "mmf-key", oauth: str = "mmf-oauth", n_extra: int = 5) -> None:
        self.key, self.oauth = key, oauth
        self.server = FakeServer(self.app)
        self.objects: dict[int, dict[str, Any]] = {}
        self.files: dict[int, dict[str, Any]] = {}
        self.blobs: dict[int, bytes] = {}
        self.n_extra = n_extra

    def __enter__(self) -> FakeMyMiniFactory:
        self.server.start()
        stl = (CORPUS / "stl" / "low_poly_benchy.stl").read_bytes()
        detail = fixture("object_detail.json")
        items = fixture("search.json")["items"]
        for n in range(self.n_extra):
            extra = copy.deepcopy(items[n % 2])
            extra.update(id=500_000 + n, name=f"Owl study {n}",
                         url=f"https://www.myminifactory.com/object/3d-print-owl-study-{n}-{500_000 + n}")
            items.append(extra)
        for item in items:
            obj = copy.deepcopy(detail) if item["id"] == detail["id"] else item
            self.objects[obj["id"]] = obj
            for index, record in enumerate(obj["files"]["items"]):
                record = copy.deepcopy(record)
                record["id"] = obj["id"] * 10 + index
                blob = stl[:80].replace(b" ", bytes([65 + index % 26]), 1) + stl[80:]
                record["size"] = len(blob)
                self.files[record["id"]] = record
                self.blobs[record["id"]] = blob
                obj["files"]["items"][index] = record
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    @property
    def url(self) -> str:
        return self.server.url + "/api/v2"

    def app(self, request: Request) -> Reply:
        path = request.path
        if path.startswith("/download/"):
            if request.headers.get("authorization") != f"Bearer {self.oauth}":
                return Reply(403, "<html>Please log in</html>", headers={"content-type": "text/html"})
            return Reply(body=self.blobs[int(request.query["file"])])
        oauth = request.headers.get("authorization") == f"Bearer {self.oauth}"
        if request.query.get("key") != self.key and not oauth:
            return json_reply({"error": "invalid_key"}, 401)
        parts = [p for p in path.split("/") if p][2:]
        if parts == ["search"]:
            page, per_page = int(request.query.get("page", 1)), int(request.query.get("per_page", 30))
            query = request.query.get("q", "").lower()
            hits = [o for o in self.objects.values() if query in o["name"].lower()]
            return json_reply({"total_count": len(hits), "items": hits[(page - 1) * per_page : page * per_page]})
        if parts[:1] == ["objects"] and len(parts) == 2:
            obj = self.objects.get(int(parts[1]))
            return json_reply(obj) if obj else json_reply(fixture("error_404_object.json"), 404)
        if parts[:1] == ["files"] and len(parts) == 2:
            record = copy.deepcopy(self.files.get(int(parts[1])) or {})
            if not record:
                return json_reply({"error": "not_found"}, 404)
            if oauth:
                record["download_url"] = f"{self.server.url}/download/{parts[1]}?file={parts[1]}"
            return json_reply(record)
        return json_reply({"error": "not_found"}, 404)
