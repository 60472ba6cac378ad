"""A small in-process Cloud Storage stand-in: the parts of the JSON API that TensorStore's `gcs`
kvstore driver (orbax's array writes) and gcsfs (etils epath's gs:// backend) use, over HTTP on
127.0.0.1, objects held in memory.

Served: object get (metadata, or media with a Range), media and resumable upload,
delete, list (prefix, delimiter, pageToken, maxResults, startOffset, endOffset), bucket get, and
the generation preconditions (ifGenerationMatch=0 meaning "must not exist", 412 when one
fails, 304 for ifGenerationNotMatch) that OCDBT's conditional writes rely on. Anything else is
answered 501 and recorded in `unhandled`, so a client using more of the API fails loudly.

Clients are pointed here by their own testing settings: TENSORSTORE_GCS_HTTP_URL (with a fixed
GOOGLE_AUTH_TOKEN_FOR_TESTING) for TensorStore, STORAGE_EMULATOR_HOST for gcsfs.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import itertools
import json
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeGCS:
    """`with FakeGCS("bucket") as gcs:` serves gs://bucket at gcs.url; gcs.objects("bucket") is
    {name: bytes}; gcs.requests lists (method, path, user agent) of every request."""

    def __init__(self, *buckets: str):
        self.buckets = set(buckets)
        self.store: dict[tuple[str, str], dict] = {}  # (bucket, name) -> {"data", "generation", "updated"}
        self.requests: list[tuple[str, str, str]] = []  # (method, path with query, user agent)
        self.unhandled: list[str] = []
        self.uploads: dict[str, dict] = {}  # resumable uploads in progress
        self.lock = threading.Lock()
        self._generations = itertools.count(1_000_000)
        self._server = _Server(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> "FakeGCS":
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def objects(self, bucket: str) -> dict[str, bytes]:
        with self.lock:
            return {n: o["data"] for (b, n), o in sorted(self.store.items()) if b == bucket}

    def delete_prefix(self, bucket: str, prefix: str) -> None:
        with self.lock:
            for key in [k for k in self.store if k[0] == bucket and k[1].startswith(prefix)]:
                del self.store[key]

    # The API, one method per operation: (status, headers, body).

    def metadata(self, bucket: str, name: str) -> dict:
        o = self.store[bucket, name]
        return {"kind": "storage#object", "bucket": bucket, "name": name, "id": f"{bucket}/{name}/{o['generation']}",
                "generation": str(o["generation"]), "metageneration": "1", "size": str(len(o["data"])),
                "contentType": "application/octet-stream", "storageClass": "STANDARD",
                "md5Hash": base64.b64encode(hashlib.md5(o["data"]).digest()).decode(),
                "timeCreated": o["updated"], "updated": o["updated"]}

    def precondition(self, bucket: str, name: str, q: dict) -> int | None:
        """412 (or 304) when a generation precondition in the query fails, else None."""
        o = self.store.get((bucket, name))
        gen = o["generation"] if o else 0  # 0 stands for "no live object", as in the API
        if "ifGenerationMatch" in q and int(q["ifGenerationMatch"]) != gen:
            return 412
        if "ifMetagenerationMatch" in q and (o is None or q["ifMetagenerationMatch"] != "1"):
            return 412
        if "ifGenerationNotMatch" in q and int(q["ifGenerationNotMatch"]) == gen:
            return 304 if o is not None else 412
        return None

    def get(self, bucket, name, q, headers, media):
        if (failed := self.precondition(bucket, name, q)) is not None:
            return failed, {}, b""
        if (bucket, name) not in self.store or ("generation" in q and
                                                int(q["generation"]) != self.store[bucket, name]["generation"]):
            return _error(404, f"No such object: {bucket}/{name}")
        if not media:
            return _json(200, self.metadata(bucket, name))
        o = self.store[bucket, name]
        data, status = o["data"], 200
        out = {"x-goog-generation": str(o["generation"]), "x-goog-metageneration": "1",
               "x-goog-stored-content-length": str(len(data)), "Content-Type": "application/octet-stream"}
        if headers.get("Range", "").startswith("bytes=") and data:  # bytes=a-b, a- or -n (the last n)
            first, _, last = headers["Range"][len("bytes="):].partition("-")
            start = max(len(data) - int(last), 0) if first == "" else int(first)
            end = len(data) - 1 if first == "" or last == "" else min(int(last), len(data) - 1)
            if start >= len(data):
                return 416, {"Content-Range": f"bytes */{len(data)}"}, b""
            out["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            data, status = data[start:end + 1], 206
        return status, out, data

    def insert(self, bucket, name, q, data):
        if not name:
            return _error(400, "object name missing")
        if self.precondition(bucket, name, q) is not None:  # a write that fails one is 412, never 304
            return _error(412, "precondition failed")
        self.store[bucket, name] = {"data": bytes(data), "generation": next(self._generations),
                                    "updated": datetime.datetime.now(datetime.timezone.utc).isoformat(
                                        timespec="milliseconds").replace("+00:00", "Z")}
        return _json(200, self.metadata(bucket, name))

    def delete(self, bucket, name, q):
        if (bucket, name) not in self.store:
            return _error(404, f"No such object: {bucket}/{name}")
        if self.precondition(bucket, name, q) is not None:
            return _error(412, "precondition failed")
        del self.store[bucket, name]
        return 204, {}, b""

    def list(self, bucket, q):
        prefix, delimiter = q.get("prefix", ""), q.get("delimiter", "")
        names = sorted(n for b, n in self.store if b == bucket and n.startswith(prefix)
                       and q.get("startOffset", "") <= n and (not q.get("endOffset") or n < q["endOffset"]))
        entries = []  # (sort key, is a "directory" prefix)
        for n in names:
            rest = n[len(prefix):]
            if delimiter and delimiter in rest:
                p = prefix + rest[:rest.index(delimiter) + len(delimiter)]
                if not entries or entries[-1] != (p, True):
                    entries.append((p, True))
            else:
                entries.append((n, False))
        start = int(q.get("pageToken", 0))
        page = entries[start:start + int(q.get("maxResults", 1000))]
        out = {"kind": "storage#objects", "items": [self.metadata(bucket, n) for n, d in page if not d],
               "prefixes": [n for n, d in page if d]}
        if start + len(page) < len(entries):
            out["nextPageToken"] = str(start + len(page))
        return _json(200, out)

    def route(self, method, path, q, headers, body):
        """(status, headers, body) for one request, or None for a request not served."""
        parts = [urllib.parse.unquote(p) for p in path.split("/")]
        media = q.get("alt") == "media"
        # parts[0] is "" (the path starts with "/"); api is storage/v1, upload/storage/v1 or download/...
        if parts[1] in ("upload", "download"):
            kind, parts = parts[1], parts[1:]
        else:
            kind = "json"
        if parts[1:3] != ["storage", "v1"] or len(parts) < 5 or parts[3] != "b":
            return None
        bucket = parts[4]
        if bucket not in self.buckets:
            return _error(404, f"No such bucket: {bucket}")
        if len(parts) == 5 and method == "GET":
            return _json(200, {"kind": "storage#bucket", "name": bucket, "id": bucket, "location": "US"})
        if len(parts) < 6 or parts[5] != "o":
            return None
        if len(parts) == 6:
            if method == "GET" and kind == "json":
                return self.list(bucket, q)
            if method == "POST" and kind == "upload":
                return self.upload(bucket, q, headers, body)
            return None
        name = parts[6]
        if len(parts) == 7:
            if method == "GET":
                return self.get(bucket, name, q, headers, media or kind == "download")
            if method == "DELETE":
                return self.delete(bucket, name, q)
        return None

    def upload(self, bucket, q, headers, body):
        kind = q.get("uploadType")
        if kind == "media":
            return self.insert(bucket, q.get("name", ""), q, body)
        if kind == "resumable" and "upload_id" not in q:  # start: the name; the bytes follow
            name = q.get("name") or json.loads(body or b"{}").get("name", "")
            upload_id = str(next(self._generations))
            self.uploads[upload_id] = {"bucket": bucket, "name": name, "q": q, "data": bytearray()}
            return 200, {"Location": f"{self.url}/upload/storage/v1/b/{bucket}/o?uploadType=resumable"
                                     f"&upload_id={upload_id}"}, b""
        if kind == "resumable" and q["upload_id"] in self.uploads:  # a chunk: Content-Range a-b/total or */total
            upload = self.uploads[q["upload_id"]]
            span, _, total = headers.get("Content-Range", "bytes */*")[len("bytes "):].partition("/")
            if span != "*" and int(span.split("-")[0]) != len(upload["data"]):
                return _error(400, "chunks out of order")
            upload["data"] += body
            if total != "*" and int(total) == len(upload["data"]):
                del self.uploads[q["upload_id"]]
                return self.insert(upload["bucket"], upload["name"], upload["q"], upload["data"])
            return 308, ({"Range": f"bytes=0-{len(upload['data']) - 1}"} if upload["data"] else {}), b""
        return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # gcsfs runs two lookups at once and drops the connection of the one it no longer needs.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _json(status, obj):
    return status, {"Content-Type": "application/json"}, json.dumps(obj).encode()


def _error(status, message):
    return _json(status, {"error": {"code": status, "message": message, "errors": [{"message": message}]}})


def _handler(gcs: FakeGCS):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: the clients reuse connections

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while (size := int(self.rfile.readline().split(b";")[0], 16)) > 0:
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                self.rfile.readline()
                return b"".join(chunks)
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _serve(self):
            body = self._body()
            parsed = urllib.parse.urlsplit(self.path)
            q = dict(urllib.parse.parse_qsl(parsed.query, keep_blank_values=True))
            with gcs.lock:
                gcs.requests.append((self.command, self.path, self.headers.get("User-Agent", "")))
                response = gcs.route(self.command, parsed.path, q, self.headers, body)
                if response is None:
                    gcs.unhandled.append(f"{self.command} {self.path}")
                    response = _error(501, f"the fake does not serve {self.command} {parsed.path}")
            status, headers, payload = response
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

        def log_message(self, *args):  # quiet: requests are kept in gcs.requests
            pass

    return Handler
