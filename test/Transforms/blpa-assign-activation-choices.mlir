// RUN: blpa-opt %s --blpa-autodiff --blpa-assign-activation-choices="policy=conv1=recompute,relu1=4" | FileCheck %s --check-prefix=NAMED
// RUN: blpa-opt %s --blpa-autodiff --blpa-assign-activation-choices="policy=*=2,bn0=float32,relu1=auto,bn1=8,conv1=4" | FileCheck %s --check-prefix=STAR
// RUN: blpa-opt %s --blpa-autodiff --blpa-assign-activation-choices | FileCheck %s --check-prefix=NONE
// RUN: not blpa-opt %s --blpa-autodiff --blpa-assign-activation-choices="policy=convX=2" 2>&1 | FileCheck %s --check-prefix=UNKNOWN
// RUN: not blpa-opt %s --blpa-autodiff --blpa-assign-activation-choices="policy=conv1=3" 2>&1 | FileCheck %s --check-prefix=BAD

// A pin on NODE concerns the saved results of NODE's op and the saved
// tensors NODE's gradient reads. conv1=recompute: conv1's output (read by
// bn1's gradient) and its input relu0 (read by conv1's weight gradient).
// NAMED-LABEL: func.func @train_step(
// NAMED: blpa.conv %arg0, {{.*}}{blpa.phase = "forward"
// NAMED: blpa.batch_norm {{.*}}{blpa.phase = "forward"
// NAMED: blpa.relu {{.*}}{blpa.act_choice = "recompute", blpa.phase = "forward"}
// NAMED: blpa.conv {{.*}}{blpa.act_choice = "recompute", blpa.phase = "forward"
// NAMED: blpa.batch_norm {{.*}}{blpa.phase = "forward"
// NAMED: blpa.relu {{.*}}{blpa.act_choice = "4", blpa.phase = "forward"}
// NAMED-NOT: blpa.act_choice

// `*` covers every saved tensor a named pin does not; a named `auto`
// undoes it (relu1) but gives way to any other pin; of several named pins
// the most exact wins (conv1's output is named by conv1=4 and by bn1=8,
// whose gradient reads it; relu0's by conv1=4 alone).
// STAR-LABEL: func.func @train_step(
// STAR: blpa.conv %arg0, {{.*}}{blpa.act_choice = "float32", blpa.phase = "forward"
// STAR: blpa.batch_norm {{.*}}{blpa.act_choice = "float32", blpa.phase = "forward"
// STAR: blpa.relu {{.*}}{blpa.act_choice = "4", blpa.phase = "forward"}
// STAR: blpa.conv {{.*}}{blpa.act_choice = "8", blpa.phase = "forward"
// STAR: blpa.batch_norm {{.*}}{blpa.act_choice = "8", blpa.phase = "forward"
// STAR: blpa.relu {{.*}}{blpa.phase = "forward"}
// STAR: blpa.conv {{.*}}{blpa.phase = "forward"
// STAR: blpa.reshape {{.*}}{blpa.act_choice = "2", blpa.phase = "forward"}
// The backward pass and the forward ops nothing in it reads get no choice.
// STAR: blpa.softmax_cross_entropy {{.*}}{blpa.phase = "forward"}
// STAR-NOT: blpa.act_choice

// NONE-NOT: blpa.act_choice

// UNKNOWN: error: --act-policy names node 'convX', which neither saves an activation for the backward pass nor reads one in @train_step

// BAD: error: --act-policy 'conv1=3': expected NODE=float32|8|4|2|recompute|auto (NODE an ONNX node name, or * for every node)

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

