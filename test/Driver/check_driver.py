#!/usr/bin/python3
"""Checks the driver against numpy and the onnx package, independently of
the C++ self-test: --check-step gradients of the fake linear model computed
with numpy, and a --save output that onnx.checker accepts.

The inputs are fresh random data each run (the seed is printed; give
BLPA_SEED to repeat one).

usage: check_driver.py TRAIN_EXE MODEL   (blpa-driver-fake-linear-train and
                                          the fake_linear.onnx it embeds)
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnx import numpy_helper


def initializers(path):
    model = onnx.load(path)
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def main():
    exe, model_path = sys.argv[1], sys.argv[2]
    failures = 0
    seed = int(os.environ.get("BLPA_SEED") or
               np.random.SeedSequence().entropy % 2**32)
    print("seed %d" % seed)
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((64, 784)).astype(np.float32)
        y = rng.integers(0, 10, size=64).astype(np.int64)
        np.save(f"{tmp}/x.npy", x.astype(np.float64))  # exercises '<f8'
        np.save(f"{tmp}/y.npy", y.astype(np.int32))    # exercises '<i4'
        subprocess.run([exe, "--check-step", "--inputs", f"{tmp}/x.npy",
                        "--labels", f"{tmp}/y.npy", "--dump", f"{tmp}/d"],
                       check=True)
        params = initializers(model_path)
        w, b = params["fc.weight"], params["fc/bias"]
        logits = x.astype(np.float64) @ w.T + b
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        loss = -np.log(p[np.arange(64), y]).mean()
        dlogits = p.copy()
        dlogits[np.arange(64), y] -= 1
        dlogits /= 64
        checks = {
            "loss": (np.load(f"{tmp}/d/loss.npy"), loss),
            "dW": (np.load(f"{tmp}/d/grads/fc.weight.npy"), dlogits.T @ x),
            "db": (np.load(f"{tmp}/d/grads/fc_bias.npy"), dlogits.sum(0)),
        }
        for name, (got, want) in checks.items():
            ok = got.shape == np.shape(want) and np.allclose(got, want,
                                                             atol=1e-5)
            print(f"{name}: shape {got.shape} max diff "
                  f"{np.abs(got - want).max():.2e} {'ok' if ok else 'FAIL'}")
            failures += not ok

        subprocess.run([exe, "--synthetic", "--steps", "10", "--lr", "0.01",
                        "--save", f"{tmp}/trained.onnx"], check=True,
                       stdout=subprocess.DEVNULL)
        onnx.checker.check_model(onnx.load(f"{tmp}/trained.onnx"),
                                 full_check=True)
        trained = initializers(f"{tmp}/trained.onnx")
        changed = all(not np.array_equal(trained[k], params[k])
                      for k in params)
        same_shapes = all(trained[k].shape == params[k].shape and
                          trained[k].dtype == np.float32 for k in params)
        print(f"--save: onnx.checker ok, all initializers changed: {changed},"
              f" shapes/dtypes kept: {same_shapes}")
        failures += not (changed and same_shapes)
    print("FAILED" if failures else "all ok")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
