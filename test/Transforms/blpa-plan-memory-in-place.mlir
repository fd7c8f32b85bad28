// RUN: blpa-opt %s -split-input-file --blpa-plan-memory --blpa-verify-memory-plan | FileCheck %s
// RUN: blpa-opt %s -split-input-file --blpa-plan-memory --blpa-verify-memory-plan --mlir-print-op-generic | %python %S/../Inputs/replan.py | FileCheck %s --check-prefix=REPLAN

// tensor<16xf32> is 64 bytes (one alignment unit), tensor<4x16xf32> 256,
// tensor<2x4x2x2xf32> 128. replan.py re-derives each plan from the printed
// IR (it takes the in-place hand-overs from the recorded offsets; the
// verifier checks they are allowed).
// REPLAN: @chain: arena 64, lower bound 64, saved 0
// REPLAN: @join: arena 128, lower bound 128, saved 0
// REPLAN: @not_in_place: arena 512, lower bound 512, saved 0
// REPLAN: @accumulate: arena 384, lower bound 384, saved 0

// A chain of element-wise ops: each result is written over its dying
// operand, so one 64-byte buffer serves them all.
// CHECK-LABEL: func.func @chain
// CHECK-SAME: blpa.arena_size = 64 : i64, blpa.lower_bound_bytes = 64 : i64
func.func @chain(%x: tensor<16xf32>, %g: tensor<16xf32>) -> tensor<16xf32> {
  // CHECK-NEXT: blpa.relu {{.*}}blpa.offsets = array<i64: 0>
  %a = blpa.relu %x : (tensor<16xf32>) -> tensor<16xf32>
  // CHECK-NEXT: blpa.relu {{.*}}blpa.offsets = array<i64: 0>
  %b = blpa.relu %a : (tensor<16xf32>) -> tensor<16xf32>
  // CHECK-NEXT: blpa.add {{.*}}blpa.offsets = array<i64: 0>
  %c = blpa.add %g, %b : (tensor<16xf32>, tensor<16xf32>) -> tensor<16xf32>
  return %c : tensor<16xf32>
}

// -----

// A residual join: the sum goes over the operand that dies there (%b), not
// over %a, which a later op still reads; the ReLU gradient goes over its
// incoming gradient, not over the ReLU output it reads.
// CHECK-LABEL: func.func @join
// CHECK-SAME: blpa.arena_size = 128 : i64, blpa.lower_bound_bytes = 128 : i64
func.func @join(%x: tensor<16xf32>) -> tensor<16xf32> {
  // CHECK-NEXT: blpa.relu {{.*}}blpa.offsets = array<i64: 0>
  %a = blpa.relu %x : (tensor<16xf32>) -> tensor<16xf32>
  // CHECK-NEXT: blpa.relu {{.*}}blpa.offsets = array<i64: 64>
  %b = blpa.relu %x : (tensor<16xf32>) -> tensor<16xf32>
  // CHECK-NEXT: blpa.add {{.*}}blpa.offsets = array<i64: 64>
  %s = blpa.add %a, %b : (tensor<16xf32>, tensor<16xf32>) -> tensor<16xf32>
  // CHECK-NEXT: blpa.relu_grad {{.*}}blpa.offsets = array<i64: 64>
  %d = blpa.relu_grad %s, %a : (tensor<16xf32>, tensor<16xf32>) -> tensor<16xf32>
  return %d : tensor<16xf32>
}

// -----

// Not in place: a broadcast operand (smaller than the result), an operand
// read again later, a function argument (outside the arena), and an op
// whose kernel reads neighbouring elements (pooling). %s (256 B) lives to
// the return; %b (64 B) and then %p (256 B) sit above it: 512.
// CHECK-LABEL: func.func @not_in_place
// CHECK-SAME: blpa.arena_size = 512 : i64
func.func @not_in_place(%x: tensor<4x16xf32>, %k: tensor<16xf32>) -> tensor<4x16xf32> {
  // CHECK-NEXT: blpa.relu {{.*}}blpa.offsets = array<i64: 256>
  %b = blpa.relu %k : (tensor<16xf32>) -> tensor<16xf32>
  // CHECK-NEXT: blpa.add {{.*}}blpa.offsets = array<i64: 0>
  %s = blpa.add %x, %b : (tensor<4x16xf32>, tensor<16xf32>) -> tensor<4x16xf32>
  // CHECK-NEXT: blpa.reshape
  %v = blpa.reshape %s : tensor<4x16xf32> -> tensor<1x4x4x4xf32>
  // CHECK-NEXT: blpa.max_pool {{.*}}blpa.offsets = array<i64: 256>
  %p = blpa.max_pool %v {kernel_shape = array<i64: 1, 1>, strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>} : (tensor<1x4x4x4xf32>) -> tensor<1x4x4x4xf32>
  return %s : tensor<4x16xf32>
}

// -----

// Fan-out gradients accumulate into one buffer: each sum goes over its
// first dying operand, and the batch-norm gradient writes its input
// gradient over the incoming gradient. The three 128-byte gradients are
// live together at the first add (384 bytes).
// CHECK-LABEL: func.func @accumulate
func.func @accumulate(%x: tensor<2x4x2x2xf32>, %s: tensor<4xf32>) -> tensor<2x4x2x2xf32> {
  // CHECK-NEXT: blpa.relu {{.*}}blpa.offsets = array<i64: [[G:[0-9]+]]>
  %g1 = blpa.relu %x : (tensor<2x4x2x2xf32>) -> tensor<2x4x2x2xf32>
  // CHECK-NEXT: blpa.relu {{.*}}blpa.offsets = array<i64: [[H:[0-9]+]]>
  %g2 = blpa.relu %x : (tensor<2x4x2x2xf32>) -> tensor<2x4x2x2xf32>
  // CHECK-NEXT: blpa.relu {{.*}}blpa.offsets = array<i64: [[K:[0-9]+]]>
  %g3 = blpa.relu %x : (tensor<2x4x2x2xf32>) -> tensor<2x4x2x2xf32>
  // CHECK-NEXT: blpa.add {{.*}}blpa.offsets = array<i64: [[G]]>
  %a1 = blpa.add %g1, %g2 : (tensor<2x4x2x2xf32>, tensor<2x4x2x2xf32>) -> tensor<2x4x2x2xf32>
  // CHECK-NEXT: blpa.add {{.*}}blpa.offsets = array<i64: [[G]]>
  %a2 = blpa.add %a1, %g3 : (tensor<2x4x2x2xf32>, tensor<2x4x2x2xf32>) -> tensor<2x4x2x2xf32>
  // CHECK-NEXT: blpa.batch_norm_grad {{.*}}blpa.offsets = array<i64: [[G]], {{[0-9]+}}, {{[0-9]+}}>
  %d:3 = blpa.batch_norm_grad %a2, %x, %s, %s, %s : (tensor<2x4x2x2xf32>, tensor<2x4x2x2xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>) -> (tensor<2x4x2x2xf32>, tensor<4xf32>, tensor<4xf32>)
  return %d#0 : tensor<2x4x2x2xf32>
}
