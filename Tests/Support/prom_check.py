"""Scrape a /metrics endpoint over TCP and read it back with prometheus-client.

  prom_check.py BASE_URL OUT_FILE [openmetrics]

With `openmetrics`, the scrape asks for OpenMetrics the way Prometheus does
(Accept header) and reads it with prometheus_client's OpenMetrics parser;
samples then carry their exemplar (labels, value) when they have one.

Prints JSON: the Content-Type, the status of GET /other and POST /metrics,
and every family parsed by prometheus_client.parser (name, type, help, samples).
The body is written to OUT_FILE for promtool.
"""
import json
import sys
import urllib.error
import urllib.request

from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families

base, out_file = sys.argv[1], sys.argv[2]
openmetrics = len(sys.argv) > 3 and sys.argv[3] == "openmetrics"
ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
          "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")


def status_of(request):
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


request = urllib.request.Request(base + "/metrics", headers={"Accept": ACCEPT} if openmetrics else {})
with urllib.request.urlopen(request, timeout=10) as response:
    content_type = response.headers.get("Content-Type")
    text = response.read().decode("utf-8")
open(out_file, "w").write(text)

families = {}
parse = openmetrics_families if openmetrics else text_string_to_metric_families
for family in parse(text):
    families[family.name] = {
        "type": family.type,
        "help": family.documentation,
        "samples": [[s.name, s.labels, s.value] + ([[s.exemplar.labels, s.exemplar.value]] if getattr(s, "exemplar", None) else [])
                    for s in family.samples],
    }
print(json.dumps({
    "content_type": content_type,
    "other_path": status_of(base + "/other"),
    "post": status_of(urllib.request.Request(base + "/metrics", data=b"x", method="POST")),
    "families": families,
}))
