#!/usr/bin/env python3
"""Checks ops/grafana/joule-dashboard.json and ops/prometheus/alerts.yml:
the JSON parses, every panel has PromQL targets, and every joule_* metric
they name is one jouled or joule-agent exports (the metric table of
docs/operations.md, which tests/e2e/ops_e2e_test.cc keeps honest against a
real scrape). Usage: check_dashboards.py REPO_ROOT"""
import json
import re
import sys

root = sys.argv[1]
docs = open(f"{root}/docs/operations.md").read()
known = set(re.findall(r"^\| `(joule_[a-z_]+)` \|", docs, re.M))
if len(known) < 20:
    sys.exit(f"docs/operations.md: only {len(known)} metrics in the table")


def names(expr):
    out = set()
    for m in re.findall(r"\bjoule_[a-z_]+", expr):
        out.add(re.sub(r"_(bucket|sum|count)$", "", m) if m not in known else m)
    return out


errors = []
dash = json.load(open(f"{root}/ops/grafana/joule-dashboard.json"))
if not dash.get("panels"):
    errors.append("dashboard: no panels")
used = set()
for p in dash["panels"]:
    targets = p.get("targets") or []
    if not targets:
        errors.append(f"panel {p.get('title')}: no targets")
    for t in targets:
        expr = t.get("expr", "")
        if not names(expr):
            errors.append(f"panel {p['title']}: {expr!r} names no joule metric")
        used |= names(expr)
alerts = open(f"{root}/ops/prometheus/alerts.yml").read()
for expr in re.findall(r"^\s*expr: (.*)$", alerts, re.M):
    used |= names(expr)
for n in sorted(used - known):
    errors.append(f"{n}: not a metric of docs/operations.md's table")
if errors:
    sys.exit("\n".join(errors))
print(f"ok: {len(dash['panels'])} panels, {len(used)} metrics, all known")
