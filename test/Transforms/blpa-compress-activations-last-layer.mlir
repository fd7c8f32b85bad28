// RUN: blpa-opt %s -split-input-file --blpa-autodiff --blpa-compress-activations="bits=4 min-elements=1" | FileCheck %s

// The last layer's input stays float32 whatever produced it (the reference
// library keeps it exact): the rule is in the uses every encoder sees, so
// the batch norm's own encoder follows it too.

// A BatchNorm1d classifier head, BN -> ReLU -> Gemm: the batch norm keeps
// its codes for its own gradient and the ReLU's mask, but the classifier's
// weight gradient reads the exact ReLU output, not a decode of the codes.
// CHECK-LABEL: func.func @train_step(
// CHECK: %{{.*}}, %{{.*}}, %[[IS:.*]], %[[K:.*]] = blpa.batch_norm_encode
// CHECK-NEXT: %[[R:.*]] = blpa.relu %{{.*}} {blpa.phase = "forward", blpa.saved = "float32"}
// CHECK-NOT: blpa.quantize %[[R]]
// CHECK: %[[L:.*]] = blpa.gemm %[[R]], %{{.*}} {blpa.phase = "forward"
// CHECK: %[[DL:.*]] = blpa.softmax_cross_entropy_grad %[[L]]
// CHECK: blpa.gemm %[[DL]], %[[R]] {blpa.phase = "backward", trans_a = true}
// CHECK: %[[Z:.*]] = blpa.batch_norm_decode %[[K]], {{.*}} {blpa.phase = "backward", relu}
// CHECK-NEXT: %[[DR:.*]] = blpa.relu_grad %{{.*}}, %[[Z]]
// CHECK-NEXT: blpa.batch_norm_grad_decode %[[DR]], %[[K]], %{{.*}}, %{{.*}}, %[[IS]]
// CHECK-NOT: blpa.batch_norm_decode
module {
  func.func @forward(%x: tensor<4x6xf32> {blpa.name = "input"}) -> (tensor<4x3xf32> {blpa.name = "logits"}) {
    %w1 = blpa.param "fc1.weight" trainable : tensor<8x6xf32>
    %s = blpa.param "bn.weight" trainable : tensor<8xf32>
    %t = blpa.param "bn.bias" trainable : tensor<8xf32>
    %m = blpa.param "bn.running_mean" : tensor<8xf32>
    %v = blpa.param "bn.running_var" : tensor<8xf32>
    %w2 = blpa.param "fc2.weight" trainable : tensor<3x8xf32>
    %h = blpa.gemm %x, %w1 {trans_b = true} : (tensor<4x6xf32>, tensor<8x6xf32>) -> tensor<4x8xf32> loc("fc1")
    %n:3 = blpa.batch_norm %h, %s, %t, %m, %v {epsilon = 1.0e-5 : f64, momentum = 0.9 : f64} : (tensor<4x8xf32>, tensor<8xf32>, tensor<8xf32>, tensor<8xf32>, tensor<8xf32>) -> (tensor<4x8xf32>, tensor<8xf32>, tensor<8xf32>) loc("bn")
    %r = blpa.relu %n#0 : (tensor<4x8xf32>) -> tensor<4x8xf32> loc("relu")
    %l = blpa.gemm %r, %w2 {trans_b = true} : (tensor<4x8xf32>, tensor<3x8xf32>) -> tensor<4x3xf32> loc("fc2")
    return %l : tensor<4x3xf32>
  }
}

// -----

// A batch norm as the last layer (normalized logits): its gradient reads
// the logits' gradient, so its input stays exact and it keeps no codes.
// CHECK-LABEL: func.func @train_step(
// CHECK: %[[H:.*]] = blpa.gemm {{.*}}blpa.saved = "float32"
// CHECK-NEXT: %[[N:.*]], %[[MEAN:.*]], %[[IS:.*]] = blpa.batch_norm %[[H]]
// CHECK-NOT: blpa.batch_norm_encode
// CHECK: %[[DL:.*]] = blpa.softmax_cross_entropy_grad %[[N]]
// CHECK: blpa.batch_norm_grad %[[DL]], %[[H]], %{{.*}}, %[[MEAN]], %[[IS]]
// CHECK-NOT: blpa.batch_norm_grad_decode
module {
  func.func @forward(%x: tensor<4x6xf32> {blpa.name = "input"}) -> (tensor<4x3xf32> {blpa.name = "logits"}) {
    %w1 = blpa.param "fc.weight" trainable : tensor<3x6xf32>
    %s = blpa.param "bn.weight" trainable : tensor<3xf32>
    %t = blpa.param "bn.bias" trainable : tensor<3xf32>
    %m = blpa.param "bn.running_mean" : tensor<3xf32>
    %v = blpa.param "bn.running_var" : tensor<3xf32>
    %h = blpa.gemm %x, %w1 {trans_b = true} : (tensor<4x6xf32>, tensor<3x6xf32>) -> tensor<4x3xf32> loc("fc")
    %n:3 = blpa.batch_norm %h, %s, %t, %m, %v {epsilon = 1.0e-5 : f64, momentum = 0.9 : f64} : (tensor<4x3xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>) -> (tensor<4x3xf32>, tensor<3xf32>, tensor<3xf32>) loc("bn")
    return %n#0 : tensor<4x3xf32>
  }
}

// -----

// A global max pooling as the last layer (a fully convolutional
// classifier): its gradient reads the logits' gradient through the
// flatten, so its input stays float32 rather than becoming argmax codes.
// CHECK-LABEL: func.func @train_step(
// CHECK: %[[C:.*]] = blpa.conv {{.*}}blpa.saved = "float32"
// CHECK-NEXT: %[[P:.*]] = blpa.max_pool %[[C]]
// CHECK-NOT: blpa.max_pool_argmax
// CHECK: %[[DL:.*]] = blpa.softmax_cross_entropy_grad
// CHECK-NEXT: %[[DF:.*]] = blpa.reshape %[[DL]]
// CHECK-NEXT: blpa.max_pool_grad %[[DF]], %[[C]]
module {
  func.func @forward(%x: tensor<2x2x4x4xf32> {blpa.name = "input"}) -> (tensor<2x3xf32> {blpa.name = "logits"}) {
    %w = blpa.param "conv.weight" trainable : tensor<3x2x3x3xf32>
    %c = blpa.conv %x, %w {strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>} : (tensor<2x2x4x4xf32>, tensor<3x2x3x3xf32>) -> tensor<2x3x4x4xf32> loc("conv")
    %p = blpa.max_pool %c {kernel_shape = array<i64: 4, 4>, strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>} : (tensor<2x3x4x4xf32>) -> tensor<2x3x1x1xf32> loc("pool")
    %l = blpa.reshape %p : tensor<2x3x1x1xf32> -> tensor<2x3xf32> loc("flatten")
    return %l : tensor<2x3xf32>
  }
}
