#!/usr/bin/env python3
"""Side-by-side benchmark: flamenco-build against BuildKit on the same Flamenco-shaped fixture.

Makes the fixture with ../shared/bench/make_fixture.py (the real Flamenco OpenAPI spec), puts
bench/flamenco-build.toml and ../shared/bench/Dockerfile.buildkit in it, commits it, then measures, in
the same run, with N runs per scenario and both tools alternating:

  no-change   both warm, nothing changed
  go-worker   a comment line appended to a Go file under internal/worker/
  css         a comment line appended to a CSS file under web/app/src/styles/
  cold        BuildKit --no-cache; flamenco-build after `clean-cache` (toolchain caches warm)

and prints the medians, the ratios flamenco-build / BuildKit against their targets, the containers
flamenco-build created, the RUN steps BuildKit executed, flamenco-build's peak RSS, a comparison of the
artifacts of both tools, and the per-task container overhead (a one-task `touch x` graph).

Usage: scripts/bench.py [--runs N] [--scale S] [--mode MODE] [--keep] [--json FILE] [--bin PATH]
                        [--micro-runs N] [--dockerfile-as-is] [--scenario NAME ...]
Needs: the toolchain images (scripts/toolchain-images.sh), a Docker engine; installs the buildx plugin
(scripts/install-buildx.sh) if missing. Never run it next to another build: it measures wall time.
"""
import argparse
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
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
}
TITLES = {
    "no-change": "no change (warm)",
    "go-worker": "one worker Go file",
    "css": "one webapp CSS file",
    "cold": "cold (toolchain caches warm)",
}


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

    # ---- setup ---------------------------------------------------------------------------------
    def setup(self):
        log("ensuring the buildx plugin (scripts/install-buildx.sh)")
        r = subprocess.run([str(REPO / "scripts" / "install-buildx.sh")], stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise Failure("scripts/install-buildx.sh failed")
        self.buildx_version = sh(["docker", "buildx", "version"]).stdout.strip()
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
        self.volume_existed = sh(["docker", "volume", "inspect", VOLUME], check=False).returncode == 0

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

    def clean_cache(self):
        if self.has_clean_cache:
            Run([str(self.fb), "-C", str(self.fixture), "clean-cache"]).check("flamenco-build clean-cache")
        else:
            shutil.rmtree(self.fixture / ".build-cache", ignore_errors=True)

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

    def warm_up(self):
        log("warm-up: one build with each tool (not measured; the first flamenco-build run is cold)")
        r = self.buildkit()
        log(f"  BuildKit {fmt_s(r.wall)}")
        r = self.flamenco()
        self.count_containers([r])
        log(f"  flamenco-build {self.mode} {fmt_s(r.wall)} ({r.containers} containers)")
        # A second pass so that both are up to date with the tree (and any lazily made state exists).
        self.buildkit()
        self.flamenco()

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
        widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
        for r in [head, ["-" * w for w in widths]] + rows:
            print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
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

    def run(self):
        la0 = loadavg()
        self.setup()
        self.start_events()
        self.warm_up()
        for name in self.args.scenario or list(TARGETS):
            self.scenario(name)
        self.compare_artifacts()
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
                    help="run only this scenario (repeatable; default: all four)")
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
        if keep:
            log(f"kept {bench.tmp} (fixture: {bench.fixture})")
        else:
            shutil.rmtree(bench.tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
