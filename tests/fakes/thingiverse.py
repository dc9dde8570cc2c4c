"""A fake Thingiverse API v1 built from the shared fixtures, with generated things and corpus files.

Answers like the real API (``shared/platforms/thingiverse.md``): Bearer or ``access_token``
required (401 ``{"error": "Unauthorized"}``), ``/search/{term}/`` -> ``{total, hits}`` without
licences, ``/things/{id}``, ``/things/{id}/files`` (array + ``link``/``total-count`` headers),
``/files/{id}``, ``/files/{id}/download`` -> 302 to the fake CDN, ``/cdn/...`` -> bytes.
Each served STL gets a unique 80-byte header so no two files share a hash.
"""

from __future__ import annotations

import copy
import io
import json
import zipfile
from pathlib import Path
from typing import Any

from tests.fakes.server import FakeServer, Reply, Request, json_reply, redirect

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
FIXTURES = SHARED / "platforms" / "fixtures" / "thingiverse"
CORPUS = SHARED / "corpus"

# Small binary STLs from the corpus that load cleanly (binary: the 80-byte header is rewritten).
CORPUS_STLS = ("stl/unit_cube.STL", "stl/20mm-xyz-cube.stl", "stl/featuretype.STL", "stl/Spider_binary.stl",
               "stl/low_poly_benchy.stl", "stl/teapot.stl")
LICENSES = ("Creative Commons - Attribution", "Creative Commons - Attribution - Share Alike",
            "Creative Commons - Attribution - Non-Commercial", "Creative Commons - Public Domain Dedication")


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def unique_stl(source: bytes, tag: str) -> bytes:
    """Same geometry, different bytes: a binary STL's 80-byte header is free text."""
    header = f"destill3d fake {tag}".encode()[:80].ljust(80, b" ")
    return header + source[80:]


class FakeThingiverse:
    def __init__(self, n_things: int = 12, token: str = "tv-test-token", word: str = "gear") -> None:
        self.token = token
        self.server = FakeServer(self.app)
        self.cdn = FakeServer(self.cdn_app)  # the CDN is another host, as on the real site
        self.things: dict[int, dict[str, Any]] = {}
        self.files: dict[int, dict[str, Any]] = {}
        self.blobs: dict[int, bytes] = {}
        self.thing_files: dict[int, list[int]] = {}
        self.n_things = n_things
        self.word = word

    # ------------------------------------------------------------ lifecycle

    def __enter__(self) -> FakeThingiverse:
        self.server.start()
        self.cdn.start()
        self._build()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()
        self.cdn.stop()

    @property
    def url(self) -> str:
        return self.server.url

    def rewrite(self, obj: Any) -> Any:
        text = json.dumps(obj)
        text = text.replace("https://api.thingiverse.com", self.url)
        text = text.replace("https://cdn.thingiverse.com", self.cdn.url + "/cdn")
        return json.loads(text)

    # ------------------------------------------------------------ data

    def _add_file(self, thing_id: int, file_id: int, name: str, blob: bytes, printable: bool = True) -> None:
        record = copy.deepcopy(fixture("file_detail.json"))
        record.update(id=file_id, name=name, size=len(blob), url=f"{self.url}/files/{file_id}",
                      public_url=f"https://www.thingiverse.com/download:{file_id}",
                      download_url=f"{self.url}/files/{file_id}/download",
                      direct_url=f"{self.cdn.url}/cdn/assets/{file_id}/{name}" if printable else None)
        self.files[file_id] = record
        self.blobs[file_id] = blob
        self.thing_files.setdefault(thing_id, []).append(file_id)

    def _build(self) -> None:
        stls = [(CORPUS / p).read_bytes() for p in CORPUS_STLS]
        # the two fixture things, with corpus bytes behind their file records
        for detail_name, files_name in (("thing_detail.json", "thing_files.json"),
                                        ("thing_detail_nc_sa.json", "thing_files_nc_sa.json")):
            thing = self.rewrite(fixture(detail_name))
            self.things[thing["id"]] = thing
            for index, record in enumerate(self.rewrite(fixture(files_name))):
                name = record["name"]
                if name.endswith(".stl"):
                    blob = unique_stl(stls[index % len(stls)], f"{thing['id']}-{record['id']}")
                elif name.endswith(".3mf"):
                    blob = (CORPUS / "3mf" / "box.3mf").read_bytes()
                else:
                    blob = f"file {name}".encode()
                self._add_file(thing["id"], record["id"], name, blob, printable=record["direct_url"] is not None)
        # generated things: one STL each, every fifth a zip of two STLs, licences cycling
        template = fixture("thing_detail.json")
        for n in range(self.n_things):
            thing_id = 7_000_000 + n
            thing = self.rewrite(copy.deepcopy(template))
            thing.update(id=thing_id, name=f"Generated {self.word} {n:03d}", license=LICENSES[n % len(LICENSES)],
                         url=f"{self.url}/things/{thing_id}", public_url=f"https://www.thingiverse.com/thing:{thing_id}",
                         added=f"2024-01-{1 + n % 28:02d}T10:00:00+00:00")
            thing["creator"]["name"] = f"maker{n % 7}"
            self.things[thing_id] = thing
            file_id = 90_000_000 + n * 10
            blob = unique_stl(stls[n % len(stls)], f"{thing_id}")
            if n % 5 == 4:
                other = unique_stl(stls[(n + 1) % len(stls)], f"{thing_id}-b")
                self._add_file(thing_id, file_id, f"parts_{n}.zip", zipped({"parts/a.stl": blob, "parts/b.stl": other,
                                                                            "README.txt": b"x"}))
            else:
                self._add_file(thing_id, file_id, f"part_{n}.stl", blob)

    def short(self, thing: dict[str, Any]) -> dict[str, Any]:
        keys = ("id", "name", "url", "public_url", "thumbnail", "creator", "is_private", "is_purchased",
                "is_published", "comment_count", "make_count", "like_count", "tags", "is_nsfw")
        out = {k: thing.get(k) for k in keys}
        out["created_at"] = thing.get("added")
        out["preview_image"] = thing.get("thumbnail")
        return out

    # ------------------------------------------------------------ HTTP

    def authorised(self, request: Request) -> bool:
        return (request.headers.get("authorization") == f"Bearer {self.token}"
                or request.query.get("access_token") == self.token)

    def cdn_app(self, request: Request) -> Reply:
        parts = request.path.split("/")
        if len(parts) > 3 and parts[1] == "cdn" and parts[3].isdigit() and int(parts[3]) in self.blobs:
            return Reply(body=self.blobs[int(parts[3])], headers={"content-type": "application/octet-stream"})
        return Reply(404, "Not Found", headers={"content-type": "text/plain"})

    def app(self, request: Request) -> Reply:
        path = request.path
        if not self.authorised(request):
            return json_reply(fixture("error_401.json"), 401)
        parts = [p for p in path.split("/") if p]
        if parts[:1] == ["search"]:
            return self.search(parts[1] if len(parts) > 1 else "", request)
        if parts[:1] == ["things"] and len(parts) >= 2:
            thing = self.things.get(int(parts[1]))
            if thing is None:
                return json_reply({"error": f"Thing {parts[1]} does not exist"}, 404,
                                  cache_control="no-store, no-cache, must-revalidate")
            if len(parts) == 2:
                return json_reply(thing, cache_control="max-age=1800")
            files = [self.files[f] for f in self.thing_files.get(thing["id"], [])]
            return json_reply(files, total_count=str(len(files)),
                              link=f'<{self.url}/things/{thing["id"]}/files>; rel="first"')
        if parts[:1] == ["files"] and len(parts) >= 2:
            record = self.files.get(int(parts[1]))
            if record is None:
                return json_reply({"error": "File does not exist"}, 404)
            if len(parts) == 3 and parts[2] == "download":
                return redirect(f"{self.cdn.url}/cdn/assets/{record['id']}/{record['name']}")
            return json_reply(record)
        return json_reply({"error": "Not Found"}, 404)

    def search(self, term: str, request: Request) -> Reply:
        from urllib.parse import unquote

        term = unquote(term).lower()
        page = int(request.query.get("page", 1))
        per_page = int(request.query.get("per_page", 20))
        hits = [self.short(t) for t in sorted(self.things.values(), key=lambda t: t["id"])
                if not term or term in t["name"].lower()]
        window = hits[(page - 1) * per_page : page * per_page]
        return json_reply({"total": len(hits), "hits": window})


def zipped(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buf.getvalue()
