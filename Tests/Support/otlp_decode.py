"""Independent OTLP decoding with the `opentelemetry-proto` package.

  otlp_decode.py request FILE    decode an ExportTraceServiceRequest (gzip allowed), print it as JSON
  otlp_decode.py response FILE   write an ExportTraceServiceResponse with a partial success to FILE
  otlp_decode.py dir DIR         decode every DIR/N.bin a receiver kept; print requests and flat spans as JSON
  otlp_decode.py metrics DIR     decode every /v1/metrics request a receiver kept (ExportMetricsServiceRequest);
                                 print requests and flat metrics as JSON
"""
import glob
import os
import gzip
import json
import sys

from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


def main():
    mode, path = sys.argv[1], sys.argv[2]
    if mode == "request":
        data = open(path, "rb").read()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        message = ExportTraceServiceRequest()
        message.ParseFromString(data)
        # Re-encoding must give back the same bytes: nothing we wrote was unknown to the reference.
        same = message.SerializeToString() == data
        print(json.dumps({"roundtrip_identical": same, "message": MessageToDict(message)}))
    elif mode == "response":
        message = ExportTraceServiceResponse()
        message.partial_success.rejected_spans = int(sys.argv[3])
        message.partial_success.error_message = sys.argv[4]
        open(path, "wb").write(message.SerializeToString())
    elif mode == "dir":
        requests, spans = [], []
        for body_path in sorted(glob.glob(os.path.join(path, "*.bin")), key=lambda p: int(os.path.basename(p)[:-4])):
            meta = json.load(open(body_path[:-4] + ".json"))
            if meta["path"].endswith("/v1/metrics"):
                continue
            data = open(body_path, "rb").read()
            gzipped = data[:2] == b"\x1f\x8b"
            if gzipped:
                data = gzip.decompress(data)
            message = ExportTraceServiceRequest()
            message.ParseFromString(data)
            resources = []
            for resource_spans in message.resource_spans:
                resource = {kv.key: value_of(kv.value) for kv in resource_spans.resource.attributes}
                resources.append(resource)
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        spans.append({
                            "trace_id": span.trace_id.hex(),
                            "span_id": span.span_id.hex(),
                            "parent_span_id": span.parent_span_id.hex(),
                            "name": span.name,
                            "kind": span.kind,
                            "start": span.start_time_unix_nano,
                            "end": span.end_time_unix_nano,
                            "attributes": {kv.key: value_of(kv.value) for kv in span.attributes},
                            "events": [event.name for event in span.events],
                            "links": [{"trace_id": link.trace_id.hex(), "span_id": link.span_id.hex(),
                                       "attributes": {kv.key: value_of(kv.value) for kv in link.attributes}}
                                      for link in span.links],
                            "status_code": span.status.code,
                            "status_message": span.status.message,
                            "scope": scope_spans.scope.name,
                        })
            requests.append({"headers": meta["headers"], "path": meta["path"], "time": meta["time"],
                             "gzipped": gzipped, "resources": resources, "span_count": sum(
                                 len(ss.spans) for rs in message.resource_spans for ss in rs.scope_spans)})
        print(json.dumps({"requests": requests, "spans": spans}))
    elif mode == "metrics":
        requests, metrics = [], []
        for body_path in sorted(glob.glob(os.path.join(path, "*.bin")), key=lambda p: int(os.path.basename(p)[:-4])):
            meta = json.load(open(body_path[:-4] + ".json"))
            if not meta["path"].endswith("/v1/metrics"):
                continue
            data = open(body_path, "rb").read()
            gzipped = data[:2] == b"\x1f\x8b"
            if gzipped:
                data = gzip.decompress(data)
            message = ExportMetricsServiceRequest()
            message.ParseFromString(data)
            same = message.SerializeToString() == data
            index = len(requests)
            resources = []
            for resource_metrics in message.resource_metrics:
                resources.append({kv.key: value_of(kv.value) for kv in resource_metrics.resource.attributes})
                for scope_metrics in resource_metrics.scope_metrics:
                    for metric in scope_metrics.metrics:
                        kind = metric.WhichOneof("data")
                        entry = {"request": index, "name": metric.name, "unit": metric.unit, "description": metric.description,
                                 "kind": kind, "scope": scope_metrics.scope.name, "points": []}
                        if kind in ("gauge", "sum"):
                            body = getattr(metric, kind)
                            if kind == "sum":
                                entry["monotonic"] = body.is_monotonic
                                entry["temporality"] = body.aggregation_temporality
                            for point in body.data_points:
                                entry["points"].append({
                                    "attributes": {kv.key: value_of(kv.value) for kv in point.attributes},
                                    "start": point.start_time_unix_nano, "time": point.time_unix_nano,
                                    "value": point.as_double if point.WhichOneof("value") == "as_double" else point.as_int})
                        elif kind == "histogram":
                            entry["temporality"] = metric.histogram.aggregation_temporality
                            for point in metric.histogram.data_points:
                                entry["points"].append({
                                    "attributes": {kv.key: value_of(kv.value) for kv in point.attributes},
                                    "start": point.start_time_unix_nano, "time": point.time_unix_nano,
                                    "count": point.count, "sum": point.sum, "bucket_counts": list(point.bucket_counts),
                                    "explicit_bounds": list(point.explicit_bounds),
                                    "exemplars": [{"trace_id": e.trace_id.hex(), "span_id": e.span_id.hex(), "value": e.as_double}
                                                  for e in point.exemplars]})
                        metrics.append(entry)
            requests.append({"headers": meta["headers"], "path": meta["path"], "time": meta["time"], "gzipped": gzipped,
                             "roundtrip_identical": same, "resources": resources})
        print(json.dumps({"requests": requests, "metrics": metrics}))
    else:
        sys.exit("unknown mode")


def value_of(value):
    kind = value.WhichOneof("value")
    if kind in ("array_value", "kvlist_value"):
        return MessageToDict(getattr(value, kind))
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, kind) if kind else None


if __name__ == "__main__":
    main()
