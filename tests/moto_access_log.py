"""moto's server, as `moto_server -H HOST -p PORT -c CERT -k KEY` runs it, that
also writes what it served to LOG, one JSON line per request once its
response is sent: method, path, query, status and body sizes (a request's
decoded object bytes for an aws-chunked upload, as SPEC §6 counts them).
The server's own account of a client's requests, for tests whose client
cannot report each call (pyarrow's S3FileSystem).

Usage: moto_access_log.py HOST PORT CERT KEY LOG
"""
import json
import sys
import threading

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from moto.server import MotoRequestHandler
from werkzeug.serving import run_simple


class AccessLog:
    def __init__(self, app, path: str):
        self.app = app
        self.out = open(path, "a", buffering=1)
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        status = []

        def started(line, headers, exc_info=None):
            status.append(int(line.split()[0]))
            return start_response(line, headers, exc_info)

        body = self.app(environ, started)
        sent = 0
        try:
            for chunk in body:
                sent += len(chunk)
                yield chunk
        finally:
            if hasattr(body, "close"):
                body.close()
            method = environ["REQUEST_METHOD"]
            size = environ.get("HTTP_X_AMZ_DECODED_CONTENT_LENGTH") \
                or environ.get("CONTENT_LENGTH") or 0
            with self.lock:
                self.out.write(json.dumps({
                    "method": method, "path": environ.get("PATH_INFO", ""),
                    "query": environ.get("QUERY_STRING", ""),
                    "status": status[0] if status else 0, "request_size": int(size),
                    "response_size": 0 if method == "HEAD" else sent}) + "\n")


def main() -> None:
    host, port, cert, key, log = sys.argv[1:6]
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(host, int(port), AccessLog(app, log), threaded=True,
               ssl_context=(cert, key), request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
