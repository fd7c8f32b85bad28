// RUN: blpa-opt %s --blpa-autodiff --blpa-recompute --blpa-fuse-batch-norm-relu | FileCheck %s

// A BN-ReLU pair recomputed by --blpa-recompute: the backward ReLU copy runs
// inside the batch_norm_apply copy (`relu`), and the batch-norm gradient of
// the ReLU gradient of that copy becomes batch_norm_relu_grad, masking the
// gradient from the kept input as in the forward-fused case. The apply stays
// for the weight gradient; the forward pair is fused as usual, and the fused
// op stands for both recomputed ops: it keeps the batch norm's recompute id
// (1), and the copies that named the ReLU's (0) name it instead.
// CHECK-LABEL: func.func @train_step(
// CHECK: %[[C0:.*]] = blpa.conv
// CHECK-NEXT: %[[R:.*]], %[[M:.*]], %[[IS:.*]] = blpa.batch_norm_relu %[[C0]], %[[S:[^,]*]], %[[T:[^,]*]], {{.*}} {blpa.act_choice = "recompute", blpa.phase = "forward", blpa.recompute_id = 1 : i64,
// CHECK-NEXT: blpa.conv %[[R]]
// CHECK-NOT: blpa.relu
// CHECK: %[[A:.*]] = blpa.batch_norm_apply %[[C0]], %[[S]], %[[T]], %[[M]], %[[IS]] {blpa.phase = "backward", blpa.recomputes = array<i64: 1>, relu}
// CHECK-NEXT: blpa.conv_grad_weight %{{.*}}, %[[A]]
// CHECK-NEXT: %[[DC1:.*]] = blpa.conv_grad_input
// CHECK-NEXT: blpa.batch_norm_relu_grad %[[DC1]], %[[C0]], %[[S]], %[[T]], %[[M]], %[[IS]] {blpa.phase = "backward"}
// CHECK-NOT: blpa.relu
// CHECK-NOT: blpa.batch_norm_grad
// CHECK: return
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
    %p = blpa.global_avg_pool %c1 : (tensor<2x8x4x4xf32>) -> tensor<2x8x1x1xf32> loc("pool")
    %f = blpa.reshape %p : tensor<2x8x1x1xf32> -> tensor<2x8xf32> loc("flatten")
    %l = blpa.gemm %f, %fw {trans_b = true} : (tensor<2x8xf32>, tensor<3x8xf32>) -> tensor<2x3xf32> loc("fc")
    return %l : tensor<2x3xf32>
  }
}
