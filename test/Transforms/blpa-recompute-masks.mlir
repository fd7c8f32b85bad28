// RUN: blpa-opt %s -split-input-file --blpa-autodiff --blpa-recompute="bits=4" | FileCheck %s
// RUN: blpa-opt %s -split-input-file --blpa-autodiff --blpa-recompute="bits=4 copy-per-reader=1" | FileCheck %s --check-prefix=PER
// RUN: blpa-opt %s -split-input-file --blpa-autodiff --blpa-recompute | FileCheck %s --check-prefix=EXACT

// A ReLU recomputed from a checkpoint the backward pass reads decoded (the
// first gemm's output: with bits=4 and no choice of its own it will be kept
// as codes) keeps the 1-bit mask of its output in the forward pass. Its
// copy is relu(h') * mask, read by the weight gradient; its gradient reads
// the mask, decoded right before it. Under bits=0 (EXACT) the checkpoint
// is exact and the copy is a plain ReLU.
// CHECK-LABEL: func.func @train_step(
// CHECK: %[[H:.*]] = blpa.gemm
// CHECK-NEXT: %[[R:.*]] = blpa.relu %[[H]] {blpa.act_choice = "recompute", blpa.phase = "forward", blpa.recompute_id = 0 : i64}
// CHECK-NEXT: %[[MASK:.*]] = blpa.quantize %[[R]] {bits = 1 : i64, blpa.phase = "forward", scheme = "mask"}
// CHECK-NEXT: blpa.gemm %[[R]]
// CHECK: %[[R2:.*]] = blpa.relu %[[H]] {blpa.phase = "backward", blpa.recomputes = array<i64: 0>}
// CHECK-NEXT: %[[M1:.*]] = blpa.dequantize %[[MASK]] {blpa.phase = "backward", blpa.recomputes = array<i64: 0>}
// CHECK-NEXT: %[[V:.*]] = blpa.mul %[[R2]], %[[M1]] {blpa.phase = "backward", blpa.recomputes = array<i64: 0>}
// CHECK-NEXT: blpa.gemm %{{.*}}, %[[V]] {blpa.phase = "backward", trans_a = true}
// CHECK-NEXT: %[[DR:.*]] = blpa.gemm
// CHECK-NEXT: %[[M2:.*]] = blpa.dequantize %[[MASK]] {blpa.phase = "backward", blpa.recomputes = array<i64: 0>}
// CHECK-NEXT: blpa.relu_grad %[[DR]], %[[M2]] {blpa.phase = "backward"}
// CHECK-NOT: blpa.quantize

// With a copy per reader, both copies decode the one mask.
// PER-LABEL: func.func @train_step(
// PER: blpa.quantize {{.*}}scheme = "mask"
// PER-NOT: blpa.quantize
// PER: return

// EXACT-LABEL: func.func @train_step(
// EXACT-NOT: blpa.quantize
// EXACT: %[[R2:.*]] = blpa.relu %{{.*}} {blpa.phase = "backward", blpa.recomputes = array<i64: 0>}
// EXACT-NEXT: blpa.gemm %{{.*}}, %[[R2]] {blpa.phase = "backward", trans_a = true}
// EXACT-NOT: blpa.dequantize
// EXACT: blpa.relu_grad %{{.*}}, %[[R2]]
module {
  func.func @forward(%x: tensor<2x8xf32> {blpa.name = "input"}) -> (tensor<2x3xf32> {blpa.name = "logits"}) {
    %w1 = blpa.param "fc1.weight" trainable : tensor<8x8xf32>
    %w2 = blpa.param "fc2.weight" trainable : tensor<3x8xf32>
    %h = blpa.gemm %x, %w1 {trans_b = true} : (tensor<2x8xf32>, tensor<8x8xf32>) -> tensor<2x8xf32> loc("fc1")
    %r = blpa.relu %h {blpa.act_choice = "recompute"} : (tensor<2x8xf32>) -> tensor<2x8xf32> loc("relu1")
    %l = blpa.gemm %r, %w2 {trans_b = true} : (tensor<2x8xf32>, tensor<3x8xf32>) -> tensor<2x3xf32> loc("fc2")
    return %l : tensor<2x3xf32>
  }
}

// -----

// The checkpoint's own choice decides, whatever `bits`: float32 keeps it
// exact (no mask), 8 codes it (a mask).
// CHECK-LABEL: func.func @train_step(
// CHECK: blpa.relu %{{.*}} {blpa.act_choice = "recompute", blpa.phase = "forward", blpa.recompute_id = 1 : i64}
// CHECK-NEXT: blpa.gemm
// CHECK-NEXT: blpa.relu %{{.*}} {blpa.act_choice = "recompute", blpa.phase = "forward", blpa.recompute_id = 0 : i64}
// CHECK-NEXT: blpa.quantize {{.*}}scheme = "mask"
// CHECK-NOT: blpa.quantize
// EXACT-LABEL: func.func @train_step(
// EXACT: blpa.relu %{{.*}} {blpa.act_choice = "recompute", blpa.phase = "forward", blpa.recompute_id = 1 : i64}
// EXACT-NEXT: blpa.gemm
// EXACT-NEXT: blpa.relu %{{.*}} {blpa.act_choice = "recompute", blpa.phase = "forward", blpa.recompute_id = 0 : i64}
// EXACT-NEXT: blpa.quantize {{.*}}scheme = "mask"
// EXACT-NOT: blpa.quantize
module {
  func.func @forward(%x: tensor<2x8xf32> {blpa.name = "input"}) -> (tensor<2x3xf32> {blpa.name = "logits"}) {
    %w1 = blpa.param "fc1.weight" trainable : tensor<8x8xf32>
    %w2 = blpa.param "fc2.weight" trainable : tensor<8x8xf32>
    %w3 = blpa.param "fc3.weight" trainable : tensor<3x8xf32>
    %h = blpa.gemm %x, %w1 {trans_b = true, blpa.act_choice = "float32"} : (tensor<2x8xf32>, tensor<8x8xf32>) -> tensor<2x8xf32> loc("fc1")
    %r = blpa.relu %h {blpa.act_choice = "recompute"} : (tensor<2x8xf32>) -> tensor<2x8xf32> loc("exact_relu")
    %g = blpa.gemm %r, %w2 {trans_b = true, blpa.act_choice = "8"} : (tensor<2x8xf32>, tensor<8x8xf32>) -> tensor<2x8xf32> loc("fc2")
    %s = blpa.relu %g {blpa.act_choice = "recompute"} : (tensor<2x8xf32>) -> tensor<2x8xf32> loc("coded_relu")
    %l = blpa.gemm %s, %w3 {trans_b = true} : (tensor<2x8xf32>, tensor<3x8xf32>) -> tensor<2x3xf32> loc("fc3")
    return %l : tensor<2x3xf32>
  }
}
