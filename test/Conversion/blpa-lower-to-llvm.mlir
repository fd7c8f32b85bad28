// RUN: blpa-opt %s -split-input-file --blpa-plan-memory --blpa-verify-memory-plan --blpa-lower-to-llvm --verify-diagnostics | FileCheck %s

// Each op becomes one runtime call with data pointers (arena offsets,
// parameter slots, caller buffers) and static shape arguments. The ReLU
// writes over the gemm's output, so the arena holds one 64-byte buffer.
// CHECK: llvm.mlir.global external constant @blpa_manifest("blpa-manifest 1\0Amode infer\0Atarget cpu\0Aarena 64\0Ainput 2 2 4 x\0Aoutput 2 2 3 y\0Aparam 0 trainable 2 4 3 w\0Aparam 1 trainable 1 3 b\0A\00")
// CHECK-LABEL: llvm.func @blpa_forward(%{{.*}}: !llvm.ptr, %{{.*}}: !llvm.ptr, %{{.*}}: !llvm.ptr, %{{.*}}: !llvm.ptr, %{{.*}}: !llvm.ptr)
// CHECK: llvm.call @blpa_gemm(
// CHECK: llvm.call @blpa_relu(
// CHECK: llvm.call @blpa_copy(
// CHECK: llvm.return
module {
  func.func @forward(%x: tensor<2x4xf32> {blpa.name = "x"}) -> (tensor<2x3xf32> {blpa.name = "y"}) {
    %w = blpa.param "w" trainable : tensor<4x3xf32>
    %b = blpa.param "b" trainable : tensor<3xf32>
    %h = blpa.gemm %x, %w, %b : (tensor<2x4xf32>, tensor<4x3xf32>, tensor<3xf32>) -> tensor<2x3xf32>
    %r = blpa.relu %h : (tensor<2x3xf32>) -> tensor<2x3xf32>
    return %r : tensor<2x3xf32>
  }
}

// -----

module {
  func.func @forward(%x: tensor<4x4xf32>) -> tensor<4x4xf32> {
    %w = blpa.param "w" trainable : tensor<4x4xf32>
    %g = blpa.relu %x : (tensor<4x4xf32>) -> tensor<4x4xf32>
    // expected-error @+1 {{optimizer storage is only available for parameters in @train_step}}
    blpa.sgd_update %w, %g : tensor<4x4xf32>
    return %g : tensor<4x4xf32>
  }
}

// -----

// Arenas beyond 2 GiB: offsets are 64-bit SSA constants, not GEP's 32-bit
// inline indices. %b (2.4 GB) lives while %a does, so it sits past it.
// CHECK-LABEL: llvm.func @blpa_forward(
// CHECK: %[[OFF:.*]] = llvm.mlir.constant(2400000000 : i64) : i64
// CHECK: llvm.getelementptr %{{.*}}[%[[OFF]]] : (!llvm.ptr, i64) -> !llvm.ptr, i8
module {
  func.func @forward(%x: tensor<600000000xf32>) -> tensor<600000000xf32> {
    %a = blpa.relu %x : (tensor<600000000xf32>) -> tensor<600000000xf32>
    %b = blpa.relu %a : (tensor<600000000xf32>) -> tensor<600000000xf32>
    %c = blpa.add %a, %b : (tensor<600000000xf32>, tensor<600000000xf32>) -> tensor<600000000xf32>
    return %c : tensor<600000000xf32>
  }
}

// -----

// A transpose is one blpa_transpose call: x, y, the rank, x's dimensions
// and the permutation as constant int64 arrays.
// CHECK-DAG: llvm.func @blpa_transpose(!llvm.ptr, !llvm.ptr, !llvm.ptr, i64, !llvm.ptr, !llvm.ptr)
// CHECK-DAG: llvm.mlir.global internal constant @[[PERM:.*]](dense<[2, 0, 1]> : tensor<3xi64>)
// CHECK-DAG: llvm.mlir.global internal constant @[[DIMS:.*]](dense<[2, 3, 4]> : tensor<3xi64>)
// CHECK: llvm.func internal @blpa_forward_chunk0(
// CHECK: %[[RANK:.*]] = llvm.mlir.constant(3 : i64) : i64
// CHECK-NEXT: %[[D:.*]] = llvm.mlir.addressof @[[DIMS]] : !llvm.ptr
// CHECK-NEXT: %[[P:.*]] = llvm.mlir.addressof @[[PERM]] : !llvm.ptr
// CHECK-NEXT: llvm.call @blpa_transpose(%{{.*}}, %{{.*}}, %{{.*}}, %[[RANK]], %[[D]], %[[P]])
module {
  func.func @forward(%x: tensor<2x3x4xf32> {blpa.name = "x"}) -> (tensor<4x2x3xf32> {blpa.name = "y"}) {
    %t = blpa.transpose %x {perm = array<i64: 2, 0, 1>} : (tensor<2x3x4xf32>) -> tensor<4x2x3xf32>
    return %t : tensor<4x2x3xf32>
  }
}

// -----

// Softmax along axis 1 of [2, 3, 4] is blpa_softmax over the [outer 2,
// length 3, inner 4] view; log-softmax along axis 2 over [6, 4, 1].
// CHECK-DAG: llvm.func @blpa_softmax(!llvm.ptr, !llvm.ptr, !llvm.ptr, i64, i64, i64)
// CHECK-DAG: llvm.func @blpa_log_softmax(!llvm.ptr, !llvm.ptr, !llvm.ptr, i64, i64, i64)
// CHECK: llvm.func internal @blpa_forward_chunk0(
// CHECK: %[[O:.*]] = llvm.mlir.constant(2 : i64) : i64
// CHECK-NEXT: %[[L:.*]] = llvm.mlir.constant(3 : i64) : i64
// CHECK-NEXT: %[[I:.*]] = llvm.mlir.constant(4 : i64) : i64
// CHECK-NEXT: llvm.call @blpa_softmax(%{{.*}}, %{{.*}}, %{{.*}}, %[[O]], %[[L]], %[[I]])
// CHECK: %[[O2:.*]] = llvm.mlir.constant(6 : i64) : i64
// CHECK-NEXT: %[[L2:.*]] = llvm.mlir.constant(4 : i64) : i64
// CHECK-NEXT: %[[I2:.*]] = llvm.mlir.constant(1 : i64) : i64
// CHECK-NEXT: llvm.call @blpa_log_softmax(%{{.*}}, %{{.*}}, %{{.*}}, %[[O2]], %[[L2]], %[[I2]])
module {
  func.func @forward(%x: tensor<2x3x4xf32> {blpa.name = "x"}) -> (tensor<2x3x4xf32> {blpa.name = "y"}) {
    %k = blpa.fill 2.0 : tensor<2x3x4xf32>
    %h = blpa.mul %x, %k : (tensor<2x3x4xf32>, tensor<2x3x4xf32>) -> tensor<2x3x4xf32>
    %s = blpa.softmax %h {axis = 1 : i64} : (tensor<2x3x4xf32>) -> tensor<2x3x4xf32>
    %l = blpa.log_softmax %s {axis = 2 : i64} : (tensor<2x3x4xf32>) -> tensor<2x3x4xf32>
    return %l : tensor<2x3x4xf32>
  }
}

// -----

// A batched product with the weight broadcast over the batch: batch 2,
// M 3, N 5, K 4, trans_a 0, trans_b 1, a's batch 2, b's batch 1.
// CHECK: llvm.func @blpa_batch_matmul(!llvm.ptr, !llvm.ptr, !llvm.ptr, !llvm.ptr, i64, i64, i64, i64, i64, i64, i64, i64)
// CHECK: llvm.func internal @blpa_forward_chunk0(
// CHECK: %[[B:.*]] = llvm.mlir.constant(2 : i64) : i64
// CHECK-NEXT: %[[M:.*]] = llvm.mlir.constant(3 : i64) : i64
// CHECK-NEXT: %[[N:.*]] = llvm.mlir.constant(5 : i64) : i64
// CHECK-NEXT: %[[K:.*]] = llvm.mlir.constant(4 : i64) : i64
// CHECK-NEXT: %[[TA:.*]] = llvm.mlir.constant(0 : i64) : i64
// CHECK-NEXT: %[[TB:.*]] = llvm.mlir.constant(1 : i64) : i64
// CHECK-NEXT: %[[AB:.*]] = llvm.mlir.constant(2 : i64) : i64
// CHECK-NEXT: %[[BB:.*]] = llvm.mlir.constant(1 : i64) : i64
// CHECK-NEXT: llvm.call @blpa_batch_matmul(%{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %[[B]], %[[M]], %[[N]], %[[K]], %[[TA]], %[[TB]], %[[AB]], %[[BB]])
module {
  func.func @forward(%x: tensor<2x3x4xf32> {blpa.name = "x"}) -> (tensor<2x3x5xf32> {blpa.name = "y"}) {
    %w = blpa.param "w" trainable : tensor<1x5x4xf32>
    %y = blpa.batch_matmul %x, %w {trans_b = true} : (tensor<2x3x4xf32>, tensor<1x5x4xf32>) -> tensor<2x3x5xf32>
    return %y : tensor<2x3x5xf32>
  }
}
