"""The child processes of bench/memory.py, each in a process of its own.

    /usr/bin/python3 -S bench/memory_child.py maxrss OUT.json CMD [ARG...]
    /usr/bin/python3 bench/memory_child.py torch MODEL BATCH IMAGE_SIZE \\
        [--steps 2] [--threads 2]

`maxrss` runs CMD (its stdout and stderr pass through), writes
{"returncode": ..., "max_rss_bytes": ...} to OUT.json from
getrusage(RUSAGE_CHILDREN) and exits with CMD's status. It exists because
Linux counts in a child's ru_maxrss the resident memory of the address
space it had before exec, i.e. of the process that forked it: forked from
the benchmark (torch loaded, about 500 MB) every figure would be at least
that; forked from here the floor is about 10 MB.

`torch` trains MODEL on the CPU (float32, SGD with momentum 0.9,
F.cross_entropy, one random batch) and prints one JSON line with its RSS
after the imports and just before the first step; its peak is what
`maxrss` records around it.

Only the standard library is imported at the top: `maxrss` stays small, and
`torch` imports only what a PyTorch user training MODEL imports (torch, and
torchvision for its models or blpa.models, i.e. onnx, for the
pre-activation ResNet)."""

import json
import os
import resource
import subprocess
import sys

MODELS = ("preact-resnet-164", "resnet18", "resnet50", "gpt")


def maxrss(out_path, cmd):
    """Runs `cmd` and records its peak RSS (see the module's docstring)."""
    returncode = subprocess.call(cmd)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    with open(out_path, "w") as f:
        json.dump({"returncode": returncode, "max_rss_bytes": peak}, f)
    sys.exit(returncode if returncode >= 0 else 128 - returncode)


def model_builder(key):
    """A zero-argument builder of model `key` (seeded, 10 classes). The
    model's library is imported when asked, so that a process training a
    torchvision model does not also load blpa and onnx, and the reverse."""
    import torch
    if key in ("preact-resnet-164", "gpt"):
        sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..",
                                        "python"))
        from blpa import models
        if key == "gpt":
            return models.gpt
        return lambda: models.preact_resnet(depth=164)
    import torchvision

    def build():
        torch.manual_seed(0)
        return getattr(torchvision.models, key)(num_classes=10)
    return build


def vm_status_bytes(field):
    """A memory field of /proc/self/status (VmRSS, VmHWM) in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no %s in /proc/self/status" % field)


def random_batch(model, batch, size):
    """Images [batch, 3, size, size] and class labels, or for a language
    model (one with `example`) token ids and next-token labels [batch, T]."""
    import torch
    if hasattr(model, "example"):
        ids = model.example(batch)
        return ids, torch.randint(0, model.vocab, ids.shape)
    return torch.randn(batch, 3, size, size), torch.randint(0, 10, (batch,))


def train(model, batch, size, steps, times=None):
    """The training loop of bench/cpu_step.py on one random batch; returns
    the RSS just before the first step. Appends each step's seconds to
    `times` when given."""
    import time
    import torch
    import torch.nn.functional as F
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = random_batch(model, batch, size)
    before_step = vm_status_bytes("VmRSS")
    for _ in range(steps):
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        logits = model(x)
        F.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                        y.reshape(-1)).backward()
        opt.step()
        if times is not None:
            times.append(time.perf_counter() - start)
    return before_step


def torch_main(argv):
    import argparse
    import torch
    parser = argparse.ArgumentParser(prog="memory_child.py torch")
    parser.add_argument("model", choices=MODELS)
    parser.add_argument("batch", type=int)
    parser.add_argument("image_size", type=int)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    build = model_builder(args.model)
    after_imports = vm_status_bytes("VmRSS")
    times = []
    before_step = train(build(), args.batch, args.image_size, args.steps,
                        times)
    print(json.dumps({"after_imports": after_imports,
                      "before_step": before_step,
                      "vm_hwm": vm_status_bytes("VmHWM"),
                      "step_seconds": times}))


if __name__ == "__main__":
    if len(sys.argv) > 3 and sys.argv[1] == "maxrss":
        maxrss(sys.argv[2], sys.argv[3:])
    elif len(sys.argv) > 1 and sys.argv[1] == "torch":
        torch_main(sys.argv[2:])
    else:
        sys.exit(__doc__.split("\n\n")[1])
