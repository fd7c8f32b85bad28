// RUN: blpa-opt %s --blpa-plan-memory="in-place=false alignment=256 workspace-bytes=1000" --blpa-verify-memory-plan | FileCheck %s
// RUN: blpa-opt %s --blpa-plan-memory="in-place=false alignment=256 workspace-bytes=1000" --blpa-verify-memory-plan --mlir-print-op-generic | %python %S/../Inputs/replan.py --alignment 256 | FileCheck %s --check-prefix=REPLAN
// RUN: not blpa-opt %s --blpa-plan-memory="workspace-bytes=-1" -o /dev/null 2>&1 | FileCheck %s --check-prefix=NEGATIVE

// The CUDA target's options: 256-byte alignment and a workspace for cuDNN
// at the arena's start (1000 bytes rounded up to 1024), live throughout, so
// it counts in the lower bound too. The chain's 64-byte buffers alternate
// between two 256-byte slots after it: arena 1024 + 2 * 256 = 1536;
// lower bound 1024 + two live 64-byte buffers = 1152. replan.py
// re-derives the plan from the printed IR.
// REPLAN: @chain: arena 1536, lower bound 1152, saved 0
// CHECK-LABEL: func.func @chain
// CHECK-SAME: blpa.arena_size = 1536 : i64, blpa.lower_bound_bytes = 1152 : i64, blpa.saved_activation_bytes = 0 : i64, blpa.workspace_bytes = 1024 : i64
func.func @chain(%x: tensor<16xf32>) -> tensor<16xf32> {
  // CHECK-NEXT: blpa.relu {{.*}}blpa.offsets = array<i64: 1024>
  %a = blpa.relu %x : (tensor<16xf32>) -> tensor<16xf32>
  // CHECK-NEXT: blpa.relu {{.*}}blpa.offsets = array<i64: 1280>
  %b = blpa.relu %a : (tensor<16xf32>) -> tensor<16xf32>
  // CHECK-NEXT: blpa.relu {{.*}}blpa.offsets = array<i64: 1024>
  %c = blpa.relu %b : (tensor<16xf32>) -> tensor<16xf32>
  return %c : tensor<16xf32>
}

// NEGATIVE: error: workspace-bytes must not be negative
