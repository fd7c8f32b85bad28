// RUN: blpa-opt %s -split-input-file --blpa-plan-memory --blpa-verify-memory-plan --blpa-lower-to-llvm=chunk-size=3 | FileCheck %s
// RUN: blpa-opt %s -split-input-file --blpa-plan-memory --blpa-verify-memory-plan --blpa-lower-to-llvm=chunk-size=0 | FileCheck %s --check-prefix=WHOLE
// RUN: blpa-opt %s -split-input-file --blpa-plan-memory --blpa-verify-memory-plan --blpa-lower-to-llvm | FileCheck %s --check-prefix=DEFAULT
// RUN: blpa-opt %s -split-input-file --blpa-autodiff --blpa-plan-memory --blpa-verify-memory-plan --blpa-lower-to-llvm=chunk-size=2 | %python %S/Inputs/check_chunks.py 2 | FileCheck %s --check-prefix=TRAIN

// Four calls (gemm, two ReLUs, the output copy) in chunks of at most 3: the
// entry point only calls its chunks, in order, with its own arguments; the
// chunks are internal and rematerialize every pointer from those arguments
// (the second ReLU's output, written by the first chunk, is an arena offset
// again in the second).
// CHECK-LABEL: llvm.func @blpa_forward(
// CHECK-SAME: %[[C:.*]]: !llvm.ptr, %[[A:.*]]: !llvm.ptr, %[[P:.*]]: !llvm.ptr, %[[I:.*]]: !llvm.ptr, %[[O:.*]]: !llvm.ptr) {
// CHECK-NEXT: llvm.call @blpa_forward_chunk0(%[[C]], %[[A]], %[[P]], %[[I]], %[[O]])
// CHECK-NEXT: llvm.call @blpa_forward_chunk1(%[[C]], %[[A]], %[[P]], %[[I]], %[[O]])
// CHECK-NEXT: llvm.return
// CHECK-LABEL: llvm.func internal @blpa_forward_chunk0(
// CHECK-SAME: attributes {no_inline}
// CHECK: llvm.call @blpa_gemm(
// CHECK: llvm.call @blpa_relu(
// CHECK: llvm.call @blpa_relu(
// CHECK-NOT: llvm.call
// CHECK: llvm.return
// CHECK-LABEL: llvm.func internal @blpa_forward_chunk1(
// CHECK-SAME: %[[C1:.*]]: !llvm.ptr, %[[A1:.*]]: !llvm.ptr, %{{.*}}: !llvm.ptr, %{{.*}}: !llvm.ptr, %[[O1:.*]]: !llvm.ptr)
// CHECK: %[[DST:.*]] = llvm.getelementptr %[[O1]][0]
// CHECK: %[[DSTP:.*]] = llvm.load %[[DST]]
// CHECK: %[[SRC:.*]] = llvm.getelementptr %[[A1]][%{{.*}}] : (!llvm.ptr, i64) -> !llvm.ptr, i8
// CHECK: llvm.call @blpa_copy(%[[C1]], %[[DSTP]], %[[SRC]], %{{.*}})
// CHECK-NEXT: llvm.return

// chunk-size=0 keeps every call in the entry point.
// WHOLE-NOT: _chunk
// WHOLE-LABEL: llvm.func @blpa_forward(
// WHOLE: llvm.call @blpa_gemm(
// WHOLE: llvm.call @blpa_relu(
// WHOLE: llvm.call @blpa_relu(
// WHOLE: llvm.call @blpa_copy(
// WHOLE-NOT: _chunk

// The default (64 calls) puts a small function in one chunk.
// DEFAULT-LABEL: llvm.func @blpa_forward(
// DEFAULT-NEXT: llvm.call @blpa_forward_chunk0(
// DEFAULT-NEXT: llvm.return
// DEFAULT-NOT: _chunk1

// With autodiff, a training step (7 ABI pointers) beside the forward entry
// point, in chunks of at most 2 calls; the script checks every entry point:
// it calls only its chunks, in order, with its own arguments, and each chunk
// is internal with 1 or 2 runtime calls.
// TRAIN: blpa_forward: 4 calls in 2 chunks
// TRAIN: blpa_train_step: {{[0-9]+}} calls in {{[0-9]+}} chunks
// TRAIN: blpa_forward: {{[0-9]+}} calls in {{[0-9]+}} chunks
// TRAIN: blpa_train_step: {{[0-9]+}} calls in {{[0-9]+}} chunks
// TRAIN: OK
module {
  func.func @forward(%x: tensor<2x4xf32> {blpa.name = "x"}) -> (tensor<2x3xf32> {blpa.name = "y"}) {
    %w = blpa.param "w" trainable : tensor<4x3xf32>
    %b = blpa.param "b" trainable : tensor<3xf32>
    %h = blpa.gemm %x, %w, %b : (tensor<2x4xf32>, tensor<4x3xf32>, tensor<3xf32>) -> tensor<2x3xf32>
    %r = blpa.relu %h : (tensor<2x3xf32>) -> tensor<2x3xf32>
    %s = blpa.relu %r : (tensor<2x3xf32>) -> tensor<2x3xf32>
    return %s : tensor<2x3xf32>
  }
}

// -----

// A small CNN: convolution, batch norm, ReLU, reshape, gemm.
// CHECK-LABEL: llvm.func @blpa_forward(
// CHECK-NEXT: llvm.call @blpa_forward_chunk0(
// CHECK-NEXT: llvm.call @blpa_forward_chunk1(
module {
  func.func @forward(%x: tensor<2x1x4x4xf32> {blpa.name = "x"}) -> (tensor<2x3xf32> {blpa.name = "logits"}) {
    %w = blpa.param "conv.weight" trainable : tensor<2x1x3x3xf32>
    %s = blpa.param "bn.weight" trainable : tensor<2xf32>
    %t = blpa.param "bn.bias" trainable : tensor<2xf32>
    %m = blpa.param "bn.running_mean" : tensor<2xf32>
    %v = blpa.param "bn.running_var" : tensor<2xf32>
    %fw = blpa.param "fc.weight" trainable : tensor<3x8xf32>
    %c = blpa.conv %x, %w {strides = array<i64: 2, 2>, pads = array<i64: 1, 1, 1, 1>} : (tensor<2x1x4x4xf32>, tensor<2x1x3x3xf32>) -> tensor<2x2x2x2xf32>
    %n:3 = blpa.batch_norm %c, %s, %t, %m, %v {epsilon = 1.0e-5 : f64, momentum = 0.9 : f64} : (tensor<2x2x2x2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>) -> (tensor<2x2x2x2xf32>, tensor<2xf32>, tensor<2xf32>)
    %r = blpa.relu %n#0 : (tensor<2x2x2x2xf32>) -> tensor<2x2x2x2xf32>
    %f = blpa.reshape %r : tensor<2x2x2x2xf32> -> tensor<2x8xf32>
    %l = blpa.gemm %f, %fw {trans_b = true} : (tensor<2x8xf32>, tensor<3x8xf32>) -> tensor<2x3xf32>
    return %l : tensor<2x3xf32>
  }
}
