#!/usr/bin/env python3
"""The tools of scripts/gpu-bundle (build machine) and scripts/gpu-check
(GPU machine; its run is bench/gpu_run.py): deterministic weights both
machines derive alike, the comparison of two --check-step dumps, and the
PyTorch baseline on the GPU.

Weights: the GPU machine cannot receive resnet18's 47 MB of weights within
the carry limit, so both machines fill a weightless model (blpa-opt
--embed-weights=false keeps names and shapes) with values from an integer
hash of (tensor index, element index, seed) in uint32 arithmetic, which is
bit-identical everywhere; the bundle records the filled file's SHA-256 and
the GPU side checks it. The same holds for the CPU executables that
give the parity reference there (their results need not cross machines:
a gradient dump of resnet18 is 47 MB too).
"""

import argparse
import hashlib
import json
import math
import os
import statistics
import sys

import numpy as np


def hash_uniform(count, stream, seed):
    """`count` floats in [0, 1) from a 32-bit integer hash (murmur3's
    finalizer) of (stream, index, seed): identical on every machine."""
    with np.errstate(over="ignore"):
        x = (np.arange(count, dtype=np.uint32) * np.uint32(0x9E3779B1) +
             np.uint32((stream * 0x85EBCA77 + seed * 0xC2B2AE3D) & 0xFFFFFFFF))
        x ^= x >> np.uint32(16)
        x *= np.uint32(0x85EBCA6B)
        x ^= x >> np.uint32(13)
        x *= np.uint32(0xC2B2AE35)
        x ^= x >> np.uint32(16)
    return (x >> np.uint32(8)).astype(np.float64) / float(1 << 24)


def filled_values(name, shape, stream, seed):
    """Weights like a freshly initialized network's: fan-in scaled uniform
    for convolution and linear weights, batch-norm scales and running
    variances near 1, everything else small."""
    count = int(np.prod(shape)) if shape else 1
    u = hash_uniform(count, stream, seed)
    if len(shape) >= 2:
        fan_in = int(np.prod(shape[1:]))
        values = (2 * u - 1) * np.sqrt(3.0 / fan_in)
    elif name.endswith("running_var"):
        values = 1 + 0.1 * u
    elif name.endswith("weight"):
        values = 1 + 0.1 * (2 * u - 1)
    else:
        values = 0.1 * (2 * u - 1)
    return values.astype(np.float32).reshape(shape)


def fill(model_path, out_path, seed):
    import onnx
    from onnx import numpy_helper
    model = onnx.load(model_path)
    for stream, init in enumerate(model.graph.initializer):
        if init.data_type != onnx.TensorProto.FLOAT:
            continue
        values = filled_values(init.name, list(init.dims), stream, seed)
        init.CopyFrom(numpy_helper.from_array(values, init.name))
    onnx.save(model, out_path)
    return sha256(out_path)


def strip(model_path, out_path):
    """The model with its float initializers' values dropped (names, shapes
    and types stay): what fill starts from on the GPU machine."""
    import onnx
    model = onnx.load(model_path)
    for init in model.graph.initializer:
        if init.data_type == onnx.TensorProto.FLOAT:
            init.ClearField("raw_data")
            init.ClearField("float_data")
    onnx.save(model, out_path)


def sha256(path):
    """The digest of the float initializers' names and values, which fill
    makes identical on every machine (the file's bytes depend on the onnx
    version that wrote them)."""
    import onnx
    from onnx import numpy_helper
    digest = hashlib.sha256()
    for init in onnx.load(path).graph.initializer:
        if init.data_type == onnx.TensorProto.FLOAT:
            digest.update(init.name.encode() + b"\0")
            digest.update(numpy_helper.to_array(init).astype("<f4").tobytes())
    return digest.hexdigest()


def load_dump(dump_dir):
    """The loss and the gradients by initializer of a --check-step dump."""
    grad_dir = os.path.join(dump_dir, "grads")
    return (float(np.load(os.path.join(dump_dir, "loss.npy"))),
            {name[:-len(".npy")]: np.load(os.path.join(grad_dir, name))
             for name in sorted(os.listdir(grad_dir))})


def compare_dumps(reference_dir, got_dir):
    """The worst relative error of a --check-step against a reference one:
    of the loss, and of each gradient as |g - r| / |r| (2-norms), or
    |g - r| / |all of r| for a gradient that is zero up to rounding
    (|r| <= 1e-6 |all of r|: a bias before a batch norm). Returns
    (worst, where); a NaN counts as an infinite error, so it never passes."""
    ref_loss, ref = load_dump(reference_dir)
    loss, got = load_dump(got_dir)

    def relative(diff, scale):
        error = diff / max(scale, 1e-30)
        return error if math.isfinite(error) else math.inf

    worst, where = relative(abs(loss - ref_loss), abs(ref_loss)), "loss"
    total = math.sqrt(sum(np.sum(r.astype(np.float64) ** 2)
                          for r in ref.values()))
    for name, r in ref.items():
        if name not in got or got[name].shape != r.shape:
            return math.inf, name + " (missing or reshaped)"
        r = r.astype(np.float64)
        norm = float(np.linalg.norm(r))
        error = relative(float(np.linalg.norm(got[name] - r)),
                         norm if norm > 1e-6 * total else total)
        if error > worst:
            worst, where = error, name
    return worst, where


def timed_steps(step, warmup, steps, start_peak):
    """Calls step() -> (milliseconds, loss) warmup + steps times and
    start_peak() once between the warm-up and the first timed step.
    Returns the timed steps' milliseconds and every step's loss."""
    times, losses = [], []
    for i in range(warmup + steps):
        if i == warmup:
            start_peak()
        ms, loss = step()
        losses.append(loss)
        if i >= warmup:
            times.append(ms)
    return times, losses


def torch_bench(depth, batch, size, steps, warmup):
    """PyTorch eager on the GPU: median step time by CUDA events and the
    peak allocated memory of the timed steps, SGD with momentum, TF32 off
    like ours. The peak is reset after the warm-up, whose cuDNN algorithm
    search (benchmark mode) allocates workspaces no later step needs."""
    import torch
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..",
                                    "python"))
    from blpa import models
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    model = models.preact_resnet(depth=depth, image_size=size).cuda()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, size, size, device="cuda")
    y = torch.randint(0, 10, (batch,), device="cuda")

    def step():
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end), loss.item()

    def start_peak():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()

    times, losses = timed_steps(step, warmup, steps, start_peak)
    return {"step_ms": statistics.median(times),
            "peak_bytes": torch.cuda.max_memory_allocated(),
            "losses": losses, "steps": steps, "warmup": warmup,
            "gpu": torch.cuda.get_device_name()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("fill")
    p.add_argument("model")
    p.add_argument("out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--expect-sha256")
    p = sub.add_parser("strip")
    p.add_argument("model")
    p.add_argument("out")
    p = sub.add_parser("torch-bench")
    p.add_argument("out")
    p.add_argument("--depth", type=int, default=164)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()

    if args.command == "fill":
        digest = fill(args.model, args.out, args.seed)
        if args.expect_sha256 and digest != args.expect_sha256:
            sys.exit("fill: %s has SHA-256 %s, the bundle expects %s"
                     % (args.out, digest, args.expect_sha256))
        print(digest)
    elif args.command == "strip":
        strip(args.model, args.out)
    elif args.command == "torch-bench":
        result = torch_bench(args.depth, args.batch, args.size, args.steps,
                             args.warmup)
        with open(args.out, "w") as f:
            json.dump(result, f)
        print(json.dumps(result))


if __name__ == "__main__":
    main()
