"""Independent OTLP decoding with the `opentelemetry-proto` package.

  otlp_decode.py request FILE    decode an ExportTraceServiceRequest (gzip allowed), print it as JSON
  otlp_decode.py response FILE   write an ExportTraceServiceResponse with a partial success to FILE
"""
import gzip
import json
import sys

from google.protobuf.json_format import MessageToDict
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
    else:
        sys.exit("unknown mode")


if __name__ == "__main__":
    main()
