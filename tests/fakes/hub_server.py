"""A loopback stand-in for the Hugging Face Hub HTTP API, for offline tests.

It implements the subset of the Hub API that `huggingface_hub` (2.x) and `transformers` use to create a model
repo, commit to it, read its metadata and download its files:

- `POST /api/repos/create`                                  (`HfApi.create_repo`)
- `POST /api/validate-yaml`                                 (README metadata check before a commit)
- `POST /api/models/{repo}/preupload/{revision}`            (every file is answered "regular": no LFS, no Xet)
- `POST /api/models/{repo}/commit/{revision}`               (NDJSON: header + base64 `file` / `deletedFile` lines)
- `GET  /api/models/{repo}[/revision/{revision}]`           (`model_info` / `repo_info`: sha and siblings)
- `GET  /api/models/{repo}/tree/{revision}[/{path}]`        (`list_repo_tree`, used by `snapshot_download`)
- `GET  /api/models/{repo}/commits/{revision}`              (`list_repo_commits`)
- `HEAD|GET /{repo}/resolve/{revision}/{path}`              (file metadata and download)
- `GET  /api/agent-harnesses`                               (asked once per process when building headers)

Repositories live in a temporary directory: file contents as content-addressed blobs (named by their git blob
sha1, which is also the ETag the Hub sends for regular files) plus an in-memory commit history per repo, so
that a revision can be "main" or any earlier commit sha.

Authentication mirrors the Hub: a request with a token that is not in `tokens` gets a 401 with the Hub's
"Invalid credentials in Authorization header" message; writes need a valid token.
Failures can be injected with `fail_next(route, status)`: the next request(s) of that route get that status.

Usage:
    with HubServer() as hub:
        env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_TOKEN": "test-token"}
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

VALID_TOKEN = "test-token"
DEFAULT_NAMESPACE = "test-user"
# The first commit of every new Hub repo holds a .gitattributes that routes binaries to LFS.
_GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.bin filter=lfs diff=lfs merge=lfs -text\n"
ROUTES = ("create", "validate", "preupload", "commit", "info", "tree", "commits", "resolve", "paths-info")


def git_blob_sha1(content: bytes) -> str:
    """The git object id of a blob: what the Hub uses as the ETag / oid of a regular (non-LFS) file."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass
class Commit:
    sha: str
    title: str
    message: str
    files: dict[str, str]  # path in repo -> blob sha1
    date: float = field(default_factory=time.time)


@dataclass
class Repo:
    repo_id: str
    private: bool
    commits: list[Commit] = field(default_factory=list)  # oldest first; the last one is "main"

    def resolve(self, revision: str) -> Commit | None:
        if revision in ("main", "refs/heads/main"):
            return self.commits[-1]
        return next((c for c in self.commits if c.sha == revision), None)


@dataclass
class _Failure:
    route: str
    status: int
    message: str


class HubError(Exception):
    """Turned into an HTTP error answer with the Hub's error headers."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        commit: str | None = None,
        extra: dict[str, Any] | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.code, self.commit = status, message, code, commit
        self.extra = extra or {}  # more JSON fields of the error body


class HubServer:
    """The loopback Hub. Start with `start()` / a `with` block; `url` is its endpoint."""

    def __init__(self, tokens: tuple[str, ...] = (VALID_TOKEN,)):
        self.tokens = set(tokens)
        self.root = Path(tempfile.mkdtemp(prefix="hub-server-"))
        (self.root / "blobs").mkdir()
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status) of every request served
        self._failures: list[_Failure] = []
        self._lock = threading.RLock()
        self._counter = 0
        self._httpd: ThreadingHTTPServer | None = None

    # ------------------------------------------------------------------------------------------- lifecycle
    def start(self) -> HubServer:
        handler = type("BoundHandler", (_Handler,), {"hub": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    # ---------------------------------------------------------------------------------- test controls
    def fail_next(self, route: str, status: int, message: str | None = None, times: int = 1) -> None:
        """Answer the next `times` requests of `route` (one of ROUTES, or "any") with HTTP `status`."""
        if route not in ROUTES and route != "any":
            raise ValueError(f"route must be one of {ROUTES} or 'any', got {route!r}")
        text = message or HTTPStatus(status).phrase
        with self._lock:
            self._failures.extend(_Failure(route, status, text) for _ in range(times))

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        """Contents of a repo at a revision (test inspection)."""
        with self._lock:
            commit = self._repo(repo_id).resolve(revision)
            if commit is None:
                raise KeyError(revision)
            return {path: self._blob(sha) for path, sha in commit.files.items()}

    def commits(self, repo_id: str) -> list[Commit]:
        with self._lock:
            return list(self._repo(repo_id).commits)

    def unexpected_requests(self) -> list[tuple[str, str, int]]:
        """Requests to routes this server does not implement (e.g. LFS batch or Xet token calls)."""
        return [r for r in self.requests if r[2] == 404 and _route_of(r[0], r[1]) is None]

    # ---------------------------------------------------------------------------------------- storage
    def _store(self, content: bytes) -> str:
        sha = git_blob_sha1(content)
        path = self.root / "blobs" / sha
        if not path.exists():
            path.write_bytes(content)
        return sha

    def _blob(self, sha: str) -> bytes:
        return (self.root / "blobs" / sha).read_bytes()

    def _repo(self, repo_id: str) -> Repo:
        repo = self.repos.get(repo_id)
        if repo is None:
            raise HubError(404, "Repository not found", "RepoNotFound")
        return repo

    def _new_commit(self, repo: Repo, title: str, message: str, files: dict[str, str]) -> Commit:
        self._counter += 1
        parent = repo.commits[-1].sha if repo.commits else ""
        digest = hashlib.sha1(json.dumps([parent, title, sorted(files.items()), self._counter]).encode())
        commit = Commit(digest.hexdigest(), title, message, files)
        repo.commits.append(commit)
        return commit

    def _take_failure(self, route: str) -> _Failure | None:
        with self._lock:
            for i, failure in enumerate(self._failures):
                if failure.route in (route, "any"):
                    return self._failures.pop(i)
        return None

    # -------------------------------------------------------------------------------------- endpoints
    def create_repo(self, body: dict[str, Any]) -> dict[str, Any]:
        kind = body.get("type", "model")
        if kind not in ("model", "dataset"):
            raise HubError(400, "only model and dataset repos are supported by the test server")
        repo_id = f"{body.get('organization') or DEFAULT_NAMESPACE}/{body['name']}"
        if kind == "dataset":  # dataset repos live under "datasets/<id>", as in their URLs
            repo_id = f"datasets/{repo_id}"
        with self._lock:
            if repo_id in self.repos:
                # the Hub names the existing repo's url; create_repo(exist_ok=True) returns it
                raise HubError(409, "You already created this model repo", extra={"url": f"{self.url}/{repo_id}"})
            repo = Repo(repo_id, private=body.get("visibility") == "private" or bool(body.get("private")))
            self.repos[repo_id] = repo
            self._new_commit(repo, "initial commit", "", {".gitattributes": self._store(_GITATTRIBUTES)})
        return {"url": f"{self.url}/{repo_id}", "name": repo_id, "id": repo_id}

    def preupload(self, repo: Repo, revision: str, body: dict[str, Any]) -> dict[str, Any]:
        head = self._commit(repo, revision)
        # "regular" for every file: contents then travel inline in the commit, so neither LFS nor Xet is used.
        return {
            "files": [
                {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": head.files.get(f["path"])}
                for f in body.get("files", [])
            ]
        }

    def commit(self, repo: Repo, revision: str, lines: list[dict[str, Any]]) -> dict[str, Any]:
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "the commit payload must start with a header line")
        header = lines[0]["value"]
        with self._lock:
            head = self._commit(repo, revision)
            if header.get("parentCommit") not in (None, head.sha):
                raise HubError(412, "A commit has happened since. Please refresh and try again.")
            files = dict(head.files)
            for line in lines[1:]:
                self._apply(files, line["key"], line["value"])
            commit = self._new_commit(repo, header.get("summary", ""), header.get("description", ""), files)
        return {"success": True, "commitOid": commit.sha, "commitUrl": f"{self.url}/{repo.repo_id}/commit/{commit.sha}"}

    def _apply(self, files: dict[str, str], key: str, value: dict[str, Any]) -> None:
        path = value["path"]
        if key == "file":
            if value.get("encoding") != "base64":
                raise HubError(400, f"unsupported encoding {value.get('encoding')!r}")
            files[path] = self._store(base64.b64decode(value["content"]))
        elif key == "deletedFile":
            if files.pop(path, None) is None:
                raise HubError(404, "A file with this name doesn't exist", "EntryNotFound")
        elif key == "deletedFolder":
            for name in [n for n in files if n.startswith(path.rstrip("/") + "/")]:
                del files[name]
        else:  # lfsFile / copies: this server never asks for LFS uploads
            raise HubError(400, f"unsupported commit operation {key!r}")

    def _commit(self, repo: Repo, revision: str) -> Commit:
        commit = repo.resolve(revision)
        if commit is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit

    def info(self, repo: Repo, revision: str) -> dict[str, Any]:
        commit = self._commit(repo, revision)
        # like the Hub: the model type and architectures of the repo's config.json, when it parses
        config: dict[str, Any] = {}
        if "config.json" in commit.files:
            try:
                parsed = json.loads(self._blob(commit.files["config.json"]))
                config = {k: parsed[k] for k in ("model_type", "architectures") if k in parsed}
            except (ValueError, TypeError):
                pass
        name = repo.repo_id.removeprefix("datasets/")
        return {
            "config": config,
            "id": name,
            "modelId": name,
            "sha": commit.sha,
            "private": repo.private,
            "disabled": False,
            "gated": False,
            "tags": [],
            "downloads": 0,
            "likes": 0,
            "lastModified": _iso(commit.date),
            "siblings": [{"rfilename": p} for p in sorted(commit.files)],
        }

    def tree(self, repo: Repo, revision: str, prefix: str, recursive: bool) -> list[dict[str, Any]]:
        commit = self._commit(repo, revision)
        prefix = prefix.strip("/")
        base = f"{prefix}/" if prefix else ""
        entries: dict[str, dict[str, Any]] = {}
        for path, sha in sorted(commit.files.items()):
            if not path.startswith(base):
                continue
            parts = path[len(base) :].split("/")
            for depth in range(1, len(parts)):  # the folders above the file
                if not recursive and depth > 1:
                    break
                folder = base + "/".join(parts[:depth])
                entries.setdefault(folder, {"type": "directory", "path": folder, "oid": "0" * 40})
            if recursive or len(parts) == 1:
                entries[path] = {
                    "type": "file",
                    "path": path,
                    "oid": sha,
                    "size": (self.root / "blobs" / sha).stat().st_size,
                }
        if prefix and not entries:
            raise HubError(404, f'{prefix} does not exist on "{revision}"', "EntryNotFound", commit.sha)
        return list(entries.values())

    def commit_log(self, repo: Repo, revision: str) -> list[dict[str, Any]]:
        head = self._commit(repo, revision)
        history = repo.commits[: repo.commits.index(head) + 1]
        return [
            {
                "id": c.sha,
                "title": c.title,
                "message": c.message,
                "date": _iso(c.date),
                "authors": [{"user": DEFAULT_NAMESPACE}],
            }
            for c in reversed(history)
        ]

    def resolve_file(self, repo: Repo, revision: str, path: str) -> tuple[Commit, str]:
        commit = self._commit(repo, revision)
        sha = commit.files.get(path)
        if sha is None:
            raise HubError(404, "Entry not found", "EntryNotFound", commit.sha)
        return commit, sha


def _iso(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(timestamp))


_API = re.compile(
    r"/api/(models|datasets)/([^/]+/[^/]+)"
    r"(?:/(preupload|commit|revision|tree|commits|paths-info)/([^/]+)(/.*)?)?"
)
_RESOLVE = re.compile(r"/((?:datasets/)?[^/]+/[^/]+)/resolve/([^/]+)/(.+)")


def _api_repo(kind: str, repo_id: str) -> str:
    """The server's key of a repo named in an /api/<kind>s/ path."""
    return repo_id if kind == "models" else f"{kind}/{repo_id}"


def _route_of(method: str, path: str) -> str | None:
    """Which implemented route a request path belongs to (None: not implemented)."""
    if path == "/api/repos/create":
        return "create"
    if path == "/api/validate-yaml":
        return "validate"
    if path == "/api/agent-harnesses":
        return "agents"
    if _RESOLVE.fullmatch(path):
        return "resolve"
    match = _API.fullmatch(path)
    if match:
        action = match.group(3)
        return {None: "info", "revision": "info"}.get(action, action)
    return None


class _Handler(BaseHTTPRequestHandler):
    hub: HubServer
    protocol_version = "HTTP/1.1"  # keep-alive, as the real Hub; every answer sets Content-Length

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    # --------------------------------------------------------------------------------------- plumbing
    def _dispatch(self, method: str) -> None:
        split = urlsplit(self.path)
        path, query = split.path, parse_qs(split.query)
        body = self._read_body()
        status = 500
        try:
            route = _route_of(method, path)
            if route is None:
                raise HubError(404, f"no route for {method} {path}")
            self._check_token(write=method == "POST" and route != "validate")
            failure = self.hub._take_failure(route)
            if failure is not None:
                raise HubError(failure.status, failure.message)
            status = self._handle(method, route, path, query, body)
        except HubError as error:
            status = error.status
            self._send_error(error)
        except Exception as error:  # a bug in the server: say so instead of hanging the client
            status = 500
            self._send_error(HubError(500, f"test server error: {error!r}"))
        finally:
            with self.hub._lock:
                self.hub.requests.append((method, path, status))

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _check_token(self, write: bool) -> None:
        auth = self.headers.get("Authorization", "")
        token = auth[len("Bearer ") :] if auth.startswith("Bearer ") else None
        if token is not None and token not in self.hub.tokens:
            raise HubError(401, "Invalid credentials in Authorization header")
        if write and token is None:
            raise HubError(401, "You must be authenticated to access this resource")

    def _send(
        self,
        status: int,
        payload: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
        length: int | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload) if length is None else length))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _send_json(self, value: Any, status: int = 200) -> int:
        self._send(status, json.dumps(value).encode(), "application/json")
        return status

    def _send_error(self, error: HubError) -> None:
        headers = {"X-Error-Message": error.message}
        if error.code:
            headers["X-Error-Code"] = error.code
        if error.commit:
            headers["X-Repo-Commit"] = error.commit
        body = {"error": error.message, **error.extra}
        self._send(error.status, json.dumps(body).encode(), "application/json", headers)

    # --------------------------------------------------------------------------------------- routing
    def _handle(self, method: str, route: str, path: str, query: dict, body: bytes) -> int:
        hub = self.hub
        if route == "agents":
            return self._send_json({"standardEnvVars": [], "harnesses": {}})
        if route == "create" and method == "POST":
            return self._send_json(hub.create_repo(json.loads(body)))
        if route == "validate" and method == "POST":
            problem = _yaml_problem(json.loads(body).get("content", ""))
            if problem:  # the Hub lists metadata errors in the body of a 400
                return self._send_json({"errors": [{"message": problem}], "warnings": []}, status=400)
            return self._send_json({"errors": [], "warnings": []})
        if route == "resolve" and method in ("GET", "HEAD"):
            repo_id, revision, file_path = _RESOLVE.fullmatch(path).groups()
            return self._serve_file(self._readable(repo_id), unquote(revision), unquote(file_path))
        kind, repo_id, action, revision, rest = _API.fullmatch(path).groups()
        repo_id = _api_repo(kind, repo_id)
        revision = unquote(revision) if revision else "main"
        if route == "info" and method == "GET":
            return self._send_json(hub.info(self._readable(repo_id), revision))
        if route == "tree" and method == "GET":
            recursive = query.get("recursive", ["False"])[0].lower() in ("1", "true")
            return self._send_json(hub.tree(self._readable(repo_id), revision, unquote(rest or ""), recursive))
        if route == "paths-info" and method == "POST":
            wanted = [unquote(p) for p in parse_qs(body.decode()).get("paths", [])] or json.loads(body or b"{}").get(
                "paths", []
            )
            entries = hub.tree(self._readable(repo_id), revision, "", True)
            return self._send_json([e for e in entries if e["path"] in wanted])
        if route == "commits" and method == "GET":
            return self._send_json(hub.commit_log(self._readable(repo_id), revision))
        if route == "preupload" and method == "POST":
            return self._send_json(hub.preupload(hub._repo(repo_id), revision, json.loads(body)))
        if route == "commit" and method == "POST":
            lines = [json.loads(line) for line in body.splitlines() if line.strip()]
            return self._send_json(hub.commit(hub._repo(repo_id), revision, lines))
        raise HubError(405, f"{method} not allowed on {path}")

    def _readable(self, repo_id: str) -> Repo:
        """The repo, or the Hub's answer for a repo this client may not see (private repos need a token)."""
        repo = self.hub._repo(repo_id)
        if repo.private and not self.headers.get("Authorization"):
            raise HubError(401, "Repository not found", "RepoNotFound")
        return repo

    def _serve_file(self, repo: Repo, revision: str, file_path: str) -> int:
        commit, sha = self.hub.resolve_file(repo, revision, file_path)
        content = self.hub._blob(sha)
        headers = {"X-Repo-Commit": commit.sha, "ETag": f'"{sha}"', "Accept-Ranges": "bytes"}
        span = _byte_range(self.headers.get("Range"), len(content))
        if span is not None:
            start, end = span
            headers["Content-Range"] = f"bytes {start}-{end}/{len(content)}"
            self._send(206, content[start : end + 1], "application/octet-stream", headers)
            return 206
        self._send(200, content, "application/octet-stream", headers)
        return 200


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) byte of a `Range: bytes=a-b`, `bytes=a-` or `bytes=-n` header, None without one."""
    match = re.fullmatch(r"bytes=(\d*)-(\d*)", header or "")
    if not match or size == 0 or not (match.group(1) or match.group(2)):
        return None
    if not match.group(1):  # the last n bytes
        return max(0, size - int(match.group(2))), size - 1
    start = int(match.group(1))
    if start >= size:
        return None
    return start, min(int(match.group(2)) if match.group(2) else size - 1, size - 1)


def _yaml_problem(content: str) -> str | None:
    """What is wrong with a README's front matter (None: fine). The Hub checks more; a mapping is the minimum."""
    import yaml

    match = re.match(r"^---\s*\n(.*?)\n---\s*\n", content, flags=re.DOTALL)
    if match is None:
        return None  # no metadata: the Hub only warns
    try:
        metadata = yaml.safe_load(match.group(1))
    except yaml.YAMLError as error:
        return f"invalid YAML: {error}"
    return None if isinstance(metadata, dict) else "the YAML metadata must be a mapping"
