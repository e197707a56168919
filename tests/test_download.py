"""Fetching weights against an HTTP server on 127.0.0.1: the right file, a wrong one, a cut one."""

import hashlib
import http.server
import threading

import pytest

from genmodels.errors import UserError
from genmodels.metrics.download import fetch

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB standing in for a weights file
PREFIX = hashlib.sha256(PAYLOAD).hexdigest()[:8]


class Files(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = {"/right.pth": PAYLOAD, "/wrong.pth": PAYLOAD[::-1], "/cut.pth": PAYLOAD}.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 3] if self.path == "/cut.pth" else body)  # then the connection closes

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Files)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_the_right_file_arrives_whole(tmp_path, server):
    path = fetch(f"{server}/right.pth", tmp_path / "hub" / "w.pth", PREFIX)
    assert path.read_bytes() == PAYLOAD and sorted(p.name for p in path.parent.iterdir()) == ["w.pth"]
    assert fetch(f"{server}/gone.pth", path, PREFIX) == path  # there already: not fetched again


@pytest.mark.parametrize("name, message", [
    ("wrong.pth", r"SHA-256 [0-9a-f]{16}\.\.\. is not the published [0-9a-f]{8}\.\.\.; nothing kept"),
    ("cut.pth", r"the download (was )?cut short"),
    ("missing.pth", r"the download failed \(HTTPError: Not Found\)"),
])
def test_a_bad_download_is_one_line_and_leaves_nothing(tmp_path, server, name, message):
    with pytest.raises(UserError, match=message) as failed:
        fetch(f"{server}/{name}", tmp_path / "hub" / "w.pth", PREFIX)
    assert "\n" not in str(failed.value)
    assert list((tmp_path / "hub").iterdir()) == []
