#!/usr/bin/env python3
"""Side-by-side benchmark: flamenco-build against BuildKit on the same Flamenco-shaped fixture.

Makes the fixture with ../shared/bench/make_fixture.py (the real Flamenco OpenAPI spec), puts
bench/flamenco-build.toml and ../shared/bench/Dockerfile.buildkit in it, commits it, then measures, in
the same run, with N runs per scenario and both tools alternating:

  no-change   both warm, nothing changed
  go-worker   a comment line appended to a Go file under internal/worker/
  css         a comment line appended to a CSS file under web/app/src/styles/
  cold        BuildKit --no-cache; flamenco-build after `clean-cache` (toolchain caches warm)
  remote      flamenco-build only: a fresh clone of the fixture (empty local cache) restoring every task
              from a warm remote cache, BuildGrid (gRPC) and nginx (HTTP) on loopback, against the same
              clone's cold build and its local-cache restore; runs after the others
  remote-exec flamenco-build only: `--executor remote` through BuildGrid (scheduler in PostgreSQL) and
              `flamenco-build worker`s on this machine's engine: a trivial task's overhead against the
              local Docker executor (a fresh key each run), and examples/flamenco-mini's cold build
              through one and two workers against a local cold build; no speed-up is expected on one
              machine: it reports the figures, the ratios and where the time goes

and prints the medians, the ratios flamenco-build / BuildKit against their targets, the containers
flamenco-build created, the RUN steps BuildKit executed, flamenco-build's peak RSS, a comparison of the
artifacts of both tools, and the per-task container overhead (a one-task `touch x` graph); for `remote`
per server the remote-restore, local-restore and cold medians, remote / cold (goal <= 0.1), remote - local,
the bytes and calls of the remote tier, and where the time goes (from a `--trace` of one remote restore).

Usage: scripts/bench.py [--runs N] [--scale S] [--mode MODE] [--keep] [--json FILE] [--bin PATH]
                        [--micro-runs N] [--dockerfile-as-is] [--scenario NAME ...] [--exec-cold-runs N]
Needs: the toolchain images (scripts/toolchain-images.sh), a Docker engine; installs the buildx plugin
(scripts/install-buildx.sh) if missing, and for `remote` the test servers (scripts/test-servers.sh: Debian's
nginx-extras, BuildGrid in target/test-servers/venv). Never run it next to another build: it measures wall
time.
"""
import argparse
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED_BENCH = REPO / ".." / "shared" / "bench"
SPEC = REPO / ".." / "shared" / "fixtures" / "flamenco-openapi.yaml"
GRAPH = REPO / "bench" / "flamenco-build.toml"
VOLUME = "flamenco-build-bench"
IMAGES = {
    "GO_IMAGE": "flamenco-build/go:1.23",
    "NODE_IMAGE": "flamenco-build/node:22",
    "JAVA_IMAGE": "flamenco-build/java:11",
}
BENCH_LABEL = "dev.flamenco-build.bench"

# scenario -> (ratio target, absolute flamenco-build limit in seconds or None)
TARGETS = {
    "no-change": (0.1, 0.020),
    "go-worker": (0.5, None),
    "css": (0.6, None),
    "cold": (0.8, None),
    # remote restore / flamenco-build's cold build (not BuildKit: the remote scenario runs only flamenco-build)
    "remote": (0.1, None),
    # no target: figures only (one machine's engine runs local and remote tasks alike)
    "remote-exec": (None, None),
}
TITLES = {
    "no-change": "no change (warm)",
    "go-worker": "one worker Go file",
    "css": "one webapp CSS file",
    "cold": "cold (toolchain caches warm)",
    "remote": "remote restore",
    "remote-exec": "remote execution",
}
# The scenarios that compare with BuildKit; `remote` is flamenco-build against itself.
BUILDKIT_SCENARIOS = ("no-change", "go-worker", "css", "cold")
SERVERS_DIR = REPO / "tests" / "e2e" / "servers"
VENV = REPO / "target" / "test-servers" / "venv"


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


class Failure(Exception):
    pass


class Run:
    """One timed child process: wall time, exit code, output, and its own peak RSS (wait4)."""

    def __init__(self, cmd, cwd=None, env=None):
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            t0 = time.perf_counter()
            p = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
            _, status, usage = os.wait4(p.pid, 0)
            self.wall = time.perf_counter() - t0
            p.returncode = self.rc = os.waitstatus_to_exitcode(status)
            self.maxrss_kb = usage.ru_maxrss  # KiB on Linux
            out.seek(0)
            err.seek(0)
            self.out = out.read().decode(errors="replace")
            self.err = err.read().decode(errors="replace")
        self.cmd = cmd

    def check(self, what):
        if self.rc != 0:
            tail = "\n".join((self.out + self.err).splitlines()[-40:])
            raise Failure(f"{what} failed (exit {self.rc}): {' '.join(map(str, self.cmd))}\n{tail}")
        return self


def sh(cmd, cwd=None, check=True):
    r = subprocess.run(cmd, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise Failure(f"{' '.join(map(str, cmd))} failed (exit {r.returncode}):\n{r.stdout}{r.stderr}")
    return r


def tree_digest(root):
    """sha256 over the sorted relative paths and contents of every file below root."""
    root = Path(root)
    if not root.is_dir():
        return None, 0
    h = hashlib.sha256()
    n = 0
    for p in sorted(x for x in root.rglob("*") if x.is_file()):
        h.update(str(p.relative_to(root)).encode() + b"\0")
        h.update(hashlib.sha256(p.read_bytes()).digest())
        n += 1
    return h.hexdigest(), n


def file_digest(path):
    path = Path(path)
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def fmt_s(s):
    if s is None:
        return "-"
    return f"{s * 1000:.1f} ms" if s < 1 else f"{s:.2f} s"


def median(xs):
    return statistics.median(xs) if xs else None


def loadavg():
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


# ---- cache servers for the remote scenario (as tests/e2e/servers/*.rs start them) -----------------
def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path, lines=30):
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class Server:
    """A cache server on loopback: its own process group and temp folder, both gone after `with`."""

    name = key = None
    start_limit = 60.0  # seconds; BuildGrid takes ~10 s when idle, much longer on a loaded machine

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix=f"flamenco-bench-{self.key}."))
        self.port = free_port()
        self.proc = None
        self.log_path = self.dir / "server.log"
        self.startup = None

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self):
        cmd = self.command()
        t0 = time.perf_counter()
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(cmd, cwd=self.dir, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True,
                                         env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env()},
                                         **self.popen_user())
        while not self.ready():
            if self.proc.poll() is not None:
                raise Failure(f"{self.name} exited while starting (exit {self.proc.returncode}):\n{self.tails()}")
            if time.perf_counter() - t0 > self.start_limit:
                raise Failure(f"{self.name} not ready after {self.start_limit:.0f} s:\n{self.tails()}")
            time.sleep(0.1)
        self.startup = time.perf_counter() - t0

    def stop(self):
        """SIGTERM to its group, SIGKILL to what is left after 5 s; then its folder goes."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
            except ProcessLookupError:
                pass
            try:  # workers of the group that outlived their leader
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def tails(self):
        return f"--- {self.log_path.name}\n{tail(self.log_path)}"

    def env(self):
        """Variables the server gets beyond ours."""
        return {}

    def popen_user(self):
        """Popen's user/group when the server must not run as root."""
        return {}

    def accepts(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def mark(self):
        """Where the server's own request log is now (see `since`)."""
        return None

    def since(self, mark):
        """What the server logged since `mark`: {"calls", "bytes_down"}, or None if it logs nothing."""
        return None


class BuildGridServer(Server):
    """BuildGrid 0.4.4 (venv of scripts/test-servers.sh), CAS + ByteStream + action cache in memory."""

    name, key = "BuildGrid", "buildgrid"

    def command(self):
        text = (SERVERS_DIR / "buildgrid-cache.yml").read_text().replace("@PORT@", str(self.port))
        conf = self.dir / "buildgrid.yml"
        conf.write_text(text)
        return [str(VENV / "bin" / "bgd"), "server", "start", str(conf)]

    def ready(self):
        return self.accepts()

    def url(self):
        return f"grpc://127.0.0.1:{self.port}"


class NginxServer(Server):
    """nginx WebDAV (Debian's nginx-extras): Bazel's HTTP cache protocol under /cache/."""

    name, key = "nginx", "nginx"
    start_limit = 20.0
    REQUEST = re.compile(r'"([A-Z]+) \S+ [^"]*" (\d{3}) (\d+|-)')

    def command(self):
        # The worker runs as nobody when we are root: it must get through the folder and write
        # its data and temp folders, else every PUT is a 500.
        os.chmod(self.dir, 0o755)
        for sub in ("logs", "tmp", "data/cache"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            import pwd
            nobody = pwd.getpwnam("nobody")
            for sub in ("tmp", "data", "data/cache"):
                os.chown(self.dir / sub, nobody.pw_uid, nobody.pw_gid)
        text = (SERVERS_DIR / "nginx-webdav.conf").read_text() \
            .replace("@DIR@", str(self.dir)).replace("@PORT@", str(self.port))
        conf = self.dir / "nginx.conf"
        conf.write_text(text)
        binary = "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else "nginx"
        return [binary, "-c", str(conf), "-p", str(self.dir), "-e", str(self.dir / "logs" / "error.log")]

    def ready(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
        try:
            conn.request("HEAD", "/cache/")
            conn.getresponse().read()
            return True
        except OSError:
            return False
        finally:
            conn.close()

    def url(self):
        return f"http://127.0.0.1:{self.port}/cache"

    def tails(self):
        return super().tails() + f"\n--- error.log\n{tail(self.dir / 'logs' / 'error.log')}"

    def access_lines(self):
        try:
            return (self.dir / "logs" / "access.log").read_text(errors="replace").splitlines()
        except OSError:
            return []

    def mark(self):
        return len(self.access_lines())

    def since(self, mark):
        calls, down, methods = 0, 0, {}
        for line in self.access_lines()[mark:]:
            m = self.REQUEST.search(line)
            if not m:
                continue
            calls += 1
            methods[m.group(1)] = methods.get(m.group(1), 0) + 1
            if m.group(1) == "GET" and m.group(3) != "-":
                down += int(m.group(3))
        return {"calls": calls, "bytes_down": down, "methods": methods}


# ---- the engine and workers of the remote-exec scenario (as tests/e2e/servers/postgres.rs, buildgrid.rs) ---
def pg_bin():
    """Debian's newest installed PostgreSQL: /usr/lib/postgresql/<version>/bin."""
    root = Path("/usr/lib/postgresql")
    found = sorted((int(p.name), p / "bin") for p in root.iterdir()
                   if p.name.isdigit() and (p / "bin" / "initdb").exists()) if root.is_dir() else []
    if not found:
        raise Failure("PostgreSQL is not installed (scripts/test-servers.sh installs it)")
    return found[-1][1]


class PostgresServer(Server):
    """A throwaway PostgreSQL cluster on loopback (trust auth, no fsync) for BuildGrid's scheduler; as
    root it runs as `postgres` (initdb and postgres refuse root)."""

    name, key = "PostgreSQL", "postgres"
    databases = 0

    def start(self):
        import pwd
        self.bin = pg_bin()
        self.user = None
        if os.geteuid() == 0:
            self.user = next((u for u in (self.lookup(pwd, n) for n in ("postgres", "nobody")) if u), None)
            if self.user is None:
                raise Failure("neither a postgres nor a nobody user to run PostgreSQL as")
        os.chmod(self.dir, 0o755)
        if self.user:
            os.chown(self.dir, self.user.pw_uid, self.user.pw_gid)
        self.data = self.dir / "data"
        r = subprocess.run([str(self.bin / "initdb"), "-D", str(self.data), "-U", "bgd", "--auth=trust", "-E", "UTF8",
                            "--no-sync"], cwd=self.dir, capture_output=True, text=True, **self.popen_user())
        if r.returncode:
            raise Failure(f"initdb failed:\n{r.stdout}{r.stderr}")
        super().start()

    @staticmethod
    def lookup(pwd, name):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            return None

    def popen_user(self):
        return {"user": self.user.pw_uid, "group": self.user.pw_gid} if getattr(self, "user", None) else {}

    def command(self):
        cmd = [str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port),
               "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.dir}"]
        for setting in ("fsync=off", "full_page_writes=off", "synchronous_commit=off"):
            cmd += ["-c", setting]
        return cmd

    def ready(self):
        return sh([str(self.bin / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)],
                  check=False).returncode == 0

    def new_database(self):
        """A fresh database with BuildGrid's schema: its connection string (psycopg2, see buildgrid-exec.yml)."""
        self.databases += 1
        db = f"bgd{self.databases}"
        sh([str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "bgd", db])
        url = f"postgresql+psycopg2://bgd@127.0.0.1:{self.port}/{db}"
        sh([str(VENV / "bin" / "bgd"), "migrate", "apply", url])
        return url


class BuildGridExecServer(BuildGridServer):
    """BuildGrid 0.4.4 with the Execution and Bots services, its scheduler in PostgreSQL (a fresh database
    each: the in-memory action cache starts empty too, so every build executes)."""

    name, key = "BuildGrid (execution)", "buildgrid-exec"

    def __init__(self, sql):
        self.sql = sql
        super().__init__()

    def command(self):
        text = (SERVERS_DIR / "buildgrid-exec.yml").read_text() \
            .replace("@PORT@", str(self.port)).replace("@SQL@", self.sql)
        conf = self.dir / "buildgrid.yml"
        conf.write_text(text)
        return [str(VENV / "bin" / "bgd"), "server", "start", str(conf)]


class WorkerProcess(Server):
    """`flamenco-build worker` on this machine's engine, with a cache volume of its own; ready once its bot
    session exists. It advertises only the toolchain images (see `--image`)."""

    name, key = "worker", "worker"
    start_limit = 120.0

    def __init__(self, fb, url, bot, volume):
        self.fb, self.engine_url, self.bot, self.volume = fb, url, bot, volume
        super().__init__()

    def command(self):
        cmd = [str(self.fb), "worker", "--server", self.engine_url, "--bot-id", self.bot,
               "--cache-volume", self.volume, "--grace", "5"]
        for image in IMAGES.values():
            cmd += ["--image", image]
        return cmd

    def env(self):
        return {"FLAMENCO_BUILD_LOG": "flamenco_build=debug"}

    def ready(self):
        return "bot session created" in tail(self.log_path, 200)

    def log_text(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


def summarise_trace(path, wall_s):
    """Where a build's time went, from its --trace file: the phase spans by phase and the longest ones."""
    events = json.loads(Path(path).read_text())["traceEvents"]
    spans = [e for e in events if e.get("ph") == "X"]
    if not spans:
        return {"wall_ms": wall_s * 1000, "phases": {}, "top": [], "tasks": {}}
    parts = [e for e in spans if e.get("cat") == "phase"]
    # The cache look-up (the tier's action result, its blobs' presence) has no span of its own: it
    # is the gap between a task's key and its restore.
    named = {e["name"]: e for e in parts}
    for name, e in list(named.items()):
        task, _, phase = name.rpartition(": ")
        restore = named.get(f"{task}: restore")
        if phase == "key" and restore:
            end = e["ts"] + e["dur"]
            parts.append({"name": f"{task}: lookup", "ts": end, "dur": restore["ts"] - end})
    phases = {}
    for e in parts:
        p = phases.setdefault(e["name"].rpartition(": ")[2], {"count": 0, "total_ms": 0.0, "max_ms": 0.0})
        p["count"] += 1
        p["total_ms"] += e["dur"] / 1000
        p["max_ms"] = max(p["max_ms"], e["dur"] / 1000)
    top = sorted(parts, key=lambda e: -e["dur"])[:8]
    first = min(e["ts"] for e in spans) / 1000
    last = max(e["ts"] + e["dur"] for e in spans) / 1000
    return {
        "wall_ms": wall_s * 1000,
        "first_span_ms": first,      # after the build's origin: config, remote connect, image look-ups
        "last_span_end_ms": last,
        "outside_ms": wall_s * 1000 - last,  # process start before the origin, and the exit after the build
        "phases": dict(sorted(phases.items(), key=lambda kv: -kv[1]["total_ms"])),
        "top": [{"span": e["name"], "start_ms": e["ts"] / 1000, "ms": e["dur"] / 1000} for e in top],
        "tasks": {e["name"]: e["dur"] / 1000 for e in spans if e.get("cat") == "task"},
    }


class Bench:
    def __init__(self, args):
        self.args = args
        self.id = uuid.uuid4().hex[:12]
        self.tmp = Path(tempfile.mkdtemp(prefix="flamenco-bench."))
        self.fixture = self.tmp / "fixture"
        self.bk_out = self.tmp / "buildkit-out"
        self.edits = 0
        self.runs = 0
        self.events = None
        self.notes = []
        self.results = {"scenarios": {}, "notes": self.notes}
        self.remote_failed = False

    # ---- setup ---------------------------------------------------------------------------------
    def setup(self, buildkit=True, fixture=True):
        if buildkit:
            log("ensuring the buildx plugin (scripts/install-buildx.sh)")
            r = subprocess.run([str(REPO / "scripts" / "install-buildx.sh")], stdin=subprocess.DEVNULL)
            if r.returncode != 0:
                raise Failure("scripts/install-buildx.sh failed")
            self.buildx_version = sh(["docker", "buildx", "version"]).stdout.strip()
        else:
            self.buildx_version = "BuildKit not run"
        self.engine_version = sh(["docker", "version", "--format", "{{.Server.Version}}"]).stdout.strip()
        for image in IMAGES.values():
            if sh(["docker", "image", "inspect", image], check=False).returncode != 0:
                raise Failure(f"missing toolchain image {image}: run scripts/toolchain-images.sh")

        # The binary, frozen for the whole run (others may rebuild target/ meanwhile).
        src = Path(self.args.bin) if self.args.bin else REPO / "target" / "release" / "flamenco-build"
        if not src.is_file():
            if self.args.bin:
                raise Failure(f"no such binary: {src}")
            log("cargo build --release")
            if subprocess.run(["cargo", "build", "--release", "--manifest-path", str(REPO / "Cargo.toml")]).returncode:
                raise Failure("cargo build --release failed")
        self.fb = self.tmp / "flamenco-build"
        shutil.copy2(src, self.fb)
        self.fb_version = sh([str(self.fb), "--version"]).stdout.strip()

        self.mode = self.args.mode
        if not self.has_subcommand(self.mode):
            self.note(f"this flamenco-build has no `{self.mode}` subcommand: falling back to `build`")
            self.mode = "build"
        self.has_clean_cache = self.has_subcommand("clean-cache")
        if not self.has_clean_cache:
            self.note("this flamenco-build has no `clean-cache`: cold runs remove FIXTURE/.build-cache instead")
        self.volume_existed = sh(["docker", "volume", "inspect", VOLUME], check=False).returncode == 0
        if fixture:
            self.make_fixture()

    def make_fixture(self):
        log(f"writing the fixture (scale {self.args.scale}) into {self.fixture}")
        sh([sys.executable, str(SHARED_BENCH / "make_fixture.py"), str(self.fixture), str(SPEC.resolve()),
            str(self.args.scale)])
        shutil.copy2(GRAPH, self.fixture / "flamenco-build.toml")
        (self.fixture / "Dockerfile.buildkit").write_text(self.dockerfile())
        # Both tools build the same folder: keep flamenco-build's outputs and cache out of BuildKit's
        # context, so that BuildKit sees what it would see in a clean checkout.
        (self.fixture / ".dockerignore").write_text("\n".join([
            ".git", ".build-cache", "flamenco-manager", "flamenco-worker", "addon/flamenco/manager",
            "web/app/src/manager-api", "web/static", "pkg/api/openapi_ops.gen.go"]) + "\n")
        git = ["git", "-C", str(self.fixture), "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
        sh(git + ["init", "-q"])
        sh(git + ["add", "-A"])
        sh(git + ["commit", "-q", "-m", "fixture"])
        self.go_file = self.first(self.fixture / "internal" / "worker", ".go")
        self.css_file = self.first(self.fixture / "web" / "app" / "src" / "styles", ".css")

    def dockerfile(self):
        """Dockerfile.buildkit; its Go cache mount moved to where the Go image's `go` looks, unless told not to."""
        text = (SHARED_BENCH / "Dockerfile.buildkit").read_text()
        if self.args.dockerfile_as_is:
            return text
        gocache = sh(["docker", "run", "--rm", "--network", "none", IMAGES["GO_IMAGE"], "go", "env", "GOCACHE"]).stdout.strip()
        targets = set(re.findall(r"--mount=type=cache,target=(\S+)", text))
        if gocache and targets and targets != {gocache}:
            self.note(f"Dockerfile.buildkit mounts its Go cache at {', '.join(sorted(targets))}, but "
                      f"{IMAGES['GO_IMAGE']} has GOCACHE={gocache} (HOME=/tmp): the fixture's copy mounts it "
                      f"at {gocache}, else every BuildKit `go build` starts cold (--dockerfile-as-is to keep it)")
            for t in targets:
                text = text.replace(f"--mount=type=cache,target={t}", f"--mount=type=cache,target={gocache}")
        return text

    def has_subcommand(self, name):
        return sh([str(self.fb), name, "--help"], check=False).returncode == 0

    @staticmethod
    def first(folder, suffix):
        files = sorted(p for p in folder.rglob(f"*{suffix}") if p.is_file()) if folder.is_dir() else []
        if not files:
            raise Failure(f"the fixture has no {suffix} file under {folder} (scale too small?)")
        return files[0]

    def note(self, msg):
        self.notes.append(msg)
        log("note: " + msg)

    # ---- the two tools ---------------------------------------------------------------------------
    def buildkit(self, no_cache=False):
        cmd = ["docker", "buildx", "build", "--network", "host", "-f", "Dockerfile.buildkit"]
        for k, v in IMAGES.items():
            cmd += ["--build-arg", f"{k}={v}"]
        if no_cache:
            cmd.append("--no-cache")
        cmd += ["--output", f"type=local,dest={self.bk_out}", "."]
        r = Run(cmd, cwd=self.fixture).check("BuildKit build")
        r.steps = self.buildkit_run_steps(r.err)
        self.bk_runs = getattr(self, "bk_runs", 0) + 1
        self.save_log(f"bk-{self.bk_runs}", r)
        return r

    @staticmethod
    def buildkit_run_steps(progress):
        """How many RUN steps BuildKit executed (not CACHED): the containers it started."""
        runs, done = set(), set()
        for line in progress.splitlines():
            m = re.match(r"#(\d+) \[[^\]]+\] RUN ", line)
            if m:
                runs.add(m.group(1))
            m = re.match(r"#(\d+) DONE ", line)
            if m:
                done.add(m.group(1))
        return len(runs & done)

    def flamenco(self, mode=None, directory=None):
        """One flamenco-build run, its containers labelled with a value of its own (see count_containers)."""
        directory = directory or self.fixture
        self.runs += 1
        label = f"{self.id}-{self.runs}"
        cmd = [str(self.fb), "--label", f"{BENCH_LABEL}={label}", "-C", str(directory), mode or self.mode]
        r = Run(cmd).check(f"flamenco-build {mode or self.mode}")
        r.label = label
        r.containers = None
        self.save_log(f"fb-{self.runs}", r)
        return r

    # The engine keeps only its last 256 events, so a `docker events --since/--until` query after a long
    # build can miss some: stream the create events of the bench's containers from the start instead,
    # each flamenco-build run's containers carrying a label value of its own.
    def start_events(self):
        self.events_path = self.tmp / "container-events.log"
        self.events_out = open(self.events_path, "w")
        self.events = subprocess.Popen(
            ["docker", "events", "--filter", "type=container", "--filter", "event=create",
             "--filter", f"label={BENCH_LABEL}",
             "--format", '{{index .Actor.Attributes "' + BENCH_LABEL + '"}}'],
            stdin=subprocess.DEVNULL, stdout=self.events_out, stderr=subprocess.DEVNULL)
        time.sleep(0.5)  # let the stream attach before the first run

    def stop_events(self):
        if self.events:
            self.events.terminate()
            self.events.wait()
            self.events_out.close()
            self.events = None

    def count_containers(self, runs):
        """Fills r.containers for flamenco-build runs that have ended (the stream lags a little)."""
        time.sleep(0.5)
        self.events_out.flush()
        labels = self.events_path.read_text().split()
        for r in runs:
            r.containers = labels.count(r.label)

    def save_log(self, name, r):
        logs = self.tmp / "logs"
        logs.mkdir(exist_ok=True)
        (logs / f"{name}.log").write_text(f"$ {' '.join(map(str, r.cmd))}\n# {r.wall:.3f} s, exit {r.rc}\n"
                                          f"{r.out}{r.err}")

    def clean_cache(self, directory=None):
        directory = directory or self.fixture
        if self.has_clean_cache:
            Run([str(self.fb), "-C", str(directory), "clean-cache"]).check("flamenco-build clean-cache")
        else:
            shutil.rmtree(directory / ".build-cache", ignore_errors=True)

    def edit(self, path, fmt):
        self.edits += 1
        with open(path, "a") as f:
            f.write(fmt.format(f"bench {self.id} edit {self.edits}"))

    # ---- scenarios -------------------------------------------------------------------------------
    def scenario(self, name):
        runs = self.args.runs
        bk, fb = [], []
        log(f"scenario {name}: {runs} runs each")
        for i in range(runs):
            if name == "go-worker":
                self.edit(self.go_file, "// {}\n")
            elif name == "css":
                self.edit(self.css_file, "/* {} */\n")
            order = ("bk", "fb") if i % 2 == 0 else ("fb", "bk")
            for tool in order:
                if tool == "bk":
                    bk.append(self.buildkit(no_cache=(name == "cold")))
                else:
                    if name == "cold":
                        self.clean_cache()
                    fb.append(self.flamenco())
            log(f"  run {i + 1}: BuildKit {fmt_s(bk[-1].wall)}, flamenco-build {fmt_s(fb[-1].wall)}")
        self.count_containers(fb)
        log(f"  flamenco-build containers per run: {[r.containers for r in fb]}; "
            f"BuildKit RUN steps executed: {[r.steps for r in bk]}")
        bk_med, fb_med = median([r.wall for r in bk]), median([r.wall for r in fb])
        ratio = fb_med / bk_med if bk_med else None
        target, limit = TARGETS[name]
        ok = ratio is not None and ratio <= target and (limit is None or fb_med <= limit)
        self.results["scenarios"][name] = {
            "buildkit_s": [r.wall for r in bk],
            "flamenco_build_s": [r.wall for r in fb],
            "buildkit_median_s": bk_med,
            "flamenco_build_median_s": fb_med,
            "ratio": ratio,
            "target_ratio": target,
            "target_max_s": limit,
            "pass": ok,
            "flamenco_build_containers": [r.containers for r in fb],
            "buildkit_run_steps": [r.steps for r in bk],
            "flamenco_build_maxrss_kib": [r.maxrss_kb for r in fb],
        }

    def warm_up(self, buildkit=True):
        log("warm-up: one build with each tool (not measured; the first flamenco-build run is cold)")
        if buildkit:
            r = self.buildkit()
            log(f"  BuildKit {fmt_s(r.wall)}")
        r = self.flamenco()
        self.count_containers([r])
        log(f"  flamenco-build {self.mode} {fmt_s(r.wall)} ({r.containers} containers)")
        # A second pass so that both are up to date with the tree (and any lazily made state exists).
        if buildkit:
            self.buildkit()
        self.flamenco()

    # ---- the remote scenario ---------------------------------------------------------------------
    # A fresh clone (empty local cache) restoring every task from a warm remote cache, per server,
    # against the same clone's cold build and a local-cache restore; flamenco-build only.
    def remote(self):
        rec = self.results["remote"] = {"target_ratio": TARGETS["remote"][0], "runs": self.args.runs,
                                        "servers": {}, "pass": False}
        try:
            self.remote_prepare()
            rec["cold"] = self.remote_cold()
            rec["local_restore"] = self.remote_local_restores()
            for cls in (BuildGridServer, NginxServer):
                log(f"remote: starting {cls.name}")
                with cls() as server:
                    log(f"  {server.name} answers at {server.url()} after {fmt_s(server.startup)}")
                    rec["servers"][server.name] = self.remote_server(server, rec)
                log(f"remote: {cls.name} stopped")
            rec["pass"] = all(s["pass"] for s in rec["servers"].values())
        except Failure as e:
            rec["error"] = str(e)
            self.remote_failed = True
            log(f"remote scenario FAILED: {e}")
        finally:
            shutil.rmtree(self.tmp / "remote", ignore_errors=True)

    def remote_prepare(self):
        log("remote: ensuring the test servers (scripts/test-servers.sh)")
        r = subprocess.run([str(REPO / "scripts" / "test-servers.sh")], stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise Failure("scripts/test-servers.sh failed: the remote scenario needs nginx-extras and BuildGrid")
        help_text = sh([str(self.fb), "build-optimized", "--help"]).stdout
        if "--remote-cache" not in help_text:
            raise Failure(f"this flamenco-build ({self.fb_version}) has no `build-optimized --remote-cache`")
        # The clones are of the fixture's last commit: the edits of the timed scenarios go into one,
        # so that a clone's keys are the fixture's.
        if sh(["git", "-C", str(self.fixture), "diff", "--quiet"], check=False).returncode != 0:
            sh(["git", "-C", str(self.fixture), "-c", "user.name=bench", "-c", "user.email=bench@localhost",
                "commit", "-q", "-a", "-m", "the edits of the timed scenarios"])
        self.outputs = sorted({o for t in tomllib.loads(GRAPH.read_text())["tasks"].values()
                               for o in t.get("outputs", [])})

    def clone(self, name):
        """A fresh clone of the fixture, without its cache or outputs, with the same flamenco-build.toml."""
        d = self.tmp / "remote" / name
        shutil.rmtree(d, ignore_errors=True)
        d.parent.mkdir(exist_ok=True)
        sh(["git", "clone", "-q", str(self.fixture), str(d)])
        shutil.copy2(self.fixture / "flamenco-build.toml", d / "flamenco-build.toml")
        return d

    def fb_json(self, directory, *args, what):
        """One labelled `build-optimized --json` run; its summary parsed, its warnings collected."""
        self.runs += 1
        label = f"{self.id}-{self.runs}"
        cmd = [str(self.fb), "--label", f"{BENCH_LABEL}={label}", "-C", str(directory), "build-optimized",
               "--json", *args]
        r = Run(cmd)
        r.label, r.containers = label, None
        self.save_log(f"fb-{self.runs}", r)
        r.check(what)
        try:
            r.summary = json.loads(r.out)
        except ValueError:
            raise Failure(f"{what}: no JSON summary on stdout:\n{r.out[-2000:]}{r.err[-2000:]}")
        r.warnings = [line for line in r.err.splitlines() if line.startswith("warning:")]
        return r

    @staticmethod
    def expect(r, status, tier, what):
        """Every task ended `status` (from `tier`), else a failure naming those that did not."""
        tasks = r.summary.get("tasks") or []
        bad = [t for t in tasks if t.get("status") != status or (tier and t.get("tier") != tier)]
        if bad or not tasks:
            said = "; ".join(f"{t.get('task')}: {t.get('status')}, tier {t.get('tier', '-')}" for t in bad)
            warnings = "\n".join(r.warnings[:10])
            raise Failure(f"{what}: not every task was {status}" + (f" from the {tier} tier" if tier else "")
                          + f": {said or 'no tasks in the summary'}" + (f"\n{warnings}" if warnings else ""))

    @staticmethod
    def phase_sums(r):
        """The tasks' key and restore times of one run, added up (ms)."""
        tasks = r.summary.get("tasks") or []
        return {p: sum(t.get("times_ms", {}).get(p, 0.0) for t in tasks) for p in ("key", "restore")}

    def remote_cold(self):
        """The cold median: the cold scenario's if it ran, else 2-3 cold builds of a clone. Either way
        the clone ends with a warm local cache, for the local restores."""
        self.warm_clone = self.clone("local")
        cold = self.results["scenarios"].get("cold")
        if cold and self.mode == "build-optimized":
            log("remote: cold = the cold scenario's flamenco-build median; one build of a clone for its local cache")
            r = self.fb_json(self.warm_clone, "--no-remote", what="cold build of a clone")
            self.expect(r, "built", None, "cold build of a clone")
            return {"source": "cold scenario", "runs_s": cold["flamenco_build_s"],
                    "median_s": cold["flamenco_build_median_s"], "clone_build_s": r.wall}
        n = min(3, max(2, self.args.runs))
        log(f"remote: cold builds of a clone (clean-cache, no remote), {n} runs")
        runs = []
        for i in range(n):
            if i:
                self.clean_cache(self.warm_clone)
            runs.append(self.fb_json(self.warm_clone, "--no-remote", what="cold build of a clone"))
            self.expect(runs[-1], "built", None, "cold build of a clone")
            log(f"  run {i + 1}: {fmt_s(runs[-1].wall)}")
        self.count_containers(runs)
        return {"source": "clone", "runs_s": [r.wall for r in runs], "median_s": median([r.wall for r in runs]),
                "containers": [r.containers for r in runs]}

    def reset_outputs(self, d):
        """The clone as cloned, its .build-cache kept: every output gone."""
        sh(["git", "-C", str(d), "clean", "-q", "-f", "-d", "-x", "-e", ".build-cache"])
        sh(["git", "-C", str(d), "checkout", "-q", "--", "."])
        shutil.copy2(self.fixture / "flamenco-build.toml", d / "flamenco-build.toml")

    def remote_local_restores(self):
        log(f"remote: local-cache restores (outputs deleted, .build-cache kept), {self.args.runs} runs")
        runs = []
        for i in range(self.args.runs):
            self.reset_outputs(self.warm_clone)
            r = self.fb_json(self.warm_clone, "--no-remote", what="local-cache restore")
            self.expect(r, "restored", "local", "local-cache restore")
            runs.append(r)
            log(f"  run {i + 1}: {fmt_s(r.wall)}")
        self.count_containers(runs)
        sums = [self.phase_sums(r) for r in runs]
        return {"runs_s": [r.wall for r in runs], "median_s": median([r.wall for r in runs]),
                "containers": [r.containers for r in runs], "maxrss_kib": [r.maxrss_kb for r in runs],
                "key_ms_median": median([x["key"] for x in sums]),
                "restore_ms_median": median([x["restore"] for x in sums])}

    def remote_warm(self, server):
        """Puts every task of the fixture on the server: a build with --remote-upload; if a clone's
        dry run then finds tasks missing there (local hits are not sent), once more with --recache."""
        url, what = server.url(), f"warming {server.name}"
        attempts = []
        for extra in ([], ["--recache"]):
            mark = server.mark()
            r = self.fb_json(self.fixture, "--remote-cache", url, "--remote-upload", *extra, what=what)
            remote_warnings = [w for w in r.warnings if "remote" in w]
            if remote_warnings:
                raise Failure(f"{what}: the remote tier did not work:\n" + "\n".join(remote_warnings[:10]))
            attempts.append({"args": ["--remote-upload", *extra], "wall_s": r.wall,
                             "statuses": sorted({t.get("status") for t in r.summary.get("tasks", [])}),
                             "remote": r.summary.get("remote"), "server_side": server.since(mark)})
            log(f"  {what}: build-optimized --remote-upload {' '.join(extra)}: {fmt_s(r.wall)}, "
                f"remote {r.summary.get('remote')}")
            missing = self.remote_probe(url)
            if not missing:
                return attempts
            log(f"  {server.name} lacks {', '.join(missing)} after that build")
        raise Failure(f"{what}: after a build with --remote-upload --recache, a fresh clone's dry run still "
                      "does not restore from it: " + "; ".join(f"{t}: {v}" for t, v in missing.items()))

    def remote_probe(self, url):
        """The tasks a fresh clone would not restore from `url` (its --dry-run's verdicts)."""
        d = self.clone("probe")
        r = Run([str(self.fb), "-C", str(d), "build-optimized", "--dry-run", "--remote-cache", url]) \
            .check("dry run against the remote cache")
        shutil.rmtree(d, ignore_errors=True)
        verdicts = dict(m.groups() for m in re.finditer(r"^dry-run: ([^:\s]+): (.*)$", r.out + r.err, re.M))
        if not verdicts:
            raise Failure(f"the dry run said nothing per task:\n{r.out}{r.err}")
        return {t: v for t, v in verdicts.items() if not v.startswith("would restore")}

    def outputs_identical(self, d):
        """Whether the clone's outputs are byte for byte the fixture's."""
        def digest(root, rel):
            p = root / rel
            return tree_digest(p) if p.is_dir() else file_digest(p)
        return all(digest(d, o) == digest(self.fixture, o) and digest(d, o) not in (None, (None, 0))
                   for o in self.outputs)

    def remote_restore(self, server, name, *extra):
        """A fresh clone restoring every task from the server; checked, then removed."""
        d = self.clone(name)
        mark = server.mark()
        what = f"remote restore from {server.name}"
        r = self.fb_json(d, "--remote-cache", server.url(), *extra, what=what)
        r.server_side = server.since(mark)
        self.expect(r, "restored", "remote", what)
        r.identical = self.outputs_identical(d)
        shutil.rmtree(d, ignore_errors=True)
        return r

    def remote_server(self, server, rec):
        warm = self.remote_warm(server)
        runs = []
        for i in range(self.args.runs):
            r = self.remote_restore(server, f"{server.key}-{i + 1}")
            runs.append(r)
            log(f"  run {i + 1}: {fmt_s(r.wall)}, remote {r.summary.get('remote')}, "
                f"server side {r.server_side}, outputs {'identical' if r.identical else 'DIFFERENT'}")
        self.count_containers(runs)
        trace_path = self.tmp / f"trace-{server.key}.json"
        t = self.remote_restore(server, f"{server.key}-trace", "--trace", str(trace_path))
        trace = summarise_trace(trace_path, t.wall)
        med = median([r.wall for r in runs])
        cold, local = rec["cold"]["median_s"], rec["local_restore"]["median_s"]
        ratio = med / cold if cold else None
        sums = [self.phase_sums(r) for r in runs]
        remote = [r.summary.get("remote") for r in runs]
        identical = all(r.identical for r in runs + [t])
        return {
            "url": server.url(), "startup_s": server.startup, "warm": warm,
            "restore_s": [r.wall for r in runs], "median_s": med, "ratio_to_cold": ratio,
            "minus_local_ms": (med - local) * 1000, "remote": remote, "server_side": [r.server_side for r in runs],
            "containers": [r.containers for r in runs], "maxrss_kib": [r.maxrss_kb for r in runs],
            "key_ms_median": median([x["key"] for x in sums]),
            "restore_ms_median": median([x["restore"] for x in sums]),
            "outputs_identical": identical, "trace": trace,
            "pass": ratio is not None and ratio <= TARGETS["remote"][0] and identical,
        }

    # ---- the remote-exec scenario ----------------------------------------------------------------
    # --executor remote through BuildGrid and `flamenco-build worker`s on this machine's engine, against
    # the local Docker executor: a trivial task's overhead, and the example's cold build with 1 and 2 workers.
    EXEC_PHASES = ("create", "upload", "run", "download", "remove")
    EXEC_PHASE_NAMES = {"create": "queue", "upload": "upload + input fetch", "run": "run",
                        "download": "output upload + download", "remove": "engine overhead"}

    def remote_exec(self):
        rec = self.results["remote_exec"] = {"runs": self.args.runs, "cold_runs": self.args.exec_cold_runs}
        self.exec_volumes = []
        try:
            self.remote_exec_prepare()
            log("remote-exec: starting PostgreSQL")
            with PostgresServer() as pg:
                log(f"  PostgreSQL answers after {fmt_s(pg.startup)}")
                rec["overhead"] = self.exec_overhead(pg)
                rec["cold"] = self.exec_cold(pg)
        except Failure as e:
            rec["error"] = str(e)
            self.remote_failed = True
            log(f"remote-exec scenario FAILED: {e}")
        finally:
            for v in self.exec_volumes:
                sh(["docker", "volume", "rm", "-f", v], check=False)

    def remote_exec_prepare(self):
        log("remote-exec: ensuring the test servers (scripts/test-servers.sh)")
        r = subprocess.run([str(REPO / "scripts" / "test-servers.sh")], stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise Failure("scripts/test-servers.sh failed: remote-exec needs PostgreSQL and BuildGrid")
        if "--image" not in sh([str(self.fb), "worker", "--help"], check=False).stdout:
            raise Failure(f"this flamenco-build ({self.fb_version}) has no `worker --image`")

    def exec_engine(self, pg, workers):
        """A fresh BuildGrid (its own database, an empty action cache) and `workers` workers, ready."""
        grid = BuildGridExecServer(pg.new_database())
        grid.__enter__()
        started = [grid]
        try:
            for i in range(workers):
                volume = f"{VOLUME}-w{i + 1}"
                if volume not in self.exec_volumes:
                    self.exec_volumes.append(volume)
                w = WorkerProcess(self.fb, grid.url(), f"bench-w{i + 1}", volume)
                w.__enter__()
                started.append(w)
        except BaseException:
            for srv in reversed(started):
                srv.stop()
            raise
        return started

    @staticmethod
    def exec_stop(servers):
        for srv in reversed(servers):
            srv.stop()

    def exec_args(self, grid):
        return ["--executor", "remote", "--remote-executor", grid.url()]

    def exec_build(self, d, what, *args):
        r = self.fb_json(d, *args, what=what)
        self.expect(r, "built", None, what)
        tasks = r.summary.get("tasks") or []
        r.phases = {p: sum(t.get("times_ms", {}).get(p, 0.0) for t in tasks) for p in self.EXEC_PHASES}
        r.workers = {}
        for t in tasks:
            w = t.get("worker") or "local"
            r.workers[w] = r.workers.get(w, 0) + 1
        return r

    def exec_project(self):
        d = self.tmp / "exec-micro"
        d.mkdir()
        (d / "flamenco-build.toml").write_text(
            "# One trivial task whose input changes every run (a fresh key): what one task costs.\n"
            f'[settings]\ncache_volume = "{VOLUME}"\n\n'
            f'[toolchains.go]\nimage = "{IMAGES["GO_IMAGE"]}"\n\n'
            '[tasks.copy]\ntoolchain = "go"\ninputs = ["seed.txt"]\nrun = "cat seed.txt > x"\noutputs = ["x"]\n'
            '\n[remote]\nqueue_timeout = "120s"\n')
        (d / "seed.txt").write_text("seed\n")
        return d

    def exec_overhead(self, pg):
        n = self.args.runs
        d = self.exec_project()
        runs = {"local": [], "remote": []}

        def once(kind, extra):
            (d / "seed.txt").write_text(uuid.uuid4().hex + "\n")
            return self.exec_build(d, f"a trivial task ({kind})", *extra)

        log(f"remote-exec: a trivial task (`cat seed.txt > x`, a fresh key each run), {n} runs each way")
        servers = self.exec_engine(pg, 1)
        try:
            grid = servers[0]
            once("local", [])  # warm-up of both, not measured
            once("remote", self.exec_args(grid))
            for i in range(n):
                for kind in (("local", "remote") if i % 2 == 0 else ("remote", "local")):
                    runs[kind].append(once(kind, self.exec_args(grid) if kind == "remote" else []))
                log(f"  run {i + 1}: local {fmt_s(runs['local'][-1].wall)}, remote {fmt_s(runs['remote'][-1].wall)}")
            worker_log = servers[1].log_text()
        finally:
            self.exec_stop(servers)
        out = {kind: self.exec_summary(rs) for kind, rs in runs.items()}
        loc, rem = out["local"]["median_s"], out["remote"]["median_s"]
        out["ratio"] = rem / loc if loc else None
        out["overhead_ms"] = (rem - loc) * 1000
        unit = {"s": 1000.0, "ms": 1.0, "µs": 0.001}
        out["worker_ran_ms"] = [float(v) * unit[u] for v, u in
                                re.findall(r'took=([0-9.]+)(ms|µs|s)\b', worker_log)][-n:]
        return out

    def exec_summary(self, runs):
        return {"runs_s": [r.wall for r in runs], "median_s": median([r.wall for r in runs]),
                "phases_ms": {p: median([r.phases[p] for r in runs]) for p in self.EXEC_PHASES},
                "workers": [r.workers for r in runs]}

    def exec_example(self):
        """examples/flamenco-mini in the bench folder (with the toolchain Dockerfiles its paths name), the
        bench's cache volume, committed."""
        root = self.tmp / "exec-example"
        root.mkdir()
        # What git holds (no outputs, no cache), as committed.
        archive = subprocess.run(["git", "-C", str(REPO), "archive", "HEAD", "examples/flamenco-mini",
                                  "dockerfiles/toolchains"], capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(root)], input=archive, check=True)
        d = root / "examples" / "flamenco-mini"
        text = (d / "flamenco-build.toml").read_text()
        text = text.replace("[settings]\n", f'[settings]\ncache_volume = "{VOLUME}"\n', 1)
        (d / "flamenco-build.toml").write_text(text + '\n[remote]\nqueue_timeout = "10m"\n')
        git = ["git", "-C", str(d), "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
        sh(git + ["init", "-q"])
        sh(git + ["add", "-A"])
        sh(git + ["commit", "-q", "-m", "example"])
        outputs = sorted({o for t in tomllib.loads(text)["tasks"].values() for o in t.get("outputs", [])})
        return d, outputs

    @staticmethod
    def exec_outputs(d, outputs):
        def digest(rel):
            p = d / rel
            return tree_digest(p) if p.is_dir() else file_digest(p)
        return {o: digest(o) for o in outputs}

    def exec_cold(self, pg):
        n = self.args.exec_cold_runs
        d, outputs = self.exec_example()
        log(f"remote-exec: the example's cold build (clean-cache first), local then 1 and 2 workers, {n} runs each "
            "after a warm-up of each (toolchain caches warm in every cache volume)")
        out = {}
        self.exec_build(d, "the example, local warm-up")
        local = []
        for i in range(n):
            self.clean_cache(d)
            local.append(self.exec_build(d, "the example's cold build, local"))
            log(f"  local run {i + 1}: {fmt_s(local[-1].wall)}")
        reference = self.exec_outputs(d, outputs)
        out["local"] = self.exec_summary(local)
        for workers in (1, 2):
            runs, identical = [], True
            for i in range(n + 1):
                servers = self.exec_engine(pg, workers)
                try:
                    self.clean_cache(d)
                    r = self.exec_build(d, f"the example's cold build, {workers} worker(s)",
                                        *self.exec_args(servers[0]))
                finally:
                    self.exec_stop(servers)
                identical = identical and self.exec_outputs(d, outputs) == reference
                if i == 0:
                    log(f"  {workers} worker(s), warm-up: {fmt_s(r.wall)}, tasks per worker {r.workers}")
                    continue
                runs.append(r)
                log(f"  {workers} worker(s), run {i}: {fmt_s(r.wall)}, tasks per worker {r.workers}")
            summary = self.exec_summary(runs)
            summary["ratio_to_local"] = summary["median_s"] / out["local"]["median_s"]
            summary["outputs_identical"] = identical
            out[f"{workers}w"] = summary
        return out

    # ---- artifacts -------------------------------------------------------------------------------
    def compare_artifacts(self):
        """Both tools last built the same tree; compare what they produced."""
        a = {}
        py_bk = tree_digest(self.bk_out / "addon" / "flamenco" / "manager")
        py_fb = tree_digest(self.fixture / "addon" / "flamenco" / "manager")
        a["python_client"] = {"buildkit": py_bk, "flamenco_build": py_fb,
                              "identical": py_bk[0] is not None and py_bk == py_fb}
        for name in ("flamenco-manager", "flamenco-worker"):
            bk_path, fb_path = self.bk_out / name, self.fixture / name
            entry = {"buildkit_sha256": file_digest(bk_path), "flamenco_build_sha256": file_digest(fb_path)}
            entry["identical"] = entry["buildkit_sha256"] is not None and \
                entry["buildkit_sha256"] == entry["flamenco_build_sha256"]
            # Static CGO_ENABLED=0 linux binaries: run both here, compare what they print.
            outs = []
            for p in (bk_path, fb_path):
                try:
                    outs.append(subprocess.run([str(p)], capture_output=True, text=True, timeout=30).stdout)
                except (OSError, subprocess.TimeoutExpired) as e:
                    outs.append(f"<{e}>")
            entry["same_output"] = outs[0] == outs[1]
            entry["output"] = outs[1].strip()
            a[name] = entry
        # Go build info (go version, settings such as CGO_ENABLED, module) of both, minus the file name.
        script = ("for f in /bk/flamenco-manager /fb/flamenco-manager /bk/flamenco-worker /fb/flamenco-worker; "
                  "do echo ==; go version -m $f | tail -n +2; done")
        r = sh(["docker", "run", "--rm", "--network", "none", "-v", f"{self.bk_out}:/bk:ro",
                "-v", f"{self.fixture}:/fb:ro", IMAGES["GO_IMAGE"], "sh", "-c", script], check=False)
        parts = r.stdout.split("==\n")[1:] if r.returncode == 0 else []
        a["go_buildinfo_equal"] = (len(parts) == 4 and parts[0] == parts[1] and parts[2] == parts[3]) or None
        self.results["artifacts"] = a

    # ---- per-task container overhead -------------------------------------------------------------
    def micro(self):
        n = self.args.micro_runs
        d = self.tmp / "micro"
        d.mkdir()
        (d / "flamenco-build.toml").write_text(
            "# One task, no inputs, a tiny output: what one task's container costs.\n"
            f'[settings]\ncache_volume = "{VOLUME}"\n\n'
            f'[toolchains.go]\nimage = "{IMAGES["GO_IMAGE"]}"\n\n'
            '[tasks.touch]\ntoolchain = "go"\nrun = "touch x"\noutputs = ["x"]\n')
        git = ["git", "-C", str(d), "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
        sh(git + ["init", "-q"])
        sh(git + ["add", "-A"])
        sh(git + ["commit", "-q", "-m", "micro"])
        log(f"micro: a one-task graph (`touch x`), `build` {n} times")
        self.flamenco("build", d)  # warm-up
        runs = [self.flamenco("build", d) for _ in range(n)]
        self.count_containers(runs)
        self.results["micro"] = {
            "runs_s": [r.wall for r in runs],
            "median_s": median([r.wall for r in runs]),
            "containers": [r.containers for r in runs],
            "maxrss_kib": [r.maxrss_kb for r in runs],
        }

    # ---- report ----------------------------------------------------------------------------------
    def report(self):
        res = self.results
        print()
        print(f"flamenco-build side-by-side bench: scale {self.args.scale}, {self.args.runs} runs per scenario, "
              f"flamenco-build `{self.mode}` ({self.fb_version}), {self.buildx_version}, engine {self.engine_version}")
        head = ["scenario", "BuildKit", "flamenco-build", "ratio", "target", "result",
                "fb containers", "BK RUN steps", "fb peak RSS"]
        rows = []
        for name, s in res["scenarios"].items():
            target, limit = TARGETS[name]
            tgt = f"<= {target}" + (f", <= {limit * 1000:.0f} ms" if limit else "")
            conts = sorted(set(c for c in s["flamenco_build_containers"] if c is not None))
            steps = sorted(set(s["buildkit_run_steps"]))
            rows.append([
                TITLES[name], fmt_s(s["buildkit_median_s"]), fmt_s(s["flamenco_build_median_s"]),
                f"{s['ratio']:.3f}" if s["ratio"] is not None else "-", tgt, "PASS" if s["pass"] else "FAIL",
                "/".join(map(str, conts)) or "?", "/".join(map(str, steps)),
                f"{max(s['flamenco_build_maxrss_kib']) / 1024:.1f} MiB",
            ])
        rows += self.remote_rows()
        widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
        for r in [head, ["-" * w for w in widths]] + rows if rows else []:
            print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
        self.report_remote()
        self.report_remote_exec()
        m = res.get("micro")
        if m:
            print(f"per-task container overhead (one-task `touch x` graph, `build`, {len(m['runs_s'])} runs): "
                  f"median {fmt_s(m['median_s'])}, {'/'.join(map(str, sorted(set(m['containers']))))} "
                  f"container(s) per run, peak RSS {max(m['maxrss_kib']) / 1024:.1f} MiB")
        a = res.get("artifacts")
        if a:
            py = a["python_client"]
            print(f"artifacts: python client (addon/flamenco/manager, {py['flamenco_build'][1]} files): "
                  f"{'identical' if py['identical'] else 'DIFFERENT'}")
            for name in ("flamenco-manager", "flamenco-worker"):
                e = a[name]
                print(f"  {name}: sha256 {'identical' if e['identical'] else 'differs'}; "
                      f"running both prints {'the same' if e['same_output'] else 'DIFFERENT output'} "
                      f"({e['output'].replace(chr(10), ' / ')})")
            print(f"  Go build info (go version -m) {'equal' if a['go_buildinfo_equal'] else 'DIFFERENT or unknown'}; "
                  "the binaries differ only if the source paths do (/src vs /workspace): -trimpath on both "
                  "sides makes them byte-identical")
        for n in self.notes:
            print(f"note: {n}")
        la = res.get("loadavg")
        if la:
            print(f"load average (1 min) at start {la[0]:.2f}, at end {la[1]:.2f}"
                  + ("  (other work was running when the bench started: numbers are noisy)"
                   if la[0] is not None and la[0] > 1.0 else ""))
        print(f"the cache volume {VOLUME} (warm toolchain caches) is left in place; "
              f"remove it with: docker volume rm {VOLUME}")

    def remote_rows(self):
        """The remote scenario's rows of the main table: per server, remote restore against fb's cold build."""
        rec = self.results.get("remote")
        if not rec:
            return []
        if not rec["servers"]:
            return [[TITLES["remote"], "-", "-", "-", f"<= {rec['target_ratio']} x fb cold", "FAIL",
                     "-", "-", "-"]]
        rows = []
        for name, s in rec["servers"].items():
            conts = sorted(set(c for c in s["containers"] if c is not None))
            rows.append([
                f"{TITLES['remote']}, {name}", "-", fmt_s(s["median_s"]),
                f"{s['ratio_to_cold']:.3f}" if s["ratio_to_cold"] is not None else "-",
                f"<= {rec['target_ratio']} x fb cold", "PASS" if s["pass"] else "FAIL",
                "/".join(map(str, conts)) or "?", "-", f"{max(s['maxrss_kib']) / 1024:.1f} MiB",
            ])
        return rows

    def report_remote(self):
        rec = self.results.get("remote")
        if not rec:
            return
        cold, local = rec.get("cold"), rec.get("local_restore")
        if cold and local:
            src = "the cold scenario" if cold["source"] == "cold scenario" else f"{len(cold['runs_s'])} runs of a clone"
            print(f"remote cache: a fresh clone (empty local cache) against a warm server, {rec['runs']} runs each; "
                  f"cold build {fmt_s(cold['median_s'])} (median of {src}); local-cache restore "
                  f"{fmt_s(local['median_s'])} (key {local['key_ms_median']:.1f} ms, restore "
                  f"{local['restore_ms_median']:.1f} ms, summed over the tasks)")
        # tier calls: what the build asked of the tier (get action, find missing, read blobs);
        # requests: what the server logged (nginx's access log; BuildGrid keeps none).
        head = ["server", "remote restore", "local restore", "cold", "remote/cold", "remote - local",
                "bytes down", "tier calls", "requests", "key / restore (summed)", "outputs"]
        rows = []
        for name, s in rec["servers"].items():
            r = s["remote"][0] or {}
            side = s["server_side"][0] or {}
            down = r.get("bytes_down", side.get("bytes_down"))
            calls = r.get("calls", side.get("calls"))
            rows.append([
                name, fmt_s(s["median_s"]), fmt_s(local["median_s"]), fmt_s(cold["median_s"]),
                f"{s['ratio_to_cold']:.3f}", f"{s['minus_local_ms']:+.0f} ms",
                f"{down:,}" if down is not None else "?", str(calls) if calls is not None else "?",
                str(side.get("calls", "-")),
                f"{s['key_ms_median']:.0f} / {s['restore_ms_median']:.0f} ms",
                "identical" if s["outputs_identical"] else "DIFFERENT",
            ])
        if rows:
            widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
            for r in [head, ["-" * w for w in widths]] + rows:
                print("  " + "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
        for name, s in rec["servers"].items():
            r, side = s["remote"][0], s["server_side"][0]
            if r is None:
                print(f"  {name}: this flamenco-build's --json has no `remote` object (bytes and calls above "
                      f"{'from the server log' if side else 'unknown'})")
            elif side:
                methods = ", ".join(f"{n} {m}" for m, n in sorted(side["methods"].items()))
                print(f"  {name}: the server logged {side['calls']} requests per restore ({methods}), "
                      f"{side['bytes_down']:,} bytes sent")
            up = [a["remote"].get("bytes_up") for a in s["warm"] if a.get("remote")]
            print(f"  {name}: warmed by " + "; then ".join(
                f"build-optimized {' '.join(a['args'])} ({fmt_s(a['wall_s'])}, tasks {'/'.join(a['statuses'])})"
                for a in s["warm"]) + (f", {sum(x or 0 for x in up):,} bytes up" if up else ""))
            self.report_trace(name, s["trace"])
        if rec.get("error"):
            print(f"remote: FAILED: {rec['error']}")

    def report_remote_exec(self):
        rec = self.results.get("remote_exec")
        if not rec:
            return
        names = self.EXEC_PHASE_NAMES

        def phases(p):
            return ", ".join(f"{names[k]} {p[k]:.0f}" for k in self.EXEC_PHASES if p.get(k) is not None) + " ms"
        o = rec.get("overhead")
        if o:
            print(f"remote execution (BuildGrid 0.4.4 + flamenco-build worker on this engine), a trivial task with a "
                  f"fresh key, {len(o['local']['runs_s'])} runs each: local {fmt_s(o['local']['median_s'])}, remote "
                  f"{fmt_s(o['remote']['median_s'])}, remote/local {o['ratio']:.2f}, overhead "
                  f"{o['overhead_ms']:+.0f} ms per task")
            print(f"  where a remote task's time goes (medians, from --json): {phases(o['remote']['phases_ms'])}")
            print(f"  the same task locally: container create {o['local']['phases_ms']['create']:.0f}, upload "
                  f"{o['local']['phases_ms']['upload']:.0f}, run {o['local']['phases_ms']['run']:.0f}, download "
                  f"{o['local']['phases_ms']['download']:.0f}, remove {o['local']['phases_ms']['remove']:.0f} ms")
            if o.get("worker_ran_ms"):
                print(f"  the worker's own run of each lease (its debug log): "
                      f"median {median(o['worker_ran_ms']):.0f} ms")
        c = rec.get("cold")
        if c:
            print(f"the example's cold build (examples/flamenco-mini, clean-cache, toolchain caches warm), "
                  f"{len(c['local']['runs_s'])} runs each: local {fmt_s(c['local']['median_s'])}")
            for key in ("1w", "2w"):
                s = c.get(key)
                if not s:
                    continue
                print(f"  {key[0]} worker(s): {fmt_s(s['median_s'])} (x{s['ratio_to_local']:.2f} local), outputs "
                      f"{'identical' if s['outputs_identical'] else 'DIFFERENT'}, tasks per worker {s['workers']}")
                print(f"    summed over the tasks (medians): {phases(s['phases_ms'])}")
        if rec.get("error"):
            print(f"remote-exec: FAILED: {rec['error']}")

    @staticmethod
    def report_trace(name, t):
        top = ", ".join(f"{e['span']} {e['ms']:.1f} ms" for e in t["top"][:6])
        phases = ", ".join(f"{k} {v['count']}x {v['total_ms']:.1f} ms (max {v['max_ms']:.1f})"
                           for k, v in list(t["phases"].items())[:6])
        print(f"  where the time goes ({name}, one remote restore with --trace, {fmt_s(t['wall_ms'] / 1000)}):")
        if not t["top"]:
            print("    the trace has no spans")
            return
        print(f"    first span at {t['first_span_ms']:.1f} ms after the build's start, last ends at "
              f"{t['last_span_end_ms']:.1f} ms; outside the traced build (process start, exit): "
              f"{t['outside_ms']:.1f} ms")
        print(f"    per phase: {phases}")
        print(f"    longest spans: {top}")

    def run(self):
        la0 = loadavg()
        names = self.args.scenario or list(TARGETS)
        with_buildkit = [n for n in names if n in BUILDKIT_SCENARIOS]
        # remote-exec builds its own projects: alone, it needs neither the fixture nor its warm-up.
        fixture = any(n != "remote-exec" for n in names)
        self.setup(buildkit=bool(with_buildkit), fixture=fixture)
        self.start_events()
        if fixture:
            self.warm_up(buildkit=bool(with_buildkit))
        for name in with_buildkit:
            self.scenario(name)
        if with_buildkit:
            self.compare_artifacts()
        # Last: it commits the fixture's edits and may rebuild it (--recache) to fill the servers.
        if "remote" in names:
            self.remote()
        if "remote-exec" in names:
            self.remote_exec()
        if self.args.micro_runs > 0:
            self.micro()
        self.results["loadavg"] = [la0, loadavg()]
        self.results["meta"] = {
            "bench_id": self.id, "scale": self.args.scale, "runs": self.args.runs, "mode": self.mode,
            "requested_mode": self.args.mode, "flamenco_build_version": self.fb_version,
            "buildx_version": self.buildx_version, "engine_version": self.engine_version,
            "fixture": str(self.fixture) if self.args.keep else None,
        }
        self.report()
        if self.args.json:
            Path(self.args.json).write_text(json.dumps(self.results, indent=2) + "\n")
            log(f"wrote {self.args.json}")
        failed = [n for n, s in self.results["scenarios"].items() if not s["pass"]]
        if "remote" in self.results and not self.results["remote"]["pass"]:
            failed.append("remote")
        rx = self.results.get("remote_exec")
        if rx and (rx.get("error") or not all(rx.get("cold", {}).get(k, {}).get("outputs_identical", True)
                                               for k in ("1w", "2w"))):
            failed.append("remote-exec")
        return 1 if failed else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="runs per scenario and tool (default 5)")
    ap.add_argument("--scale", type=float, default=1.0, help="fixture scale for make_fixture.py (default 1)")
    ap.add_argument("--mode", default="build-optimized",
                    help="flamenco-build subcommand to measure (default build-optimized; falls back to build)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder with the fixture")
    ap.add_argument("--json", metavar="FILE", help="also write every measurement as JSON")
    ap.add_argument("--bin", metavar="PATH", help="flamenco-build binary (default target/release/flamenco-build)")
    ap.add_argument("--micro-runs", type=int, default=10, help="runs of the one-task graph (default 10; 0: skip)")
    ap.add_argument("--scenario", action="append", choices=list(TARGETS),
                    help="run only this scenario (repeatable; default: all six)")
    ap.add_argument("--exec-cold-runs", type=int, default=2,
                    help="remote-exec: measured cold builds of the example per setting (default 2)")
    ap.add_argument("--dockerfile-as-is", action="store_true",
                    help="use Dockerfile.buildkit unchanged, even if its Go cache mount misses the image's GOCACHE")
    args = ap.parse_args()
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    bench = Bench(args)
    keep = args.keep
    try:
        return bench.run()
    except Failure as e:
        log(str(e))
        keep = True
        return 2
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        bench.stop_events()
        if keep or bench.remote_failed:
            log(f"kept {bench.tmp} (fixture: {bench.fixture})")
        else:
            shutil.rmtree(bench.tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
