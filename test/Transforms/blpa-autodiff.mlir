// RUN: blpa-opt %s -split-input-file --blpa-autodiff --verify-diagnostics | FileCheck %s

// conv -> batch norm -> relu -> flatten -> gemm: the backward pass runs the
// gradient rules in reverse, seeded with an adjoint of 1 for the loss.
module {
  func.func @forward(%x: tensor<2x1x4x4xf32> {blpa.name = "input"}) -> (tensor<2x3xf32> {blpa.name = "logits"}) {
    %w = blpa.param "conv.weight" trainable : tensor<2x1x3x3xf32>
    %b = blpa.param "conv.bias" trainable : tensor<2xf32>
    %s = blpa.param "bn.weight" trainable : tensor<2xf32>
    %t = blpa.param "bn.bias" trainable : tensor<2xf32>
    %m = blpa.param "bn.running_mean" : tensor<2xf32>
    %v = blpa.param "bn.running_var" : tensor<2xf32>
    %fw = blpa.param "fc.weight" trainable : tensor<3x8xf32>
    %c = blpa.conv2d %x, %w, %b {strides = array<i64: 2, 2>, pads = array<i64: 1, 1, 1, 1>} : (tensor<2x1x4x4xf32>, tensor<2x1x3x3xf32>, tensor<2xf32>) -> tensor<2x2x2x2xf32>
    %n:3 = blpa.batch_norm %c, %s, %t, %m, %v {epsilon = 1.0e-5 : f64, momentum = 0.9 : f64} : (tensor<2x2x2x2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>) -> (tensor<2x2x2x2xf32>, tensor<2xf32>, tensor<2xf32>)
    %r = blpa.relu %n#0 : (tensor<2x2x2x2xf32>) -> tensor<2x2x2x2xf32>
    %f = blpa.reshape %r : tensor<2x2x2x2xf32> -> tensor<2x8xf32>
    %l = blpa.gemm %f, %fw {trans_b = true} : (tensor<2x8xf32>, tensor<3x8xf32>) -> tensor<2x3xf32>
    return %l : tensor<2x3xf32>
  }
}

// -----

// A residual join: the adjoint of %r, read by both the add and the second
// relu, is the sum of both contributions.
module {
  func.func @forward(%x: tensor<2x4xf32>) -> tensor<2x4xf32> {
    %w = blpa.param "w" trainable : tensor<4x4xf32>
    %h = blpa.gemm %x, %w : (tensor<2x4xf32>, tensor<4x4xf32>) -> tensor<2x4xf32>
    %r = blpa.relu %h : (tensor<2x4xf32>) -> tensor<2x4xf32>
    %q = blpa.relu %r : (tensor<2x4xf32>) -> tensor<2x4xf32>
    %j = blpa.add %q, %r : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x4xf32>
    return %j : tensor<2x4xf32>
  }
}

// -----

// Batch norm in inference mode (ONNX training_mode=0) is trained with batch
// statistics.
module {
  func.func @forward(%x: tensor<2x3xf32>) -> tensor<2x3xf32> {
    %s = blpa.param "s" trainable : tensor<3xf32>
    %t = blpa.param "t" trainable : tensor<3xf32>
    %m = blpa.param "m" : tensor<3xf32>
    %v = blpa.param "v" : tensor<3xf32>
    // expected-warning @+1 {{BatchNormalization has training_mode=0; it is trained in training mode (batch statistics)}}
    %y = blpa.batch_norm_inference %x, %s, %t, %m, %v {epsilon = 1.0e-5 : f64, momentum = 0.9 : f64} : (tensor<2x3xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>) -> tensor<2x3xf32>
    return %y : tensor<2x3xf32>
  }
}

// -----

// expected-error @+1 {{no func.func @forward to differentiate}}
module {
  func.func @main(%x: tensor<2x3xf32>) -> tensor<2x3xf32> {
    return %x : tensor<2x3xf32>
  }
}

// -----

module {
  // expected-error @+1 {{the loss needs logits of shape [N, classes]; the first output has type 'tensor<2x3x4xf32>'}}
  func.func @forward(%x: tensor<2x3x4xf32>) -> tensor<2x3x4xf32> {
    return %x : tensor<2x3x4xf32>
  }
}
