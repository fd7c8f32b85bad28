// RUN: blpa-opt %s -split-input-file -allow-unregistered-dialect --blpa-recompute -verify-diagnostics

// An op the dialect does not know may have side effects or draw fresh
// values: it is refused, naming its node.
func.func @train_step(%x: tensor<4xf32>) -> tensor<4xf32> {
  // expected-error @unknown {{node 'noise' (test.random) cannot be recomputed: running it again could change state or give other values; keep its saved results instead (--act-policy noise=float32, or 8, 4, 2)}}
  %n = "test.random"(%x) {blpa.phase = "forward", blpa.act_choice = "recompute"} : (tensor<4xf32>) -> tensor<4xf32> loc("noise")
  %g = blpa.relu_grad %x, %n {blpa.phase = "backward"} : (tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32>
  return %g : tensor<4xf32>
}

// -----

// Only forward ops keep activations for the backward pass.
func.func @train_step(%x: tensor<4xf32>) -> tensor<4xf32> {
  %r = blpa.relu %x {blpa.phase = "forward"} : (tensor<4xf32>) -> tensor<4xf32>
  // expected-error @unknown {{node 'relu_grad' (blpa.relu_grad) is not in the forward phase of @train_step: only forward ops can be recomputed; remove its blpa.act_choice}}
  %g = blpa.relu_grad %x, %r {blpa.phase = "backward", blpa.act_choice = "recompute"} : (tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32> loc("relu_grad")
  return %g : tensor<4xf32>
}
