"""How far two float32 implementations of the same step stray from each
other, measured against issue 7's per-tensor gradient bar.

The bar for a whole torchvision model at 64x64, batch 4 is: no parameter's
gradient error against float64 more than twice PyTorch's own float32 error
on the same step, or 1e-3 where that is larger (test/python/test_zoo.py
explains why the suite asserts a looser bar). This script applies the bar
to PyTorch itself: its float32 gradients computed another way (oneDNN off,
one thread: other convolution algorithms and summation orders) against its
default float32 path. Where PyTorch fails its own bar, no float32
implementation whose rounding differs from PyTorch's default can be held
to it tensor by tensor.

    /usr/bin/python3 bench/float32_spread.py [--models resnet50,googlenet]
        [--seeds 1,2,3,4]

Prints a markdown table; writes nothing."""

import argparse
import copy
import datetime

import numpy as np
import torch
import torch.nn.functional as F
import torchvision

# As test/python/test_zoo.py builds them.
KWARGS = {"googlenet": {"aux_logits": False, "init_weights": True},
          "efficientnet_b0": {"stochastic_depth_prob": 0.0}}


def gradients(model, x, y, dtype, mkldnn, threads):
    torch.set_num_threads(threads)
    torch.backends.mkldnn.enabled = mkldnn
    copy_ = copy.deepcopy(model).to(dtype).train()
    loss = F.cross_entropy(copy_(torch.from_numpy(x).to(dtype)),
                           torch.from_numpy(y))
    loss.backward()
    return {n: p.grad.double().numpy() for n, p in copy_.named_parameters()}


def relative_errors(grads, exact):
    """As test_zoo.relative_errors: each tensor's error relative to its
    norm, or to 1e-6 of the whole gradient's for tensors ~0 in float64."""
    total = np.sqrt(sum(np.sum(g ** 2) for g in exact.values()))
    return {p: np.linalg.norm(grads[p] - ref)
            / max(np.linalg.norm(ref), 1e-6 * total)
            for p, ref in exact.items()}


def measure(name, seed):
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(num_classes=10,
                                              **KWARGS.get(name, {}))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((4, 3, 64, 64)).astype(np.float32)
    y = rng.integers(0, 10, size=4).astype(np.int64)
    exact = gradients(model, x, y, torch.float64, True, 2)
    default = relative_errors(gradients(model, x, y, torch.float32, True, 2),
                              exact)
    other = relative_errors(gradients(model, x, y, torch.float32, False, 1),
                            exact)
    ratios = {p: other[p] / max(2 * default[p], 1e-3) for p in exact}
    worst = max(ratios, key=ratios.get)
    return (sum(r > 1 for r in ratios.values()), len(ratios), worst,
            ratios[worst], other[worst], default[worst])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="resnet50,googlenet,densenet121")
    parser.add_argument("--seeds", default="1,2,3,4")
    args = parser.parse_args()
    print("date: %s, PyTorch %s; other path: oneDNN off, 1 thread; default:"
          " oneDNN on, 2 threads" % (datetime.date.today(), torch.__version__))
    print()
    print("| model | seed | tensors over the bar | worst tensor | its ratio "
          "to the bar | its error (other path) | its error (default) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in args.models.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            over, count, worst, ratio, err, base = measure(name, seed)
            print("| %s | %d | %d of %d | %s | %.2f | %.2e | %.2e |" % (
                name, seed, over, count, worst, ratio, err, base), flush=True)


if __name__ == "__main__":
    main()
