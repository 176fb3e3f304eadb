"""Real OTLP receivers for tests: http/protobuf (http.server) and gRPC (grpcio),
both decoding with opentelemetry-proto, both able to hold every export
unanswered (`hold()` ... `release()`: a receiver that hung).

What they keep: `spans()`, one dict per span received (name, kind, start and
end ns, attributes, events, status), and `points()`, the latest cumulative
histogram point per attribute set of one metric.
"""
from __future__ import annotations

import gzip
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as mpb
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc as mgrpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as tpb
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as tgrpc

HOLD_MAX_S = 60          # a held export is answered after this at the latest


def _value(v):
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


def _attrs(kvs) -> dict:
    return {kv.key: _value(kv.value) for kv in kvs}


class Store:
    def __init__(self):
        self.lock = threading.Lock()
        self.traces: list = []          # ExportTraceServiceRequest, in arrival order
        self.metrics: list = []
        self.held = 0                   # exports waiting for release() now
        self._open = threading.Event()
        self._open.set()

    def hold(self) -> None:
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def _wait(self) -> None:
        with self.lock:
            self.held += 1
        self._open.wait(HOLD_MAX_S)
        with self.lock:
            self.held -= 1

    def take_traces(self, req) -> None:
        self._wait()
        with self.lock:
            self.traces.append(req)

    def take_metrics(self, req) -> None:
        self._wait()
        with self.lock:
            self.metrics.append(req)

    def spans(self) -> list[dict]:
        with self.lock:
            reqs = list(self.traces)
        out = []
        for req in reqs:
            for rs in req.resource_spans:
                resource = _attrs(rs.resource.attributes)
                for ss in rs.scope_spans:
                    for s in ss.spans:
                        out.append({
                            "name": s.name, "kind": s.kind, "start": s.start_time_unix_nano,
                            "end": s.end_time_unix_nano, "attributes": _attrs(s.attributes),
                            "events": [(e.name, e.time_unix_nano) for e in s.events],
                            "status": s.status.code, "resource": resource,
                            "scope": ss.scope.name})
        return out

    def points(self, name: str) -> dict:
        """frozenset(attributes.items()) -> (count, sum, bucket counts, bounds), the
        latest export's (cumulative: it holds every count so far)."""
        with self.lock:
            reqs = list(self.metrics)
        latest = {}
        for req in reqs:
            for rm in req.resource_metrics:
                for sm in rm.scope_metrics:
                    for m in sm.metrics:
                        if m.name != name:
                            continue
                        for p in m.histogram.data_points:
                            latest[frozenset(_attrs(p.attributes).items())] = (
                                p.count, p.sum, tuple(p.bucket_counts),
                                tuple(p.explicit_bounds), m.unit,
                                m.histogram.aggregation_temporality)
        return latest


class HttpReceiver(Store):
    """POST /v1/traces and /v1/metrics, application/x-protobuf.  While
    `refusing`, every export is answered 400 (a failure not retried)."""

    def __init__(self):
        super().__init__()
        self.refusing = False
        store = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if store.refusing:
                    self.send_error(400)
                    return
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path == "/v1/traces":
                    store.take_traces(tpb.ExportTraceServiceRequest.FromString(body))
                    reply = tpb.ExportTraceServiceResponse()
                elif self.path == "/v1/metrics":
                    store.take_metrics(mpb.ExportMetricsServiceRequest.FromString(body))
                    reply = mpb.ExportMetricsServiceResponse()
                else:
                    self.send_error(404)
                    return
                data = reply.SerializeToString()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/x-protobuf")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass                # the exporter gave up on a held export

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()


class GrpcReceiver(Store):
    """opentelemetry-proto's TraceService and MetricsService, plain text."""

    def __init__(self):
        super().__init__()
        store = self

        class Traces(tgrpc.TraceServiceServicer):
            def Export(self, request, context):
                store.take_traces(request)
                return tpb.ExportTraceServiceResponse()

        class Metrics(mgrpc.MetricsServiceServicer):
            def Export(self, request, context):
                store.take_metrics(request)
                return mpb.ExportMetricsServiceResponse()

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        tgrpc.add_TraceServiceServicer_to_server(Traces(), self.server)
        mgrpc.add_MetricsServiceServicer_to_server(Metrics(), self.server)
        port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()
        self.url = f"http://127.0.0.1:{port}"

    def close(self) -> None:
        self.release()
        self.server.stop(grace=None)
