#!/usr/bin/env python3
"""Checks Courier's Grafana dashboards (ops/grafana/dashboards/*.json) and Prometheus rules.

    ops/check-dashboards.py [--lint]             the dashboards alone, no server needed
    ops/check-dashboards.py --prometheus URL     lint, then run every panel's queries there
    ops/check-dashboards.py --rules              promtool: config, rules and rule unit tests

--lint: every file parses; uids are unique; panel ids are unique per dashboard (panels in rows
included); every panel, target and query variable takes its data source from the `datasource`
variable; no expression names an instance or a host:port; every variable an expression uses
is defined, and one that can hold several values is only matched with =~ or !~; every
recorded series it reads (a name with a colon) is recorded in ops/prometheus/rules.

--prometheus URL: puts values in for the variables (one that offers "All" gets its allValue,
else, as Grafana does, a regex of every value its label_values query finds there; others the
first value found; $__rate_interval and $__interval become 1m, $__range 1h), runs each expression with /api/v1/query and prints one line per
panel with the series each target returned. Exits 1 if any target returns no series or an
error: run it against a Prometheus that has scraped a system with some traffic.

--rules: `promtool check config`, `check rules` and `test rules` on ops/prometheus, with the
promtool in $PROMTOOL, on PATH, or in .tools/bin.

Python 3 standard library only. Exit codes: 0 fine, 1 a check failed, 2 could not check.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DASHBOARDS = ROOT / "ops" / "grafana" / "dashboards"
PROMETHEUS = ROOT / "ops" / "prometheus"

DATASOURCE_VAR = "datasource"
DATASOURCE_REFS = {"$datasource", "${datasource}"}

# Grafana's own variables and the values --prometheus gives them.
BUILTINS = {
    "__rate_interval": "1m",
    "__interval": "1m",
    "__interval_ms": "60000",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
}

# $name, ${name}, ${name:format}, [[name]]
VARIABLE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\$(\w+)|\[\[(\w+)(?::[^\]]*)?\]\]")
STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
# A label matcher, e.g. instance="users-1" or service=~"$service".
MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\')')
HOST_PORT = re.compile(r"(?:\[[0-9A-Fa-f:]+\]|\b[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?):\d{1,5}\b")
# A metric name with a colon, not part of a longer word or a duration such as [5m:1m].
RECORDED = re.compile(r"(?<![\w:.])[A-Za-z_][A-Za-z0-9_]*:[A-Za-z0-9_:]+")
RECORD_LINE = re.compile(r"^\s*(?:-\s*)?record:\s*['\"]?([A-Za-z0-9_:]+)", re.M)


def panels(dashboard):
    """Every panel, those inside (collapsed) rows included."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def variables(dashboard):
    return dashboard.get("templating", {}).get("list", [])


def refers_to_variable(datasource):
    if isinstance(datasource, str):
        return datasource in DATASOURCE_REFS
    if isinstance(datasource, dict):
        return datasource.get("uid") in DATASOURCE_REFS and datasource.get("type", "prometheus") == "prometheus"
    return False


def variable_query(variable):
    query = variable.get("query", "")
    return query.get("query", "") if isinstance(query, dict) else str(query)


def used_variables(text):
    return [next(g for g in m.groups() if g) for m in VARIABLE.finditer(text)]


def recorded_names():
    names = set()
    for path in sorted((PROMETHEUS / "rules").glob("*.yml")):
        names.update(RECORD_LINE.findall(path.read_text()))
    return names


def load(paths):
    """(name, dashboard or None, problems) per file."""
    for path in paths:
        try:
            yield path.name, json.loads(path.read_text()), []
        except (OSError, ValueError) as error:
            yield path.name, None, [f"does not parse: {error}"]


def lint_expr(expr, defined, multi, recorded):
    problems = []
    for name in used_variables(expr):
        if name not in defined and name not in BUILTINS:
            problems.append(f"uses undefined variable ${name}")
    for label, op, value in MATCHER.findall(expr):
        if label == "instance" and "$" not in value:
            problems.append(f"names an instance: {label}{op}{value}")
        if op in ("=", "!=") and any(v in multi for v in used_variables(value)):
            problems.append(f"matches a multi-value variable with {op}: {label}{op}{value} (use =~)")
    for literal in STRING.findall(expr):
        for host in HOST_PORT.findall(literal):
            problems.append(f"names a host:port: {host}")
    bare = VARIABLE.sub(" ", STRING.sub(" ", expr))
    for name in RECORDED.findall(bare):
        if name not in recorded:
            problems.append(f"reads {name}, which no rule in ops/prometheus/rules records")
    return problems


def lint_dashboard(dashboard, recorded):
    problems = []
    vars_ = variables(dashboard)
    defined = {v.get("name") for v in vars_}
    multi = {v.get("name") for v in vars_ if v.get("multi") or v.get("includeAll")}
    ds = [v for v in vars_ if v.get("name") == DATASOURCE_VAR]
    if not ds or ds[0].get("type") != "datasource" or ds[0].get("query") != "prometheus":
        problems.append(f"needs a variable `{DATASOURCE_VAR}` of type datasource with query prometheus")
    for v in vars_:
        if v.get("type") != "query":
            continue
        if not refers_to_variable(v.get("datasource")):
            problems.append(f"variable {v.get('name')}: data source is not ${DATASOURCE_VAR}")
        for name in used_variables(variable_query(v)):
            if name not in defined and name not in BUILTINS:
                problems.append(f"variable {v.get('name')}: uses undefined variable ${name}")

    seen = {}
    for panel in panels(dashboard):
        pid, title = panel.get("id"), panel.get("title", "")
        where = f"panel {pid} {title!r}"
        if not isinstance(pid, int):
            problems.append(f"{where}: id is not a number")
        elif pid in seen:
            problems.append(f"{where}: id {pid} also used by {seen[pid]!r}")
        else:
            seen[pid] = title
        targets = panel.get("targets", [])
        if (targets or "datasource" in panel) and not refers_to_variable(panel.get("datasource")):
            problems.append(f"{where}: data source is not ${DATASOURCE_VAR}")
        refs = [t.get("refId") for t in targets]
        if len(set(refs)) != len(refs):
            problems.append(f"{where}: refIds repeat: {refs}")
        for target in targets:
            at = f"{where} {target.get('refId')}"
            if not refers_to_variable(target.get("datasource")):
                problems.append(f"{at}: data source is not ${DATASOURCE_VAR}")
            expr = target.get("expr", "")
            if not expr.strip():
                problems.append(f"{at}: no expression")
            problems += [f"{at}: {p}" for p in lint_expr(expr, defined, multi, recorded)]
    return problems


def lint(paths):
    """Prints every problem; returns how many dashboards had any."""
    recorded = recorded_names()
    uids, bad = {}, 0
    for name, dashboard, problems in load(paths):
        if dashboard is not None:
            problems = lint_dashboard(dashboard, recorded)
            uid = dashboard.get("uid")
            if not uid:
                problems.append("has no uid")
            elif uid in uids:
                problems.append(f"uid {uid!r} also used by {uids[uid]}")
            else:
                uids[uid] = name
        for problem in problems:
            print(f"{name}: {problem}")
        if problems:
            bad += 1
        else:
            print(f"{name}: ok ({sum(1 for p in panels(dashboard) if p.get('type') != 'row')} panels)")
    return bad


class Prometheus:
    def __init__(self, url):
        self.url = url.rstrip("/")

    def get(self, path, params):
        url = f"{self.url}{path}?{urllib.parse.urlencode(params, doseq=True)}"
        try:
            with urllib.request.urlopen(url, timeout=15) as response:
                body = json.load(response)
        except urllib.error.HTTPError as error:
            # Prometheus answers a bad query with 400 and a JSON error.
            try:
                body = json.load(error)
            except ValueError:
                raise RuntimeError(f"{error.code} from {url}") from error
        if body.get("status") != "success":
            raise RuntimeError(f"{body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def series(self, expr):
        """How many series (or 1 for a scalar) an instant query returns."""
        data = self.get("/api/v1/query", {"query": expr})
        if data["resultType"] in ("vector", "matrix"):
            return len(data["result"])
        return 1

    def label_values(self, query):
        """The values of Grafana's label_values(label) or label_values(selector, label)."""
        m = re.fullmatch(r"\s*label_values\(\s*(?:(.*?)\s*,\s*)?(\w+)\s*\)\s*", query, re.S)
        if not m:
            raise RuntimeError(f"cannot resolve variable query {query!r} (only label_values)")
        selector, label = m.groups()
        params = {"match[]": [selector]} if selector else {}
        return self.get(f"/api/v1/label/{label}/values", params)


def substitute(text, values):
    def value(m):
        name = next(g for g in m.groups() if g)
        return values.get(name, m.group(0))

    return VARIABLE.sub(value, text)


def resolve(dashboard, prometheus):
    """Values for the dashboard's variables: name -> value, or name -> Exception."""
    values = dict(BUILTINS)
    for v in variables(dashboard):
        name, kind = v.get("name"), v.get("type")
        try:
            if kind == "datasource":
                continue
            if kind == "query":
                if v.get("includeAll") and v.get("allValue"):
                    values[name] = v["allValue"]
                    continue
                found = prometheus.label_values(substitute(variable_query(v), values))
                if not found:
                    raise RuntimeError(f"{variable_query(v)} found no values")
                # Grafana's own "All" for Prometheus is a regex of every value.
                all_ = "(" + "|".join(re.escape(f) for f in found) + ")"
                values[name] = all_ if v.get("includeAll") else found[0]
            else:  # custom, constant, interval, textbox
                current = v.get("current", {}).get("value")
                options = [o.get("value") for o in v.get("options", [])]
                values[name] = current or (options[0] if options else str(v.get("query", "")).split(",")[0])
        except RuntimeError as error:
            values[name] = error
    return values


def check_live(paths, prometheus):
    """Prints one line per panel; returns how many panels had a target without series."""
    bad = total = 0
    for name, dashboard, problems in load(paths):
        if dashboard is None:
            continue
        values = resolve(dashboard, prometheus)
        for panel in panels(dashboard):
            targets = [t for t in panel.get("targets", []) if not t.get("hide")]
            if not targets:
                continue
            total += 1
            results, failed = [], False
            for target in targets:
                expr = target.get("expr", "")
                broken = [n for n in used_variables(expr) if isinstance(values.get(n), Exception)]
                try:
                    if broken:
                        raise values[broken[0]]
                    count = prometheus.series(substitute(expr, values))
                    results.append(f"{target.get('refId')}={count}")
                    failed |= count == 0
                except (RuntimeError, OSError) as error:
                    results.append(f"{target.get('refId')}=error ({error})")
                    failed = True
            bad += failed
            status = "FAIL" if failed else "ok"
            print(f"{status:4}  {name}  #{panel.get('id')} {panel.get('title', '')}: {' '.join(results)}")
    print(f"{total - bad} panels returned series, {bad} did not")
    return bad


def promtool():
    for candidate in (os.environ.get("PROMTOOL"), shutil.which("promtool"), ROOT / ".tools" / "bin" / "promtool"):
        if candidate and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def check_rules():
    """promtool's checks of the Prometheus configuration; returns how many failed, or None."""
    tool = promtool()
    if tool is None:
        print("no promtool: set $PROMTOOL, put it on PATH or run ops/install.sh", file=sys.stderr)
        return None
    def files(folder):
        return [str(p.relative_to(ROOT)) for p in sorted((PROMETHEUS / folder).glob("*.yml"))]

    commands = [
        ["check", "config", str((PROMETHEUS / "prometheus.yml").relative_to(ROOT))],
        ["check", "rules", *files("rules")],
        ["test", "rules", *files("tests")],
    ]
    failed = 0
    for args in commands:
        print(f"$ promtool {' '.join(args)}", flush=True)
        # Paths are relative to the repository root, so promtool prints them short.
        failed += subprocess.run([tool, *args], cwd=ROOT).returncode != 0
    return failed


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lint", action="store_true", help="lint the dashboards (the default)")
    parser.add_argument("--prometheus", metavar="URL", help="run every panel's queries against this Prometheus")
    parser.add_argument("--rules", action="store_true", help="promtool check config/rules and test rules")
    parser.add_argument("dashboards", nargs="*", type=Path, help=f"default: {DASHBOARDS.relative_to(ROOT)}/*.json")
    args = parser.parse_args()

    paths = args.dashboards or sorted(DASHBOARDS.glob("*.json"))
    failed = False
    if args.lint or args.prometheus or not args.rules:
        if not paths:
            print("no dashboards found", file=sys.stderr)
            return 2
        failed |= lint(paths) > 0
    if args.prometheus:
        prometheus = Prometheus(args.prometheus)
        try:
            prometheus.get("/api/v1/status/buildinfo", {})
            failed |= check_live(paths, prometheus) > 0
        except (OSError, RuntimeError) as error:
            print(f"cannot query {args.prometheus}: {error}", file=sys.stderr)
            return 2
    if args.rules:
        result = check_rules()
        if result is None:
            return 2
        failed |= result > 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
