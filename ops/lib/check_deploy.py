"""Checks Courier's deployment files against the workspace, without a container engine or a
cluster. Run by ops/check-deploy.sh, which installs the tools and puts PyYAML on PYTHONPATH.

- syntax: `docker-compose config` on ops/compose.yaml, `kubernetes-validate --strict` on every
  manifest of ops/k8s/ (and on the kustomize render when kubectl is there);
- consistency, for every Courier container of either: its image names a workspace binary
  (`cargo metadata`), every port given is the port its listener binds (on all interfaces),
  every probe path is a route the binary serves (read from the Rust source), the binary takes
  exactly the container's environment (`courier-<bin> --check-config`), every COURIER_<SECTION>__
  variable names a section the binary reads (the loader leaves other sections to other
  processes, so a misspelled section would be ignored quietly), and the stop grace outlasts the
  binary's own way out;
- the Dockerfile, .dockerignore, kustomization, Prometheus and Grafana files they refer to;
- a self-test: deliberate mistakes, each of which must fail.

One line per check; exit status 1 when any fails.
"""

import base64
import copy
import fnmatch
import json
import mmap
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S_VERSION = "1.32.0"  # a version kubernetes-validate ships strict schemas for
CHECK_TIMEOUT = 10  # seconds; --check-config connects to nothing and answers in milliseconds
POD_IP = "10.0.0.10"  # what a fieldRef to status.podIP stands for in the checks


class Report:
    """Prints one line per check and counts; `quiet` collects failures instead (self-test)."""

    def __init__(self, quiet=False):
        self.quiet, self.passed, self.failed, self.skipped, self.failures = quiet, 0, 0, 0, []

    def ok(self, what, detail=""):
        self.passed += 1
        self._say("ok  ", what, detail)

    def fail(self, what, why):
        self.failed += 1
        self.failures.append(f"{what}: {why}")
        self._say("FAIL", what, why)

    def skip(self, what, why):
        self.skipped += 1
        self._say("skip", what, why)

    def check(self, cond, what, detail, why):
        if cond:
            self.ok(what, detail)
        else:
            self.fail(what, why)

    def _say(self, tag, what, detail):
        if not self.quiet:
            print(f"{tag}  {what}" + (f": {detail}" if detail else ""), flush=True)


@dataclass
class Container:
    """A Courier container as a manifest gives it."""

    origin: str  # "compose users", "k8s services.yaml/users"
    binary: str  # courier-users
    env: dict
    ports: list = field(default_factory=list)  # container-side ports it is given
    probes: list = field(default_factory=list)  # (path, port)
    grace: int = 30  # seconds before SIGKILL
    grace_name: str = ""


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def one_line(text):
    return " ".join(text.split())


# ------------------------------------------------------------------ the workspace


class Workspace:
    """Binaries, routes and shutdown times, read from `cargo metadata` and the Rust source."""

    def __init__(self):
        out = run(["cargo", "metadata", "--no-deps", "--format-version", "1"], cwd=ROOT)
        if out.returncode:
            sys.exit(f"check-deploy: cargo metadata failed: {one_line(out.stderr)}")
        meta = json.loads(out.stdout)
        self.target = Path(meta["target_directory"])
        self.members = [Path(p["manifest_path"]).parent.relative_to(ROOT) for p in meta["packages"]]
        self.bins = {t["name"] for p in meta["packages"] for t in p["targets"] if "bin" in t["kind"]}
        self.routes = {
            "service": self._routes("services/runtime/src/admin.rs"),
            "gateway": self._routes("gateway/src/http.rs"),
        }
        cfg = self._source("config/src/settings.rs")
        self.drain = self._secs(cfg, r"drain_grace: Duration::from_secs\((\d+)\)", "config/src/settings.rs")
        self.leave = self._secs(cfg, r"leave_delay: Duration::from_secs\((\d+)\)", "config/src/settings.rs")
        rt = self._source("services/runtime/src/lib.rs")
        self.margin = self._secs(rt, r"SHUTDOWN_MARGIN: Duration = Duration::from_secs\((\d+)\)", "runtime")
        gw = self._source("gateway/src/lib.rs") + self._source("gateway/src/http.rs")
        self.gateway_leave = self._secs(gw, r"LEAVE_TIMEOUT: Duration = Duration::from_secs\((\d+)\)", "gateway")
        self.gateway_stop = self._secs(gw, r"\.shutdown_timeout\((\d+)\)", "gateway/src/http.rs")
        self._built = {}

    @staticmethod
    def _source(rel):
        return (ROOT / rel).read_text()

    @staticmethod
    def _secs(text, pattern, where):
        m = re.search(pattern, text)
        if not m:
            sys.exit(f"check-deploy: /{pattern}/ not found in {where}: update ops/lib/check_deploy.py")
        return int(m.group(1))

    def _routes(self, rel):
        found = set(re.findall(r'\.route\(\s*"([^"]+)"', self._source(rel)))
        if not found:
            sys.exit(f"check-deploy: no .route(\"...\") in {rel}: update ops/lib/check_deploy.py")
        return found

    def served(self, binary):
        kind = "gateway" if binary == "courier-gateway" else "service"
        where = "gateway/src/http.rs" if kind == "gateway" else "services/runtime/src/admin.rs"
        return self.routes[kind], where

    def bind_key(self, binary):
        return "COURIER_GATEWAY__BIND" if binary == "courier-gateway" else "COURIER_ADMIN__BIND"

    def way_out(self, binary, env):
        """Seconds the binary may take from SIGTERM to exit, and how that adds up."""
        if binary == "courier-gateway":
            leave, stop = self.gateway_leave, self.gateway_stop
            return leave + stop, f"leave {leave}s + HTTP stop {stop}s"
        drain = parse_duration(env.get("COURIER_SERVICE__DRAIN_GRACE"), self.drain)
        leave = parse_duration(env.get("COURIER_CONSUL__LEAVE_DELAY"), self.leave)
        return drain + leave + self.margin, f"drain {drain}s + leave {leave}s + margin {self.margin}s"

    def executable(self, binary):
        """The newest built `binary` under the target folder, or why there is none to run."""
        if binary not in self._built:
            found = [self.target / p / binary for p in ("debug", "release")]
            found = sorted((p for p in found if p.is_file()), key=lambda p: p.stat().st_mtime)
            if not found:
                self._built[binary] = (None, f"not built ({self.target}/{{debug,release}}/{binary}): "
                                             "build the binaries first (cargo build --bins)")
            elif not mentions(found[-1], b"--check-config"):
                # Never run one that would start for real instead of checking.
                self._built[binary] = (None, f"{found[-1]} predates --check-config: rebuild it")
            else:
                self._built[binary] = (found[-1], "")
        return self._built[binary]


def mentions(path, needle):
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        return data.find(needle) >= 0


def parse_duration(text, default):
    """Seconds of a humantime value such as `10s`, `1m30s`, `500ms` (rounded up)."""
    if not text:
        return default
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+)\s*(ms|s|m|h)", text)
    return int(-(-sum(int(n) * units[u] for n, u in parts) // 1)) if parts else default


# ------------------------------------------------------------------ the checks of one container


def check_container(c, ws, report):
    """Binary, ports, probe paths, environment and stop grace of one Courier container."""
    report.check(c.binary in ws.bins, f"{c.origin}: binary", f"{c.binary} is a workspace binary",
                 f"{c.binary} is not one of {sorted(ws.bins)}")
    check_ports(c, ws, report)
    served, where = ws.served(c.binary)
    paths = sorted({p for p, _ in c.probes})
    missing = [p for p in paths if p.split("?")[0] not in served]
    if not paths:
        report.fail(f"{c.origin}: probes", "no health check or probe on /health or /health/ready")
    else:
        report.check(not missing, f"{c.origin}: probe paths", f"{', '.join(paths)} served ({where})",
                     f"{', '.join(missing)} not served by {c.binary} (it serves {sorted(served)}, {where})")
    check_env(c, ws, report)
    need, parts = ws.way_out(c.binary, c.env)
    report.check(c.grace > need, f"{c.origin}: {c.grace_name}", f"{c.grace}s > {need}s ({parts})",
                 f"{c.grace}s is not more than the {need}s {c.binary} may take to stop ({parts})")


def check_ports(c, ws, report):
    """Every port given (published, declared, probed) is the one the listener binds, on all
    interfaces."""
    key = ws.bind_key(c.binary)
    bind = c.env.get(key)
    m = re.fullmatch(r"\[?([0-9a-fA-F.:]+)\]?:(\d+)", bind or "")
    if not m:
        report.fail(f"{c.origin}: ports", f"{key} is {bind!r}: set it to 0.0.0.0:<port> (the default "
                                          "listens on 127.0.0.1, unreachable from outside)")
        return
    host, port = m.group(1), int(m.group(2))
    given = sorted(set(c.ports) | {p for _, p in c.probes})
    wrong = [p for p in given if p != port]
    if host not in ("0.0.0.0", "::"):
        report.fail(f"{c.origin}: ports", f"{key}={bind} listens on {host} only, not on all interfaces")
    elif wrong or not given:
        report.fail(f"{c.origin}: ports", f"ports {given} given, but {key}={bind}")
    else:
        report.ok(f"{c.origin}: ports", f"{given} = {key} {bind}")


def check_env(c, ws, report):
    """The binary takes the container's environment as it is, and reads every section set."""
    exe, why = ws.executable(c.binary)
    what = f"{c.origin}: --check-config"
    if exe is None:
        report.fail(what, why)
        return
    with tempfile.TemporaryDirectory() as cwd:
        code, said = run_check(exe, c.env, cwd)
        keys = sorted(k for k in c.env if k.startswith("COURIER_"))
        report.check(code == 0, what, f"{len(keys)} COURIER_* variables: {said}", said)
        if code != 0:
            return
        unread = []
        for section in sorted({k.split("__")[0] for k in keys if "__" in k}):
            # A known section refuses an unknown key; an unknown one is left to other processes.
            probe = dict(c.env, **{f"{section}__ZZ_CHECK_DEPLOY_PROBE": "1"})
            if run_check(exe, probe, cwd)[0] == 0:
                unread += [k for k in keys if k.startswith(section + "__")]
        sections = sorted({k.split("__")[0][len("COURIER_"):].lower() for k in keys if "__" in k})
        report.check(not unread, f"{c.origin}: sections", f"{', '.join(sections)} are {c.binary}'s",
                     f"{', '.join(unread)}: not a section {c.binary} reads, so it would be ignored")


def run_check(exe, env, cwd):
    try:
        out = run([str(exe), "--check-config"], env=env, cwd=cwd, timeout=CHECK_TIMEOUT)
    except subprocess.TimeoutExpired:
        return -1, f"did not answer within {CHECK_TIMEOUT}s (killed)"
    return out.returncode, one_line(out.stdout + out.stderr)[:300] or f"exit {out.returncode}"


URL_KEYS = ("COURIER_NATS__URL", "COURIER_CONSUL__ADDR", "COURIER_DATABASE__URL")


def check_hosts(c, hosts, kind, report, keys=URL_KEYS):
    """The URLs a container is given name hosts of the deployment, on ports they serve.
    `hosts`: name -> its ports, or None for any."""
    bad, seen = [], []
    for key in keys:
        for url in filter(None, c.env.get(key, "").split(",")):
            host, port = re.match(r"(?:\w+://)?(?:[^@/]*@)?([^:/?]+)(?::(\d+))?", url.strip()).groups()
            seen.append(f"{host}:{port}" if port else host)
            if host not in hosts or (port and hosts[host] and int(port) not in hosts[host]):
                bad.append(f"{key} -> {host}:{port or '?'}")
    report.check(not bad, f"{c.origin}: hosts", f"{', '.join(seen)} are {kind}",
                 f"{', '.join(bad)}: not one of the {kind} (or not on that port)")


# ------------------------------------------------------------------ compose


def compose_config(path, report):
    """Validates and renders a compose file as it runs with no variables set (its defaults):
    the rendered configuration, or None."""
    with tempfile.NamedTemporaryFile("w", suffix=".env") as empty:  # not ops/.env either
        env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/")}
        out = run(["docker-compose", "--env-file", empty.name, "-f", str(path), "config"], env=env)
    report.check(out.returncode == 0, "compose: docker-compose config", f"{path.name} is valid (compose 1.x)",
                 one_line(out.stderr)[:400])
    return yaml.safe_load(out.stdout) if out.returncode == 0 else None


def image_name(image):
    return (image or "").split("/")[-1].split(":")[0]


def compose_containers(cfg, report):
    found = []
    for name, svc in cfg["services"].items():
        bin_arg = ((svc.get("build") or {}).get("args") or {}).get("BIN")
        image = image_name(svc.get("image"))
        if not bin_arg and not image.startswith("courier-"):
            continue
        c = Container(f"compose {name}", f"courier-{bin_arg}" if bin_arg else image,
                      {k: str(v) for k, v in (svc.get("environment") or {}).items() if v is not None})
        if bin_arg:
            report.check(image == c.binary, f"{c.origin}: image", f"{svc.get('image')} built with BIN={bin_arg}",
                         f"image {svc.get('image')} but BIN={bin_arg} (runs {c.binary})")
        for p in svc.get("ports") or []:
            c.ports.append(int(p["target"]) if isinstance(p, dict) else int(str(p).split("/")[0].split(":")[-1]))
        test = (svc.get("healthcheck") or {}).get("test") or []
        test = " ".join(test) if isinstance(test, list) else test
        for port, path in re.findall(r"https?://[^/\s:'\"]+(?::(\d+))?(/[^\s'\"]*)", test):
            c.probes.append((path, int(port or 80)))
        c.grace, c.grace_name = parse_duration(svc.get("stop_grace_period"), 10), "stop_grace_period"
        found.append(c)
    return found


def check_mounts(cfg, report):
    for name, svc in cfg["services"].items():
        sources = [v.split(":")[0] for v in svc.get("volumes") or [] if isinstance(v, str) and v.startswith("/")]
        if not sources:
            continue
        missing = [os.path.relpath(s, ROOT) for s in sources if not os.path.exists(s)]
        shown = ", ".join(os.path.relpath(s, ROOT) for s in sources)
        report.check(not missing, f"compose {name}: mounts", f"{shown} exist",
                     f"{', '.join(missing)} missing (Docker would mount an empty folder)")


def check_prometheus(cfg, report):
    """prometheus.yml, with the address compose rewrites, passes promtool."""
    what = "compose prometheus: rewritten prometheus.yml"
    conf = ROOT / "ops/prometheus/prometheus.yml"
    command = " ".join(cfg["services"].get("prometheus", {}).get("command") or [])
    sed = re.search(r"sed -i -E '([^']+)'", command)
    if not conf.exists() or not sed:
        report.skip(what, "no ops/prometheus/prometheus.yml" if sed else "no sed rewrite in the command")
        return
    text = conf.read_text()
    out = run(["sed", "-E", sed.group(1)], input=text)
    if "consul_sd_configs" in text and ("consul:8500" not in out.stdout or out.stdout == text):
        report.fail(what, f"the rewrite `{sed.group(1)}` leaves no consul:8500 in consul_sd_configs")
        return
    if not shutil.which("promtool"):
        report.skip(what, "promtool not installed (ops/install.sh brings it)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        copy_dir = Path(tmp) / "prometheus"
        shutil.copytree(conf.parent, copy_dir)
        (copy_dir / "prometheus.yml").write_text(out.stdout)
        check = run(["promtool", "check", "config", str(copy_dir / "prometheus.yml")])
    report.check(check.returncode == 0, what, "consul:8500, promtool check config passes",
                 one_line(check.stdout + check.stderr)[:400])


def check_grafana(cfg, report):
    """Dashboard providers read the folder compose mounts; data sources name reachable hosts."""
    svc = cfg["services"].get("grafana") or {}
    targets = [v.split(":")[1] for v in svc.get("volumes") or [] if isinstance(v, str) and "dashboards" in v]
    env = svc.get("environment") or {}
    prov = ROOT / "ops/grafana/provisioning"
    files = sorted(prov.glob("dashboards/*.y*ml")) + sorted(prov.glob("datasources/*.y*ml"))
    if not files:
        report.skip("compose grafana: provisioning", "no ops/grafana/provisioning/{dashboards,datasources}/*.yaml")
    for f in files:
        doc = yaml.safe_load(f.read_text()) or {}
        bad = []
        for p in doc.get("providers") or []:
            path = (p.get("options") or {}).get("path", "")
            if not any(path == t or path.startswith(t + "/") for t in targets):
                bad.append(f"provider path {path} is not the mounted {targets}")
        for d in doc.get("datasources") or []:
            url = d.get("url", "")
            var = re.search(r"\$\{?(\w+)", url)
            host = re.match(r"\w+://([^:/]+)", url)
            if var and var.group(1) not in env:
                bad.append(f"{url}: {var.group(1)} is not set in the grafana container")
            elif not var and host and host.group(1) not in cfg["services"]:
                bad.append(f"{url}: {host.group(1)} is not a compose service")
        report.check(not bad, f"compose grafana: {f.relative_to(ROOT)}", "matches the compose mounts", "; ".join(bad))


# ------------------------------------------------------------------ kubernetes


def kubernetes_validate(path, report, label):
    out = run(["kubernetes-validate", "--strict", "--quiet", "-k", K8S_VERSION, str(path)])
    report.check(out.returncode == 0, label, f"kubernetes-validate --strict -k {K8S_VERSION}",
                 one_line(out.stdout + out.stderr)[:400] or f"exit {out.returncode}")
    return out.returncode == 0


def k8s_docs(kdir, report):
    """Validates every manifest of `kdir` and its kustomization; returns (file, document) pairs."""
    files = sorted(p for p in kdir.glob("*.yaml") if p.name != "kustomization.yaml")
    for f in files:
        kubernetes_validate(f, report, f"k8s {f.name}")
    kust = yaml.safe_load((kdir / "kustomization.yaml").read_text())
    listed = set(kust.get("resources") or [])
    names = {f.name for f in files}
    report.check(listed == names, "k8s kustomization.yaml: resources", f"every manifest listed ({len(names)})",
                 f"unlisted {sorted(names - listed)}, listed but missing {sorted(listed - names)}")
    kubectl = shutil.which("kubectl")
    if not kubectl:
        report.skip("k8s kustomize render", "kubectl not installed")
    else:
        out = run([kubectl, "kustomize", "--load-restrictor", "LoadRestrictionsNone", str(kdir)])
        if out.returncode:
            report.fail("k8s kustomize render", one_line(out.stderr)[:400])
        else:
            with tempfile.NamedTemporaryFile("w", suffix=".yaml") as rendered:
                rendered.write(out.stdout)
                rendered.flush()
                kubernetes_validate(rendered.name, report, "k8s kustomize render")
    docs = [(f.name, d) for f in files for d in yaml.safe_load_all(f.read_text()) if d]
    return docs, kust


def by_kind(docs, kind):
    return {d["metadata"]["name"]: (f, d) for f, d in docs if d.get("kind") == kind}


def secret_values(doc):
    values = dict(doc.get("stringData") or {})
    values.update({k: base64.b64decode(v).decode() for k, v in (doc.get("data") or {}).items()})
    return values


def pod_env(ctr, pod_name, maps, secrets, problems):
    """The environment Kubernetes gives `ctr` (placeholders from the Secret, a made-up pod IP)."""
    env = {}
    for src in ctr.get("envFrom") or []:
        for key, table in (("configMapRef", maps), ("secretRef", secrets)):
            if key in src:
                name = src[key]["name"]
                if name not in table:
                    problems.append(f"envFrom {key} {name}: no such object")
                env.update(table.get(name, {}))
    fields = {"status.podIP": POD_IP, "metadata.name": pod_name, "metadata.namespace": "courier"}
    for e in ctr.get("env") or []:
        if "value" in e:
            env[e["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), str(e["value"]))
            continue
        ref = e.get("valueFrom") or {}
        for key, table in (("configMapKeyRef", maps), ("secretKeyRef", secrets)):
            if key in ref:
                name, item = ref[key]["name"], ref[key]["key"]
                if item not in table.get(name, {}):
                    problems.append(f"{e['name']}: {key} {name}/{item} does not exist")
                env[e["name"]] = table.get(name, {}).get(item, "")
        if "fieldRef" in ref:
            env[e["name"]] = fields.get(ref["fieldRef"]["fieldPath"], "x")
    return env


def k8s_workloads(docs):
    for kind in ("Deployment", "StatefulSet"):
        for name, (f, d) in by_kind(docs, kind).items():
            yield f, name, d["spec"]["template"]


def k8s_containers(docs, report):
    maps = {n: d.get("data") or {} for n, (_, d) in by_kind(docs, "ConfigMap").items()}
    secrets = {n: secret_values(d) for n, (_, d) in by_kind(docs, "Secret").items()}
    found = []
    for f, name, template in k8s_workloads(docs):
        spec = template["spec"]
        for ctr in spec["containers"]:
            image = image_name(ctr.get("image"))
            if not image.startswith("courier-"):
                continue
            problems = []
            c = Container(f"k8s {f}/{name}", image, pod_env(ctr, name, maps, secrets, problems))
            named = {p.get("name"): p["containerPort"] for p in ctr.get("ports") or []}
            c.ports = list(named.values())
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                get = (ctr.get(probe) or {}).get("httpGet")
                if get:
                    port = named.get(get["port"], get["port"])
                    if not isinstance(port, int):
                        problems.append(f"{probe} port {port!r} is no container port")
                        continue
                    c.probes.append((get["path"], port))
            c.grace, c.grace_name = spec.get("terminationGracePeriodSeconds", 30), "terminationGracePeriodSeconds"
            report.check(not problems, f"{c.origin}: references", "env, ports and probes resolve", "; ".join(problems))
            found.append(c)
    return found


def k8s_hosts(docs):
    return {name: {p["port"] for p in d["spec"]["ports"]} for name, (_, d) in by_kind(docs, "Service").items()}


def check_k8s_services(docs, report):
    """Each Service selects pods of a workload and targets ports they declare."""
    workloads = list(k8s_workloads(docs))
    for name, (f, svc) in by_kind(docs, "Service").items():
        selector = svc["spec"].get("selector") or {}
        pods = [t for _, _, t in workloads
                if selector and selector.items() <= (t["metadata"].get("labels") or {}).items()]
        ports = {p.get("name") for t in pods for c in t["spec"]["containers"] for p in c.get("ports") or []}
        ports |= {p["containerPort"] for t in pods for c in t["spec"]["containers"] for p in c.get("ports") or []}
        wanted = [p.get("targetPort", p["port"]) for p in svc["spec"]["ports"]]
        missing = [t for t in wanted if t not in ports]
        report.check(pods and not missing, f"k8s {f}/{name}: Service", f"selects a workload, targets {wanted}",
                     f"selects no workload ({selector})" if not pods else f"targetPort {missing} not declared")


def check_k8s_images(kust, containers, ws, report):
    used = {c.binary for c in containers}
    names = [i["name"] for i in kust.get("images") or []]
    bad = [n for n in names if n not in used or n not in ws.bins]
    report.check(not bad, "k8s kustomization.yaml: images", f"{len(names)} images, each a binary a manifest runs",
                 f"{bad}: not a workspace binary or not used by a manifest")


# ------------------------------------------------------------------ Dockerfile, .dockerignore


def check_docker(ws, containers, report):
    text = (ROOT / "Dockerfile").read_text()
    default = re.search(r"^ARG BIN=(\S+)", text, re.M)
    binary = f"courier-{default.group(1)}" if default else "(no ARG BIN=...)"
    report.check(binary in ws.bins, "Dockerfile: ARG BIN", f"default {binary} is a workspace binary",
                 f"default {binary} is not one of {sorted(ws.bins)}")
    exposed = {int(p) for line in re.findall(r"^EXPOSE (.+)$", text, re.M) for p in re.findall(r"\d+", line)}
    needed = set()
    for c in containers:
        bind = c.env.get(ws.bind_key(c.binary)) or ""
        if bind.rsplit(":", 1)[-1].isdigit():
            needed.add(int(bind.rsplit(":", 1)[-1]))
    report.check(needed <= exposed, "Dockerfile: EXPOSE", f"{sorted(exposed)} covers the binds {sorted(needed)}",
                 f"binds {sorted(needed - exposed)} are not exposed ({sorted(exposed)})")
    patterns = [p.strip().rstrip("/") for p in (ROOT / ".dockerignore").read_text().splitlines()
                if p.strip() and not p.startswith(("#", "!"))]
    needed_paths = [str(m) for m in ws.members] + ["Cargo.toml", "Cargo.lock"]
    hidden = [m for m in needed_paths for p in patterns
              if fnmatch.fnmatch(m, p) or m.startswith(p + "/")]
    report.check(not hidden, ".dockerignore", "keeps Cargo.toml, Cargo.lock and every workspace member",
                 f"excludes {sorted(set(hidden))}, which the build needs")


# ------------------------------------------------------------------ self-test


def with_env(c, **env):
    return changed(c, env=dict(c.env, **env))


def changed(c, **fields):
    c = copy.deepcopy(c)
    for k, v in fields.items():
        setattr(c, k, v)
    return c


def self_test(ws, containers, report):
    """Deliberate mistakes on a copy of the users container and of the files: each must fail."""
    users = next((c for c in containers if c.binary == "courier-users"), None)
    if users is None:
        report.fail("self-test", "no courier-users container in ops/compose.yaml to mutate")
        return
    cases = [
        ("a misspelled key", with_env(users, COURIER_DATABASE__MAX_CONECTIONS="5"), "database.max_conections"),
        ("a misspelled section", with_env(users, COURIER_DATABSE__MAX_CONNECTIONS="5"),
         "COURIER_DATABSE__MAX_CONNECTIONS: not a section"),
        ("a bad value", with_env(users, COURIER_SERVICE__MAX_IN_FLIGHT="none"), "service.max_in_flight"),
        ("a probe path not served", changed(users, probes=[("/healthz", 9100)]), "/healthz not served"),
        ("a port not bound", changed(users, ports=[9200]), "ports [9100, 9200] given"),
        ("a loopback bind", with_env(users, COURIER_ADMIN__BIND="127.0.0.1:9100"), "listens on 127.0.0.1 only"),
        ("an image of no binary", changed(users, binary="courier-user"), "courier-user is not one of"),
        ("a short stop grace", changed(users, grace=15), "15s is not more than"),
    ]
    base = Report(quiet=True)
    check_container(users, ws, base)
    for label, mutant, expect in cases if not base.failed else []:
        quiet = Report(quiet=True)
        check_container(mutant, ws, quiet)
        caught(report, label, quiet, expect)
    if base.failed:
        report.skip("self-test: containers", f"{users.origin} fails as it is (above); nothing to mutate")
    with tempfile.TemporaryDirectory() as tmp:
        bad = Path(tmp) / "compose.yaml"
        bad.write_text((ROOT / "ops/compose.yaml").read_text().replace("stop_grace_period:", "stop_grace_perod:", 1))
        quiet = Report(quiet=True)
        compose_config(bad, quiet)
        caught(report, "a misspelled compose option", quiet, "stop_grace_perod")
        bad = Path(tmp) / "gateway.yaml"
        bad.write_text((ROOT / "ops/k8s/gateway.yaml").read_text()
                       .replace("terminationGracePeriodSeconds", "terminationGracePeriodSecond", 1))
        quiet = Report(quiet=True)
        kubernetes_validate(bad, quiet, "gateway.yaml")
        caught(report, "a misspelled manifest field", quiet, "terminationGracePeriodSecond")


def caught(report, label, quiet, expect):
    hit = next((f for f in quiet.failures if expect in f), None)
    report.check(hit, f"self-test: {label}", f"caught ({(hit or '')[:150]})",
                 f"NOT caught (expected a failure with {expect!r}; got {quiet.failures})")


# ------------------------------------------------------------------ main


def main():
    report = Report()
    ws = Workspace()
    report.ok("workspace", f"binaries {', '.join(sorted(ws.bins))} (cargo metadata); "
                           f"target {ws.target}")
    containers = []

    cfg = compose_config(ROOT / "ops/compose.yaml", report)
    if cfg:
        hosts = {name: None for name in cfg["services"]}
        for c in compose_containers(cfg, report):
            check_container(c, ws, report)
            check_hosts(c, hosts, "compose services", report)
            containers.append(c)
        check_mounts(cfg, report)
        check_prometheus(cfg, report)
        check_grafana(cfg, report)

    docs, kust = k8s_docs(ROOT / "ops/k8s", report)
    hosts = k8s_hosts(docs)
    k8s = k8s_containers(docs, report)
    for c in k8s:
        check_container(c, ws, report)
        # The databases are the operator's own, outside the manifests.
        check_hosts(c, hosts, "Services", report, keys=URL_KEYS[:2])
    check_k8s_services(docs, report)
    check_k8s_images(kust, k8s, ws, report)

    check_docker(ws, containers + k8s, report)
    self_test(ws, containers, report)
    print(f"check-deploy: {report.passed} passed, {report.failed} failed, {report.skipped} skipped")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
