"""A fake Cults3D GraphQL endpoint: Basic auth, X-Ratelimit-* headers, dispatch on operationName."""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
from pathlib import Path
from typing import Any

from tests.fakes.server import FakeServer, Reply, Request, json_reply

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
FIXTURES = SHARED / "platforms" / "fixtures" / "cults3d"
CORPUS = SHARED / "corpus"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


class FakeCults3D:
    def __init__(self, user: str = "maker", key: str = "cults-key", limit: int = 60) -> None:
        self.user, self.key, self.limit = user, key, limit
        self.server = FakeServer(self.app)
        self.remaining = limit
        self.blob = (CORPUS / "stl" / "teapot.stl").read_bytes()
        self.give_file_urls = False

    def __enter__(self) -> FakeCults3D:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    @property
    def url(self) -> str:
        return self.server.url

    def headers(self) -> dict[str, str]:
        self.remaining = max(0, self.remaining - 1)
        reset = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)).isoformat().replace("+00:00", "Z")
        return {"X-Ratelimit-Limit": str(self.limit), "X-Ratelimit-Remaining": str(self.remaining),
                "X-Ratelimit-Reset": reset}

    def app(self, request: Request) -> Reply:
        if request.path.startswith("/files/"):
            return Reply(body=self.blob)
        expected = "Basic " + base64.b64encode(f"{self.user}:{self.key}".encode()).decode()
        if request.method != "POST" or request.path != "/graphql":
            return Reply(404, "Not Found")
        if request.headers.get("authorization") != expected:
            return json_reply({"error": "Unauthorized"}, 401)
        body = json.loads(request.body or b"{}")
        operation, variables = body.get("operationName"), body.get("variables") or {}
        if "fileSize" in body.get("query", ""):
            reply = json_reply(fixture("graphql_error.json"))
        elif operation == "SearchCreations":
            data = copy.deepcopy(fixture("search.json"))
            batch = data["data"]["creationsSearchBatch"]
            batch["total"] = len(batch["results"])
            offset, limit = int(variables.get("offset", 0)), int(variables.get("limit", 20))
            batch["results"] = batch["results"][offset : offset + limit]
            reply = json_reply(data)
        elif operation == "Creation":
            if variables.get("slug") != "low-poly-planter-2":
                reply = json_reply(fixture("creation_not_found.json"))
            else:
                data = copy.deepcopy(fixture("creation_detail.json"))
                if self.give_file_urls:
                    data["data"]["creation"]["blueprints"][0]["fileUrl"] = f"{self.url}/files/low_poly_planter.stl"
                reply = json_reply(data)
        else:
            reply = json_reply({"errors": [{"message": f"unknown operation {operation}"}]})
        reply.headers.update(self.headers())
        return reply
