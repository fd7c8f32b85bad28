// RUN: blpa-opt %s -split-input-file --blpa-autodiff --blpa-inference-batch-norm --blpa-fuse-batch-norm-relu | FileCheck %s
// RUN: blpa-opt %s -split-input-file --blpa-autodiff --blpa-fuse-batch-norm-relu="recompute=false" | FileCheck %s --check-prefix=KEEP
// RUN: blpa-opt %s -split-input-file --blpa-autodiff --blpa-compress-activations="bits=4 min-elements=1" --blpa-fuse-batch-norm-relu | FileCheck %s --check-prefix=BITS

// With 4-bit codes, each encode applies its ReLU, each batch-norm gradient
// masks its incoming gradient
// from the codes itself; the decode of the first ReLU's output stays for
// the two weight gradients, the second (read only by its gradient and by a
// pooling whose argmax is kept) is not decoded at all.
// BITS-LABEL: func.func @train_step(
// BITS-NOT: = blpa.relu {{.*}}phase
// BITS: blpa.batch_norm_encode {{.*}}relu}
// BITS-NOT: = blpa.relu {{.*}}phase
// BITS: %{{.*}}, %{{.*}}, %{{.*}}, %[[K2:[^ ]*]] = blpa.batch_norm_encode %{{[0-9]+}}, %{{[0-9]+}}, %{{[0-9]+}}, %{{[0-9]+}}, %{{[0-9]+}} {{.*}}relu} : (tensor<2x16x4x4xf32>
// BITS-NOT: = blpa.relu {{.*}}phase
// BITS-NOT: blpa.relu_grad
// BITS: blpa.max_pool_grad_argmax
// BITS-NEXT: %[[D:.*]], %{{.*}}, %{{.*}} = blpa.batch_norm_grad_decode %{{.*}}, %[[K2]], {{.*}} {blpa.phase = "backward", relu}
// BITS: %[[Z1:.*]] = blpa.batch_norm_decode {{.*}} relu}
// BITS-NEXT: blpa.conv_grad_weight %[[D]], %[[Z1]]
// BITS: blpa.conv_grad_weight %[[D]], %[[Z1]]
// BITS: blpa.batch_norm_grad_decode {{.*}} {blpa.phase = "backward", relu}
// BITS-NOT: blpa.relu_grad
// BITS-NOT: blpa.batch_norm_decode
// BITS: return

// Two BN-ReLU pairs; the first ReLU feeds two convolutions, the second a
// global pooling. Each pair becomes one blpa.batch_norm_relu, each gradient
// pair one blpa.batch_norm_relu_grad reading the batch norm's input, and the
// backward readers of each ReLU output share one recomputation placed before
// the first of them. @forward (inference) is left alone.
// CHECK-LABEL: func.func @forward(
// CHECK: blpa.batch_norm_inference
// CHECK-NEXT: blpa.relu
// CHECK-LABEL: func.func @train_step(
// CHECK-SAME: %[[X:[^:]*]]: tensor<2x8x4x4xf32>
// CHECK-NOT: blpa.relu
// CHECK: %[[C0:.*]] = blpa.conv %[[X]]
// CHECK-NEXT: %[[R1:.*]], %[[M1:.*]], %[[IS1:.*]] = blpa.batch_norm_relu %[[C0]], %[[S1:[^,]*]], %[[T1:[^,]*]], {{.*}}blpa.phase = "forward"
// CHECK-NEXT: %[[C1:.*]] = blpa.conv %[[R1]]
// CHECK-NEXT: %[[SC:.*]] = blpa.conv %[[R1]]
// CHECK-NEXT: %[[SUM:.*]] = blpa.add %[[C1]], %[[SC]]
// CHECK-NEXT: %[[R2:.*]], %[[M2:.*]], %[[IS2:.*]] = blpa.batch_norm_relu %[[SUM]], %[[S2:[^,]*]], %[[T2:[^,]*]],
// CHECK-NOT: blpa.relu
// CHECK: %[[A2:.*]] = blpa.batch_norm_apply %[[SUM]], %[[S2]], %[[T2]], %[[M2]], %[[IS2]] {blpa.phase = "backward", blpa.recomputes = array<i64>, relu}
// CHECK-NEXT: blpa.max_pool_grad %{{.*}}, %[[A2]]
// CHECK-NEXT: %[[DSUM:.*]], %{{.*}}, %{{.*}} = blpa.batch_norm_relu_grad %{{.*}}, %[[SUM]], %[[S2]], %[[T2]], %[[M2]], %[[IS2]] {blpa.phase = "backward"}
// CHECK: %[[A1:.*]] = blpa.batch_norm_apply %[[C0]], %[[S1]], %[[T1]], %[[M1]], %[[IS1]] {blpa.phase = "backward", blpa.recomputes = array<i64>, relu}
// CHECK-NEXT: blpa.conv_grad_weight %[[DSUM]], %[[A1]]
// CHECK: blpa.conv_grad_weight %[[DSUM]], %[[A1]]
// CHECK-NEXT: blpa.conv_grad_input
// CHECK-NEXT: blpa.add
// CHECK-NEXT: blpa.batch_norm_relu_grad %{{.*}}, %[[C0]], %[[S1]], %[[T1]], %[[M1]], %[[IS1]]
// CHECK-NOT: blpa.relu_grad
// CHECK-NOT: blpa.batch_norm_apply
// CHECK: blpa.update_running_stats %{{.*}}, %{{.*}}, %[[M1]], %[[IS1]]
// CHECK: return

// Without recomputation the weight gradients read the fused output itself.
// KEEP-LABEL: func.func @train_step(
// KEEP: %[[R1:.*]], %{{.*}}, %{{.*}} = blpa.batch_norm_relu
// KEEP-NOT: blpa.batch_norm_apply
// KEEP: blpa.batch_norm_relu_grad
// KEEP: blpa.conv_grad_weight %{{.*}}, %[[R1]]
// KEEP: blpa.conv_grad_weight %{{.*}}, %[[R1]]
// KEEP: blpa.batch_norm_relu_grad
// KEEP-NOT: blpa.batch_norm_apply

module {
  func.func @forward(%x: tensor<2x8x4x4xf32> {blpa.name = "input"}) -> (tensor<2x3xf32> {blpa.name = "logits"}) {
    %w0 = blpa.param "stem.weight" trainable : tensor<8x8x3x3xf32>
    %s1 = blpa.param "bn1.weight" trainable : tensor<8xf32>
    %t1 = blpa.param "bn1.bias" trainable : tensor<8xf32>
    %m1 = blpa.param "bn1.running_mean" : tensor<8xf32>
    %v1 = blpa.param "bn1.running_var" : tensor<8xf32>
    %w1 = blpa.param "conv1.weight" trainable : tensor<16x8x1x1xf32>
    %ws = blpa.param "shortcut.weight" trainable : tensor<16x8x1x1xf32>
    %s2 = blpa.param "bn2.weight" trainable : tensor<16xf32>
    %t2 = blpa.param "bn2.bias" trainable : tensor<16xf32>
    %m2 = blpa.param "bn2.running_mean" : tensor<16xf32>
    %v2 = blpa.param "bn2.running_var" : tensor<16xf32>
    %fw = blpa.param "fc.weight" trainable : tensor<3x16xf32>
    %c0 = blpa.conv %x, %w0 {strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>} : (tensor<2x8x4x4xf32>, tensor<8x8x3x3xf32>) -> tensor<2x8x4x4xf32>
    %n1:3 = blpa.batch_norm %c0, %s1, %t1, %m1, %v1 {epsilon = 1.0e-5 : f64, momentum = 0.9 : f64} : (tensor<2x8x4x4xf32>, tensor<8xf32>, tensor<8xf32>, tensor<8xf32>, tensor<8xf32>) -> (tensor<2x8x4x4xf32>, tensor<8xf32>, tensor<8xf32>)
    %r1 = blpa.relu %n1#0 : (tensor<2x8x4x4xf32>) -> tensor<2x8x4x4xf32>
    %c1 = blpa.conv %r1, %w1 {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>} : (tensor<2x8x4x4xf32>, tensor<16x8x1x1xf32>) -> tensor<2x16x4x4xf32>
    %sc = blpa.conv %r1, %ws {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>} : (tensor<2x8x4x4xf32>, tensor<16x8x1x1xf32>) -> tensor<2x16x4x4xf32>
    %sum = blpa.add %c1, %sc : (tensor<2x16x4x4xf32>, tensor<2x16x4x4xf32>) -> tensor<2x16x4x4xf32>
    %n2:3 = blpa.batch_norm %sum, %s2, %t2, %m2, %v2 {epsilon = 1.0e-5 : f64, momentum = 0.9 : f64} : (tensor<2x16x4x4xf32>, tensor<16xf32>, tensor<16xf32>, tensor<16xf32>, tensor<16xf32>) -> (tensor<2x16x4x4xf32>, tensor<16xf32>, tensor<16xf32>)
    %r2 = blpa.relu %n2#0 : (tensor<2x16x4x4xf32>) -> tensor<2x16x4x4xf32>
    %p = blpa.max_pool %r2 {kernel_shape = array<i64: 4, 4>, strides = array<i64: 4, 4>, pads = array<i64: 0, 0, 0, 0>} : (tensor<2x16x4x4xf32>) -> tensor<2x16x1x1xf32>
    %f = blpa.reshape %p : tensor<2x16x1x1xf32> -> tensor<2x16xf32>
    %l = blpa.gemm %f, %fw {trans_b = true} : (tensor<2x16xf32>, tensor<3x16xf32>) -> tensor<2x3xf32>
    return %l : tensor<2x3xf32>
  }
}

// -----

// A batch norm whose output has another reader besides the ReLU, and a
// ReLU of something else: nothing is fused.
// CHECK-LABEL: func.func @train_step(
// CHECK-NOT: blpa.batch_norm_relu
// CHECK: %[[Y:.*]], %{{.*}}, %{{.*}} = blpa.batch_norm
// CHECK-NEXT: %[[R:.*]] = blpa.relu %[[Y]]
// CHECK-NEXT: %[[S:.*]] = blpa.add %[[R]], %[[Y]]
// CHECK-NEXT: blpa.relu %[[S]]
// CHECK-NOT: blpa.batch_norm_relu
// CHECK-NOT: blpa.batch_norm_apply
// CHECK: return

module {
  func.func @forward(%x: tensor<4x6xf32> {blpa.name = "input"}) -> (tensor<4x6xf32> {blpa.name = "logits"}) {
    %s = blpa.param "bn.weight" trainable : tensor<6xf32>
    %t = blpa.param "bn.bias" trainable : tensor<6xf32>
    %m = blpa.param "bn.running_mean" : tensor<6xf32>
    %v = blpa.param "bn.running_var" : tensor<6xf32>
    %n:3 = blpa.batch_norm %x, %s, %t, %m, %v {epsilon = 1.0e-5 : f64, momentum = 0.9 : f64} : (tensor<4x6xf32>, tensor<6xf32>, tensor<6xf32>, tensor<6xf32>, tensor<6xf32>) -> (tensor<4x6xf32>, tensor<6xf32>, tensor<6xf32>)
    %r = blpa.relu %n#0 : (tensor<4x6xf32>) -> tensor<4x6xf32>
    %sum = blpa.add %r, %n#0 : (tensor<4x6xf32>, tensor<4x6xf32>) -> tensor<4x6xf32>
    %out = blpa.relu %sum : (tensor<4x6xf32>) -> tensor<4x6xf32>
    return %out : tensor<4x6xf32>
  }
}

// -----

// The fused op keeps what was asked of both ops it replaces: the more exact
// blpa.act_choice of the two (float32 and recompute, then 8, 4, 2 bits; a
// tie keeps the batch norm's), as --blpa-assign-activation-choices resolves
// pins. bn1 asks 4 bits, relu1 8: 8. bn2 asks nothing, relu2 float32:
// float32. bn3 asks recompute, relu3 2 bits: recompute.
// CHECK-LABEL: func.func @train_step(
// CHECK: blpa.batch_norm_relu {{.*}}{blpa.act_choice = "8", blpa.phase = "forward"
// CHECK: blpa.batch_norm_relu {{.*}}{blpa.act_choice = "float32", blpa.phase = "forward"
// CHECK: blpa.batch_norm_relu {{.*}}{blpa.act_choice = "recompute", blpa.phase = "forward"
// CHECK-NOT: = blpa.relu {{.*}}"forward"
// CHECK: return

module {
  func.func @forward(%x: tensor<4x6xf32> {blpa.name = "input"}) -> (tensor<4x6xf32> {blpa.name = "logits"}) {
    %s = blpa.param "bn.weight" trainable : tensor<6xf32>
    %t = blpa.param "bn.bias" trainable : tensor<6xf32>
    %m = blpa.param "bn.running_mean" : tensor<6xf32>
    %v = blpa.param "bn.running_var" : tensor<6xf32>
    %n1:3 = blpa.batch_norm %x, %s, %t, %m, %v {epsilon = 1.0e-5 : f64, momentum = 0.9 : f64, blpa.act_choice = "4"} : (tensor<4x6xf32>, tensor<6xf32>, tensor<6xf32>, tensor<6xf32>, tensor<6xf32>) -> (tensor<4x6xf32>, tensor<6xf32>, tensor<6xf32>) loc("bn1")
    %r1 = blpa.relu %n1#0 {blpa.act_choice = "8"} : (tensor<4x6xf32>) -> tensor<4x6xf32> loc("relu1")
    %n2:3 = blpa.batch_norm %r1, %s, %t, %m, %v {epsilon = 1.0e-5 : f64, momentum = 0.9 : f64} : (tensor<4x6xf32>, tensor<6xf32>, tensor<6xf32>, tensor<6xf32>, tensor<6xf32>) -> (tensor<4x6xf32>, tensor<6xf32>, tensor<6xf32>) loc("bn2")
    %r2 = blpa.relu %n2#0 {blpa.act_choice = "float32"} : (tensor<4x6xf32>) -> tensor<4x6xf32> loc("relu2")
    %n3:3 = blpa.batch_norm %r2, %s, %t, %m, %v {epsilon = 1.0e-5 : f64, momentum = 0.9 : f64, blpa.act_choice = "recompute"} : (tensor<4x6xf32>, tensor<6xf32>, tensor<6xf32>, tensor<6xf32>, tensor<6xf32>) -> (tensor<4x6xf32>, tensor<6xf32>, tensor<6xf32>) loc("bn3")
    %r3 = blpa.relu %n3#0 {blpa.act_choice = "2"} : (tensor<4x6xf32>) -> tensor<4x6xf32> loc("relu3")
    return %r3 : tensor<4x6xf32>
  }
}
