"""scripts/gpu-check's run on the GPU machine, and its rehearsal (--dry-run)
on the build machine.

The device tool gives one command at most 10 minutes and brings back at
most 8 files of at most 16 MiB from its output folder, two folders deep,
plus the last 12,000 characters of output. So the run keeps to a global
deadline (each step's time-out is cut to what is left, and a step is not
started once too little is), writes only OUT_FILES into OUT, rewritten as
soon as each row of the table is known (a run killed from outside still
leaves its rows), keeps logs, weights and dumps in a temporary folder (the
logs come back as one gzip archive, each log capped), and ends its output
with the table, the verdict and the first failure lines.

Each check's judge is a function of the step's output, tested on the build
machine (test/python/test_gpu_check.py): a kernel test that says
`skipped`, a loss or gradient that is NaN or differs from the CPU
target's (run there on the same weights and data), a replayed
step that differs bitwise from the same step run kernel by kernel, a
data-parallel world of one that differs bitwise from the plain run, and
sanitizer errors are failures; a sanitizer that refuses to run is "not
available".
"""

import glob
import io
import json
import math
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

import gpu_check as tools

# Row statuses. FAILING ones make the verdict FAIL.
OK, FAILED, NOT_RUN = "ok", "FAILED", "not run (deadline)"
NOT_AVAILABLE, INCOMPLETE, DRY = "not available", "incomplete", "dry run"
FAILING = (FAILED, NOT_RUN)

OUT_FILES = ("summary.txt", "table.md", "table.json", "logs.tar.gz")
# What the device tool brings back from OUT; the run writes fewer files.
MAX_OUT_FILES, MAX_FILE_BYTES, MAX_DEPTH = 6, 16 << 20, 2
NAME = re.compile(r"^[A-Za-z0-9._-]+$")

DEADLINE_S = 450    # the whole run; one device command may take 600
RESERVE_S = 15      # kept back for the last archive, table and summary
LOG_CAP = 1 << 20   # bytes of one log kept in the archive (head and tail)
FAILURE_LINES = 40
PARITY_RTOL = 1e-3
REPLAY_STEPS, BENCH_STEPS, BENCH_SKIP = 6, 25, 5
# The flags this run passes to the training executables.
USED_FLAGS = ("--check-step", "--no-cuda-graph", "--synthetic", "--weights",
              "--log", "--save", "--dump", "--steps")


class CheckError(Exception):
    """A step's failure with its one-line reason."""


class Outcome:
    def __init__(self, rc, timed_out, seconds, log):
        self.rc, self.timed_out, self.seconds, self.log = (rc, timed_out,
                                                           seconds, log)

    def text(self):
        return read_text(self.log)

    def failure(self):
        """Why the command failed, or None."""
        if self.timed_out:
            return "timed out after %.0f s" % self.seconds
        if self.rc != 0:
            last = last_lines(self.text(), 1)
            return "exit status %s%s" % (self.rc, ": " + last[0] if last else "")
        return None


def read_text(path, limit=64 << 20):
    with open(path, "rb") as f:
        return f.read(limit).decode("utf-8", "replace")


def last_lines(text, count):
    return [l for l in text.splitlines() if l.strip()][-count:]


# --- Judges: (status, detail) from a step's output ---------------------------

def judge_kernel_test(text, outcome):
    """The kernel test passes only when it ran: `skipped` (no usable
    device) is a failure on the GPU machine."""
    skipped = re.search(r"^.*: skipped: .*$", text, re.M)
    if skipped:
        return FAILED, skipped.group(0).strip()
    counts = re.findall(r"^(\d+) passed, (\d+) failed$", text, re.M)
    if outcome.failure() or not counts:
        return FAILED, outcome.failure() or "no 'N passed, N failed' line"
    passed, failed = map(int, counts[-1])
    if failed or not passed:
        return FAILED, "%d passed, %d failed" % (passed, failed)
    return OK, "%d passed, 0 failed" % passed


def judge_parity(cpu_dump, cuda_dump, rtol=PARITY_RTOL):
    """A CUDA --check-step against the CPU target's on the same weights and
    data: the loss and every gradient within rtol (a NaN fails)."""
    worst, where = tools.compare_dumps(cpu_dump, cuda_dump)
    loss, _ = tools.load_dump(cuda_dump)
    cpu_loss, _ = tools.load_dump(cpu_dump)
    detail = ("loss %.9g (CPU %.9g); worst relative error %.2e at %s "
              "(bar %.0e)" % (loss, cpu_loss, worst, where, rtol))
    return (OK if worst <= rtol else FAILED), detail, dict(
        worst_error="%.2e" % worst)


LOSS = re.compile(r'"loss": ([^,}\s]+)')


def judge_replay(graph_log, plain_log, steps, graph_weights, plain_weights,
                 names=("replayed", "--no-cuda-graph")):
    """The same steps two ways, by default replayed from a CUDA graph and
    run kernel by kernel (--no-cuda-graph): every loss (logged in 9 digits,
    so a float32 exactly) and the weights after the last step equal bit for
    bit."""
    graph, plain = LOSS.findall(graph_log), LOSS.findall(plain_log)
    for name, losses in zip(names, (graph, plain)):
        if len(losses) != steps:
            return FAILED, "%s run logged %d of %d losses" % (name, len(losses),
                                                              steps)
        bad = [i + 1 for i, l in enumerate(losses) if not is_finite(l)]
        if bad:
            return FAILED, "%s run: loss %s at step %d" % (name,
                                                           losses[bad[0] - 1],
                                                           bad[0])
    for step, (a, b) in enumerate(zip(graph, plain), 1):
        if a != b:
            return FAILED, ("step %d: loss %s %s, %s %s" % (
                step, a, names[0], b, names[1]))
    if graph_weights != plain_weights:
        return FAILED, ("%d losses equal, but the weights after step %d "
                        "differ" % (steps, steps))
    return OK, ("%d losses and the weights after step %d bitwise equal "
                "(last loss %s)" % (steps, steps, graph[-1]))


def is_finite(token):
    try:
        return math.isfinite(float(token))
    except ValueError:   # null: the driver's JSON for NaN and infinity
        return False


def judge_training(log_text, steps, outcome):
    """A training run of ours: it finished, logged every step with a
    finite loss. Returns (status, detail, median step ms)."""
    failure = outcome.failure()
    losses = LOSS.findall(log_text)
    bad = [l for l in losses if not is_finite(l)]
    if failure or bad or len(losses) != steps:
        why = failure or ("loss %s" % bad[0] if bad else
                          "logged %d of %d steps" % (len(losses), steps))
        return FAILED, why, None
    times = [json.loads(l)["step_ms"] for l in log_text.splitlines()
             if l.startswith('{"step"')][BENCH_SKIP:]
    ms = statistics.median(times) if times else float("nan")
    return OK, "last loss %s" % losses[-1], ms


def judge_sanitizer(text, outcome):
    """compute-sanitizer memcheck: errors fail; a tool that did not get as
    far as an error summary (or says it broke) is not available; a run
    stopped at the deadline with no error so far is incomplete."""
    summary = re.findall(r"ERROR SUMMARY: (\d+) error", text)
    errors = int(summary[-1]) if summary else 0
    if errors:
        first = re.search(r"^=+ (?!COMPUTE-SANITIZER).*\S.*$", text, re.M)
        return FAILED, "%d error(s): %s" % (errors, first.group(0).strip("= ")
                                            if first else "")
    if outcome.timed_out:
        return INCOMPLETE, ("stopped after %.0f s at the deadline, no error "
                            "reported before" % outcome.seconds)
    refused = re.search(r"^.*(Internal Sanitizer Error|terminated before "
                        r"first instrumented).*$", text, re.M)
    if refused or not summary:
        line = refused.group(0) if refused else (last_lines(text, 1) or
                                                 ["no output"])[0]
        return NOT_AVAILABLE, line.strip("= ")
    if outcome.rc != 0:
        return FAILED, ("0 errors, but the program failed under the "
                        "sanitizer: " + outcome.failure())
    return OK, "memcheck: 0 errors"


def device_bytes(text):
    """'device memory: N bytes allocated at start' of a training run."""
    m = re.search(r"device memory: (\d+) bytes allocated at start", text)
    return int(m.group(1)) if m else None


def largest_fitting_batch(plans, limit_bytes):
    """The largest batch of the ladder whose planned total fits in
    limit_bytes, and where the ladder's line (plans grow linearly with the
    batch) meets the limit."""
    points = sorted((int(b), t) for b, t in plans.items())
    fits = [b for b, t in points if t <= limit_bytes]
    (b0, t0), (b1, t1) = points[0], points[-1]
    predicted = int(b0 + (limit_bytes - t0) * (b1 - b0) / (t1 - t0))
    return (max(fits) if fits else None), predicted


# --- What comes back: files in OUT within the device tool's limits ----------

def check_limits(out, max_files=MAX_OUT_FILES):
    """Every limit on OUT the device tool sets, as (passed, failed) lists
    of one-line findings."""
    passed, failed = [], []
    files, deep, odd = [], [], []
    for root, dirs, names in os.walk(out):
        depth = os.path.relpath(root, out).count(os.sep) + (root != out)
        for name in dirs + names:
            path = os.path.join(root, name)
            if not NAME.match(name) or os.path.islink(path):
                odd.append(os.path.relpath(path, out))
            if name in names:
                files.append(path)
                if depth > MAX_DEPTH:
                    deep.append(os.path.relpath(path, out))
    big = ["%s (%d bytes)" % (os.path.relpath(f, out), os.path.getsize(f))
           for f in files if os.path.getsize(f) >= MAX_FILE_BYTES]
    gz = [os.path.relpath(f, out) for f in files if f.endswith(".gz") and
          open(f, "rb").read(2) != b"\x1f\x8b"]
    for ok, line in (
            (0 < len(files) <= max_files,
             "%d file(s) in OUT (at most %d)" % (len(files), max_files)),
            (not big, "every file under %d bytes%s" % (
                MAX_FILE_BYTES, ": " + ", ".join(big) if big else "")),
            (not deep, "nothing more than %d folders down%s" % (
                MAX_DEPTH, ": " + ", ".join(deep) if deep else "")),
            (not odd, "plain files and folders named in [A-Za-z0-9._-]%s" % (
                ": " + ", ".join(odd) if odd else "")),
            (not gz, "archives are gzip (no xz needed)%s" % (
                ": " + ", ".join(gz) if gz else ""))):
        (passed if ok else failed).append(line)
    return passed, failed


def nvidia_library_dirs():
    """The folders of the shared libraries in Python's nvidia/ packages
    (cuDNN, cuBLAS, the CUDA runtime of PyTorch's wheels)."""
    try:
        import nvidia
    except ImportError:
        return []
    return sorted({os.path.dirname(lib) for root in nvidia.__path__
                   for lib in glob.glob(os.path.join(root, "**", "lib*.so*"),
                                        recursive=True)})


# --- The run ----------------------------------------------------------------

class Run:
    """One gpu-check: the deadline, a temporary folder (logs/, weights/,
    dumps/, the unpacked bundle) and OUT, which gets only OUT_FILES."""

    def __init__(self, out, dry=False, deadline_s=DEADLINE_S):
        self.start = time.monotonic()
        self.out, self.dry, self.deadline_s = out, dry, deadline_s
        os.makedirs(out, exist_ok=True)
        for name in OUT_FILES:
            if os.path.exists(os.path.join(out, name)):
                os.remove(os.path.join(out, name))
        self.tmp = tempfile.mkdtemp(prefix="gpu-check-")
        self.logs = os.path.join(self.tmp, "logs")
        for sub in ("logs", "weights", "dumps"):
            os.makedirs(os.path.join(self.tmp, sub))
        self.rows, self.failure_lines, self.weight_files = [], [], {}
        self.short_runs = {}
        self.env = dict(os.environ)
        self.verdict = "running"

    def elapsed(self):
        return time.monotonic() - self.start

    def left(self):
        return self.deadline_s - RESERVE_S - self.elapsed()

    def say(self, line=""):
        with open(os.path.join(self.out, "summary.txt"), "a") as f:
            f.write(line + "\n")
        try:
            print(line, flush=True)
        except BrokenPipeError:   # the reader went away; OUT has it all
            pass

    def execute(self, log_name, argv, limit, minimum=10, rehearse=False,
                env=None):
        """Runs argv, its output in logs/LOG_NAME, for at most `limit`
        seconds and never past the deadline (the whole process group is
        killed). None when fewer than `minimum` seconds are left: the step
        is not started. A dry run writes the command line instead, unless
        the command can run here too (`rehearse`)."""
        budget = min(limit, self.left())
        if budget < minimum:
            return None
        log = os.path.join(self.logs, log_name)
        if self.dry and not rehearse:
            with open(log, "w") as f:
                f.write("dry run: would run for at most %.0f s: %s\n"
                        % (budget, shlex.join(argv)))
            return Outcome(0, False, 0.0, log)
        start = time.monotonic()
        with open(log, "wb") as f:
            try:
                process = subprocess.Popen(
                    argv, stdout=f, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, env=env or self.env,
                    start_new_session=True)
            except OSError as e:
                f.write(("cannot run %s: %s\n" % (argv[0], e)).encode())
                return Outcome(127, False, 0.0, log)
            try:
                return Outcome(process.wait(timeout=budget), False,
                               time.monotonic() - start, log)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:   # it ended meanwhile
                    pass
                process.wait()
                return Outcome(None, True, time.monotonic() - start, log)

    def row(self, check, status, detail, log=None, **figures):
        """Adds one row of the table and rewrites OUT's files with it."""
        self.rows.append(dict(check=check, status=status, detail=detail,
                              log=os.path.basename(log) if log else None,
                              **figures))
        self.say("[%3.0f s] %-30s %-14s %s" % (self.elapsed(), check, status,
                                               detail))
        if status in FAILING:
            self.failure_lines.append("%s: %s" % (check, detail))
            if log and os.path.exists(log):
                self.failure_lines += ["  " + l for l in error_lines(log)
                                       if l.strip() not in detail]
        self.write_out()

    def write_out(self):
        table = dict(verdict=self.verdict, dry_run=self.dry,
                     elapsed_s=round(self.elapsed(), 1), rows=self.rows)
        self.replace("table.json", json.dumps(table, indent=1).encode())
        self.replace("table.md", markdown(self.rows, self.verdict).encode())
        # Logs that compress badly are cut shorter until the archive is
        # well under what comes back.
        cap = LOG_CAP
        logs = archive(self.logs, cap)
        while len(logs) > MAX_FILE_BYTES // 2 and cap > 4096:
            cap //= 4
            logs = archive(self.logs, cap)
        self.replace("logs.tar.gz", logs)

    def replace(self, name, data):
        part = os.path.join(self.out, name + ".part")
        with open(part, "wb") as f:
            f.write(data)
        os.replace(part, os.path.join(self.out, name))

    def attempt(self, check, step, *args):
        """Runs one step; its unexpected failure becomes a FAILED row, and
        the run goes on."""
        try:
            step(*args)
        except CheckError as e:
            self.row(check, FAILED, str(e))
        except Exception as e:  # noqa: BLE001 - reported, never a crash
            self.row(check, FAILED, "%s: %s" % (type(e).__name__, e))

    def finish(self):
        failed = [r for r in self.rows if r["status"] in FAILING]
        counts = {}
        for r in self.rows:
            counts[r["status"]] = counts.get(r["status"], 0) + 1
        self.verdict = "%s%s: %s in %.0f s" % (
            "FAIL" if failed or not self.rows else "PASS",
            " (dry run)" if self.dry else "",
            ", ".join("%d %s" % (n, s) for s, n in counts.items()),
            self.elapsed())
        self.write_out()
        self.say()
        for line in markdown(self.rows, self.verdict).splitlines():
            self.say(line)
        self.say()
        self.say("gpu-check: " + self.verdict)
        if self.failure_lines:
            self.say("first failure lines:")
            for line in self.failure_lines[:FAILURE_LINES]:
                self.say(line)
        shutil.rmtree(self.tmp, ignore_errors=True)
        return 1 if failed or not self.rows else 0


def error_lines(log, count=5):
    """The lines of a failed step's log worth reading first."""
    text = read_text(log)
    hits = [l.rstrip() for l in text.splitlines() if re.search(
        r"error|fail|nan|mismatch|differ|invalid|not found|=== ", l, re.I)]
    return (hits or last_lines(text, 3))[:count]


def markdown(rows, verdict):
    lines = ["| check | status | detail | figures |", "|---|---|---|---|"]
    for r in rows:
        figures = ", ".join("%s %s" % (k, v) for k, v in r.items()
                            if k not in ("check", "status", "detail", "log"))
        lines.append("| %s | %s | %s | %s |" % (
            r["check"], r["status"], r["detail"].replace("|", "/"), figures))
    return "\n".join(lines + ["", "verdict: " + verdict, ""])


def archive(folder, cap=LOG_CAP):
    """folder's files as a gzip tar, each cut to its first and last
    cap / 2 bytes when longer."""
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:gz") as tar:
        for name in sorted(os.listdir(folder)):
            with open(os.path.join(folder, name), "rb") as f:
                body = f.read()
            if len(body) > cap:
                body = (body[:cap // 2] + b"\n[... %d bytes cut ...]\n" %
                        (len(body) - cap) + body[-cap // 2:])
            info = tarfile.TarInfo("logs/" + name)
            info.size, info.mtime = len(body), int(time.time())
            tar.addfile(info, io.BytesIO(body))
    return data.getvalue()


# --- The steps --------------------------------------------------------------

PARITY_MODELS = ("preact20", "resnet18")
NCCL_CHECK = "NCCL world of one"
# What would make a data-parallel executable wait for other ranks
# (lib/Runtime/Comm/Rendezvous.cpp): the world-of-one run goes without.
LAUNCHER_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE",
                      "SLURM_STEP_NUM_TASKS", "WORLD_SIZE")


class GpuCheck(Run):
    """The steps, in the order they run: the bundle, the kernel test, CPU
    parity, replay against --no-cuda-graph, ResNet-164 against PyTorch,
    compute-sanitizer last (it takes what time is left)."""

    def run(self, bundle):
        self.say("gpu-check%s: deadline %.0f s, temporary files in %s" % (
            " --dry-run" if self.dry else "", self.deadline_s, self.tmp))
        self.attempt("bundle", self.open_bundle, bundle)
        if not hasattr(self, "cpu_env"):   # not unpacked: nothing can run
            return self.finish()
        self.attempt("GPU", self.gpu)
        self.attempt("weights", self.fill_weights)
        self.attempt("kernel test", self.kernel_test)
        for name in PARITY_MODELS:
            for bits in (0, 4):
                self.attempt("parity %s %d-bit" % (name, bits), self.parity,
                             name, bits)
        for bits in (0, 4):
            self.attempt("replay preact20 %d-bit" % bits, self.replay, bits)
        self.attempt(NCCL_CHECK, self.nccl_world_of_one)
        self.attempt("ResNet-164 benchmark", self.benchmark)
        self.attempt("compute-sanitizer", self.sanitizer)
        return self.finish()

    def path(self, *parts):
        return os.path.join(self.bundle, *parts)

    def open_bundle(self, bundle):
        """Unpacks the bundle (gzip) and checks it: its files, that every
        executable's libraries resolve with what it carries plus the
        nvidia/ packages' (the CUDA toolkit's in a dry run), and that every
        training executable's --help lists the flags this run uses. What
        is wrong is reported and the run goes on: each step that needs it
        fails on its own, the others still count."""
        self.bundle = bundle
        if not os.path.isdir(bundle):
            with tarfile.open(bundle, "r:gz") as tar:
                extra = ({"filter": "fully_trusted"}
                         if hasattr(tarfile, "data_filter") else {})
                tar.extractall(self.tmp, **extra)
            self.bundle = os.path.join(self.tmp, "gpu-bundle")
        dirs = nvidia_library_dirs() or (["/usr/local/cuda/lib64"]
                                         if self.dry else [])
        self.env["LD_LIBRARY_PATH"] = ":".join(
            dirs + [p for p in [os.environ.get("LD_LIBRARY_PATH")] if p])
        # The CPU executables find Debian's libraries the kernel test
        # carries (oneDNN, OpenMP, protobuf) there; nothing else does.
        self.cpu_env = dict(self.env, LD_LIBRARY_PATH=":".join(
            [self.path("bin", "blpa-cuda-libs")] + dirs))
        plans = self.path("plans.json")
        self.plans = json.load(open(plans)) if os.path.exists(plans) else {}
        missing = [p for p in self.bundle_files()
                   if not os.path.exists(self.path(p))]
        if missing:
            return self.row("bundle", FAILED, "missing " + ", ".join(
                missing[:5]) + " (rebuild with scripts/gpu-bundle)")
        problems = self.check_executable("blpa-cuda-kernel-test", False,
                                         self.env)
        for exe in self.bundle_files():
            if exe.startswith("bin/") and exe != "bin/blpa-cuda-kernel-test":
                problems += self.check_executable(
                    exe[4:], True,
                    self.cpu_env if exe.endswith(".cpu") else self.env)
        if problems:
            return self.row("bundle", FAILED, "; ".join(problems[:4]))
        self.row("bundle", OK, "%d executables: libraries resolve (%s), "
                 "--help lists %s" % (
                     sum(f.startswith("bin/") for f in self.bundle_files()),
                     ":".join(dirs) or "-", " ".join(USED_FLAGS)))

    def bundle_files(self):
        """What the run needs from the bundle, executables first."""
        exes = ["%s-%d" % (n, b) for n in PARITY_MODELS for b in (0, 4)]
        exes += [e + ".cpu" for e in exes] + ["preact20-0-dp", "preact164-0"]
        exes += ["preact164-4-b%s" % b for b in self.plans]
        return (["bin/blpa-cuda-kernel-test"] + ["bin/" + e for e in exes] +
                ["plans.json"] +
                ["models/%s.%s" % (n, k) for n in PARITY_MODELS +
                 ("preact164",) for k in ("structure.onnx", "sha256")] +
                ["data/%s.%s.npy" % (n, k) for n in PARITY_MODELS
                 for k in "xy"])

    def check_executable(self, name, trains, env):
        exe = self.path("bin", name)
        ldd = subprocess.run(["ldd", exe], env=env, capture_output=True,
                             text=True, timeout=30) if shutil.which(
                                 "ldd") else None
        unresolved = [l.split()[0] for l in ldd.stdout.splitlines()
                      if "not found" in l] if ldd else []
        if unresolved:
            return ["%s: %s not found" % (name, " ".join(unresolved))]
        if not trains:
            return []
        help_text = subprocess.run([exe, "--help"], env=env,
                                   capture_output=True, text=True, timeout=30)
        absent = [f for f in USED_FLAGS if f not in help_text.stdout]
        if help_text.returncode or absent:
            return ["%s --help: exit %d, lacks %s" % (
                name, help_text.returncode, " ".join(absent) or "nothing")]
        return []

    def gpu(self):
        query = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
             "--format=csv,noheader"], capture_output=True, text=True,
            timeout=30) if shutil.which("nvidia-smi") else None
        if query and query.returncode == 0 and query.stdout.strip():
            self.row("GPU", DRY if self.dry else OK,
                     query.stdout.strip().splitlines()[0])
        else:
            self.row("GPU", DRY if self.dry else FAILED, "nvidia-smi finds "
                     "no GPU" if query else "no nvidia-smi")

    def fill_weights(self):
        for name in PARITY_MODELS + ("preact164",):
            self.weights(name)
        self.row("weights", OK, "%s filled, SHA-256 as the bundle records"
                 % ", ".join(self.weight_files))

    def weights(self, name):
        """The bundle's weightless model filled with the hash weights; the
        digest must be the one the build machine recorded."""
        if name not in self.weight_files:
            out = os.path.join(self.tmp, "weights", name + ".onnx")
            digest = tools.fill(self.path("models", name + ".structure.onnx"),
                                out, 0)
            expected = open(self.path("models", name + ".sha256")).read().strip()
            if digest != expected:
                raise CheckError("weights of %s: SHA-256 %s, the bundle "
                                 "expects %s" % (name, digest, expected))
            self.weight_files[name] = out
        return self.weight_files[name]

    def step(self, check, log, argv, limit, judge, minimum=10,
             late=NOT_RUN):
        """Runs one command and adds its row: `late` when the deadline is
        near, the command line in a dry run, else judge(outcome) ->
        (status, detail, figures)."""
        outcome = self.execute(log, argv, limit, minimum)
        if outcome is None:
            self.row(check, late, "not started: %.0f s left" %
                     max(0, self.left()))
        elif self.dry:
            self.row(check, DRY, "would run " + " ".join(
                os.path.basename(a) for a in argv[:3]), outcome.log)
        else:
            status, detail, figures = judge(outcome)
            self.row(check, status, detail, outcome.log, **figures)
        return outcome

    def kernel_test(self):
        self.step("kernel test", "kernel-test.log",
                  [self.path("bin", "blpa-cuda-kernel-test")], 150,
                  lambda o: judge_kernel_test(o.text(), o) + ({},))

    def parity(self, name, bits):
        """One --check-step of the CUDA executable against the CPU
        executable's on the same machine, weights and data (the CPU half
        runs in a dry run too)."""
        tag = "%s-%d" % (name, bits)
        dumps = [os.path.join(self.tmp, "dumps", tag + side)
                 for side in (".cpu", ".cuda")]
        argv = ["--check-step", "--weights", self.weights(name),
                "--inputs", self.path("data", name + ".x.npy"),
                "--labels", self.path("data", name + ".y.npy"), "--dump"]
        cpu = self.execute("parity-%s.cpu.log" % tag, [self.path(
            "bin", tag + ".cpu")] + argv + [dumps[0]], 90, rehearse=True,
            env=self.cpu_env)
        check = "parity %s %d-bit" % (name, bits)
        if cpu is not None and cpu.failure():
            return self.row(check, FAILED, "the CPU reference: " +
                            cpu.failure(), cpu.log)
        if cpu is not None and self.dry:
            return self.row(check, DRY, "the CPU reference ran (loss %.9g); "
                            "would run %s" % (tools.load_dump(dumps[0])[0],
                                              tag), cpu.log)

        def judge(outcome):
            if outcome.failure():
                return FAILED, outcome.failure(), {}
            return judge_parity(*dumps)

        self.step(check, "parity-%s.log" % tag,
                  [self.path("bin", tag)] + argv + [dumps[1]], 90, judge)

    def short_run(self, exe, tag, extra=(), limit=60, env=None):
        """REPLAY_STEPS --synthetic steps of `exe` from preact20's weights,
        once per tag: (outcome, log text, SHA-256 of the saved weights),
        the last two None unless it ran cleanly; outcome None when the
        deadline is near."""
        if tag not in self.short_runs:
            log = os.path.join(self.logs, tag + ".jsonl")
            saved = os.path.join(self.tmp, "dumps", tag + ".onnx")
            outcome = self.execute(tag + ".log", [
                self.path("bin", exe), "--synthetic", "--steps",
                str(REPLAY_STEPS), "--lr", "0.01", "--weights",
                self.weights("preact20"), "--log", log, "--save", saved] +
                list(extra), limit, env=env)
            ran = outcome is not None and not self.dry and not outcome.failure()
            self.short_runs[tag] = (outcome, read_text(log) if ran else None,
                                    tools.sha256(saved) if ran else None)
        return self.short_runs[tag]

    def compare_runs(self, check, runs):
        """The row of two short runs [(description, exe, tag, extra[,
        limit in seconds, environment])] that must agree bit for bit."""
        results = []
        for description, exe, tag, extra, *more in runs:
            outcome, text, digest = self.short_run(exe, tag, extra, *more)
            if outcome is None:
                return self.row(check, NOT_RUN, "not started: %.0f s left"
                                % max(0, self.left()))
            if self.dry:
                exes = sorted({r[1] for r in runs})
                return self.row(check, DRY, "would run %s" % (
                    exes[0] + " twice" if len(exes) == 1 else
                    " and ".join(exes)), outcome.log)
            if outcome.failure():
                return self.row(check, FAILED, "%s run: %s" % (
                    description, outcome.failure()), outcome.log)
            results.append((text, digest, outcome.seconds))
        status, detail = judge_replay(
            results[0][0], results[1][0], REPLAY_STEPS, results[0][1],
            results[1][1], names=tuple(r[0] for r in runs))
        self.row(check, status, detail, outcome.log,
                 seconds=round(results[0][2], 1))

    def replay(self, bits):
        """REPLAY_STEPS training steps of ResNet-20 replayed from a CUDA
        graph (from the third step on) and the same run with
        --no-cuda-graph."""
        exe = "preact20-%d" % bits
        self.compare_runs("replay preact20 %d-bit" % bits, [
            ("replayed", exe, "replay-%d-graph" % bits, ()),
            ("--no-cuda-graph", exe, "replay-%d-plain" % bits,
             ("--no-cuda-graph",))])

    def nccl_world_of_one(self):
        """ResNet-20 compiled with --data-parallel, started without a
        launcher: NCCL's communicator of one rank, its bucket sums recorded
        into the step's CUDA graph with the rest. A mean over one replica
        changes nothing, so every loss and the final weights equal the
        plain executable's bit for bit. The run must take under 30 s."""
        alone = {k: v for k, v in self.env.items()
                 if k not in LAUNCHER_VARIABLES}
        self.compare_runs(NCCL_CHECK, [
            ("--data-parallel", "preact20-0-dp", "nccl-world-of-one",
             ("--comm-timeout", "25"), 30, alone),
            ("plain", "preact20-0", "replay-0-graph", ())])

    def train(self, check, exe, steps, torch_result, limit=120):
        """A --synthetic run of ours: median step time (CUDA events, first
        BENCH_SKIP steps dropped) and the device memory it allocated."""
        log = os.path.join(self.logs, exe + ".jsonl")

        def judge(outcome):
            text = read_text(log) if os.path.exists(log) else ""
            status, detail, ms = judge_training(text, steps, outcome)
            allocated = device_bytes(outcome.text())
            if status != OK or allocated is None:
                return FAILED, detail if status != OK else "no device memory line", {}
            figures = dict(step_ms=round(ms, 3), peak_mib=round(allocated / 2**20))
            if torch_result:
                detail += "; step %.2fx, memory %.2fx PyTorch's" % (
                    ms / torch_result["step_ms"],
                    allocated / torch_result["peak_bytes"])
            return status, detail, figures

        return self.step(check, exe + ".log", [
            self.path("bin", exe), "--synthetic", "--steps", str(steps),
            "--lr", "0.01", "--weights", self.weights("preact164"),
            "--log", log], limit, judge)

    def benchmark(self):
        """Pre-activation ResNet-164, batch 128, 32x32: PyTorch eager, ours
        exact and 4-bit; then the largest 4-bit batch of the ladder whose
        plan fits in PyTorch's peak, trained."""
        result_path = os.path.join(self.logs, "torch.json")
        result = {}

        def judge(outcome):
            if outcome.failure():
                return FAILED, outcome.failure(), {}
            result.update(json.load(open(result_path)))
            bad = [l for l in result["losses"] if not math.isfinite(l)]
            return ((FAILED if bad else OK),
                    ("loss %s in %d steps" % (bad[0], len(result["losses"]))
                     if bad else "median of %d steps after %d warm-up, peak "
                     "counted after the warm-up" % (result["steps"],
                                                    result["warmup"])),
                    dict(step_ms=round(result["step_ms"], 3),
                         peak_mib=round(result["peak_bytes"] / 2**20)))

        self.step("PyTorch eager, batch 128", "torch.log", [
            sys.executable, tools.__file__, "torch-bench", result_path,
            "--depth", "164", "--batch", "128"], 180, judge)
        self.train("ours exact, batch 128", "preact164-0", BENCH_STEPS, result)
        self.train("ours 4-bit, batch 128", "preact164-4-b128", BENCH_STEPS,
                   result)
        self.largest_batch(result)

    def largest_batch(self, torch_result):
        check = "ours 4-bit, largest batch"
        if self.dry or not torch_result:
            return self.row(check, DRY if self.dry else NOT_AVAILABLE,
                            "needs PyTorch's peak" + ("" if self.dry else
                                                      " (see its row)"))
        limit = torch_result["peak_bytes"]
        batch, predicted = largest_fitting_batch(self.plans, limit)
        if batch is None:
            return self.row(check, FAILED, "no batch of the ladder plans "
                            "within PyTorch's %d MiB" % (limit >> 20))
        outcome = self.train(check + " %d" % batch, "preact164-4-b%d" % batch,
                             10, torch_result, limit=150)
        allocated = outcome and device_bytes(outcome.text())
        if not allocated or outcome.failure():
            return   # the training row says why
        if allocated > limit:
            self.row(check, FAILED, "batch %d allocated %d bytes, over "
                     "PyTorch's peak %d" % (batch, allocated, limit))
        else:
            self.row(check, OK, "batch %d of the ladder fits PyTorch's peak "
                     "(the plans' line predicts %d)" % (batch, predicted),
                     batch=batch, predicted=predicted)

    def sanitizer(self):
        """compute-sanitizer memcheck on three training steps (a direct
        run, the capture, one replay), API errors off; last, with the time
        that is left."""
        tool = (shutil.which("compute-sanitizer") or
                "/usr/local/cuda/bin/compute-sanitizer")
        if not os.access(tool, os.X_OK):
            return self.row("compute-sanitizer", NOT_AVAILABLE,
                            "not installed")
        self.step("compute-sanitizer", "sanitizer.log", [
            tool, "--tool", "memcheck", "--report-api-errors", "no",
            "--error-exitcode", "9", self.path("bin", "preact20-4"),
            "--synthetic", "--steps", "3", "--lr", "0.01",
            "--weights", self.weights("preact20"),
            "--log", os.path.join(self.logs, "sanitizer.jsonl")], 240,
            lambda o: judge_sanitizer(o.text(), o) + ({},), minimum=30,
            late=INCOMPLETE)


def main():
    import argparse
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="the whole check (scripts/gpu-check)")
    p.add_argument("out")
    p.add_argument("--bundle", default="gpu-bundle.tar.gz")
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--deadline", type=float, default=DEADLINE_S)
    p = sub.add_parser("limits", help="OUT within what the device tool "
                       "brings back; prints N passed, N failed")
    p.add_argument("out")
    p.add_argument("--max-files", type=int, default=MAX_OUT_FILES)
    args = parser.parse_args()
    if args.command == "limits":
        passed, failed = check_limits(args.out, args.max_files)
        for line in passed:
            print("ok: " + line)
        for line in failed:
            print("FAILED: " + line)
        print("%d passed, %d failed" % (len(passed), len(failed)))
        sys.exit(1 if failed else 0)
    if not os.path.exists(args.bundle):
        sys.exit("gpu-check: no bundle at %s (build it with scripts/gpu-bundle)"
                 % args.bundle)
    sys.exit(GpuCheck(args.out, args.dry_run, args.deadline).run(args.bundle))


if __name__ == "__main__":
    main()
