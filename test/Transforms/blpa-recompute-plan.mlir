// RUN: blpa-opt %s --blpa-recompute --blpa-plan-memory="in-place=false" --blpa-verify-memory-plan | FileCheck %s
// RUN: blpa-opt %s --blpa-recompute --blpa-plan-memory="in-place=false" --blpa-verify-memory-plan --mlir-print-op-generic | %python %S/../Inputs/replan.py | FileCheck %s --check-prefix=REPLAN
// RUN: blpa-opt %s --blpa-plan-memory="in-place=false" --blpa-verify-memory-plan --mlir-print-op-generic | %python %S/../Inputs/replan.py | FileCheck %s --check-prefix=KEPT

// A recomputed tensor in the plan. Every tensor is 64 bytes (one alignment
// unit). %b is recomputed: its copy %4 runs right before its backward
// reader, from %a, which the last gradient reads anyway.
// Op indices after the pass and lifetimes (first op, last reader):
//   0 %0 = a  [0, 6]    3 %3 = g1 [3, 5]    5 %5 = g0 [5, 6]
//   1 %1 = b  [1, 2]    4 %4 = b' [4, 5]    6 %6 = g  [6, return]
//   2 %2 = c  [2, 3]
// Greedy, all the same size, so in definition order: a 0; b 64 (a live);
// c 128 (a, b live); g1 64 (b dead); b' 128 (c dead; a, g1 live); g0 192
// (a, g1, b' live at op 5); g 64 (a, g0 live). Arena 256 = the most live
// at once (a, g1, b', g0 at op 5). Saved: a and c (128); b, which the
// backward pass read without the recompute, is a forward transient now.
// Kept instead (KEPT), a, b and c are saved (192).
// REPLAN: @train_step: arena 256, lower bound 256, saved 128, buffers 7
// KEPT: @train_step: arena 256, lower bound 256, saved 192, buffers 6

// CHECK-LABEL: func.func @train_step(
// CHECK-SAME: blpa.arena_size = 256 : i64, blpa.lower_bound_bytes = 256 : i64, blpa.saved_activation_bytes = 128 : i64
// CHECK-NEXT: %[[A:.*]] = blpa.relu %arg0 {blpa.offsets = array<i64: 0>, blpa.phase = "forward"}
// CHECK-NEXT: %[[B:.*]] = blpa.relu %[[A]] {{{.*}}blpa.offsets = array<i64: 64>, blpa.phase = "forward", blpa.recompute_id = 0 : i64}
// CHECK-NEXT: %[[C:.*]] = blpa.relu %[[B]] {blpa.offsets = array<i64: 128>, blpa.phase = "forward"}
// CHECK-NEXT: %[[G1:.*]] = blpa.relu_grad %[[C]], %[[C]] {blpa.offsets = array<i64: 64>, blpa.phase = "backward"}
// CHECK-NEXT: %[[B2:.*]] = blpa.relu %[[A]] {blpa.offsets = array<i64: 128>, blpa.phase = "backward", blpa.recomputes = array<i64: 0>}
// CHECK-NEXT: %[[G0:.*]] = blpa.relu_grad %[[G1]], %[[B2]] {blpa.offsets = array<i64: 192>, blpa.phase = "backward"}
// CHECK-NEXT: blpa.relu_grad %[[G0]], %[[A]] {blpa.offsets = array<i64: 64>, blpa.phase = "backward"}
func.func @train_step(%x: tensor<16xf32>) -> tensor<16xf32> {
  %a = blpa.relu %x {blpa.phase = "forward"} : (tensor<16xf32>) -> tensor<16xf32>
  %b = blpa.relu %a {blpa.phase = "forward", blpa.act_choice = "recompute"} : (tensor<16xf32>) -> tensor<16xf32>
  %c = blpa.relu %b {blpa.phase = "forward"} : (tensor<16xf32>) -> tensor<16xf32>
  %g1 = blpa.relu_grad %c, %c {blpa.phase = "backward"} : (tensor<16xf32>, tensor<16xf32>) -> tensor<16xf32>
  %g0 = blpa.relu_grad %g1, %b {blpa.phase = "backward"} : (tensor<16xf32>, tensor<16xf32>) -> tensor<16xf32>
  %g = blpa.relu_grad %g0, %a {blpa.phase = "backward"} : (tensor<16xf32>, tensor<16xf32>) -> tensor<16xf32>
  return %g : tensor<16xf32>
}
