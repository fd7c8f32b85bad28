// RUN: blpa-opt %s -split-input-file --blpa-autodiff --blpa-recompute | FileCheck %s
// RUN: blpa-opt %s -split-input-file --blpa-autodiff --blpa-recompute="copy-per-reader=1" | FileCheck %s --check-prefix=PER

// A chain: the dropout's output is read by the last gemm's weight gradient,
// the ReLU's by the dropout copy and by its own gradient. Consumers are
// copied first, so the ReLU copy goes before the dropout copy, which reads
// it; the ReLU gradient reads the same copy. The dropout copy has the
// forward's stream (and the step is the same), so it draws the same mask.
// The copies carry the forward's attributes but not the choice.
// CHECK-LABEL: func.func @train_step(
// CHECK-SAME: %[[X:[^:]*]]: tensor<2x8xf32>
// CHECK: %[[H:.*]] = blpa.gemm %[[X]]
// CHECK-NEXT: %[[R:.*]] = blpa.relu %[[H]] {blpa.act_choice = "recompute", blpa.phase = "forward", blpa.recompute_id = 1 : i64}
// CHECK-NEXT: %[[D:.*]] = blpa.dropout %[[R]] {blpa.act_choice = "recompute", blpa.phase = "forward", blpa.recompute_id = 0 : i64, ratio = 5.000000e-01 : f32, stream = 2 : i64}
// CHECK-NEXT: %[[L:.*]] = blpa.gemm %[[D]]
// CHECK: %[[G:.*]] = blpa.softmax_cross_entropy_grad %[[L]]
// CHECK-NEXT: %[[R2:.*]] = blpa.relu %[[H]] {blpa.phase = "backward", blpa.recomputes = array<i64: 1>}
// CHECK-NEXT: %[[D2:.*]] = blpa.dropout %[[R2]] {blpa.phase = "backward", blpa.recomputes = array<i64: 0>, ratio = 5.000000e-01 : f32, stream = 2 : i64}
// CHECK-NEXT: blpa.gemm %[[G]], %[[D2]] {blpa.phase = "backward", trans_a = true}
// CHECK-NEXT: %[[DD:.*]] = blpa.gemm %[[G]], %{{[^ ]*}} {blpa.phase = "backward"}
// CHECK-NEXT: %[[DR:.*]] = blpa.dropout_grad %[[DD]]
// CHECK-NEXT: blpa.relu_grad %[[DR]], %[[R2]] {blpa.phase = "backward"}
// CHECK-NOT: blpa.relu {{.*}}backward
// CHECK: return

// With a copy per reader, the ReLU gradient gets a second ReLU copy right
// before it; the first is read by the dropout copy only.
// PER-LABEL: func.func @train_step(
// PER: %[[H:.*]] = blpa.gemm
// PER: %[[R2:.*]] = blpa.relu %[[H]] {blpa.phase = "backward", blpa.recomputes = array<i64: 1>}
// PER-NEXT: %[[D2:.*]] = blpa.dropout %[[R2]] {blpa.phase = "backward"
// PER-NEXT: blpa.gemm %{{.*}}, %[[D2]] {blpa.phase = "backward", trans_a = true}
// PER-NEXT: blpa.gemm {{.*}} {blpa.phase = "backward"}
// PER-NEXT: %[[DR:.*]] = blpa.dropout_grad
// PER-NEXT: %[[R3:.*]] = blpa.relu %[[H]] {blpa.phase = "backward", blpa.recomputes = array<i64: 1>}
// PER-NEXT: blpa.relu_grad %[[DR]], %[[R3]] {blpa.phase = "backward"}
module {
  func.func @forward(%x: tensor<2x8xf32> {blpa.name = "input"}) -> (tensor<2x3xf32> {blpa.name = "logits"}) {
    %w1 = blpa.param "fc1.weight" trainable : tensor<8x8xf32>
    %w2 = blpa.param "fc2.weight" trainable : tensor<3x8xf32>
    %h = blpa.gemm %x, %w1 {trans_b = true} : (tensor<2x8xf32>, tensor<8x8xf32>) -> tensor<2x8xf32> loc("fc1")
    %r = blpa.relu %h {blpa.act_choice = "recompute"} : (tensor<2x8xf32>) -> tensor<2x8xf32> loc("relu1")
    %d = blpa.dropout %r {ratio = 0.5 : f32, stream = 2, blpa.act_choice = "recompute"} : (tensor<2x8xf32>) -> tensor<2x8xf32> loc("drop")
    %l = blpa.gemm %d, %w2 {trans_b = true} : (tensor<2x8xf32>, tensor<3x8xf32>) -> tensor<2x3xf32> loc("fc2")
    return %l : tensor<2x3xf32>
  }
}

// -----

// A training batch norm is recomputed as batch_norm_apply of its input with
// its own forward statistics, which stay saved (the gradient and the
// running-statistics update read them too); the ReLU copy reads the apply.
// The global pooling is marked too, but the backward pass reads nothing it
// computes (its gradient needs only the input shape): no copy.
// CHECK-LABEL: func.func @train_step(
// CHECK: %[[C0:.*]] = blpa.conv
// CHECK-NEXT: %[[Y:.*]], %[[M:.*]], %[[IS:.*]] = blpa.batch_norm %[[C0]], %[[S:[^,]*]], %[[T:[^,]*]], {{.*}}blpa.act_choice = "recompute", blpa.phase = "forward", blpa.recompute_id = 1 : i64
// CHECK-NEXT: %[[R:.*]] = blpa.relu %[[Y]] {blpa.act_choice = "recompute", blpa.phase = "forward", blpa.recompute_id = 0 : i64}
// CHECK-NEXT: blpa.conv %[[R]]
// CHECK-NEXT: blpa.global_avg_pool {{.*}}blpa.act_choice = "recompute", blpa.phase = "forward"
// CHECK-NOT: blpa.global_avg_pool {{.*}}backward
// CHECK: %[[Y2:.*]] = blpa.batch_norm_apply %[[C0]], %[[S]], %[[T]], %[[M]], %[[IS]] {blpa.phase = "backward", blpa.recomputes = array<i64: 1>}
// CHECK-NEXT: %[[R2:.*]] = blpa.relu %[[Y2]] {blpa.phase = "backward", blpa.recomputes = array<i64: 0>}
// CHECK-NEXT: blpa.conv_grad_weight %{{.*}}, %[[R2]]
// CHECK-NEXT: %[[DC1:.*]] = blpa.conv_grad_input
// CHECK-NEXT: %[[DY:.*]] = blpa.relu_grad %[[DC1]], %[[R2]]
// CHECK-NEXT: blpa.batch_norm_grad %[[DY]], %[[C0]], %[[S]], %[[M]], %[[IS]]
// CHECK-NOT: blpa.global_avg_pool {{.*}}backward
// CHECK: blpa.update_running_stats %{{.*}}, %{{.*}}, %[[M]], %[[IS]]
module {
  func.func @forward(%x: tensor<2x4x4x4xf32> {blpa.name = "input"}) -> (tensor<2x3xf32> {blpa.name = "logits"}) {
    %w0 = blpa.param "conv0.weight" trainable : tensor<8x4x3x3xf32>
    %s = blpa.param "bn.weight" trainable : tensor<8xf32>
    %t = blpa.param "bn.bias" trainable : tensor<8xf32>
    %rm = blpa.param "bn.running_mean" : tensor<8xf32>
    %rv = blpa.param "bn.running_var" : tensor<8xf32>
    %w1 = blpa.param "conv1.weight" trainable : tensor<8x8x3x3xf32>
    %fw = blpa.param "fc.weight" trainable : tensor<3x8xf32>
    %c0 = blpa.conv %x, %w0 {strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>} : (tensor<2x4x4x4xf32>, tensor<8x4x3x3xf32>) -> tensor<2x8x4x4xf32> loc("conv0")
    %y, %m, %is = blpa.batch_norm %c0, %s, %t, %rm, %rv {epsilon = 1.0e-5 : f64, momentum = 0.9 : f64, blpa.act_choice = "recompute"} : (tensor<2x8x4x4xf32>, tensor<8xf32>, tensor<8xf32>, tensor<8xf32>, tensor<8xf32>) -> (tensor<2x8x4x4xf32>, tensor<8xf32>, tensor<8xf32>) loc("bn")
    %r = blpa.relu %y {blpa.act_choice = "recompute"} : (tensor<2x8x4x4xf32>) -> tensor<2x8x4x4xf32> loc("relu")
    %c1 = blpa.conv %r, %w1 {strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>} : (tensor<2x8x4x4xf32>, tensor<8x8x3x3xf32>) -> tensor<2x8x4x4xf32> loc("conv1")
    %p = blpa.global_avg_pool %c1 {blpa.act_choice = "recompute"} : (tensor<2x8x4x4xf32>) -> tensor<2x8x1x1xf32> loc("pool")
    %f = blpa.reshape %p : tensor<2x8x1x1xf32> -> tensor<2x8xf32> loc("flatten")
    %l = blpa.gemm %f, %fw {trans_b = true} : (tensor<2x8xf32>, tensor<3x8xf32>) -> tensor<2x3xf32> loc("fc")
    return %l : tensor<2x3xf32>
  }
}
