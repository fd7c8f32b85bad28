// RUN: blpa-opt %s -split-input-file --blpa-autodiff --verify-diagnostics | FileCheck %s

// conv -> batch norm -> relu -> flatten -> gemm: the backward pass runs the
// gradient rules in reverse, seeded with an adjoint of 1 for the loss.
// CHECK-LABEL: func.func @forward(
// CHECK-NOT: blpa.phase
// CHECK-LABEL: func.func @train_step(
// CHECK-SAME: %[[X:.*]]: tensor<2x1x4x4xf32> {blpa.name = "input"}, %[[Y:.*]]: tensor<2xi64> {blpa.name = "labels"}) -> (tensor<f32> {blpa.name = "loss"})
// CHECK-DAG: %[[W:.*]] = blpa.param "conv.weight" trainable
// CHECK-DAG: %[[B:.*]] = blpa.param "conv.bias" trainable
// CHECK-DAG: %[[S:.*]] = blpa.param "bn.weight" trainable
// CHECK-DAG: %[[T:.*]] = blpa.param "bn.bias" trainable
// CHECK-DAG: %[[RM:.*]] = blpa.param "bn.running_mean" {
// CHECK-DAG: %[[RV:.*]] = blpa.param "bn.running_var" {
// CHECK-DAG: %[[FW:.*]] = blpa.param "fc.weight" trainable
// CHECK: %[[C:.*]] = blpa.conv %[[X]], %[[W]], %[[B]] {blpa.phase = "forward"
// CHECK: %[[N:.*]], %[[MEAN:.*]], %[[ISTD:.*]] = blpa.batch_norm %[[C]], %[[S]], %[[T]], %[[RM]], %[[RV]] {blpa.phase = "forward"
// CHECK: %[[R:.*]] = blpa.relu %[[N]] {blpa.phase = "forward"}
// CHECK: %[[F:.*]] = blpa.reshape %[[R]]
// CHECK: %[[L:.*]] = blpa.gemm %[[F]], %[[FW]] {blpa.phase = "forward", trans_b = true}
// CHECK: %[[LOSS:.*]] = blpa.softmax_cross_entropy %[[L]], %[[Y]] {blpa.phase = "forward"}
// CHECK: %[[ONE:.*]] = blpa.fill 1.000000e+00 {blpa.phase = "backward"}
// CHECK: %[[DL:.*]] = blpa.softmax_cross_entropy_grad %[[L]], %[[Y]], %[[ONE]] {blpa.phase = "backward"}
// CHECK: %[[DFW:.*]] = blpa.gemm %[[DL]], %[[F]] {blpa.phase = "backward", trans_a = true}
// CHECK: %[[DF:.*]] = blpa.gemm %[[DL]], %[[FW]] {blpa.phase = "backward"}
// CHECK: %[[DR:.*]] = blpa.reshape %[[DF]] {blpa.phase = "backward"} : tensor<2x8xf32> -> tensor<2x2x2x2xf32>
// CHECK: %[[DN:.*]] = blpa.relu_grad %[[DR]], %[[R]] {blpa.phase = "backward"}
// CHECK: %[[DC:.*]], %[[DS:.*]], %[[DT:.*]] = blpa.batch_norm_grad %[[DN]], %[[C]], %[[S]], %[[MEAN]], %[[ISTD]] {blpa.phase = "backward"}
// CHECK: %[[DW:.*]] = blpa.conv_grad_weight %[[DC]], %[[X]] {blpa.phase = "backward", pads = array<i64: 1, 1, 1, 1>, strides = array<i64: 2, 2>, weight_shape = array<i64: 2, 1, 3, 3>}
// The network input takes no gradient: no conv_grad_input survives.
// CHECK-NOT: blpa.conv_grad_input
// CHECK: %[[DB4:.*]] = blpa.reduce_to_shape %[[DC]] {blpa.phase = "backward"} : tensor<2x2x2x2xf32> -> tensor<1x2x1x1xf32>
// CHECK: %[[DB:.*]] = blpa.reshape %[[DB4]] {blpa.phase = "backward"} : tensor<1x2x1x1xf32> -> tensor<2xf32>
// CHECK: blpa.sgd_update %[[W]], %[[DW]] {blpa.phase = "update"}
// CHECK: blpa.sgd_update %[[B]], %[[DB]] {blpa.phase = "update"}
// CHECK: blpa.sgd_update %[[S]], %[[DS]] {blpa.phase = "update"}
// CHECK: blpa.sgd_update %[[T]], %[[DT]] {blpa.phase = "update"}
// CHECK: blpa.sgd_update %[[FW]], %[[DFW]] {blpa.phase = "update"}
// CHECK: blpa.update_running_stats %[[RM]], %[[RV]], %[[MEAN]], %[[ISTD]] {blpa.phase = "update", count = 8 : i64
// CHECK: return %[[LOSS]] : tensor<f32>
module {
  func.func @forward(%x: tensor<2x1x4x4xf32> {blpa.name = "input"}) -> (tensor<2x3xf32> {blpa.name = "logits"}) {
    %w = blpa.param "conv.weight" trainable : tensor<2x1x3x3xf32>
    %b = blpa.param "conv.bias" trainable : tensor<2xf32>
    %s = blpa.param "bn.weight" trainable : tensor<2xf32>
    %t = blpa.param "bn.bias" trainable : tensor<2xf32>
    %m = blpa.param "bn.running_mean" : tensor<2xf32>
    %v = blpa.param "bn.running_var" : tensor<2xf32>
    %fw = blpa.param "fc.weight" trainable : tensor<3x8xf32>
    %c = blpa.conv %x, %w, %b {strides = array<i64: 2, 2>, pads = array<i64: 1, 1, 1, 1>} : (tensor<2x1x4x4xf32>, tensor<2x1x3x3xf32>, tensor<2xf32>) -> tensor<2x2x2x2xf32>
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
// CHECK-LABEL: func.func @train_step(
// CHECK: %[[H:.*]] = blpa.gemm
// CHECK: %[[R:.*]] = blpa.relu %[[H]]
// CHECK: %[[Q:.*]] = blpa.relu %[[R]]
// CHECK: %[[J:.*]] = blpa.add %[[Q]], %[[R]]
// CHECK: %[[DJ:.*]] = blpa.softmax_cross_entropy_grad %[[J]]
// CHECK: %[[DQ:.*]] = blpa.relu_grad %[[DJ]], %[[Q]]
// CHECK: %[[DR:.*]] = blpa.add %[[DJ]], %[[DQ]] {blpa.phase = "backward"}
// CHECK: %[[DH:.*]] = blpa.relu_grad %[[DR]], %[[R]]
// CHECK: %[[DW:.*]] = blpa.gemm %{{.*}}, %[[DH]] {blpa.phase = "backward", trans_a = true}
// CHECK: blpa.sgd_update %{{.*}}, %[[DW]]
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
// CHECK-LABEL: func.func @forward(
// CHECK: blpa.batch_norm_inference
// CHECK-LABEL: func.func @train_step(
// CHECK: blpa.batch_norm %{{.*}} {blpa.phase = "forward"
// CHECK: blpa.batch_norm_grad
// CHECK: blpa.update_running_stats
module {
  func.func @forward(%x: tensor<2x3xf32>) -> tensor<2x3xf32> {
    %s = blpa.param "s" trainable : tensor<3xf32>
    %t = blpa.param "t" trainable : tensor<3xf32>
    %m = blpa.param "m" : tensor<3xf32>
    %v = blpa.param "v" : tensor<3xf32>
    // expected-warning @+1 {{BatchNormalization is in inference mode (training_mode=0) in 1 node(s); they are trained in training mode (batch statistics)}}
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
  // expected-error @+1 {{the loss needs logits of shape [N, classes] (or [N, T, classes]); the first output has type 'tensor<4xf32>'}}
  func.func @forward(%x: tensor<4xf32>) -> tensor<4xf32> {
    return %x : tensor<4xf32>
  }
}

// -----

// A transpose's gradient is the transpose by the inverse permutation, for
// an activation and for a weight (Linear without bias: MatMul by the
// transposed weight).
// CHECK-LABEL: func.func @train_step(
// CHECK: %[[W:.*]] = blpa.param "fc.weight" trainable {blpa.phase = "forward"} : tensor<3x8xf32>
// CHECK: %[[S:.*]] = blpa.transpose %{{.*}} {blpa.phase = "forward", perm = array<i64: 0, 2, 3, 1>} : (tensor<2x2x4x1xf32>) -> tensor<2x4x1x2xf32>
// CHECK: %[[WT:.*]] = blpa.transpose %[[W]] {blpa.phase = "forward", perm = array<i64: 1, 0>} : (tensor<3x8xf32>) -> tensor<8x3xf32>
// CHECK: %[[DL:.*]] = blpa.softmax_cross_entropy_grad
// CHECK: %[[DWT:.*]] = blpa.gemm %{{.*}}, %[[DL]] {blpa.phase = "backward", trans_a = true}
// CHECK: %[[DF:.*]] = blpa.gemm %[[DL]], %[[WT]] {blpa.phase = "backward", trans_b = true}
// CHECK: %[[DW:.*]] = blpa.transpose %[[DWT]] {blpa.phase = "backward", perm = array<i64: 1, 0>} : (tensor<8x3xf32>) -> tensor<3x8xf32>
// CHECK: %[[DS:.*]] = blpa.reshape %[[DF]]
// CHECK: %[[DR:.*]] = blpa.transpose %[[DS]] {blpa.phase = "backward", perm = array<i64: 0, 3, 1, 2>} : (tensor<2x4x1x2xf32>) -> tensor<2x2x4x1xf32>
// CHECK: blpa.sgd_update %[[W]], %[[DW]] {blpa.phase = "update"}
module {
  func.func @forward(%x: tensor<2x8xf32>) -> tensor<2x3xf32> {
    %w = blpa.param "fc.weight" trainable : tensor<3x8xf32>
    %k = blpa.param "k" trainable : tensor<8xf32>
    %h = blpa.mul %x, %k : (tensor<2x8xf32>, tensor<8xf32>) -> tensor<2x8xf32>
    %r = blpa.reshape %h : tensor<2x8xf32> -> tensor<2x2x4x1xf32>
    %s = blpa.transpose %r {perm = array<i64: 0, 2, 3, 1>} : (tensor<2x2x4x1xf32>) -> tensor<2x4x1x2xf32>
    %f = blpa.reshape %s : tensor<2x4x1x2xf32> -> tensor<2x8xf32>
    %wt = blpa.transpose %w {perm = array<i64: 1, 0>} : (tensor<3x8xf32>) -> tensor<8x3xf32>
    %l = blpa.gemm %f, %wt : (tensor<2x8xf32>, tensor<8x3xf32>) -> tensor<2x3xf32>
    return %l : tensor<2x3xf32>
  }
}

// -----

// Reflect and edge pads' gradients are blpa.pad_grad (the sums over every
// copy), a constant pad's the crop; a Clip bound read at run time (here a
// computed one) reaches the gradient as its operand and takes none itself.
// CHECK-LABEL: func.func @train_step(
// CHECK: %[[LO:.*]] = blpa.param "lo" {blpa.phase = "forward"} : tensor<1xf32>
// CHECK: %[[H:.*]] = blpa.mul
// CHECK: %[[C:.*]] = blpa.clip %[[H]] min %[[LO]] {blpa.phase = "forward", max = 6.000000e+00 : f32}
// CHECK: %[[DP:.*]] = blpa.pad %{{.*}} {blpa.phase = "backward", pads = array<i64: 0, 0, 0, -1, 0, 0, 0, -1>}
// CHECK: %[[DE:.*]] = blpa.pad_grad %[[DP]] {blpa.phase = "backward", mode = "edge", pads = array<i64: 0, 0, 0, 2, 0, 0, 1, 0>} : (tensor<2x1x2x8xf32>) -> tensor<2x1x1x6xf32>
// CHECK: %[[DR:.*]] = blpa.pad_grad %[[DE]] {blpa.phase = "backward", mode = "reflect", pads = array<i64: 0, 0, 0, 1, 0, 0, 0, 2>} : (tensor<2x1x1x6xf32>) -> tensor<2x1x1x3xf32>
// CHECK: %[[DC:.*]] = blpa.reshape %[[DR]]
// CHECK-NEXT: blpa.activation_grad %[[DC]], %[[H]] alpha %[[LO]] {alpha = 0xFF800000 : f32, beta = 6.000000e+00 : f32, blpa.phase = "backward", kind = 3 : i64}
// CHECK-NOT: blpa.sgd_update %[[LO]],
module {
  func.func @forward(%x: tensor<2x3xf32>) -> tensor<2x3xf32> {
    %k = blpa.param "k" trainable : tensor<3xf32>
    %lo = blpa.param "lo" : tensor<1xf32>
    %h = blpa.mul %x, %k : (tensor<2x3xf32>, tensor<3xf32>) -> tensor<2x3xf32>
    %c = blpa.clip %h min %lo {max = 6.0 : f32} : (tensor<2x3xf32>, tensor<1xf32>) -> tensor<2x3xf32>
    %r0 = blpa.reshape %c : tensor<2x3xf32> -> tensor<2x1x1x3xf32>
    %r = blpa.pad %r0 {mode = "reflect", pads = array<i64: 0, 0, 0, 1, 0, 0, 0, 2>} : (tensor<2x1x1x3xf32>) -> tensor<2x1x1x6xf32>
    %e = blpa.pad %r {mode = "edge", pads = array<i64: 0, 0, 0, 2, 0, 0, 1, 0>} : (tensor<2x1x1x6xf32>) -> tensor<2x1x2x8xf32>
    %p = blpa.pad %e {pads = array<i64: 0, 0, 0, 1, 0, 0, 0, 1>} : (tensor<2x1x2x8xf32>) -> tensor<2x1x2x10xf32>
    %g = blpa.global_avg_pool %p : (tensor<2x1x2x10xf32>) -> tensor<2x1x1x1xf32>
    %f = blpa.reshape %g : tensor<2x1x1x1xf32> -> tensor<2x1xf32>
    %w = blpa.param "fc.weight" trainable : tensor<3x1xf32>
    %l = blpa.gemm %f, %w {trans_b = true} : (tensor<2x1xf32>, tensor<3x1xf32>) -> tensor<2x3xf32>
    return %l : tensor<2x3xf32>
  }
}

// -----

module {
  func.func @forward(%x: tensor<2x3xf32>, %lo: tensor<f32> {blpa.name = "lo"}) -> tensor<2x3xf32> {
    // expected-error @+1 {{graph input 'lo' is a parameter read at run time (a bound or a padding value), which a training executable cannot feed (it feeds graph inputs as batches of data); make it an initializer or a Constant, or compile with --infer}}
    %c = blpa.clip %x min %lo : (tensor<2x3xf32>, tensor<f32>) -> tensor<2x3xf32>
    return %c : tensor<2x3xf32>
  }
}

// -----

// The gradients of softmax and log-softmax read their outputs, not their
// inputs. A LogSoftmax output is trained without a warning (the loss is
// then NLL); a Softmax output warns, in the next case.
// CHECK-LABEL: func.func @train_step(
// CHECK: %[[S:.*]] = blpa.softmax %[[H:.*]] {axis = 1 : i64, blpa.phase = "forward"} : (tensor<2x3x4xf32>) -> tensor<2x3x4xf32>
// CHECK: %[[M:.*]] = blpa.mul %[[H]], %[[S]]
// CHECK: %[[L:.*]] = blpa.log_softmax %{{.*}} {axis = 1 : i64, blpa.phase = "forward"} : (tensor<2x12xf32>) -> tensor<2x12xf32>
// CHECK: %[[DL:.*]] = blpa.softmax_cross_entropy_grad %[[L]]
// CHECK: %[[DF:.*]] = blpa.log_softmax_grad %[[DL]], %[[L]] {axis = 1 : i64, blpa.phase = "backward"}
// CHECK: blpa.softmax_grad %{{.*}}, %[[S]] {axis = 1 : i64, blpa.phase = "backward"}
module {
  func.func @forward(%x: tensor<2x3x4xf32>) -> tensor<2x12xf32> {
    %k = blpa.param "k" trainable : tensor<4xf32>
    %h = blpa.mul %x, %k : (tensor<2x3x4xf32>, tensor<4xf32>) -> tensor<2x3x4xf32>
    %s = blpa.softmax %h {axis = 1 : i64} : (tensor<2x3x4xf32>) -> tensor<2x3x4xf32>
    %m = blpa.mul %h, %s : (tensor<2x3x4xf32>, tensor<2x3x4xf32>) -> tensor<2x3x4xf32>
    %f = blpa.reshape %m : tensor<2x3x4xf32> -> tensor<2x12xf32>
    %l = blpa.log_softmax %f {axis = 1 : i64} : (tensor<2x12xf32>) -> tensor<2x12xf32>
    return %l : tensor<2x12xf32>
  }
}

// -----

// A Softmax output (seen through a reshape) would go through softmax twice.
// CHECK-LABEL: func.func @train_step(
// CHECK: blpa.softmax_grad
module {
  func.func @forward(%x: tensor<2x3xf32>) -> tensor<2x3xf32> {
    %k = blpa.param "k" trainable : tensor<3xf32>
    %h = blpa.mul %x, %k : (tensor<2x3xf32>, tensor<3xf32>) -> tensor<2x3xf32>
    %r = blpa.reshape %h : tensor<2x3xf32> -> tensor<6x1xf32>
    // expected-warning @+1 {{the first output is a Softmax's, and the training loss (softmax cross-entropy) applies softmax again; export the logits (the Softmax's input) or a LogSoftmax as the first output}}
    %s = blpa.softmax %r {axis = 0 : i64} : (tensor<6x1xf32>) -> tensor<6x1xf32>
    %y = blpa.reshape %s : tensor<6x1xf32> -> tensor<2x3xf32>
    return %y : tensor<2x3xf32>
  }
}

// -----

// Batched products take gemm's rule matrix by matrix: dA = dY B^T and
// dB = A^T dY, transposed for a transposed operand; the gradient of a
// weight broadcast over the batch (a batch of 1) is summed over it.
// CHECK-LABEL: func.func @train_step(
// CHECK-SAME: %[[X:[^:]*]]: tensor<2x4x3xf32>
// CHECK: %[[W:.*]] = blpa.param "w" trainable
// CHECK: %[[P:.*]] = blpa.batch_matmul %[[W]], %[[X]] {blpa.phase = "forward"} : (tensor<1x2x4xf32>, tensor<2x4x3xf32>) -> tensor<2x2x3xf32>
// CHECK: %[[Q:.*]] = blpa.batch_matmul %[[P]], %[[P]] {blpa.phase = "forward", trans_a = true} : (tensor<2x2x3xf32>, tensor<2x2x3xf32>) -> tensor<2x3x3xf32>
// CHECK: %[[DR:.*]] = blpa.reshape %{{.*}} {blpa.phase = "backward"} : tensor<2x6xf32> -> tensor<2x2x3xf32>
// CHECK: %[[DQ:.*]] = blpa.batch_matmul %[[P]], %[[DR]] {blpa.phase = "backward", trans_a = true} : (tensor<2x2x3xf32>, tensor<2x2x3xf32>) -> tensor<2x3x3xf32>
// CHECK: %[[DP1:.*]] = blpa.batch_matmul %[[DR]], %[[Q]] {blpa.phase = "backward", trans_b = true} : (tensor<2x2x3xf32>, tensor<2x3x3xf32>) -> tensor<2x2x3xf32>
// CHECK: %[[DP3:.*]] = blpa.batch_matmul %[[P]], %[[DQ]] {blpa.phase = "backward"}
// CHECK: %[[DP2:.*]] = blpa.batch_matmul %[[P]], %[[DQ]] {blpa.phase = "backward", trans_b = true}
// CHECK: %[[S1:.*]] = blpa.add %[[DP1]], %[[DP2]]
// CHECK: %[[DP:.*]] = blpa.add %[[S1]], %[[DP3]]
// CHECK: %[[DWB:.*]] = blpa.batch_matmul %[[DP]], %[[X]] {blpa.phase = "backward", trans_b = true} : (tensor<2x2x3xf32>, tensor<2x4x3xf32>) -> tensor<2x2x4xf32>
// CHECK: %[[DW:.*]] = blpa.reduce_to_shape %[[DWB]] {blpa.phase = "backward"} : tensor<2x2x4xf32> -> tensor<1x2x4xf32>
// CHECK: blpa.sgd_update %[[W]], %[[DW]]
module {
  func.func @forward(%x: tensor<2x4x3xf32>) -> tensor<2x6xf32> {
    %w = blpa.param "w" trainable : tensor<1x2x4xf32>
    %p = blpa.batch_matmul %w, %x : (tensor<1x2x4xf32>, tensor<2x4x3xf32>) -> tensor<2x2x3xf32>
    %q = blpa.batch_matmul %p, %p {trans_a = true} : (tensor<2x2x3xf32>, tensor<2x2x3xf32>) -> tensor<2x3x3xf32>
    %r = blpa.batch_matmul %p, %q : (tensor<2x2x3xf32>, tensor<2x3x3xf32>) -> tensor<2x2x3xf32>
    %f = blpa.reshape %r : tensor<2x2x3xf32> -> tensor<2x6xf32>
    return %f : tensor<2x6xf32>
  }
}

// -----

// Layer norm's gradient reads its input and its per-row statistics; the
// bias gradient takes the bias's shape (leading 1s). Tanh and sqrt
// differentiate from their outputs, gelu and pow from their inputs.
// CHECK-LABEL: func.func @train_step(
// CHECK-SAME: %[[X:[^:]*]]: tensor<2x3x4xf32>
// CHECK-DAG: %[[S:.*]] = blpa.param "s" trainable
// CHECK-DAG: %[[B:.*]] = blpa.param "b" trainable
// CHECK: %[[N:.*]], %[[M:.*]], %[[I:.*]] = blpa.layer_norm %[[X]], %[[S]], %[[B]] {axis = 2 : i64, blpa.phase = "forward", epsilon = 1.000000e-05 : f64}
// CHECK: %[[T:.*]] = blpa.tanh %[[N]] {blpa.phase = "forward"}
// CHECK: %[[G:.*]] = blpa.gelu %[[T]] {blpa.phase = "forward"}
// CHECK: %[[P:.*]] = blpa.pow %[[G]] {blpa.phase = "forward", exponent = 2.000000e+00 : f32}
// CHECK: %[[Q:.*]] = blpa.sqrt %[[P]] {blpa.phase = "forward"}
// CHECK: %[[DQ:.*]] = blpa.activation_grad %{{.*}}, %[[Q]] {alpha = 0.000000e+00 : f32, beta = 0.000000e+00 : f32, blpa.phase = "backward", kind = 8 : i64}
// CHECK: %[[DP:.*]] = blpa.activation_grad %[[DQ]], %[[G]] {alpha = 2.000000e+00 : f32, beta = 0.000000e+00 : f32, blpa.phase = "backward", kind = 9 : i64}
// CHECK: %[[DG:.*]] = blpa.activation_grad %[[DP]], %[[T]] {alpha = 0.000000e+00 : f32, beta = 0.000000e+00 : f32, blpa.phase = "backward", kind = 6 : i64}
// CHECK: %[[DT:.*]] = blpa.activation_grad %[[DG]], %[[T]] {alpha = 0.000000e+00 : f32, beta = 0.000000e+00 : f32, blpa.phase = "backward", kind = 4 : i64}
// CHECK: %[[DX:.*]], %[[DS:.*]], %[[DB:.*]] = blpa.layer_norm_grad %[[DT]], %[[X]], %[[S]], %[[M]], %[[I]] {axis = 2 : i64, blpa.phase = "backward"} : (tensor<2x3x4xf32>, tensor<2x3x4xf32>, tensor<4xf32>, tensor<6xf32>, tensor<6xf32>) -> (tensor<2x3x4xf32>, tensor<4xf32>, tensor<4xf32>)
// CHECK: %[[DBR:.*]] = blpa.reshape %[[DB]] {blpa.phase = "backward"} : tensor<4xf32> -> tensor<1x4xf32>
// CHECK: blpa.sgd_update %[[S]], %[[DS]]
// CHECK: blpa.sgd_update %[[B]], %[[DBR]]
module {
  func.func @forward(%x: tensor<2x3x4xf32>) -> tensor<2x12xf32> {
    %s = blpa.param "s" trainable : tensor<4xf32>
    %b = blpa.param "b" trainable : tensor<1x4xf32>
    %n, %m, %i = blpa.layer_norm %x, %s, %b {axis = 2 : i64, epsilon = 1.0e-5 : f64} : (tensor<2x3x4xf32>, tensor<4xf32>, tensor<1x4xf32>) -> (tensor<2x3x4xf32>, tensor<6xf32>, tensor<6xf32>)
    %t = blpa.tanh %n : (tensor<2x3x4xf32>) -> tensor<2x3x4xf32>
    %g = blpa.gelu %t : (tensor<2x3x4xf32>) -> tensor<2x3x4xf32>
    %p = blpa.pow %g {exponent = 2.0 : f32} : (tensor<2x3x4xf32>) -> tensor<2x3x4xf32>
    %q = blpa.sqrt %p : (tensor<2x3x4xf32>) -> tensor<2x3x4xf32>
    %f = blpa.reshape %q : tensor<2x3x4xf32> -> tensor<2x12xf32>
    return %f : tensor<2x12xf32>
  }
}

// -----

// A language model: token ids through a trainable embedding, logits
// [B, T, vocab]. The labels are [B, T]; the embedding's gradient is a
// scatter-add at the same ids, and the ids take none.
// CHECK-LABEL: func.func @train_step(
// CHECK-SAME: %[[IDS:.*]]: tensor<2x3xi64> {blpa.index_bound = 7 : i64, blpa.name = "input"}, %[[Y:.*]]: tensor<2x3xi64> {blpa.name = "labels"})
// CHECK: %[[E:.*]] = blpa.param "emb" trainable
// CHECK: %[[X:.*]] = blpa.embedding %[[E]], %[[IDS]] {blpa.phase = "forward"}
// CHECK: blpa.gemm
// CHECK: %[[L:.*]] = blpa.reshape
// CHECK: %[[LOSS:.*]] = blpa.softmax_cross_entropy %[[L]], %[[Y]] {blpa.phase = "forward"} : (tensor<2x3x5xf32>, tensor<2x3xi64>) -> tensor<f32>
// CHECK: blpa.softmax_cross_entropy_grad %[[L]], %[[Y]], %{{.*}} {blpa.phase = "backward"}
// CHECK: %[[DE:.*]] = blpa.embedding_grad %{{.*}}, %[[IDS]] {blpa.phase = "backward", table_shape = array<i64: 7, 4>} : (tensor<2x3x4xf32>, tensor<2x3xi64>) -> tensor<7x4xf32>
// CHECK: blpa.sgd_update %[[E]], %[[DE]]
module {
  func.func @forward(%ids: tensor<2x3xi64> {blpa.index_bound = 7 : i64, blpa.name = "input"}) -> (tensor<2x3x5xf32> {blpa.name = "logits"}) {
    %e = blpa.param "emb" trainable : tensor<7x4xf32>
    %w = blpa.param "head" trainable : tensor<5x4xf32>
    %x = blpa.embedding %e, %ids : (tensor<7x4xf32>, tensor<2x3xi64>) -> tensor<2x3x4xf32>
    %f = blpa.reshape %x : tensor<2x3x4xf32> -> tensor<6x4xf32>
    %g = blpa.gemm %f, %w {trans_b = true} : (tensor<6x4xf32>, tensor<5x4xf32>) -> tensor<6x5xf32>
    %l = blpa.reshape %g : tensor<6x5xf32> -> tensor<2x3x5xf32>
    return %l : tensor<2x3x5xf32>
  }
}
