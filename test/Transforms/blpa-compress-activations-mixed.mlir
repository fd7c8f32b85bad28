// RUN: blpa-opt %s --blpa-autodiff --blpa-compress-activations="bits=0" | FileCheck %s --check-prefixes=CHECK,ZERO
// RUN: blpa-opt %s --blpa-autodiff --blpa-compress-activations="bits=4 min-elements=1" | FileCheck %s --check-prefixes=CHECK,FOUR
// RUN: blpa-opt %s --blpa-autodiff --blpa-compress-activations="bits=0" --blpa-fuse-batch-norm-relu --blpa-schedule-updates --blpa-plan-memory --blpa-verify-memory-plan --blpa-lower-to-llvm | FileCheck %s --check-prefix=LOWER
// RUN: blpa-opt %s --blpa-autodiff --blpa-compress-activations="bits=0" --blpa-fuse-batch-norm-relu --blpa-schedule-updates --blpa-plan-memory="print=1" --blpa-verify-memory-plan -o /dev/null | FileCheck %s --check-prefix=TABLE
// RUN: blpa-opt %s --blpa-autodiff --blpa-compress-activations="bits=0" --blpa-fuse-batch-norm-relu --blpa-schedule-updates --blpa-plan-memory --blpa-verify-memory-plan --mlir-print-op-generic | %python %S/../Inputs/replan.py | FileCheck %s --check-prefix=REPLAN

// Per-op widths (blpa.act_choice), over the default of the pass (bits=0:
// only ops with a choice are coded; bits=4: every other op too). Every
// tensor here has 1024 elements or fewer, under the default min-elements:
// a chosen width codes it anyway.
// - bn0 "8": the batch norm's own choice makes its bn_relu codes 8 bits;
//   its gradient and the readers of relu0 (no choice) read their decode.
// - conv1 "2": bn1 keeps nothing of its own ("float32"), so its gradient
//   reads conv1's output, which conv1's choice codes with the generic
//   quantizer at 2 bits.
// - relu1 "4": its gradient and conv2's weight gradient read 4-bit nonneg
//   codes.
// - conv2 "recompute": nothing reads it in the backward phase; nothing to do.
// - relu2, no choice: kept as it is with bits=0; a 1-bit mask with bits=4
//   (only its gradient reads it once the pooling keeps its argmax).
// - pool "2": the argmax codes are exact at any width (2 bits number a 2x2
//   window); its own output, read by conv3's weight gradient, takes the
//   pooling's width.
// - relu3 "float32": its gradient reads the exact output, whatever bits says.
// CHECK-LABEL: func.func @train_step(
// CHECK: %[[C0:.*]] = blpa.conv
// CHECK-NOT: blpa.quantize %[[C0]]
// CHECK: %{{.*}}, %{{.*}}, %{{.*}}, %[[K0:.*]] = blpa.batch_norm_encode %[[C0]], {{.*}}bits = 8 : i64{{.*}}!blpa.packed<2x8x8x8xi8, bn_relu>)
// CHECK: %[[C1:.*]] = blpa.conv {{.*}}blpa.act_choice = "2"
// CHECK-NEXT: %[[Q1:.*]], %[[P1:.*]] = blpa.quantize %[[C1]] {bits = 2 : i64, blpa.phase = "forward", scheme = "affine"} : (tensor<2x8x8x8xf32>) -> (!blpa.packed<2x8x8x8xi2, affine>, tensor<2x8xf32>)
// CHECK: %[[N1:.*]], %[[M1:.*]], %[[I1:.*]] = blpa.batch_norm %[[C1]], {{.*}}blpa.saved = "float32"
// CHECK: %[[R1:.*]] = blpa.relu %[[N1]]
// CHECK-NEXT: %[[Q2:.*]], %[[P2:.*]] = blpa.quantize %[[R1]] {bits = 4 : i64, blpa.phase = "forward", scheme = "nonneg"} : (tensor<2x8x8x8xf32>) -> (!blpa.packed<2x8x8x8xi4, nonneg>, tensor<2x8xf32>)
// CHECK: %[[C2:.*]] = blpa.conv %[[R1]], %{{.*}} {blpa.act_choice = "recompute"
// CHECK-NEXT: %[[R2:.*]] = blpa.relu %[[C2]] {blpa.phase = "forward"}
// ZERO-NOT: blpa.quantize %[[R2]]
// FOUR-NEXT: %[[Q3:.*]] = blpa.quantize %[[R2]] {bits = 1 : i64, blpa.phase = "forward", scheme = "mask"} {{.*}}!blpa.packed<2x8x8x8xi1, mask>
// CHECK: %[[PO:.*]], %[[A:.*]] = blpa.max_pool_argmax %[[R2]] {{.*}}blpa.act_choice = "2"{{.*}}!blpa.packed<2x8x4x4xi2, argmax>)
// CHECK-NEXT: %[[Q4:.*]], %[[P4:.*]] = blpa.quantize %[[PO]] {bits = 2 : i64, blpa.phase = "forward", scheme = "nonneg"} : (tensor<2x8x4x4xf32>) -> (!blpa.packed<2x8x4x4xi2, nonneg>, tensor<2x8xf32>)
// CHECK: %[[C3:.*]] = blpa.conv %[[PO]]
// ZERO-NOT: blpa.quantize %[[C3]]
// CHECK: %[[R3:.*]] = blpa.relu %[[C3]] {blpa.act_choice = "float32", blpa.phase = "forward", blpa.saved = "float32"}
// CHECK-NOT: blpa.quantize
// CHECK: blpa.relu_grad %{{.*}}, %[[R3]]
// CHECK: %[[D4:.*]] = blpa.dequantize %[[Q4]], %[[P4]] {blpa.phase = "backward"}
// CHECK-NEXT: blpa.conv_grad_weight %{{.*}}, %[[D4]]
// CHECK: blpa.max_pool_grad_argmax %{{.*}}, %[[A]]
// ZERO: blpa.relu_grad %{{.*}}, %[[R2]]
// FOUR: %[[D3:.*]] = blpa.dequantize %[[Q3]] {blpa.phase = "backward"}
// FOUR-NEXT: blpa.relu_grad %{{.*}}, %[[D3]]
// CHECK: %[[D2:.*]] = blpa.dequantize %[[Q2]], %[[P2]] {blpa.phase = "backward"}
// CHECK-NEXT: blpa.conv_grad_weight %{{.*}}, %[[D2]]
// CHECK-NEXT: blpa.conv_grad_input
// CHECK-NEXT: blpa.relu_grad %{{.*}}, %[[D2]]
// CHECK: %[[D1:.*]] = blpa.dequantize %[[Q1]], %[[P1]] {blpa.phase = "backward"}
// CHECK-NEXT: blpa.batch_norm_grad %{{.*}}, %[[D1]], %{{.*}}, %[[M1]], %[[I1]]
// CHECK: blpa.batch_norm_decode %[[K0]], {{.*}}relu}
// CHECK: blpa.batch_norm_grad_decode %{{.*}}, %[[K0]]
// CHECK: return

// Mixed widths plan and lower: each call takes its codes' own width.
// LOWER: llvm.func @blpa_train_step(
// LOWER: llvm.call @blpa_batch_norm_relu_train_encode(
// LOWER-COUNT-2: llvm.call @blpa_quantize(
// LOWER: llvm.call @blpa_max_pool_argmax(
// LOWER: llvm.call @blpa_quantize(

// The memory table lists what is kept of each saved tensor, largest first,
// bytes from the shapes (1024 elements of 2x8x8x8, 256 of 2x8x4x4):
// relu2 exact 4096; bn0's 8-bit codes 1024 + inv_std 8 x 4; relu3 exact
// 1024; relu1's 4-bit codes 512 + ranges 2x8 x 4 (relu1 runs inside bn1's
// kernel after fusion, so the entry names bn1); conv1's 2-bit codes 256 + 64;
// the pool's 2-bit codes 64 + 64; its argmax 64; bn1's mean and inv_std 32
// each; the logits 24. conv2 is marked recompute and keeps nothing. In all
// 7352 bytes, what replan.py derives as saved from the IR alone. Exact
// entries add no time; conv2 adds none either (the recompute pass did not
// run here, so no copy names it); value codes add their decoders' time
// (test_memory_report.py checks the figures against --blpa-print-op-costs).
// TABLE: saved tensors (11, largest first):
// TABLE-NEXT: size choice adds grad error shape op node
// TABLE-NEXT: 4.00 KiB float32 0 0 2x8x8x8 blpa.relu relu2
// TABLE-NEXT: 1.03 KiB 8 {{[0-9.]+ us}} {{[0-9.e-]+}} 2x8x8x8 blpa.batch_norm_encode bn0
// TABLE-NEXT: 1.00 KiB float32 0 0 2x8x4x4 blpa.relu relu3
// TABLE-NEXT: 576 bytes 4 {{[0-9.]+ us}} {{[0-9.e-]+}} 2x8x8x8 blpa.batch_norm_relu bn1
// TABLE-NEXT: 320 bytes 2 {{[0-9.]+ us}} {{[0-9.e-]+}} 2x8x8x8 blpa.conv conv1
// TABLE-NEXT: 128 bytes 2 {{[0-9.]+ us}} {{[0-9.e-]+}} 2x8x4x4 blpa.max_pool_argmax pool
// TABLE-NEXT: 64 bytes argmax 0 0 2x8x4x4 blpa.max_pool_argmax pool
// TABLE-NEXT: 32 bytes float32 0 0 8 blpa.batch_norm_relu bn1
// TABLE-NEXT: 32 bytes float32 0 0 8 blpa.batch_norm_relu bn1
// TABLE-NEXT: 24 bytes float32 0 0 2x3 blpa.gemm fc
// TABLE-NEXT: 0 bytes recompute 0 0 2x8x8x8 blpa.conv conv2
// TABLE-NEXT: 7.18 KiB in all
// REPLAN: @train_step: arena {{[0-9]+}}, lower bound {{[0-9]+}}, saved 7352,

module {
  func.func @forward(%x: tensor<2x4x8x8xf32> {blpa.name = "input"}) -> (tensor<2x3xf32> {blpa.name = "logits"}) {
    %w0 = blpa.param "conv0.weight" trainable : tensor<8x4x3x3xf32>
    %s0 = blpa.param "bn0.weight" trainable : tensor<8xf32>
    %t0 = blpa.param "bn0.bias" trainable : tensor<8xf32>
    %m0 = blpa.param "bn0.running_mean" : tensor<8xf32>
    %v0 = blpa.param "bn0.running_var" : tensor<8xf32>
    %w1 = blpa.param "conv1.weight" trainable : tensor<8x8x3x3xf32>
    %s1 = blpa.param "bn1.weight" trainable : tensor<8xf32>
    %t1 = blpa.param "bn1.bias" trainable : tensor<8xf32>
    %m1 = blpa.param "bn1.running_mean" : tensor<8xf32>
    %v1 = blpa.param "bn1.running_var" : tensor<8xf32>
    %w2 = blpa.param "conv2.weight" trainable : tensor<8x8x3x3xf32>
    %w3 = blpa.param "conv3.weight" trainable : tensor<8x8x3x3xf32>
    %fw = blpa.param "fc.weight" trainable : tensor<3x128xf32>
    %c0 = blpa.conv %x, %w0 {strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>} : (tensor<2x4x8x8xf32>, tensor<8x4x3x3xf32>) -> tensor<2x8x8x8xf32> loc("conv0")
    %n0:3 = blpa.batch_norm %c0, %s0, %t0, %m0, %v0 {epsilon = 1.0e-5 : f64, momentum = 0.9 : f64, blpa.act_choice = "8"} : (tensor<2x8x8x8xf32>, tensor<8xf32>, tensor<8xf32>, tensor<8xf32>, tensor<8xf32>) -> (tensor<2x8x8x8xf32>, tensor<8xf32>, tensor<8xf32>) loc("bn0")
    %r0 = blpa.relu %n0#0 : (tensor<2x8x8x8xf32>) -> tensor<2x8x8x8xf32> loc("relu0")
    %c1 = blpa.conv %r0, %w1 {strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, blpa.act_choice = "2"} : (tensor<2x8x8x8xf32>, tensor<8x8x3x3xf32>) -> tensor<2x8x8x8xf32> loc("conv1")
    %n1:3 = blpa.batch_norm %c1, %s1, %t1, %m1, %v1 {epsilon = 1.0e-5 : f64, momentum = 0.9 : f64, blpa.act_choice = "float32"} : (tensor<2x8x8x8xf32>, tensor<8xf32>, tensor<8xf32>, tensor<8xf32>, tensor<8xf32>) -> (tensor<2x8x8x8xf32>, tensor<8xf32>, tensor<8xf32>) loc("bn1")
    %r1 = blpa.relu %n1#0 {blpa.act_choice = "4"} : (tensor<2x8x8x8xf32>) -> tensor<2x8x8x8xf32> loc("relu1")
    %c2 = blpa.conv %r1, %w2 {strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, blpa.act_choice = "recompute"} : (tensor<2x8x8x8xf32>, tensor<8x8x3x3xf32>) -> tensor<2x8x8x8xf32> loc("conv2")
    %r2 = blpa.relu %c2 : (tensor<2x8x8x8xf32>) -> tensor<2x8x8x8xf32> loc("relu2")
    %p = blpa.max_pool %r2 {kernel_shape = array<i64: 2, 2>, strides = array<i64: 2, 2>, pads = array<i64: 0, 0, 0, 0>, blpa.act_choice = "2"} : (tensor<2x8x8x8xf32>) -> tensor<2x8x4x4xf32> loc("pool")
    %c3 = blpa.conv %p, %w3 {strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>} : (tensor<2x8x4x4xf32>, tensor<8x8x3x3xf32>) -> tensor<2x8x4x4xf32> loc("conv3")
    %r3 = blpa.relu %c3 {blpa.act_choice = "float32"} : (tensor<2x8x4x4xf32>) -> tensor<2x8x4x4xf32> loc("relu3")
    %f = blpa.reshape %r3 : tensor<2x8x4x4xf32> -> tensor<2x128xf32> loc("flatten")
    %l = blpa.gemm %f, %fw {trans_b = true} : (tensor<2x128xf32>, tensor<3x128xf32>) -> tensor<2x3xf32> loc("fc")
    return %l : tensor<2x3xf32>
  }
}
