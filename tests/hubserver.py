"""A stand-in for the Hugging Face Hub on 127.0.0.1, speaking the wire format huggingface_hub expects.

No hub is reachable from the tests, so this serves real files (the embedded GGUF, a split of it, an ONNX
export) the way huggingface.co does:
- the model-info API, `GET /api/models/{repo}` and `/api/models/{repo}/revision/{rev}`: `sha` (the commit),
  `siblings` (with `size`, `blobId` and `lfs: {sha256, size}` when `?blobs=true`), `cardData`, `gguf`, `gated`;
- the resolve endpoint, `HEAD`/`GET /{repo}/resolve/{rev}/{file}`: for LFS files a 302 to the CDN with
  `X-Repo-Commit`, `X-Linked-Etag` (the sha256), `X-Linked-Size` and the git `ETag`; for small files a 200
  with `ETag` and `X-Repo-Commit`;
- dataset repositories (`HubRepo(kind="dataset")`): `GET /api/datasets/{repo}[/revision/{rev}]` and
  `HEAD`/`GET /datasets/{repo}/resolve/{rev}/{file}`, answered as for models;
- the CDN, `GET /cdn/{sha256}` with `Range: bytes=N-` answered by 206 and `Content-Range`;
- the errors huggingface_hub maps to exceptions, by `X-Error-Code`: RepoNotFound (401), RevisionNotFound,
  EntryNotFound (404), GatedRepo (401 without an accepted `Authorization: Bearer` token).
Every request is recorded; `cut_next_download(sha256)` makes the next CDN GET of a file stop half way
(the connection closes, as a dropped network would), so that a test can see the download resume.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

CHUNK = 1 << 20


@dataclass
class HubFile:
    name: str
    path: Path | None = None
    data: bytes | None = None
    lfs: bool = True
    _sha256: str | None = None

    @property
    def size(self) -> int:
        return self.path.stat().st_size if self.path is not None else len(self.data or b"")

    def read(self, start: int = 0, end: int | None = None) -> bytes:
        if self.data is not None:
            return self.data[start:end]
        assert self.path is not None
        with open(self.path, "rb") as fh:
            fh.seek(start)
            return fh.read((end if end is not None else self.size) - start)

    @property
    def sha256(self) -> str:
        if self._sha256 is None:
            h = hashlib.sha256()
            if self.data is not None:
                h.update(self.data)
            else:
                assert self.path is not None
                with open(self.path, "rb") as fh:
                    for block in iter(lambda: fh.read(CHUNK), b""):
                        h.update(block)
            self._sha256 = h.hexdigest()
        return self._sha256

    @property
    def git_oid(self) -> str:
        """What git calls the file (the Hub's blobId and, for small files, the ETag)."""
        if self.lfs:
            pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256}\nsize {self.size}\n"
            body = pointer.encode()
        else:
            body = self.read()
        return hashlib.sha1(b"blob %d\x00" % len(body) + body).hexdigest()


@dataclass
class HubRepo:
    repo: str
    commit: str
    files: list[HubFile]
    gated: bool = False
    card: dict[str, Any] = field(default_factory=dict)
    gguf: dict[str, Any] | None = None
    kind: str = "model"  # or "dataset"

    def file(self, name: str) -> HubFile | None:
        return next((f for f in self.files if f.name == name), None)


class FakeHub:
    def __init__(self, tokens: tuple[str, ...] = ()) -> None:
        self.repos: dict[str, HubRepo] = {}
        self.datasets: dict[str, HubRepo] = {}
        self.tokens = set(tokens)
        self.requests: list[dict[str, Any]] = []
        self._cut: set[str] = set()
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="fake-hub", daemon=True)

    def start(self) -> FakeHub:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def add(self, repo: HubRepo) -> HubRepo:
        (self.datasets if repo.kind == "dataset" else self.repos)[repo.repo] = repo
        return repo

    def cut_next_download(self, sha256: str) -> None:
        self._cut.add(sha256)

    def record(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append(entry)

    def downloads(self, sha256: str | None = None) -> list[dict[str, Any]]:
        """The GETs that moved file content (CDN GETs, and GETs of small files)."""
        return [r for r in self.requests if r["method"] == "GET" and r["kind"] in ("cdn", "small")
                and (sha256 is None or r.get("sha256") == sha256)]

    def _cut_once(self, sha256: str) -> bool:
        with self._lock:
            if sha256 in self._cut:
                self._cut.discard(sha256)
                return True
            return False


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            pass

        # -- helpers -------------------------------------------------------------------------------
        def _send(self, code: int, headers: dict[str, str], body: bytes = b"") -> None:
            self.send_response(code)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", headers.get("Content-Length", str(len(body))))
            self.end_headers()
            if self.command != "HEAD" and body:
                self.wfile.write(body)

        def _error(self, code: int, error_code: str, message: str, extra: dict[str, str] | None = None) -> None:
            body = json.dumps({"error": message}).encode()
            self._send(code, {"Content-Type": "application/json", "X-Error-Code": error_code,
                              "X-Error-Message": message, **(extra or {})}, body)

        def _authorized(self, repo: HubRepo) -> bool:
            if not repo.gated:
                return True
            auth = self.headers.get("Authorization", "")
            return auth.startswith("Bearer ") and auth[len("Bearer "):] in hub.tokens

        def _repo_and_rev(self, owner: str, name: str, rev: str, kind: str = "model") -> tuple[HubRepo | None, bool]:
            repo = (hub.datasets if kind == "dataset" else hub.repos).get(f"{owner}/{name}")
            if repo is None:
                return None, False
            return repo, rev in ("main", repo.commit)

        # -- routes --------------------------------------------------------------------------------
        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            parts = [unquote(p) for p in url.path.split("/") if p]
            entry = {"method": self.command, "path": url.path, "range": self.headers.get("Range"),
                     "authorized": bool(self.headers.get("Authorization")), "kind": "other"}
            try:
                if parts[:2] in (["api", "models"], ["api", "datasets"]) and len(parts) >= 4:
                    entry["kind"] = "api"
                    rev = parts[5] if len(parts) >= 6 and parts[4] == "revision" else "main"
                    kind = "dataset" if parts[1] == "datasets" else "model"
                    self._model_info(parts[2], parts[3], rev, parse_qs(url.query), kind)
                elif len(parts) >= 6 and parts[0] == "datasets" and parts[3] == "resolve":
                    entry["kind"] = "resolve"
                    self._resolve(parts[1], parts[2], parts[4], "/".join(parts[5:]), entry, "dataset")
                elif len(parts) >= 5 and parts[2] == "resolve":
                    entry["kind"] = "resolve"
                    self._resolve(parts[0], parts[1], parts[3], "/".join(parts[4:]), entry)
                elif len(parts) == 2 and parts[0] == "cdn":
                    entry["kind"] = "cdn"
                    entry["sha256"] = parts[1]
                    self._cdn(parts[1], parse_qs(url.query))
                else:
                    self._error(404, "NotFound", "no such route")
            finally:
                hub.record(entry)

        def _model_info(self, owner: str, name: str, rev: str, query: dict[str, list[str]], kind: str = "model"
                        ) -> None:
            repo, rev_ok = self._repo_and_rev(owner, name, rev, kind)
            if repo is None:
                return self._error(401, "RepoNotFound", "Repository not found")
            if not rev_ok:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
            blobs = query.get("blobs", ["false"])[0].lower() == "true"
            siblings = []
            for f in repo.files:
                s: dict[str, Any] = {"rfilename": f.name}
                if blobs:
                    s.update({"blobId": f.git_oid, "size": f.size})
                    if f.lfs:
                        s["lfs"] = {"sha256": f.sha256, "size": f.size, "pointerSize": 134}
                siblings.append(s)
            info = {"_id": hashlib.md5(repo.repo.encode()).hexdigest()[:24], "id": repo.repo, "modelId": repo.repo,
                    "author": owner, "sha": repo.commit, "lastModified": "2024-11-01T00:00:00.000Z",
                    "createdAt": "2024-10-31T00:00:00.000Z", "private": False,
                    "gated": "manual" if repo.gated else False, "disabled": False, "downloads": 0, "likes": 0,
                    "library_name": "gguf" if repo.gguf else "transformers.js", "tags": [], "cardData": repo.card,
                    "siblings": siblings, "spaces": [], "usedStorage": sum(f.size for f in repo.files)}
            if repo.gguf is not None:
                info["gguf"] = repo.gguf
            self._send(200, {"Content-Type": "application/json"}, json.dumps(info).encode())

        def _resolve(self, owner: str, name: str, rev: str, filename: str, entry: dict[str, Any],
                     kind: str = "model") -> None:
            repo, rev_ok = self._repo_and_rev(owner, name, rev, kind)
            if repo is None:
                return self._error(401, "RepoNotFound", "Repository not found")
            if not rev_ok:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
            if not self._authorized(repo):
                return self._error(401, "GatedRepo", f"Access to model {repo.repo} is restricted. You must have "
                                   "access to it and be authenticated to access it. Please log in.")
            f = repo.file(filename)
            if f is None:
                return self._error(404, "EntryNotFound", f"{filename} does not exist on \"{rev}\"",
                                   {"X-Repo-Commit": repo.commit})
            common = {"X-Repo-Commit": repo.commit, "Accept-Ranges": "bytes"}
            if f.lfs:
                entry["sha256"] = f.sha256
                location = f"{hub.url}/cdn/{f.sha256}?repo={repo.repo}"
                return self._send(302, {**common, "Location": location, "ETag": f'"{f.git_oid}"',
                                        "X-Linked-Etag": f'"{f.sha256}"', "X-Linked-Size": str(f.size)})
            entry["kind"] = "small" if self.command == "GET" else "resolve"
            self._send(200, {**common, "ETag": f'"{f.git_oid}"', "Content-Type": "application/octet-stream"},
                       f.read())

        def _cdn(self, sha256: str, query: dict[str, list[str]]) -> None:
            repos = [*hub.repos.values(), *hub.datasets.values()]
            f = next((f for r in repos for f in r.files if f.lfs and f.sha256 == sha256), None)
            if f is None:
                return self._error(404, "EntryNotFound", "no such object")
            start = 0
            rng = self.headers.get("Range")
            if rng and rng.startswith("bytes="):
                start = int(rng[len("bytes="):].split("-")[0] or 0)
            size = f.size
            code = 206 if start else 200
            headers = {"Content-Type": "application/octet-stream", "Accept-Ranges": "bytes",
                       "ETag": f'"{f.sha256}"', "Content-Length": str(size - start)}
            if start:
                headers["Content-Range"] = f"bytes {start}-{size - 1}/{size}"
            self.send_response(code)
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            if self.command == "HEAD":
                return
            cut = hub._cut_once(sha256)
            stop_at = start + (size - start) // 2 if cut else size
            pos = start
            while pos < stop_at:
                n = min(CHUNK, stop_at - pos)
                self.wfile.write(f.read(pos, pos + n))
                pos += n
            if cut:
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)

    return Handler
