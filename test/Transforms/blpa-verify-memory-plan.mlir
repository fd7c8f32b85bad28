// RUN: blpa-opt %s -split-input-file --blpa-verify-memory-plan --verify-diagnostics | FileCheck %s
// RUN: blpa-opt %s -split-input-file --blpa-plan-memory --blpa-verify-memory-plan | FileCheck %s --check-prefix=PLANNED

// The planner's own plans pass the check (every case of this file, once
// re-planned).
// PLANNED-COUNT-6: blpa.arena_size

// A valid plan with an in-place hand-over: %b takes %a's bytes at the op
// where %a dies; %c lives beside %b.
// CHECK-LABEL: func.func @valid
func.func @valid(%x: tensor<16xf32>) -> tensor<16xf32> attributes {blpa.arena_size = 128 : i64} {
  %a = blpa.relu %x {blpa.offsets = array<i64: 0>} : (tensor<16xf32>) -> tensor<16xf32>
  %b = blpa.relu %a {blpa.offsets = array<i64: 0>} : (tensor<16xf32>) -> tensor<16xf32>
  %c = blpa.relu %b {blpa.offsets = array<i64: 64>} : (tensor<16xf32>) -> tensor<16xf32>
  %d = blpa.add %b, %c {blpa.offsets = array<i64: 64>} : (tensor<16xf32>, tensor<16xf32>) -> tensor<16xf32>
  return %d : tensor<16xf32>
}

// -----

// A planted overlap: %b is placed over %a while %a is still to be read.
func.func @planted_overlap(%x: tensor<16xf32>) -> tensor<16xf32> attributes {blpa.arena_size = 128 : i64} {
  %a = blpa.relu %x {blpa.offsets = array<i64: 0>} : (tensor<16xf32>) -> tensor<16xf32>
  // expected-error @+1 {{memory plan: %1 (64 bytes at offset 32, live over ops 1..2) overlaps %0 (64 bytes at offset 0, live over ops 0..2)}}
  %b = blpa.relu %x {blpa.offsets = array<i64: 32>} : (tensor<16xf32>) -> tensor<16xf32>
  %c = blpa.add %a, %b {blpa.offsets = array<i64: 64>} : (tensor<16xf32>, tensor<16xf32>) -> tensor<16xf32>
  return %c : tensor<16xf32>
}

// -----

// An in-place result whose input is read after it: not a hand-over.
func.func @input_live_after(%x: tensor<16xf32>) -> tensor<16xf32> attributes {blpa.arena_size = 128 : i64} {
  %a = blpa.relu %x {blpa.offsets = array<i64: 0>} : (tensor<16xf32>) -> tensor<16xf32>
  // expected-error @+1 {{overlaps %0 (64 bytes at offset 0, live over ops 0..2)}}
  %b = blpa.relu %a {blpa.offsets = array<i64: 0>} : (tensor<16xf32>) -> tensor<16xf32>
  %c = blpa.add %a, %b {blpa.offsets = array<i64: 64>} : (tensor<16xf32>, tensor<16xf32>) -> tensor<16xf32>
  return %c : tensor<16xf32>
}

// -----

// Sharing bytes at the op where one dies is only allowed to an op that
// may write in place (a pooling reads neighbours), and through a view the
// overlap is still found.
func.func @not_an_in_place_op(%x: tensor<1x1x4x4xf32>) -> tensor<1x1x4x4xf32> attributes {blpa.arena_size = 64 : i64} {
  %a = blpa.relu %x {blpa.offsets = array<i64: 0>} : (tensor<1x1x4x4xf32>) -> tensor<1x1x4x4xf32>
  %v = blpa.reshape %a {blpa.offsets = array<i64: 0>} : tensor<1x1x4x4xf32> -> tensor<1x1x4x4xf32>
  // expected-error @+1 {{overlaps %0}}
  %p = blpa.max_pool %v {blpa.offsets = array<i64: 0>, kernel_shape = array<i64: 2, 2>, strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 1, 1>} : (tensor<1x1x4x4xf32>) -> tensor<1x1x4x4xf32>
  return %p : tensor<1x1x4x4xf32>
}

// -----

func.func @past_the_arena(%x: tensor<16xf32>) -> tensor<16xf32> attributes {blpa.arena_size = 96 : i64} {
  // expected-error @+1 {{memory plan: %0 (64 bytes at offset 64, live over ops 0..1) ends past the arena (96 bytes)}}
  %a = blpa.relu %x {blpa.offsets = array<i64: 64>} : (tensor<16xf32>) -> tensor<16xf32>
  return %a : tensor<16xf32>
}

// -----

// The CUDA target's workspace belongs to cuDNN and cuBLAS at every op.
func.func @in_the_workspace(%x: tensor<16xf32>) -> tensor<16xf32> attributes {blpa.arena_size = 512 : i64, blpa.workspace_bytes = 256 : i64} {
  // expected-error @+1 {{memory plan: %0 (64 bytes at offset 192, live over ops 0..1) overlaps the workspace (256 bytes)}}
  %a = blpa.relu %x {blpa.offsets = array<i64: 192>} : (tensor<16xf32>) -> tensor<16xf32>
  return %a : tensor<16xf32>
}
