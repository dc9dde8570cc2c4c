"""A fake GitHub REST API (repo, recursive tree, contents, search with Link paging, rate headers) + raw/media hosts."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import time
from pathlib import Path
from typing import Any

from tests.fakes.server import FakeServer, Reply, Request, json_reply

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
FIXTURES = SHARED / "platforms" / "fixtures" / "github"
CORPUS = SHARED / "corpus"
REPO = "kestrel-robotics/gripper-v3"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


class FakeGitHub:
    def __init__(self, token: str = "ghp_testtoken", n_repos: int = 7) -> None:
        self.token = token
        self.api = FakeServer(self.app)
        self.raw = FakeServer(self.raw_app)
        self.n_repos = n_repos
        self.remaining = 5000
        body = (CORPUS / "stl" / "unit_cube.STL").read_bytes()
        self.files = {
            "cad/stl/finger_left.stl": body,
            "cad/stl/finger_right.stl": body[:80].replace(b" ", b"R", 1) + body[80:],
            "cad/gripper_body.glb": (CORPUS / "glb" / "BoxInterleaved.glb").read_bytes(),
        }
        self.lfs_object = (CORPUS / "stl" / "20mm-xyz-cube.stl").read_bytes()
        oid = hashlib.sha256(self.lfs_object).hexdigest()
        self.files["cad/gripper_body.step"] = (f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\n"
                                               f"size {len(self.lfs_object)}\n").encode()

    def __enter__(self) -> FakeGitHub:
        self.api.start()
        self.raw.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.api.stop()
        self.raw.stop()

    @property
    def url(self) -> str:
        return self.api.url

    def rewrite(self, obj: Any) -> Any:
        text = json.dumps(obj).replace("https://api.github.com", self.url)
        return json.loads(text.replace("https://raw.githubusercontent.com", self.raw.url + "/raw"))

    def reply(self, body: Any, status: int = 200, resource: str = "core", **extra: str) -> Reply:
        self.remaining -= 1
        headers = {"x_ratelimit_limit": "5000", "x_ratelimit_remaining": str(self.remaining),
                   "x_ratelimit_used": str(5000 - self.remaining), "x_ratelimit_reset": str(int(time.time()) + 3600),
                   "x_ratelimit_resource": resource}
        return json_reply(self.rewrite(body), status, **headers, **extra)

    def app(self, request: Request) -> Reply:
        auth = request.headers.get("authorization")
        if auth and auth != f"Bearer {self.token}":
            return self.reply(fixture("error_401.json"), 401)
        if "user-agent" not in request.headers:
            return self.reply({"message": "Request forbidden by administrative rules."}, 403)
        path = request.path
        if path == f"/media/{REPO}/main/cad/gripper_body.step":  # LFS media, served under the base URL
            return Reply(body=self.lfs_object)
        if path == "/search/repositories":
            return self.search(request)
        if path == f"/repos/{REPO}":
            return self.reply(fixture("repo.json"))
        if path.startswith(f"/repos/{REPO}/git/trees/"):
            tree = fixture("git_tree_recursive.json")
            for entry in tree["tree"]:
                if entry["path"] in self.files:
                    entry["size"] = len(self.files[entry["path"]])
            return self.reply(tree)
        if path.startswith(f"/repos/{REPO}/contents/"):
            file_path = path[len(f"/repos/{REPO}/contents/"):]
            if file_path not in self.files:
                return self.reply(fixture("error_404.json"), 404)
            record = copy.deepcopy(fixture("contents_file.json"))
            data = self.files[file_path]
            ref = request.query.get("ref", "main")
            record.update(name=file_path.rsplit("/", 1)[-1], path=file_path, size=len(data),
                          content=base64.b64encode(data).decode(),
                          download_url=f"https://raw.githubusercontent.com/{REPO}/{ref}/{file_path}")
            return self.reply(record)
        return self.reply(fixture("error_404.json"), 404)

    def search(self, request: Request) -> Reply:
        page = int(request.query.get("page", 1))
        per_page = int(request.query.get("per_page", 30))
        base = fixture("repo.json")
        repos = [base] + [dict(copy.deepcopy(base), full_name=f"maker{n}/parts-{n}", name=f"parts-{n}",
                               html_url=f"https://github.com/maker{n}/parts-{n}") for n in range(self.n_repos - 1)]
        window = repos[(page - 1) * per_page : page * per_page]
        pages = -(-len(repos) // per_page)
        link = f'<{self.url}/search/repositories?page={page + 1}>; rel="next"' if page < pages else ""
        extra = {"link": link} if link else {}
        return self.reply({"total_count": len(repos), "incomplete_results": False, "items": window},
                          resource="search", **extra)

    def raw_app(self, request: Request) -> Reply:
        parts = request.path.split("/", 5)  # '', raw, owner, repo, ref, path
        if len(parts) == 6 and parts[1] == "raw" and parts[5] in self.files:
            return Reply(body=self.files[parts[5]])
        return Reply(404, "404: Not Found", headers={"content-type": "text/plain"})
