// RUN: blpa-opt %s -split-input-file --blpa-autodiff --blpa-compress-activations="bits=4 min-elements=1" | FileCheck %s

// A pre-activation bottleneck block (BN-ReLU-conv twice, a projection
// shortcut from the first ReLU, a residual join feeding the next BN-ReLU).
// Every batch norm keeps only its 4-bit codes; the first ReLU's output has
// three backward readers (two weight gradients and its ReLU gradient), which
// share one decode placed before the first of them; the join's output is not
// kept at all (its batch norm works from codes, the add's gradient needs no
// values); the logits stay exact; the network input is read as it is.
// CHECK-LABEL: func.func @train_step(
// CHECK-SAME: %[[X:[^:]*]]: tensor<2x8x4x4xf32>
// CHECK-NOT: blpa.batch_norm {{.*}}phase
// CHECK: %[[C0:.*]] = blpa.conv %[[X]]
// CHECK: %{{.*}}, %{{.*}}, %[[IS1:.*]], %[[K1:.*]] = blpa.batch_norm_encode %[[C0]], %[[S1:[^,]*]], %[[T1:[^,]*]], {{.*}}bits = 4 : i64, blpa.phase = "forward"{{.*}}!blpa.packed<2x8x4x4xi4, bn_relu>)
// CHECK-NOT: blpa.quantize
// CHECK: %{{.*}}, %{{.*}}, %[[IS2:.*]], %[[K2:.*]] = blpa.batch_norm_encode {{.*}}!blpa.packed<2x4x4x4xi4, bn_relu>)
// CHECK-NOT: blpa.quantize
// CHECK: %[[SUM:.*]] = blpa.add
// CHECK-NOT: blpa.quantize
// CHECK: %{{.*}}, %{{.*}}, %[[IS3:.*]], %[[K3:.*]] = blpa.batch_norm_encode %[[SUM]]
// The input of the last layer stays exact, as in the reference library.
// CHECK: %[[F:.*]] = blpa.reshape {{.*}}blpa.saved = "float32"
// CHECK-NEXT: %[[L:.*]] = blpa.gemm %[[F]], {{.*}}blpa.saved = "float32"
// CHECK: blpa.softmax_cross_entropy_grad %[[L]]
// CHECK: blpa.gemm %{{.*}}, %[[F]] {blpa.phase = "backward", trans_a = true}
// CHECK: %[[Z3:.*]] = blpa.batch_norm_decode %[[K3]], {{.*}} {blpa.phase = "backward", relu}
// CHECK-NEXT: %[[DR3:.*]] = blpa.relu_grad %{{.*}}, %[[Z3]]
// CHECK-NEXT: %[[DSUM:.*]], %{{.*}}, %{{.*}} = blpa.batch_norm_grad_decode %[[DR3]], %[[K3]], %{{.*}}, %{{.*}}, %[[IS3]] {blpa.phase = "backward"}
// CHECK: %[[Z1:.*]] = blpa.batch_norm_decode %[[K1]], %[[S1]], %[[T1]] {blpa.phase = "backward", relu} : (!blpa.packed<2x8x4x4xi4, bn_relu>, tensor<8xf32>, tensor<8xf32>) -> tensor<2x8x4x4xf32>
// CHECK-NEXT: blpa.conv_grad_weight %[[DSUM]], %[[Z1]] {{.*}}weight_shape = array<i64: 16, 8, 1, 1>
// CHECK: %[[Z2:.*]] = blpa.batch_norm_decode %[[K2]], {{.*}} relu}
// CHECK-NEXT: blpa.conv_grad_weight %[[DSUM]], %[[Z2]]
// CHECK-NEXT: blpa.conv_grad_input
// CHECK-NEXT: %[[DR2:.*]] = blpa.relu_grad %{{.*}}, %[[Z2]]
// CHECK-NEXT: blpa.batch_norm_grad_decode %[[DR2]], %[[K2]], %{{.*}}, %{{.*}}, %[[IS2]]
// CHECK: blpa.conv_grad_weight %{{.*}}, %[[Z1]] {{.*}}weight_shape = array<i64: 4, 8, 1, 1>
// CHECK: %[[DR1:.*]] = blpa.relu_grad %{{.*}}, %[[Z1]]
// CHECK-NEXT: blpa.batch_norm_grad_decode %[[DR1]], %[[K1]], %[[S1]], %[[T1]], %[[IS1]]
// CHECK-NEXT: blpa.conv_grad_weight %{{.*}}, %[[X]]
// CHECK-NOT: blpa.batch_norm_grad {{.*}}phase
// CHECK-NOT: blpa.quantize
// CHECK: return

module {
  func.func @forward(%x: tensor<2x8x4x4xf32> {blpa.name = "input"}) -> (tensor<2x3xf32> {blpa.name = "logits"}) {
    %w0 = blpa.param "stem.weight" trainable : tensor<8x8x3x3xf32>
    %s1 = blpa.param "bn1.weight" trainable : tensor<8xf32>
    %t1 = blpa.param "bn1.bias" trainable : tensor<8xf32>
    %m1 = blpa.param "bn1.running_mean" : tensor<8xf32>
    %v1 = blpa.param "bn1.running_var" : tensor<8xf32>
    %w1 = blpa.param "conv1.weight" trainable : tensor<4x8x1x1xf32>
    %s2 = blpa.param "bn2.weight" trainable : tensor<4xf32>
    %t2 = blpa.param "bn2.bias" trainable : tensor<4xf32>
    %m2 = blpa.param "bn2.running_mean" : tensor<4xf32>
    %v2 = blpa.param "bn2.running_var" : tensor<4xf32>
    %w2 = blpa.param "conv2.weight" trainable : tensor<16x4x1x1xf32>
    %ws = blpa.param "shortcut.weight" trainable : tensor<16x8x1x1xf32>
    %s3 = blpa.param "bn3.weight" trainable : tensor<16xf32>
    %t3 = blpa.param "bn3.bias" trainable : tensor<16xf32>
    %m3 = blpa.param "bn3.running_mean" : tensor<16xf32>
    %v3 = blpa.param "bn3.running_var" : tensor<16xf32>
    %fw = blpa.param "fc.weight" trainable : tensor<3x16xf32>
    %c0 = blpa.conv %x, %w0 {strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>} : (tensor<2x8x4x4xf32>, tensor<8x8x3x3xf32>) -> tensor<2x8x4x4xf32> loc("stem")
    %n1:3 = blpa.batch_norm %c0, %s1, %t1, %m1, %v1 {epsilon = 1.0e-5 : f64, momentum = 0.9 : f64} : (tensor<2x8x4x4xf32>, tensor<8xf32>, tensor<8xf32>, tensor<8xf32>, tensor<8xf32>) -> (tensor<2x8x4x4xf32>, tensor<8xf32>, tensor<8xf32>) loc("bn1")
    %r1 = blpa.relu %n1#0 : (tensor<2x8x4x4xf32>) -> tensor<2x8x4x4xf32> loc("relu1")
    %c1 = blpa.conv %r1, %w1 {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>} : (tensor<2x8x4x4xf32>, tensor<4x8x1x1xf32>) -> tensor<2x4x4x4xf32> loc("conv1")
    %n2:3 = blpa.batch_norm %c1, %s2, %t2, %m2, %v2 {epsilon = 1.0e-5 : f64, momentum = 0.9 : f64} : (tensor<2x4x4x4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>) -> (tensor<2x4x4x4xf32>, tensor<4xf32>, tensor<4xf32>) loc("bn2")
    %r2 = blpa.relu %n2#0 : (tensor<2x4x4x4xf32>) -> tensor<2x4x4x4xf32> loc("relu2")
    %c2 = blpa.conv %r2, %w2 {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>} : (tensor<2x4x4x4xf32>, tensor<16x4x1x1xf32>) -> tensor<2x16x4x4xf32> loc("conv2")
    %sc = blpa.conv %r1, %ws {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>} : (tensor<2x8x4x4xf32>, tensor<16x8x1x1xf32>) -> tensor<2x16x4x4xf32> loc("shortcut")
    %sum = blpa.add %c2, %sc : (tensor<2x16x4x4xf32>, tensor<2x16x4x4xf32>) -> tensor<2x16x4x4xf32> loc("join")
    %n3:3 = blpa.batch_norm %sum, %s3, %t3, %m3, %v3 {epsilon = 1.0e-5 : f64, momentum = 0.9 : f64} : (tensor<2x16x4x4xf32>, tensor<16xf32>, tensor<16xf32>, tensor<16xf32>, tensor<16xf32>) -> (tensor<2x16x4x4xf32>, tensor<16xf32>, tensor<16xf32>) loc("bn3")
    %r3 = blpa.relu %n3#0 : (tensor<2x16x4x4xf32>) -> tensor<2x16x4x4xf32> loc("relu3")
    %g = blpa.global_avg_pool %r3 : (tensor<2x16x4x4xf32>) -> tensor<2x16x1x1xf32> loc("pool")
    %f = blpa.reshape %g : tensor<2x16x1x1xf32> -> tensor<2x16xf32> loc("flatten")
    %l = blpa.gemm %f, %fw {trans_b = true} : (tensor<2x16xf32>, tensor<3x16xf32>) -> tensor<2x3xf32> loc("fc")
    return %l : tensor<2x3xf32>
  }
}

// -----

// A torchvision-style post-activation basic block: conv-BN-ReLU, conv-BN,
// add the shortcut, then ReLU. The second batch norm's output feeds the add,
// not a ReLU: its codes still serve its own gradient. The ReLU after the add
// is read by the next conv's weight gradient and by its own gradient: it is
// quantized with zero kept exact, and the ReLU gradient reads the decoded
// tensor (its zeros are the original's).
// CHECK-LABEL: func.func @train_step(
// CHECK: %{{.*}}, %{{.*}}, %{{.*}}, %[[K0:.*]] = blpa.batch_norm_encode
// CHECK: %[[R0:.*]] = blpa.relu
// CHECK: %[[N1:.*]], %{{.*}}, %{{.*}}, %[[K1:.*]] = blpa.batch_norm_encode
// CHECK-NEXT: %[[SUM:.*]] = blpa.add %[[N1]], %[[R0]]
// CHECK-NEXT: %[[R1:.*]] = blpa.relu %[[SUM]]
// CHECK-NEXT: %[[RK:.*]], %[[RP:.*]] = blpa.quantize %[[R1]] {bits = 4 : i64, blpa.phase = "forward", scheme = "nonneg"} : (tensor<2x4x6x6xf32>) -> (!blpa.packed<2x4x6x6xi4, nonneg>, tensor<2x4xf32>)
// CHECK-NEXT: blpa.conv %[[R1]]
// CHECK: %[[RD:.*]] = blpa.dequantize %[[RK]], %[[RP]] {blpa.phase = "backward"}
// CHECK-NEXT: blpa.conv_grad_weight %{{.*}}, %[[RD]]
// CHECK-NEXT: blpa.conv_grad_input
// CHECK-NEXT: %[[DS:.*]] = blpa.relu_grad %{{.*}}, %[[RD]]
// CHECK-NEXT: blpa.batch_norm_grad_decode %[[DS]], %[[K1]]
// CHECK: %[[Z0:.*]] = blpa.batch_norm_decode %[[K0]], {{.*}} relu}
// CHECK: blpa.relu_grad %{{.*}}, %[[Z0]]
// CHECK-NEXT: blpa.batch_norm_grad_decode %{{.*}}, %[[K0]]

module {
  func.func @forward(%x: tensor<2x4x6x6xf32> {blpa.name = "input"}) -> (tensor<2x3xf32> {blpa.name = "logits"}) {
    %w0 = blpa.param "conv0.weight" trainable : tensor<4x4x3x3xf32>
    %s0 = blpa.param "bn0.weight" trainable : tensor<4xf32>
    %t0 = blpa.param "bn0.bias" trainable : tensor<4xf32>
    %m0 = blpa.param "bn0.running_mean" : tensor<4xf32>
    %v0 = blpa.param "bn0.running_var" : tensor<4xf32>
    %w1 = blpa.param "conv1.weight" trainable : tensor<4x4x3x3xf32>
    %s1 = blpa.param "bn1.weight" trainable : tensor<4xf32>
    %t1 = blpa.param "bn1.bias" trainable : tensor<4xf32>
    %m1 = blpa.param "bn1.running_mean" : tensor<4xf32>
    %v1 = blpa.param "bn1.running_var" : tensor<4xf32>
    %w2 = blpa.param "conv2.weight" trainable : tensor<4x4x3x3xf32>
    %fw = blpa.param "fc.weight" trainable : tensor<3x36xf32>
    %c0 = blpa.conv %x, %w0 {strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>} : (tensor<2x4x6x6xf32>, tensor<4x4x3x3xf32>) -> tensor<2x4x6x6xf32> loc("conv0")
    %n0:3 = blpa.batch_norm %c0, %s0, %t0, %m0, %v0 {epsilon = 1.0e-5 : f64, momentum = 0.9 : f64} : (tensor<2x4x6x6xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>) -> (tensor<2x4x6x6xf32>, tensor<4xf32>, tensor<4xf32>) loc("bn0")
    %r0 = blpa.relu %n0#0 : (tensor<2x4x6x6xf32>) -> tensor<2x4x6x6xf32> loc("relu0")
    %c1 = blpa.conv %r0, %w1 {strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>} : (tensor<2x4x6x6xf32>, tensor<4x4x3x3xf32>) -> tensor<2x4x6x6xf32> loc("conv1")
    %n1:3 = blpa.batch_norm %c1, %s1, %t1, %m1, %v1 {epsilon = 1.0e-5 : f64, momentum = 0.9 : f64} : (tensor<2x4x6x6xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>) -> (tensor<2x4x6x6xf32>, tensor<4xf32>, tensor<4xf32>) loc("bn1")
    %sum = blpa.add %n1#0, %r0 : (tensor<2x4x6x6xf32>, tensor<2x4x6x6xf32>) -> tensor<2x4x6x6xf32> loc("join")
    %r1 = blpa.relu %sum : (tensor<2x4x6x6xf32>) -> tensor<2x4x6x6xf32> loc("relu1")
    %c2 = blpa.conv %r1, %w2 {strides = array<i64: 2, 2>, pads = array<i64: 1, 1, 1, 1>} : (tensor<2x4x6x6xf32>, tensor<4x4x3x3xf32>) -> tensor<2x4x3x3xf32> loc("conv2")
    %f = blpa.reshape %c2 : tensor<2x4x3x3xf32> -> tensor<2x36xf32> loc("flatten")
    %l = blpa.gemm %f, %fw {trans_b = true} : (tensor<2x36xf32>, tensor<3x36xf32>) -> tensor<2x3xf32> loc("fc")
    return %l : tensor<2x3xf32>
  }
}

// -----

// Max pooling keeps the position of each window's maximum (4 bits for a 3x3
// window, 2 for 2x2): the gradient is routed exactly. A ReLU whose output
// only its own gradient reads keeps a 1-bit mask.
// CHECK-LABEL: func.func @train_step(
// CHECK: %[[R:.*]] = blpa.relu
// CHECK-NEXT: %[[M:.*]] = blpa.quantize %[[R]] {bits = 1 : i64, blpa.phase = "forward", scheme = "mask"} : (tensor<2x2x7x7xf32>) -> !blpa.packed<2x2x7x7xi1, mask>
// CHECK-NEXT: %[[P:.*]], %[[PK:.*]] = blpa.max_pool_argmax %[[R]] {{.*}} -> (tensor<2x2x4x4xf32>, !blpa.packed<2x2x4x4xi4, argmax>)
// CHECK-NEXT: %{{.*}}, %[[QK:.*]] = blpa.max_pool_argmax %[[P]] {{.*}} -> (tensor<2x2x3x3xf32>, !blpa.packed<2x2x3x3xi2, argmax>)
// CHECK-NOT: blpa.max_pool_grad %
// CHECK: %[[DP:.*]] = blpa.max_pool_grad_argmax %{{.*}}, %[[QK]] {{.*}}input_shape = array<i64: 2, 2, 4, 4>
// CHECK-NEXT: %[[DR:.*]] = blpa.max_pool_grad_argmax %[[DP]], %[[PK]] {{.*}}input_shape = array<i64: 2, 2, 7, 7>
// CHECK-NEXT: %[[MD:.*]] = blpa.dequantize %[[M]] {blpa.phase = "backward"} : (!blpa.packed<2x2x7x7xi1, mask>) -> tensor<2x2x7x7xf32>
// CHECK-NEXT: blpa.relu_grad %[[DR]], %[[MD]]

module {
  func.func @forward(%x: tensor<2x2x7x7xf32> {blpa.name = "input"}) -> (tensor<2x3xf32> {blpa.name = "logits"}) {
    %w0 = blpa.param "conv0.weight" trainable : tensor<2x2x3x3xf32>
    %fw = blpa.param "fc.weight" trainable : tensor<3x18xf32>
    %c0 = blpa.conv %x, %w0 {strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>} : (tensor<2x2x7x7xf32>, tensor<2x2x3x3xf32>) -> tensor<2x2x7x7xf32> loc("conv0")
    %r0 = blpa.relu %c0 : (tensor<2x2x7x7xf32>) -> tensor<2x2x7x7xf32> loc("relu0")
    %p = blpa.max_pool %r0 {kernel_shape = array<i64: 3, 3>, strides = array<i64: 2, 2>, pads = array<i64: 1, 1, 1, 1>} : (tensor<2x2x7x7xf32>) -> tensor<2x2x4x4xf32> loc("pool")
    %q = blpa.max_pool %p {kernel_shape = array<i64: 2, 2>, strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>} : (tensor<2x2x4x4xf32>) -> tensor<2x2x3x3xf32> loc("pool2")
    %f = blpa.reshape %q : tensor<2x2x3x3xf32> -> tensor<2x18xf32> loc("flatten")
    %l = blpa.gemm %f, %fw {trans_b = true} : (tensor<2x18xf32>, tensor<3x18xf32>) -> tensor<2x3xf32> loc("fc")
    return %l : tensor<2x3xf32>
  }
}

// -----

// A max pooling window of 17x17 positions has no argmax code (more than 256
// positions): its input stays float32 and the plain gradient reads it.
// CHECK-LABEL: func.func @train_step(
// CHECK: %[[R:.*]] = blpa.relu {{.*}}blpa.saved = "float32"
// CHECK-NEXT: blpa.max_pool %[[R]]
// CHECK: blpa.max_pool_grad %{{.*}}, %[[R]]

module {
  func.func @forward(%x: tensor<2x2x7x7xf32> {blpa.name = "input"}) -> (tensor<2x3xf32> {blpa.name = "logits"}) {
    %w0 = blpa.param "conv0.weight" trainable : tensor<2x2x3x3xf32>
    %fw = blpa.param "fc.weight" trainable : tensor<3x2xf32>
    %c0 = blpa.conv %x, %w0 {strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>} : (tensor<2x2x7x7xf32>, tensor<2x2x3x3xf32>) -> tensor<2x2x7x7xf32> loc("conv0")
    %r0 = blpa.relu %c0 : (tensor<2x2x7x7xf32>) -> tensor<2x2x7x7xf32> loc("relu0")
    %p = blpa.max_pool %r0 {kernel_shape = array<i64: 17, 17>, strides = array<i64: 1, 1>, pads = array<i64: 5, 5, 5, 5>} : (tensor<2x2x7x7xf32>) -> tensor<2x2x1x1xf32> loc("pool")
    %f = blpa.reshape %p : tensor<2x2x1x1xf32> -> tensor<2x2xf32> loc("flatten")
    %l = blpa.gemm %f, %fw {trans_b = true} : (tensor<2x2xf32>, tensor<3x2xf32>) -> tensor<2x3xf32> loc("fc")
    return %l : tensor<2x3xf32>
  }
}

// -----

// Batch norm, ReLU, then max pooling (the bundled example's stem): the
// batch norm's codes serve its own gradient and the ReLU's, while the
// pooling gradient takes the argmax codes; decoded values, with their ties,
// never choose a window's maximum.
// CHECK-LABEL: func.func @train_step(
// CHECK: %{{.*}}, %{{.*}}, %{{.*}}, %[[K:.*]] = blpa.batch_norm_encode
// CHECK-NEXT: %[[R:.*]] = blpa.relu
// CHECK-NEXT: %{{.*}}, %[[A:.*]] = blpa.max_pool_argmax %[[R]]
// CHECK-NOT: blpa.max_pool_grad %
// CHECK: %[[DP:.*]] = blpa.max_pool_grad_argmax %{{.*}}, %[[A]]
// CHECK-NEXT: %[[Z:.*]] = blpa.batch_norm_decode %[[K]], {{.*}} relu}
// CHECK-NEXT: %[[DR:.*]] = blpa.relu_grad %[[DP]], %[[Z]]
// CHECK-NEXT: blpa.batch_norm_grad_decode %[[DR]], %[[K]]
module {
  func.func @forward(%x: tensor<2x2x6x6xf32> {blpa.name = "input"}) -> (tensor<2x3xf32> {blpa.name = "logits"}) {
    %w0 = blpa.param "conv0.weight" trainable : tensor<2x2x3x3xf32>
    %s0 = blpa.param "bn0.weight" trainable : tensor<2xf32>
    %t0 = blpa.param "bn0.bias" trainable : tensor<2xf32>
    %m0 = blpa.param "bn0.running_mean" : tensor<2xf32>
    %v0 = blpa.param "bn0.running_var" : tensor<2xf32>
    %fw = blpa.param "fc.weight" trainable : tensor<3x18xf32>
    %c0 = blpa.conv %x, %w0 {strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>} : (tensor<2x2x6x6xf32>, tensor<2x2x3x3xf32>) -> tensor<2x2x6x6xf32> loc("conv0")
    %n0:3 = blpa.batch_norm %c0, %s0, %t0, %m0, %v0 {epsilon = 1.0e-5 : f64, momentum = 0.9 : f64} : (tensor<2x2x6x6xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>) -> (tensor<2x2x6x6xf32>, tensor<2xf32>, tensor<2xf32>) loc("bn0")
    %r0 = blpa.relu %n0#0 : (tensor<2x2x6x6xf32>) -> tensor<2x2x6x6xf32> loc("relu0")
    %p = blpa.max_pool %r0 {kernel_shape = array<i64: 2, 2>, strides = array<i64: 2, 2>, pads = array<i64: 0, 0, 0, 0>} : (tensor<2x2x6x6xf32>) -> tensor<2x2x3x3xf32> loc("pool")
    %f = blpa.reshape %p : tensor<2x2x3x3xf32> -> tensor<2x18xf32> loc("flatten")
    %l = blpa.gemm %f, %fw {trans_b = true} : (tensor<2x18xf32>, tensor<3x18xf32>) -> tensor<2x3xf32> loc("fc")
    return %l : tensor<2x3xf32>
  }
}

// -----

// A max pooling of a ReLU output is non-negative also once it keeps its
// argmax codes: the conv weight gradient reading the pooled tensor gets
// `nonneg` codes (zero exact), not `affine` ones.
// CHECK-LABEL: func.func @train_step(
// CHECK: %[[P:.*]], %{{.*}} = blpa.max_pool_argmax
// CHECK-NEXT: blpa.quantize %[[P]] {bits = 4 : i64, blpa.phase = "forward", scheme = "nonneg"}
module {
  func.func @forward(%x: tensor<2x2x6x6xf32> {blpa.name = "input"}) -> (tensor<2x3xf32> {blpa.name = "logits"}) {
    %w0 = blpa.param "conv0.weight" trainable : tensor<2x2x3x3xf32>
    %w1 = blpa.param "conv1.weight" trainable : tensor<2x2x3x3xf32>
    %fw = blpa.param "fc.weight" trainable : tensor<3x18xf32>
    %c0 = blpa.conv %x, %w0 {strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>} : (tensor<2x2x6x6xf32>, tensor<2x2x3x3xf32>) -> tensor<2x2x6x6xf32> loc("conv0")
    %r0 = blpa.relu %c0 : (tensor<2x2x6x6xf32>) -> tensor<2x2x6x6xf32> loc("relu0")
    %p = blpa.max_pool %r0 {kernel_shape = array<i64: 2, 2>, strides = array<i64: 2, 2>, pads = array<i64: 0, 0, 0, 0>} : (tensor<2x2x6x6xf32>) -> tensor<2x2x3x3xf32> loc("pool")
    %c1 = blpa.conv %p, %w1 {strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>} : (tensor<2x2x3x3xf32>, tensor<2x2x3x3xf32>) -> tensor<2x2x3x3xf32> loc("conv1")
    %f = blpa.reshape %c1 : tensor<2x2x3x3xf32> -> tensor<2x18xf32> loc("flatten")
    %l = blpa.gemm %f, %fw {trans_b = true} : (tensor<2x18xf32>, tensor<3x18xf32>) -> tensor<2x3xf32> loc("fc")
    return %l : tensor<2x3xf32>
  }
}

// -----

// A transposed weight (Linear without bias) is a weight, not an activation:
// it stays exact for the input gradient that reads it. A transpose keeps
// the sign of its input, so a transposed ReLU output is `nonneg`.
// CHECK-LABEL: func.func @train_step(
// CHECK: %[[WT:.*]] = blpa.transpose %{{.*}} {blpa.phase = "forward", blpa.saved = "float32", perm = array<i64: 1, 0>} : (tensor<6x8xf32>) -> tensor<8x6xf32>
// CHECK-NOT: blpa.quantize %[[WT]]
// CHECK: %[[T:.*]] = blpa.transpose %{{.*}} {blpa.phase = "forward", perm = array<i64: 0, 2, 1>} : (tensor<2x3x2xf32>) -> tensor<2x2x3xf32>
// CHECK-NEXT: blpa.quantize %[[T]] {bits = 4 : i64, blpa.phase = "forward", scheme = "nonneg"}
// CHECK-NOT: blpa.quantize %[[WT]]
// CHECK: blpa.gemm %{{.*}}, %[[WT]] {blpa.phase = "backward", trans_b = true}
module {
  func.func @forward(%x: tensor<2x8xf32> {blpa.name = "input"}) -> (tensor<2x3xf32> {blpa.name = "logits"}) {
    %w = blpa.param "fc1.weight" trainable : tensor<6x8xf32>
    %k = blpa.param "k" trainable : tensor<3xf32>
    %fw = blpa.param "fc2.weight" trainable : tensor<3x6xf32>
    %k0 = blpa.param "k0" trainable : tensor<8xf32>
    %x0 = blpa.mul %x, %k0 : (tensor<2x8xf32>, tensor<8xf32>) -> tensor<2x8xf32> loc("scale0")
    %wt = blpa.transpose %w {perm = array<i64: 1, 0>} : (tensor<6x8xf32>) -> tensor<8x6xf32> loc("wt")
    %h = blpa.gemm %x0, %wt : (tensor<2x8xf32>, tensor<8x6xf32>) -> tensor<2x6xf32> loc("fc1")
    %r = blpa.relu %h : (tensor<2x6xf32>) -> tensor<2x6xf32> loc("relu")
    %r3 = blpa.reshape %r : tensor<2x6xf32> -> tensor<2x3x2xf32> loc("view")
    %t = blpa.transpose %r3 {perm = array<i64: 0, 2, 1>} : (tensor<2x3x2xf32>) -> tensor<2x2x3xf32> loc("permute")
    %m = blpa.mul %t, %k : (tensor<2x2x3xf32>, tensor<3xf32>) -> tensor<2x2x3xf32> loc("scale")
    %f = blpa.reshape %m : tensor<2x2x3xf32> -> tensor<2x6xf32> loc("flatten")
    %l = blpa.gemm %f, %fw {trans_b = true} : (tensor<2x6xf32>, tensor<3x6xf32>) -> tensor<2x3xf32> loc("fc2")
    return %l : tensor<2x3xf32>
  }
}

// -----

// Softmax and log-softmax outputs stay float32 (their gradients need them
// exact), for every reader: the softmax gradient and the Mul of the
// attention weighting `h * softmax(h)` read the same exact tensor; the
// softmax's input, which only the Mul's gradient reads, is quantized.
// CHECK-LABEL: func.func @train_step(
// CHECK: %[[H:.*]] = blpa.mul %{{.*}} {blpa.phase = "forward"}
// CHECK-NEXT: %[[CODES:.*]], %[[PARAMS:.*]] = blpa.quantize %[[H]] {bits = 4 : i64, blpa.phase = "forward", scheme = "affine"}
// CHECK-NEXT: %[[S:.*]] = blpa.softmax %[[H]] {axis = 1 : i64, blpa.phase = "forward", blpa.saved = "float32"}
// CHECK-NEXT: %[[A:.*]] = blpa.mul %[[H]], %[[S]] {blpa.phase = "forward"}
// CHECK-NEXT: %[[L:.*]] = blpa.log_softmax %[[A]] {axis = 2 : i64, blpa.phase = "forward", blpa.saved = "float32"}
// CHECK-NOT: blpa.quantize
// CHECK: %[[DL:.*]] = blpa.log_softmax_grad %{{.*}}, %[[L]] {axis = 2 : i64, blpa.phase = "backward"}
// CHECK-NEXT: blpa.mul %[[DL]], %[[S]] {blpa.phase = "backward"}
// CHECK-NEXT: %[[HD:.*]] = blpa.dequantize %[[CODES]], %[[PARAMS]]
// CHECK-NEXT: %[[DS:.*]] = blpa.mul %[[DL]], %[[HD]] {blpa.phase = "backward"}
// CHECK-NEXT: blpa.softmax_grad %[[DS]], %[[S]] {axis = 1 : i64, blpa.phase = "backward"}
module {
  func.func @forward(%x: tensor<2x4x3x3xf32> {blpa.name = "input"}) -> (tensor<2x3xf32> {blpa.name = "logits"}) {
    %k = blpa.param "k" trainable : tensor<4x1x1xf32>
    %fw = blpa.param "fc.weight" trainable : tensor<3x36xf32>
    %h = blpa.mul %x, %k : (tensor<2x4x3x3xf32>, tensor<4x1x1xf32>) -> tensor<2x4x3x3xf32> loc("scale")
    %s = blpa.softmax %h {axis = 1 : i64} : (tensor<2x4x3x3xf32>) -> tensor<2x4x3x3xf32> loc("attention")
    %a = blpa.mul %h, %s : (tensor<2x4x3x3xf32>, tensor<2x4x3x3xf32>) -> tensor<2x4x3x3xf32> loc("weighting")
    %l = blpa.log_softmax %a {axis = 2 : i64} : (tensor<2x4x3x3xf32>) -> tensor<2x4x3x3xf32> loc("log_softmax")
    %m = blpa.mul %l, %k : (tensor<2x4x3x3xf32>, tensor<4x1x1xf32>) -> tensor<2x4x3x3xf32> loc("scale2")
    %f = blpa.reshape %m : tensor<2x4x3x3xf32> -> tensor<2x36xf32> loc("flatten")
    %y = blpa.gemm %f, %fw {trans_b = true} : (tensor<2x36xf32>, tensor<3x36xf32>) -> tensor<2x3xf32> loc("fc")
    return %y : tensor<2x3xf32>
  }
}

// -----

// Batched products save their operands' values, as gemm does: an attention
// block's projection goes through the generic quantizer, the softmax
// output it multiplies stays float32 (its gradient needs it exactly), and
// the backward products of the inner layers read the decoded projection.
// The last product makes the logits (through a reshape): its own gradient
// reads the projection exact, as the last layer's input.
// CHECK-LABEL: func.func @train_step(
// CHECK: %[[P:.*]] = blpa.batch_matmul %{{.*}}, %{{.*}} {blpa.phase = "forward", blpa.saved = "float32"} : (tensor<1x4x4xf32>, tensor<2x4x3xf32>) -> tensor<2x4x3xf32>
// CHECK-NEXT: %[[CODES:.*]], %[[PARAMS:.*]] = blpa.quantize %[[P]] {bits = 4 : i64, blpa.phase = "forward", scheme = "affine"}
// CHECK: %[[S:.*]] = blpa.softmax %{{.*}} {axis = 2 : i64, blpa.phase = "forward", blpa.saved = "float32"}
// CHECK: blpa.batch_matmul %{{.*}}, %[[P]] {blpa.phase = "backward", trans_a = true}
// CHECK-NEXT: blpa.batch_matmul %{{.*}}, %[[S]] {blpa.phase = "backward"}
// CHECK: blpa.softmax_grad %{{.*}}, %[[S]]
// CHECK-NEXT: %[[D:.*]] = blpa.dequantize %[[CODES]], %[[PARAMS]] {blpa.phase = "backward"}
// CHECK-NEXT: blpa.batch_matmul %[[D]], %{{.*}} {blpa.phase = "backward"}
// CHECK-NEXT: blpa.batch_matmul %[[D]], %{{.*}} {blpa.phase = "backward", trans_b = true}
module {
  func.func @forward(%x: tensor<2x4x3xf32>) -> tensor<2x12xf32> {
    %w = blpa.param "w" trainable : tensor<1x4x4xf32>
    %p = blpa.batch_matmul %w, %x : (tensor<1x4x4xf32>, tensor<2x4x3xf32>) -> tensor<2x4x3xf32>
    %q = blpa.batch_matmul %p, %p {trans_a = true} : (tensor<2x4x3xf32>, tensor<2x4x3xf32>) -> tensor<2x3x3xf32>
    %s = blpa.softmax %q {axis = 2 : i64} : (tensor<2x3x3xf32>) -> tensor<2x3x3xf32>
    %r = blpa.batch_matmul %p, %s {trans_b = true} : (tensor<2x4x3xf32>, tensor<2x3x3xf32>) -> tensor<2x4x3xf32>
    %f = blpa.reshape %r : tensor<2x4x3xf32> -> tensor<2x12xf32>
    return %f : tensor<2x12xf32>
  }
}
