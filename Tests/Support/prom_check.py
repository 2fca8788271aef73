"""Scrape a /metrics endpoint over TCP and read it back with prometheus-client.

  prom_check.py BASE_URL OUT_FILE

Prints JSON: the Content-Type, the status of GET /other and POST /metrics,
and every family parsed by prometheus_client.parser (name, type, help, samples).
The body is written to OUT_FILE for promtool.
"""
import json
import sys
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

base, out_file = sys.argv[1], sys.argv[2]


def status_of(request):
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


with urllib.request.urlopen(base + "/metrics", timeout=10) as response:
    content_type = response.headers.get("Content-Type")
    text = response.read().decode("utf-8")
open(out_file, "w").write(text)

families = {}
for family in text_string_to_metric_families(text):
    families[family.name] = {
        "type": family.type,
        "help": family.documentation,
        "samples": [[s.name, s.labels, s.value] for s in family.samples],
    }
print(json.dumps({
    "content_type": content_type,
    "other_path": status_of(base + "/other"),
    "post": status_of(urllib.request.Request(base + "/metrics", data=b"x", method="POST")),
    "families": families,
}))
