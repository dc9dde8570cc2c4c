"""A fake Smithsonian 3D API (offset paging, one row per file) + Open Access API (api_key, media access)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from tests.fakes.server import FakeServer, Reply, Request, json_reply

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
FIXTURES = SHARED / "platforms" / "fixtures" / "smithsonian"
CORPUS = SHARED / "corpus"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


class FakeSmithsonian:
    def __init__(self, api_key: str = "DEMO_KEY", *, free_text_only: bool = False) -> None:
        self.api_key = api_key
        # True: ``q`` matches titles only, all the API's docs promise (a package id finds nothing)
        self.free_text_only = free_text_only
        self.server = FakeServer(self.app)
        self.rows: list[dict[str, Any]] = []
        self.blobs: dict[str, bytes] = {}

    def __enter__(self) -> FakeSmithsonian:
        self.server.start()
        text = json.dumps(fixture("file_search.json")).replace("https://3d-api.si.edu", self.server.url)
        self.rows = json.loads(text)["rows"]
        glb = (CORPUS / "glb" / "Duck.glb").read_bytes()
        stl = (CORPUS / "stl" / "sphereWithHole.stl").read_bytes()
        for row in self.rows:
            name = row["content"]["uri"].rsplit("/", 1)[-1]
            other = b"PK\x05\x06" + bytes(18)  # an empty zip stands in for the OBJ package
            self.blobs[name] = glb if name.endswith(".glb") else stl if name.endswith(".stl") else other
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    @property
    def url(self) -> str:
        return self.server.url + "/api/v1.0"

    def app(self, request: Request) -> Reply:
        path = request.path
        if path.startswith("/content/document/"):
            name = path.rsplit("/", 1)[-1]
            return Reply(body=self.blobs[name]) if name in self.blobs else Reply(404, "Not Found")
        if path == "/api/v1.0/content/file/search":
            query = request.query.get("q", "").lower()
            start, rows = int(request.query.get("start", 0)), int(request.query.get("rows", 10))
            if rows > 1000:
                return json_reply(fixture("error_400.json"), 400)
            hits = [r for r in self.rows if query in r["title"].lower()
                    or (not self.free_text_only and query in r["content"]["model_url"])]  # fmt: skip
            return json_reply({"rows": hits[start : start + rows], "rowCount": len(hits), "message": "content found"})
        if path.startswith("/api/v1.0/openaccess/content/"):
            if request.query.get("api_key") != self.api_key:
                return json_reply(fixture("error_403_api_data_gov.json"), 403)
            record = copy.deepcopy(fixture("openaccess_search.json"))
            edan = path.rsplit("/", 1)[-1]
            rows = [r for r in record["response"]["rows"] if r["url"] == edan]
            record["response"]["rows"] = rows
            return json_reply(record, x_ratelimit_limit="1000", x_ratelimit_remaining="999")
        return json_reply(fixture("error_400.json"), 400)
