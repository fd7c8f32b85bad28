// RUN: blpa-opt %s -split-input-file --blpa-plan-memory="in-place=false" --blpa-verify-memory-plan | FileCheck %s
// RUN: blpa-opt %s -split-input-file --blpa-plan-memory="in-place=false" --blpa-verify-memory-plan --mlir-print-op-generic | %python %S/../Inputs/replan.py | FileCheck %s --check-prefix=REPLAN

// Placement alone (in-place results: blpa-plan-memory-in-place.mlir).
// Every figure is derived by hand below (a tensor<16xf32> is 64 bytes,
// one 64-byte alignment unit) and re-derived from the printed IR by
// replan.py (REPLAN), which fails on any recorded offset it disagrees with.
// REPLAN: @chain: arena 128, lower bound 128, saved 0
// REPLAN: @residual: arena 576, lower bound 576, saved 0
// REPLAN: @saved: arena 192, lower bound 192, saved 128

// A chain: each buffer dies when the next op has read it, so two slots of
// 64 bytes alternate.
// CHECK-LABEL: func.func @chain
// CHECK-SAME: blpa.arena_size = 128 : i64, blpa.lower_bound_bytes = 128 : i64, blpa.saved_activation_bytes = 0 : i64
func.func @chain(%x: tensor<16xf32>) -> tensor<16xf32> {
  // CHECK-NEXT: blpa.relu {{.*}}blpa.offsets = array<i64: 0>
  %a = blpa.relu %x : (tensor<16xf32>) -> tensor<16xf32>
  // CHECK-NEXT: blpa.relu {{.*}}blpa.offsets = array<i64: 64>
  %b = blpa.relu %a : (tensor<16xf32>) -> tensor<16xf32>
  // CHECK-NEXT: blpa.relu {{.*}}blpa.offsets = array<i64: 0>
  %c = blpa.relu %b : (tensor<16xf32>) -> tensor<16xf32>
  return %c : tensor<16xf32>
}

// -----

// A value read later through a view (a residual branch) stays live until
// that read. Larger buffers are placed first: %a and %c (64 and 4x16
// floats, 256 B) overlap at the add, %b (64 B) overlaps both (256 + 256 +
// 64 = 576 live at the add), %d reuses %a's slot.
// CHECK-LABEL: func.func @residual
// CHECK-SAME: blpa.arena_size = 576 : i64, blpa.lower_bound_bytes = 576 : i64
func.func @residual(%x: tensor<64xf32>) -> tensor<16xf32> {
  // CHECK-NEXT: blpa.relu {{.*}}blpa.offsets = array<i64: 0>
  %a = blpa.relu %x : (tensor<64xf32>) -> tensor<64xf32>
  // CHECK-NEXT: blpa.reshape {{.*}}blpa.offsets = array<i64: 0>
  %v = blpa.reshape %a : tensor<64xf32> -> tensor<4x16xf32>
  // CHECK-NEXT: blpa.param
  // CHECK-SAME: blpa.offsets = array<i64: -1>
  %k = blpa.param "k" : tensor<16xf32>
  // CHECK-NEXT: blpa.relu {{.*}}blpa.offsets = array<i64: 512>
  %b = blpa.relu %k : (tensor<16xf32>) -> tensor<16xf32>
  // CHECK-NEXT: blpa.add {{.*}}blpa.offsets = array<i64: 256>
  %c = blpa.add %v, %b : (tensor<4x16xf32>, tensor<16xf32>) -> tensor<4x16xf32>
  // CHECK-NEXT: blpa.reduce_to_shape {{.*}}blpa.offsets = array<i64: 0>
  %d = blpa.reduce_to_shape %c : tensor<4x16xf32> -> tensor<16xf32>
  return %d : tensor<16xf32>
}

// -----

// Saved activations: forward values read by backward ops (%a and %b, 64 B
// each; %c is backward, %x is an argument outside the arena).
// CHECK-LABEL: func.func @saved
// CHECK-SAME: blpa.saved_activation_bytes = 128 : i64
func.func @saved(%x: tensor<16xf32>, %g: tensor<16xf32>) -> tensor<16xf32> {
  %a = blpa.relu %x {blpa.phase = "forward"} : (tensor<16xf32>) -> tensor<16xf32>
  %b = blpa.relu %a {blpa.phase = "forward"} : (tensor<16xf32>) -> tensor<16xf32>
  %c = blpa.relu_grad %g, %a {blpa.phase = "backward"} : (tensor<16xf32>, tensor<16xf32>) -> tensor<16xf32>
  %d = blpa.add %c, %b {blpa.phase = "backward"} : (tensor<16xf32>, tensor<16xf32>) -> tensor<16xf32>
  return %d : tensor<16xf32>
}
