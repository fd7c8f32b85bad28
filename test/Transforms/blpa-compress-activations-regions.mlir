// RUN: blpa-opt %s -split-input-file --blpa-autodiff --blpa-compress-activations="bits=4 min-elements=1" | FileCheck %s
// RUN: blpa-opt %s -split-input-file --blpa-autodiff --blpa-compress-activations="bits=4 min-elements=1 policy=act=float32" | FileCheck %s --check-prefix=POLICY

// The gradients of Clip (ReLU6), HardSigmoid and HardSwish mask with the
// exact piece of each input: a forward blpa.activation_region writes it
// from the exact tensor, as ReLU's mask is exact, and the gradient reads
// the codes instead of a decoded approximation.

// ReLU6 after a convolution: 1-bit region codes, written right after the
// convolution; the convolution's output, which only the ReLU6 gradient
// read, is no longer kept in any other form.
// CHECK-LABEL: func.func @train_step(
// CHECK: %[[C:.*]] = blpa.conv
// CHECK-NEXT: %[[K:.*]] = blpa.activation_region %[[C]] {alpha = 0.000000e+00 : f32, beta = 6.000000e+00 : f32, blpa.phase = "forward", kind = 3 : i64} : (tensor<2x4x4x4xf32>) -> !blpa.packed<2x4x4x4xi1, region>
// CHECK-NOT: blpa.quantize %[[C]]
// CHECK: blpa.activation_grad_region %{{.*}}, %[[K]] {alpha = 0.000000e+00 : f32, beta = 6.000000e+00 : f32, blpa.phase = "backward", kind = 3 : i64} : (tensor<2x4x4x4xf32>, !blpa.packed<2x4x4x4xi1, region>) -> tensor<2x4x4x4xf32>
// CHECK-NOT: blpa.activation_grad %
// POLICY-LABEL: func.func @train_step(
// POLICY-NOT: blpa.activation_region
// POLICY: %[[C:.*]] = blpa.conv {{.*}}blpa.saved = "float32"
// POLICY: blpa.activation_grad %{{.*}}, %[[C]] {alpha = 0.000000e+00 : f32, beta = 6.000000e+00 : f32, blpa.phase = "backward", kind = 3 : i64}
module {
  func.func @forward(%x: tensor<2x4x4x4xf32> {blpa.name = "input"}) -> (tensor<2x3xf32> {blpa.name = "logits"}) {
    %w = blpa.param "conv.weight" trainable : tensor<4x4x3x3xf32>
    %fw = blpa.param "fc.weight" trainable : tensor<3x4xf32>
    %c = blpa.conv %x, %w {strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>} : (tensor<2x4x4x4xf32>, tensor<4x4x3x3xf32>) -> tensor<2x4x4x4xf32> loc("conv")
    %r = blpa.clip %c {min = 0.0 : f32, max = 6.0 : f32} : (tensor<2x4x4x4xf32>) -> tensor<2x4x4x4xf32> loc("act")
    %g = blpa.global_avg_pool %r : (tensor<2x4x4x4xf32>) -> tensor<2x4x1x1xf32> loc("pool")
    %f = blpa.reshape %g : tensor<2x4x1x1xf32> -> tensor<2x4xf32> loc("flatten")
    %l = blpa.gemm %f, %fw {trans_b = true} : (tensor<2x4xf32>, tensor<3x4xf32>) -> tensor<2x3xf32> loc("fc")
    return %l : tensor<2x3xf32>
  }
}

// -----

// HardSwish after a batch norm: 2-bit region codes of the batch norm's exact
// output (below -3, within [-3, 3], above), and the slope inside [-3, 3]
// from the batch norm's own codes, decoded.
// CHECK-LABEL: func.func @train_step(
// CHECK: %[[N:.*]], %{{.*}}, %{{.*}}, %[[BK:.*]] = blpa.batch_norm_encode
// CHECK-NEXT: %[[K:.*]] = blpa.activation_region %[[N]] {alpha = 0.000000e+00 : f32, beta = 0.000000e+00 : f32, blpa.phase = "forward", kind = 2 : i64} : (tensor<2x4x4x4xf32>) -> !blpa.packed<2x4x4x4xi2, region>
// CHECK-NEXT: blpa.hard_swish %[[N]]
// CHECK-NOT: blpa.quantize %[[N]]
// CHECK: %[[V:.*]] = blpa.batch_norm_decode %[[BK]], {{.*}} {blpa.phase = "backward"}
// CHECK-NEXT: %[[DN:.*]] = blpa.activation_grad_region %{{.*}}, %[[K]], %[[V]] {{{.*}}kind = 2 : i64} : (tensor<2x4x4x4xf32>, !blpa.packed<2x4x4x4xi2, region>, tensor<2x4x4x4xf32>) -> tensor<2x4x4x4xf32>
// CHECK-NEXT: blpa.batch_norm_grad_decode %[[DN]], %[[BK]]
module {
  func.func @forward(%x: tensor<2x4x4x4xf32> {blpa.name = "input"}) -> (tensor<2x3xf32> {blpa.name = "logits"}) {
    %w = blpa.param "conv.weight" trainable : tensor<4x4x3x3xf32>
    %s = blpa.param "bn.weight" trainable : tensor<4xf32>
    %t = blpa.param "bn.bias" trainable : tensor<4xf32>
    %m = blpa.param "bn.running_mean" : tensor<4xf32>
    %v = blpa.param "bn.running_var" : tensor<4xf32>
    %fw = blpa.param "fc.weight" trainable : tensor<3x4xf32>
    %c = blpa.conv %x, %w {strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>} : (tensor<2x4x4x4xf32>, tensor<4x4x3x3xf32>) -> tensor<2x4x4x4xf32> loc("conv")
    %n:3 = blpa.batch_norm %c, %s, %t, %m, %v {epsilon = 1.0e-5 : f64, momentum = 0.9 : f64} : (tensor<2x4x4x4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>) -> (tensor<2x4x4x4xf32>, tensor<4xf32>, tensor<4xf32>) loc("bn")
    %h = blpa.hard_swish %n#0 : (tensor<2x4x4x4xf32>) -> tensor<2x4x4x4xf32> loc("act")
    %g = blpa.global_avg_pool %h : (tensor<2x4x4x4xf32>) -> tensor<2x4x1x1xf32> loc("pool")
    %f = blpa.reshape %g : tensor<2x4x1x1xf32> -> tensor<2x4xf32> loc("flatten")
    %l = blpa.gemm %f, %fw {trans_b = true} : (tensor<2x4xf32>, tensor<3x4xf32>) -> tensor<2x3xf32> loc("fc")
    return %l : tensor<2x3xf32>
  }
}

// -----

// HardSwish on a tensor without codes of its own: the slope's values are
// quantized like any saved tensor, the pieces come from the region codes.
// CHECK-LABEL: func.func @train_step(
// CHECK: %[[C:.*]] = blpa.conv
// CHECK-NEXT: %[[QK:.*]], %[[QP:.*]] = blpa.quantize %[[C]] {bits = 4 : i64, blpa.phase = "forward", scheme = "affine"}
// CHECK-NEXT: %[[K:.*]] = blpa.activation_region %[[C]] {{.*}}-> !blpa.packed<2x4x4x4xi2, region>
// CHECK: %[[V:.*]] = blpa.dequantize %[[QK]], %[[QP]] {blpa.phase = "backward"}
// CHECK-NEXT: blpa.activation_grad_region %{{.*}}, %[[K]], %[[V]]
module {
  func.func @forward(%x: tensor<2x4x4x4xf32> {blpa.name = "input"}) -> (tensor<2x3xf32> {blpa.name = "logits"}) {
    %w = blpa.param "conv.weight" trainable : tensor<4x4x3x3xf32>
    %fw = blpa.param "fc.weight" trainable : tensor<3x4xf32>
    %c = blpa.conv %x, %w {strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>} : (tensor<2x4x4x4xf32>, tensor<4x4x3x3xf32>) -> tensor<2x4x4x4xf32> loc("conv")
    %h = blpa.hard_swish %c : (tensor<2x4x4x4xf32>) -> tensor<2x4x4x4xf32> loc("act")
    %g = blpa.global_avg_pool %h : (tensor<2x4x4x4xf32>) -> tensor<2x4x1x1xf32> loc("pool")
    %f = blpa.reshape %g : tensor<2x4x1x1xf32> -> tensor<2x4xf32> loc("flatten")
    %l = blpa.gemm %f, %fw {trans_b = true} : (tensor<2x4xf32>, tensor<3x4xf32>) -> tensor<2x3xf32> loc("fc")
    return %l : tensor<2x3xf32>
  }
}

// -----

// HardSigmoid: 1-bit codes; its output, which the next convolution's weight
// gradient reads, is non-negative and quantized so.
// CHECK-LABEL: func.func @train_step(
// CHECK: %[[C:.*]] = blpa.conv
// CHECK-NEXT: %[[K:.*]] = blpa.activation_region %[[C]] {alpha = 2.000000e-01 : f32, beta = 5.000000e-01 : f32, blpa.phase = "forward", kind = 1 : i64} : (tensor<2x4x4x4xf32>) -> !blpa.packed<2x4x4x4xi1, region>
// CHECK-NEXT: %[[S:.*]] = blpa.hard_sigmoid %[[C]]
// CHECK-NEXT: blpa.quantize %[[S]] {bits = 4 : i64, blpa.phase = "forward", scheme = "nonneg"}
// CHECK: blpa.activation_grad_region %{{.*}}, %[[K]] {alpha = 2.000000e-01 : f32, beta = 5.000000e-01 : f32, blpa.phase = "backward", kind = 1 : i64} : (tensor<2x4x4x4xf32>, !blpa.packed<2x4x4x4xi1, region>) -> tensor<2x4x4x4xf32>
module {
  func.func @forward(%x: tensor<2x4x4x4xf32> {blpa.name = "input"}) -> (tensor<2x3xf32> {blpa.name = "logits"}) {
    %w = blpa.param "conv.weight" trainable : tensor<4x4x3x3xf32>
    %w2 = blpa.param "conv2.weight" trainable : tensor<4x4x1x1xf32>
    %fw = blpa.param "fc.weight" trainable : tensor<3x4xf32>
    %c = blpa.conv %x, %w {strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>} : (tensor<2x4x4x4xf32>, tensor<4x4x3x3xf32>) -> tensor<2x4x4x4xf32> loc("conv")
    %s = blpa.hard_sigmoid %c {alpha = 0.2 : f32, beta = 0.5 : f32} : (tensor<2x4x4x4xf32>) -> tensor<2x4x4x4xf32> loc("act")
    %c2 = blpa.conv %s, %w2 {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>} : (tensor<2x4x4x4xf32>, tensor<4x4x1x1xf32>) -> tensor<2x4x4x4xf32> loc("conv2")
    %g = blpa.global_avg_pool %c2 : (tensor<2x4x4x4xf32>) -> tensor<2x4x1x1xf32> loc("pool")
    %f = blpa.reshape %g : tensor<2x4x1x1xf32> -> tensor<2x4xf32> loc("flatten")
    %l = blpa.gemm %f, %fw {trans_b = true} : (tensor<2x4xf32>, tensor<3x4xf32>) -> tensor<2x3xf32> loc("fc")
    return %l : tensor<2x3xf32>
  }
}

// -----

// A Clip bound computed in the step (read at run time): the encoder reads
// it too, so it goes after both the input and the bound exist.
// CHECK-LABEL: func.func @train_step(
// CHECK: %[[H:.*]] = blpa.mul
// CHECK-NEXT: %[[LO:.*]] = blpa.mul %[[B:.*]], %[[B]]
// CHECK-NEXT: %[[K:.*]] = blpa.activation_region %[[H]] alpha %[[LO]] {{.*}}: (tensor<2x4x4x4xf32>, tensor<1xf32>) -> !blpa.packed<2x4x4x4xi1, region>
// CHECK-NEXT: blpa.clip %[[H]] min %[[LO]]
// CHECK: blpa.activation_grad_region %{{.*}}, %[[K]] {alpha = 0xFF800000 : f32, beta = 6.000000e+00 : f32, blpa.phase = "backward", kind = 3 : i64}
module {
  func.func @forward(%x: tensor<2x4x4x4xf32> {blpa.name = "input"}) -> (tensor<2x3xf32> {blpa.name = "logits"}) {
    %k = blpa.param "k" trainable : tensor<4x1x1xf32>
    %b = blpa.param "bound" : tensor<1xf32>
    %fw = blpa.param "fc.weight" trainable : tensor<3x4xf32>
    %h = blpa.mul %x, %k : (tensor<2x4x4x4xf32>, tensor<4x1x1xf32>) -> tensor<2x4x4x4xf32> loc("scale")
    %lo = blpa.mul %b, %b : (tensor<1xf32>, tensor<1xf32>) -> tensor<1xf32> loc("bound")
    %r = blpa.clip %h min %lo {max = 6.0 : f32} : (tensor<2x4x4x4xf32>, tensor<1xf32>) -> tensor<2x4x4x4xf32> loc("act")
    %g = blpa.global_avg_pool %r : (tensor<2x4x4x4xf32>) -> tensor<2x4x1x1xf32> loc("pool")
    %f = blpa.reshape %g : tensor<2x4x1x1xf32> -> tensor<2x4xf32> loc("flatten")
    %l = blpa.gemm %f, %fw {trans_b = true} : (tensor<2x4xf32>, tensor<3x4xf32>) -> tensor<2x3xf32> loc("fc")
    return %l : tensor<2x3xf32>
  }
}
