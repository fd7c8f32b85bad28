"""Times one training step of blpa's executable against PyTorch on the CPU,
side by side in one run, same model, batch and thread count.

    PYTHONPATH=python /usr/bin/python3 bench/cpu_step.py [--threads 2]
        [--resnet164] [--max-isa avx2]

--max-isa avx2 caps both sides at AVX2 on an AVX-512 machine, as a stand-in
for an AVX2-only CPU: oneDNN (ours and PyTorch's) through ONEDNN_MAX_CPU_ISA,
PyTorch's own kernels through ATEN_CPU_CAPABILITY and OpenBLAS through
OPENBLAS_CORETYPE. blpa's own kernels are built for baseline x86-64 and do
not depend on it. The script re-executes itself with that environment,
because PyTorch reads it when it is imported.

Prints a markdown table (paste it into docs/benchmarks.md with the date and
machine it prints); writes nothing itself."""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings


# The environment each --max-isa value sets; read before torch is imported.
ISA_ENVIRONMENT = {
    "avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2",
             "OPENBLAS_CORETYPE": "Haswell"},
}


def reexec_with_isa_cap():
    """Restarts this script under --max-isa's environment unless it has it."""
    if "--max-isa" not in sys.argv:
        return
    isa = sys.argv[sys.argv.index("--max-isa") + 1]
    wanted = ISA_ENVIRONMENT.get(isa)
    if wanted is None:
        sys.exit("--max-isa: unknown ISA %r; known: %s"
                 % (isa, ", ".join(ISA_ENVIRONMENT)))
    if all(os.environ.get(k) == v for k, v in wanted.items()):
        return
    os.execve(sys.executable, [sys.executable] + sys.argv,
              dict(os.environ, **wanted))


reexec_with_isa_cap()

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))
from blpa import models, tool  # noqa: E402

warnings.filterwarnings("ignore")


def blpa_ms_per_step(onnx_path, batch, steps, warmup, threads, workdir):
    exe = tool.compile(onnx_path, os.path.join(workdir, "step"),
                       batch_size=batch)
    log = os.path.join(workdir, "log.jsonl")
    tool.run([exe, "--synthetic", "--steps", steps + warmup, "--lr", 0.01,
              "--momentum", 0.9, "--threads", threads, "--log", log])
    with open(log) as f:
        rates = [json.loads(l)["images_per_s"] for l in f if '"step"' in l]
    timed = rates[warmup:]
    return 1e3 * sum(batch / rate for rate in timed) / len(timed)


def torch_ms_per_step(model, shape, steps, warmup, threads):
    torch.set_num_threads(threads)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(*shape)
    y = torch.randint(0, 10, (shape[0],))

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return 1e3 * (time.perf_counter() - start) / steps


def usable_cores():
    """CPUs this process may run on (a container's share, not the host's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count()


def torch_capability():
    """The vector ISA PyTorch's own kernels dispatch to, as it reports it."""
    for line in torch.__config__.show().splitlines():
        if "CPU capability usage:" in line:
            return line.split(":", 1)[1].strip()
    return "unknown"


def cpu_name():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=usable_cores())
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--resnet164", action="store_true",
                        help="also time pre-act ResNet-164 at batch 32 "
                             "(about 2 s a step on 2 cores)")
    parser.add_argument("--max-isa", choices=sorted(ISA_ENVIRONMENT),
                        help="cap both sides at this instruction set")
    args = parser.parse_args()
    cases = [
        ("example CNN (Fashion-MNIST)", models.example_cnn, (64, 1, 28, 28)),
        ("pre-act ResNet-20 (CIFAR)", lambda: models.preact_resnet(depth=20),
         (32, 3, 32, 32)),
    ]
    if args.resnet164:
        cases.append(("pre-act ResNet-164 (CIFAR)",
                      lambda: models.preact_resnet(depth=164),
                      (32, 3, 32, 32)))
    print("date: %s, machine: %s, %d cores, PyTorch %s, %d timed steps "
          "after %d warm-up, instruction set: %s (PyTorch uses %s)" % (
              datetime.date.today(), cpu_name(), usable_cores(),
              torch.__version__, args.steps, args.warmup,
              ("capped at " + args.max_isa if args.max_isa
               else "the machine's best"), torch_capability()))
    print()
    print("| model | batch | threads | blpa ms/step | PyTorch ms/step "
          "| ratio (blpa / PyTorch) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, build, shape in cases:
        with tempfile.TemporaryDirectory() as workdir:
            path = os.path.join(workdir, "model.onnx")
            models.export(build(), path, shape)
            ours = blpa_ms_per_step(path, shape[0], args.steps, args.warmup,
                                    args.threads, workdir)
            theirs = torch_ms_per_step(build(), shape, args.steps,
                                       args.warmup, args.threads)
        print("| %s | %d | %d | %.1f | %.1f | %.2f |" % (
            name, shape[0], args.threads, ours, theirs, ours / theirs),
            flush=True)


if __name__ == "__main__":
    main()
