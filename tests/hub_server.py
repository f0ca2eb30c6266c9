"""A loopback Hugging Face Hub, just big enough for the real huggingface_hub / transformers / datasets clients.

Storage under ``root``: ``blobs/<sha256>`` holds every file's bytes (content-addressed), and each repo keeps
``refs.json`` (branch -> commit) plus ``commits/<oid>.json`` (path -> blob manifest), so every revision stays
readable after later commits. Served routes are listed in ``_Handler._route``.
"""

import base64
import hashlib
import json
import os
import re
import secrets
import shutil
import sys
import socket
import tempfile
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

REPO_KINDS = ("models", "datasets", "spaces")
# The real Hub decides LFS from .gitattributes; these suffixes mirror its default rules for what we upload.
LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".onnx", ".npy", ".npz", ".pkl",
                ".parquet", ".arrow", ".zip", ".gz", ".tar", ".wav", ".flac", ".mp3")
LFS_MIN_SIZE = 10 * 1024 * 1024


class HubError(Exception):
    """An error answered the way the Hub does: status + ``X-Error-Code``, which huggingface_hub maps to its errors."""

    def __init__(self, status, message, code=None, headers=None):
        super().__init__(message)
        self.status, self.message = status, message
        self.headers = {"X-Error-Message": message, **({"X-Error-Code": code} if code else {}), **(headers or {})}


def _now():
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())  # the one format huggingface_hub parses


def _git_oid(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _write(path, data):
    """Write-then-rename, so a concurrent request never reads half a blob, manifest or refs file."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _lfs_pointer(sha256, size):
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


class HubServer:
    """``with HubServer() as hub:`` serves on ``hub.url`` (127.0.0.1, free port); ``hub.requests`` logs
    ``(method, path, status)`` so tests can prove a download really reached the server. Setting
    ``hub.refuse_commits`` makes every commit fail (HTTP 422), as a server-side failure mid-push;
    ``hub.drop_paths_containing = "/lfs-upload/"`` closes the connection of every request whose path contains it
    without a reply, as a server that dies in the middle of an upload (later requests are answered)."""

    def __init__(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="hub_server_")
        self.root = Path(self._tmp.name)
        self.requests = []
        self.refuse_commits = False
        self.drop_paths_containing = None
        self._lock = threading.Lock()  # serialises commits (read-modify-write of refs) and the request log
        self._httpd = None

    def start(self):
        (self.root / "blobs").mkdir(parents=True, exist_ok=True)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.hub = self
        self.url = f"http://127.0.0.1:{self._httpd.server_port}"
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
        return self

    def stop(self):
        self._httpd.shutdown()
        self._httpd.server_close()
        self._tmp.cleanup()

    __enter__ = start

    def __exit__(self, *exc):
        self.stop()

    # -- storage ---------------------------------------------------------------------------------------------
    def _repo_dir(self, kind, repo_id):
        return self.root / kind / repo_id

    def _refs(self, kind, repo_id):
        refs = self._repo_dir(kind, repo_id) / "refs.json"
        if not refs.exists():
            raise HubError(404, f"Repository {repo_id} not found", "RepoNotFound")
        return json.loads(refs.read_text())

    def resolve(self, kind, repo_id, rev):
        """(commit oid, manifest) for a branch name or commit oid."""
        oid = self._refs(kind, repo_id).get(rev, rev)
        path = self._repo_dir(kind, repo_id) / "commits" / f"{oid}.json"
        if not re.fullmatch(r"[0-9a-f]{40}", oid) or not path.exists():
            raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        return oid, json.loads(path.read_text())

    def blob_path(self, sha256):
        return self.root / "blobs" / sha256

    def store_blob(self, data):
        sha = hashlib.sha256(data).hexdigest()
        path = self.blob_path(sha)
        if not path.exists():
            _write(path, data)
        return sha

    def create_repo(self, kind, repo_id, private=False):
        """False if it already exists; otherwise an empty initial commit gives it a sha, as on the Hub."""
        with self._lock:
            repo = self._repo_dir(kind, repo_id)
            if (repo / "refs.json").exists():
                return False
            (repo / "commits").mkdir(parents=True)
            if private:
                (repo / "private").touch()
            self._write_commit(kind, repo_id, None, "initial commit", {})
            return True

    def delete_repo(self, kind, repo_id):
        with self._lock:
            self._refs(kind, repo_id)  # 404 if missing
            shutil.rmtree(self._repo_dir(kind, repo_id))

    def is_private(self, kind, repo_id):
        return (self._repo_dir(kind, repo_id) / "private").exists()

    def commit(self, kind, repo_id, branch, title, ops):
        with self._lock:
            if branch not in self._refs(kind, repo_id):
                raise HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
            parent, manifest = self.resolve(kind, repo_id, branch)
            files = dict(manifest["files"])
            for key, value in ops:
                path = value.get("path", "").strip("/")
                if key == "file":
                    data = base64.b64decode(value["content"])
                    files[path] = {"sha256": self.store_blob(data), "size": len(data), "oid": _git_oid(data)}
                elif key == "lfsFile":
                    blob = self.blob_path(value["oid"])
                    if not blob.exists():
                        raise HubError(422, f"LFS object {value['oid']} for {path} was never uploaded")
                    size = blob.stat().st_size
                    files[path] = {"sha256": value["oid"], "size": size, "lfs": True,
                                   "oid": _git_oid(_lfs_pointer(value["oid"], size))}
                elif key == "deletedFile":
                    if files.pop(path, None) is None:
                        raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                elif key == "deletedFolder":
                    files = {p: f for p, f in files.items() if not p.startswith(path + "/")}
                else:
                    raise HubError(400, f"unsupported commit operation {key!r}")
            return self._write_commit(kind, repo_id, parent, title, files, branch)

    def _write_commit(self, kind, repo_id, parent, title, files, branch="main"):
        oid = secrets.token_hex(20)
        repo = self._repo_dir(kind, repo_id)
        record = {"parent": parent, "title": title, "date": _now(), "files": files}
        _write(repo / "commits" / f"{oid}.json", json.dumps(record).encode())
        refs = json.loads((repo / "refs.json").read_text()) if parent else {}
        _write(repo / "refs.json", json.dumps({**refs, branch: oid}).encode())
        return oid


def _lfs(info):
    return {"oid": info["sha256"], "size": info["size"],
            "pointerSize": len(_lfs_pointer(info["sha256"], info["size"]))}


def _entry(path, info, commit, title, date):
    """A tree / paths-info item; lastCommit is the listed commit (not the last one touching the path), which is
    all the clients need: HfFileSystem re-lists entries whose lastCommit is missing."""
    last = {"id": commit, "title": title, "date": date}
    if info is None:
        return {"type": "directory", "path": path, "oid": hashlib.sha1(f"{commit}:{path}".encode()).hexdigest(),
                "lastCommit": last}
    item = {"type": "file", "path": path, "size": info["size"], "oid": info["oid"], "lastCommit": last}
    if info.get("lfs"):
        item["lfs"] = _lfs(info)
    return item


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as httpx expects; every reply therefore sets Content-Length
    timeout = 30  # frees the thread of a keep-alive connection a client left idle in its pool

    def log_message(self, *args):  # the request log replaces stderr chatter
        pass

    def do_GET(self):
        self._dispatch()

    do_HEAD = do_POST = do_PUT = do_DELETE = do_GET

    @property
    def hub(self):
        return self.server.hub

    def _body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":  # httpx streams file uploads chunked
            data = b""
            while size := int(self.rfile.readline().split(b";")[0], 16):
                data += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
            return data
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _reply(self, status, body=b"", headers=None):
        if not isinstance(body, bytes):
            body = json.dumps(body).encode()
            headers = {"Content-Type": "application/json", **(headers or {})}
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if "Content-Length" not in (headers or {}):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        with self.hub._lock:
            self.hub.requests.append((self.command, self._path, status))

    def _dispatch(self):
        url = urlsplit(self.path)
        self._path = url.path
        body = self._body()  # always drain it so the keep-alive connection stays in sync
        if self.hub.drop_paths_containing and self.hub.drop_paths_containing in url.path:
            with self.hub._lock:
                self.hub.requests.append((self.command, self._path, "dropped"))
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        parts = [unquote(p) for p in url.path.strip("/").split("/")]
        try:
            self._route(parts, parse_qs(url.query), body)
        except HubError as err:
            self._reply(err.status, {"error": err.message}, err.headers)
        except Exception as exc:  # 400, not 500: clients retry 5xx with backoff, which would only hide the bug
            traceback.print_exc()
            self._reply(400, {"error": f"hub_server failed on {self.command} {self.path}: {exc!r}"})

    def _route(self, parts, query, body):
        method = self.command
        if method == "POST" and parts == ["api", "repos", "create"]:
            return self._create_repo(json.loads(body))
        if method == "DELETE" and parts == ["api", "repos", "delete"]:
            payload = json.loads(body)
            kind = (payload.get("type") or "model") + "s"
            self.hub.delete_repo(kind, f"{payload.get('organization') or 'user'}/{payload['name']}")
            return self._reply(200)
        if method == "POST" and parts == ["api", "validate-yaml"]:
            return self._reply(200, {"errors": [], "warnings": []})
        if method == "GET" and parts == ["api", "agent-harnesses"]:  # huggingface_hub tags its User-Agent from it
            return self._reply(200, {"standardEnvVars": [], "harnesses": {}})
        if method == "PUT" and parts[0] == "lfs-upload" and len(parts) == 2:
            return self._lfs_put(parts[1], body)
        if len(parts) >= 4 and parts[0] == "api" and parts[1] in REPO_KINDS:
            kind, repo_id, rest = parts[1], "/".join(parts[2:4]), parts[4:]
            if method == "GET" and (not rest or rest[0] == "revision"):
                return self._repo_info(kind, repo_id, "/".join(rest[1:]) or "main")
            if method == "POST" and len(rest) == 2 and rest[0] == "preupload":
                return self._preupload(kind, repo_id, rest[1], json.loads(body))
            if method == "POST" and len(rest) == 2 and rest[0] == "commit":
                return self._commit(kind, repo_id, rest[1], body)
            if method == "GET" and len(rest) >= 2 and rest[0] == "tree":
                recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
                return self._tree(kind, repo_id, rest[1], "/".join(rest[2:]), recursive)
            if method == "POST" and len(rest) == 2 and rest[0] == "paths-info":
                return self._paths_info(kind, repo_id, rest[1], parse_qs(body.decode()).get("paths", []))
        kind = parts[0] if parts[0] in ("datasets", "spaces") else "models"
        repo_parts = parts[1:] if kind != "models" else parts
        if method == "POST" and repo_parts[2:] == ["info", "lfs", "objects", "batch"] and \
                len(repo_parts) == 6 and repo_parts[1].endswith(".git"):
            return self._lfs_batch(json.loads(body))
        if method in ("GET", "HEAD") and len(repo_parts) >= 5 and repo_parts[2] == "resolve":
            return self._resolve(kind, "/".join(repo_parts[:2]), repo_parts[3], "/".join(repo_parts[4:]))
        sys.stderr.write(f"hub_server: unhandled route {method} {self.path}\n")  # visible in pytest's report
        raise HubError(404, f"hub_server: unhandled route {method} {self.path}")

    def _create_repo(self, payload):
        kind = (payload.get("type") or "model") + "s"
        repo_id = f"{payload.get('organization') or 'user'}/{payload['name']}"  # no auth: bare names go to "user"
        prefix = "" if kind == "models" else f"{kind}/"
        body = {"url": f"{self.hub.url}/{prefix}{repo_id}", "name": repo_id}
        # HfApi.create_repo(exist_ok=True) accepts a 409 but still reads "url" from its body
        self._reply(200 if self.hub.create_repo(kind, repo_id, payload.get("visibility") == "private") else 409, body)

    def _repo_info(self, kind, repo_id, rev):
        oid, manifest = self.hub.resolve(kind, repo_id, rev)
        siblings = [{"rfilename": path, "size": info["size"], "blobId": info["oid"],
                     "lfs": {**_lfs(info), "sha256": info["sha256"]} if info.get("lfs") else None}
                    for path, info in sorted(manifest["files"].items())]
        self._reply(200, {"id": repo_id, "_id": repo_id, "author": repo_id.split("/")[0], "sha": oid,
                          "lastModified": manifest["date"], "createdAt": manifest["date"],
                          "private": self.hub.is_private(kind, repo_id),
                          "gated": False, "disabled": False, "downloads": 0, "likes": 0, "tags": [],
                          "siblings": siblings})

    def _preupload(self, kind, repo_id, rev, payload):
        _, manifest = self.hub.resolve(kind, repo_id, rev)
        files = []
        for item in payload["files"]:
            sample = base64.b64decode(item["sample"])
            lfs = item["path"].endswith(LFS_SUFFIXES) or item["size"] >= LFS_MIN_SIZE or b"\0" in sample
            remote = manifest["files"].get(item["path"])
            # the client skips unchanged files by comparing this oid with sha256 (lfs) or git sha1 (regular)
            oid = remote and (remote["sha256"] if remote.get("lfs") else remote["oid"])
            files.append({"path": item["path"], "uploadMode": "lfs" if lfs else "regular",
                          "shouldIgnore": False, "oid": oid})
        self._reply(200, {"files": files})

    def _commit(self, kind, repo_id, branch, body):
        if self.hub.refuse_commits:
            raise HubError(422, "hub_server: commits refused (refuse_commits)")
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]  # NDJSON: header, then one op each
        title = next((line["value"].get("summary", "") for line in lines if line["key"] == "header"), "")
        ops = [(line["key"], line["value"]) for line in lines if line["key"] != "header"]
        oid = self.hub.commit(kind, repo_id, branch, title, ops)
        prefix = "" if kind == "models" else f"{kind}/"
        self._reply(200, {"success": True, "commitOid": oid, "pullRequestUrl": None,
                          "commitUrl": f"{self.hub.url}/{prefix}{repo_id}/commit/{oid}"})

    def _lfs_batch(self, payload):
        objects = []
        for obj in payload["objects"]:
            item = {"oid": obj["oid"], "size": obj["size"]}
            if not self.hub.blob_path(obj["oid"]).exists():  # no "actions" means "already uploaded"
                item["actions"] = {"upload": {"href": f"{self.hub.url}/lfs-upload/{obj['oid']}"}}
            objects.append(item)
        self._reply(200, {"transfer": "basic", "objects": objects},
                    {"Content-Type": "application/vnd.git-lfs+json"})

    def _lfs_put(self, oid, body):
        if hashlib.sha256(body).hexdigest() != oid:
            raise HubError(400, f"sha256 of the uploaded bytes does not match the LFS oid {oid}")
        self.hub.store_blob(body)
        self._reply(200)

    def _listing(self, kind, repo_id, rev):
        oid, manifest = self.hub.resolve(kind, repo_id, rev)
        files = manifest["files"]
        dirs = {"/".join(p.split("/")[:i]) for p in files for i in range(1, p.count("/") + 1)}
        return {p: _entry(p, files.get(p), oid, manifest["title"], manifest["date"]) for p in sorted({*files, *dirs})}

    def _tree(self, kind, repo_id, rev, path, recursive):
        entries = self._listing(kind, repo_id, rev)
        if path and entries.get(path, {}).get("type") != "directory":
            raise HubError(404, f"{path} does not exist on {rev}", "EntryNotFound")
        prefix = path + "/" if path else ""
        depth = prefix.count("/")
        # one page only: without a Link header the clients' pagination stops here
        self._reply(200, [e for p, e in entries.items()
                          if p.startswith(prefix) and (recursive or p.count("/") == depth)])

    def _paths_info(self, kind, repo_id, rev, paths):
        entries = self._listing(kind, repo_id, rev)
        self._reply(200, [entries[p.strip("/")] for p in paths if p.strip("/") in entries])

    def _resolve(self, kind, repo_id, rev, path):
        oid, manifest = self.hub.resolve(kind, repo_id, rev)
        info = manifest["files"].get(path)
        if info is None:  # X-Repo-Commit lets the client cache the miss under .no_exist/<commit>
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound", {"X-Repo-Commit": oid})
        headers = {"X-Repo-Commit": oid, "ETag": f'"{info["oid"]}"', "Accept-Ranges": "bytes",
                   "Content-Type": "application/octet-stream"}
        if info.get("lfs"):  # file_download.py prefers these over ETag / Content-Length, as the Hub sends them
            headers.update({"ETag": f'"{info["sha256"]}"', "X-Linked-Etag": f'"{info["sha256"]}"',
                            "X-Linked-Size": str(info["size"])})
        data = self.hub.blob_path(info["sha256"]).read_bytes()
        status, ranged = 200, re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", ""))
        if ranged:  # HfFileSystem reads with Range; resumed downloads too
            start = int(ranged[1]) if ranged[1] else max(len(data) - int(ranged[2]), 0)
            end = int(ranged[2]) if ranged[1] and ranged[2] else len(data) - 1
            end = min(end, len(data) - 1)
            if start >= len(data) and data:
                raise HubError(416, f"range {self.headers['Range']} not satisfiable")
            status, headers["Content-Range"] = 206, f"bytes {start}-{end}/{len(data)}"
            data = data[start:end + 1]
        self._reply(status, data, headers)


def hub_env(server, home):
    """Environment for a client subprocess talking to ``server``, with a fresh cache under ``home``."""
    # drop every inherited Hub setting (offline flags, cache paths, real tokens) before adding ours
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HF_", "HUGGINGFACE_", "HUGGING_FACE_", "TRANSFORMERS_"))}
    env.update({
        "HF_ENDPOINT": server.url,
        "HF_HOME": str(home),
        "HF_TOKEN": "hf_loopback_dummy_token",
        "HF_HUB_DISABLE_XET": "1",  # xet uploads/downloads talk to a CAS service this server does not implement
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    })
    return env
