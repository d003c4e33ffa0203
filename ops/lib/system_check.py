#!/usr/bin/env python3
"""What ops/check-system.sh asks of Consul and Prometheus.

    system_check.py targets --consul URL --prometheus URL [--expect NAME ...]
        Lists every instance Consul has with the tag `courier` and its Prometheus target; exits
        1 unless each named service (--expect) has an instance and every instance is a target
        whose last scrape was `up`.

    system_check.py wait-scraped --consul URL --prometheus URL --since EPOCH [--timeout S]
        Waits until every such instance is an `up` target scraped twice since EPOCH (seconds),
        so that rate() sees what happened before it, and every rule group has been evaluated
        after those scrapes. Exits 1 when that takes longer than --timeout (60) seconds.

Python 3 standard library only. Exit codes: 0 fine, 1 a check failed, 2 could not check.
"""

import argparse
import json
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone

TAG = "courier"
POLL = 0.5


def get(url):
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def consul_instances(consul):
    """{service id: service name} of every catalog instance tagged `courier`."""
    instances = {}
    for name, tags in get(f"{consul}/v1/catalog/services").items():
        if TAG not in (tags or []):
            continue
        query = urllib.parse.urlencode({"tag": TAG})
        for entry in get(f"{consul}/v1/catalog/service/{urllib.parse.quote(name)}?{query}"):
            instances[entry["ServiceID"]] = name
    return instances


RFC3339 = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


def epoch(stamp):
    """Seconds since the epoch of Prometheus's RFC 3339 time (nanoseconds, any offset)."""
    m = RFC3339.match(stamp or "")
    if not m:
        return 0.0
    whole, fraction, zone = m.groups()
    offset = timedelta(0)
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        offset = sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
    moment = datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone(offset))
    return moment.timestamp() + float(f"0.{fraction or 0}")


def targets(prometheus):
    """{instance label: active target} of the job that scrapes Courier (instance = service id)."""
    data = get(f"{prometheus}/api/v1/targets?state=active")["data"]
    return {t["labels"].get("instance"): t for t in data["activeTargets"]}


def rule_groups(prometheus):
    return get(f"{prometheus}/api/v1/rules")["data"]["groups"]


def check_targets(args):
    instances = consul_instances(args.consul)
    found = targets(args.prometheus)
    bad = 0
    for service_id, name in sorted(instances.items(), key=lambda i: (i[1], i[0])):
        target = found.get(service_id)
        if target is None:
            state, detail = "missing", "not a Prometheus target"
        else:
            state, detail = target["health"], target["scrapeUrl"]
            if target.get("lastError"):
                detail += f" ({target['lastError']})"
        ok = state == "up"
        bad += not ok
        print(f"{'ok' if ok else 'FAIL':4}  {name:14} {service_id:32} {state:8} {detail}")
    registered = set(instances.values())
    for name in args.expect or []:
        if name not in registered:
            print(f"FAIL  {name:14} {'-':32} {'absent':8} not registered in Consul")
            bad += 1
    up = sum(1 for i in instances if found.get(i, {}).get("health") == "up")
    print(f"{up} of {len(instances)} Consul instances are up targets")
    return 1 if bad else 0


def scraped_twice(instances, found, seen, since):
    """Records each instance's scrapes since `since`; returns the time every instance's second
    one ended, or None while some instance has fewer or is not up."""
    for service_id in instances:
        target = found.get(service_id)
        start = epoch(target.get("lastScrape")) if target else 0.0
        if start >= since:
            seen.setdefault(service_id, {})[start] = start + float(target.get("lastScrapeDuration", 0))
    ends = []
    for service_id in instances:
        scrapes = sorted(seen.get(service_id, {}).items())
        if found.get(service_id, {}).get("health") != "up" or len(scrapes) < 2:
            return None
        ends.append(scrapes[1][1])
    return max(ends) if ends else None


def wait_scraped(args):
    began = time.monotonic()
    deadline = began + args.timeout
    seen, last = {}, ""
    while True:
        try:
            instances = consul_instances(args.consul)
            found = targets(args.prometheus)
            scraped = scraped_twice(instances, found, seen, args.since) if instances else None
            if scraped is not None:
                groups = rule_groups(args.prometheus)
                late = [g["name"] for g in groups if epoch(g.get("lastEvaluation")) <= scraped]
                if not late:
                    print(f"{time.monotonic() - began:4.1f} s  every one of {len(instances)} instances "
                          f"scraped twice since the traffic, {len(groups)} rule groups evaluated after")
                    return 0
                status = f"rule groups not yet evaluated after the scrapes: {', '.join(late)}"
            else:
                waiting = [
                    f"{instances[i]} ({found[i]['health'] if i in found else 'no target'}, "
                    f"{len(seen.get(i, {}))} scrapes)"
                    for i in sorted(instances, key=instances.get)
                    if len(seen.get(i, {})) < 2 or found.get(i, {}).get("health") != "up"
                ]
                status = f"waiting for scrapes of: {', '.join(waiting) or 'any instance in Consul'}"
        except (OSError, ValueError, KeyError) as error:
            status = f"cannot ask Consul or Prometheus yet: {error}"
        if status != last:
            print(f"{time.monotonic() - began:4.1f} s  {status}", flush=True)
            last = status
        if time.monotonic() > deadline:
            print(f"gave up after {args.timeout:g} s", file=sys.stderr)
            return 1
        time.sleep(POLL)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("targets", "wait-scraped"):
        command = commands.add_parser(name)
        command.add_argument("--consul", required=True, help="http://host:port of the agent")
        command.add_argument("--prometheus", required=True, help="http://host:port")
    commands.choices["targets"].add_argument("--expect", nargs="*", metavar="NAME")
    commands.choices["wait-scraped"].add_argument("--since", type=float, required=True)
    commands.choices["wait-scraped"].add_argument("--timeout", type=float, default=60)
    args = parser.parse_args()
    args.consul, args.prometheus = args.consul.rstrip("/"), args.prometheus.rstrip("/")
    try:
        return check_targets(args) if args.command == "targets" else wait_scraped(args)
    except (OSError, ValueError, KeyError) as error:
        print(f"cannot check: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
