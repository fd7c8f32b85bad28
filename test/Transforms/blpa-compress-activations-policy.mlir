// RUN: blpa-opt %s -split-input-file --blpa-autodiff --blpa-compress-activations="bits=8 policy=bn0=float32,relu1=float32" | FileCheck %s --check-prefix=POLICY
// RUN: blpa-opt %s -split-input-file --blpa-autodiff --blpa-compress-activations="bits=2 naive=1 min-elements=1" | FileCheck %s --check-prefix=NAIVE
// RUN: blpa-opt %s -split-input-file --blpa-autodiff --blpa-compress-activations | FileCheck %s --check-prefix=DEFAULT

// Where the rewrite must not apply: @forward (inference) is untouched;
// tensors of fewer than min-elements (4096 by default) stay float32 and
// their producers say so; a float32 policy keeps the named node's gradient
// exact (bn0: a plain batch norm whose gradient reads its input; relu1: its
// gradient and nothing else reads the exact output).
// DEFAULT-LABEL: func.func @forward(
// DEFAULT-NOT: blpa.batch_norm_encode
// DEFAULT-NOT: blpa.quantize
// DEFAULT-LABEL: func.func @train_step(
// DEFAULT: blpa.batch_norm_encode {{.*}}bits = 4 : i64
// DEFAULT: %[[R1:.*]] = blpa.relu {{.*}}blpa.saved = "float32"
// DEFAULT-NOT: blpa.quantize
// DEFAULT: blpa.relu_grad %{{.*}}, %[[R1]]

// POLICY-LABEL: func.func @train_step(
// POLICY: %[[C0:.*]] = blpa.conv {{.*}}blpa.saved = "float32"
// POLICY-NEXT: %[[N0:.*]], %[[M0:.*]], %[[I0:.*]] = blpa.batch_norm %[[C0]], {{.*}}blpa.saved = "float32"
// POLICY: blpa.batch_norm_encode {{.*}}bits = 8 : i64
// POLICY: %[[R1:.*]] = blpa.relu {{.*}}blpa.saved = "float32"
// POLICY: %[[D1:.*]] = blpa.relu_grad %{{.*}}, %[[R1]]
// POLICY: blpa.batch_norm_grad_decode %[[D1]]
// POLICY: blpa.batch_norm_grad %{{.*}}, %[[C0]], %{{.*}}, %[[M0]], %[[I0]]

// The naive baseline: the forward pass itself goes on with the decoded
// approximation of every saved tensor (2 bits here), the backward pass reads
// the same codes.
// NAIVE-LABEL: func.func @train_step(
// NAIVE: %[[C0:.*]] = blpa.conv
// NAIVE-NEXT: %[[K0:.*]], %[[P0:.*]] = blpa.quantize %[[C0]] {bits = 2 : i64, blpa.phase = "forward", scheme = "affine"}
// NAIVE-NEXT: %[[A0:.*]] = blpa.dequantize %[[K0]], %[[P0]] {blpa.phase = "forward"}
// NAIVE-NEXT: blpa.batch_norm %[[A0]],
// NAIVE: %[[R0:.*]] = blpa.relu
// NAIVE-NEXT: %[[K1:.*]], %[[P1:.*]] = blpa.quantize %[[R0]] {bits = 2 : i64, blpa.phase = "forward", scheme = "nonneg"}
// NAIVE-NEXT: %[[A1:.*]] = blpa.dequantize %[[K1]], %[[P1]] {blpa.phase = "forward"}
// NAIVE-NEXT: blpa.conv %[[A1]],
// NAIVE-NOT: blpa.batch_norm_encode
// NAIVE: %[[B0:.*]] = blpa.dequantize %[[K0]], %[[P0]] {blpa.phase = "backward"}
// NAIVE-NEXT: blpa.batch_norm_grad %{{.*}}, %[[B0]],

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

