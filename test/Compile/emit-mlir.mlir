// RUN: blpa-opt %s --train --emit mlir -o - | FileCheck %s
// RUN: blpa-opt %s --train --emit mlir --memory-report %t.json -o %t.mlir
// RUN: FileCheck %s --check-prefix=REPORT < %t.json
// RUN: blpa-opt %s --train --act-bits 4 --emit mlir -o - | FileCheck %s --check-prefix=BITS
// RUN: not blpa-opt %s --train --act-bits 3 -o %t.exe 2>&1 | FileCheck %s --check-prefix=BADBITS
// RUN: not blpa-opt %s --train --act-quant-naive -o %t.exe 2>&1 | FileCheck %s --check-prefix=NAIVE
// RUN: not blpa-opt %s --train --act-policy conv=quantize -o %t.exe 2>&1 | FileCheck %s --check-prefix=PINQ
// RUN: not blpa-opt %s --infer --act-policy conv=4 -o %t.exe 2>&1 | FileCheck %s --check-prefix=PININFER
// RUN: not blpa-opt %s --infer --act-bits 4 -o %t.exe 2>&1 | FileCheck %s --check-prefix=INFER
// RUN: not blpa-opt %s --train --target tpu -o %t.exe 2>&1 | FileCheck %s --check-prefix=TARGET
// RUN: not blpa-opt %s --train --infer -o %t.exe 2>&1 | FileCheck %s --check-prefix=MODE
// RUN: not blpa-opt %s --train -o %t.exe 2>&1 | FileCheck %s --check-prefix=SOURCE
// RUN: not blpa-opt %s --train 2>&1 | FileCheck %s --check-prefix=OUTPUT
// RUN: not blpa-opt %s --train -o %t.missing/exe 2>&1 | FileCheck %s --check-prefix=DIR

// The whole pipeline from the forward function: autodiff, evaluation mode,
// planning and lowering to runtime calls.
// CHECK: llvm.mlir.global external constant @blpa_manifest("blpa-manifest 1\0Amode train\0Atarget cpu\0Aarena {{[0-9]+}}\0A
// CHECK-SAME: input 4 2 1 4 4 x\0Aoutput 2 2 3 logits\0Alabels 1 2\0Aignore_index -100\0Amodel {{[0-9a-f]+}}\0A
// Each op of the training step, as its profiling hooks number it: the conv
// makes 1 call of 2 x 16 outputs x 9 taps = 288 flops and (32 + 18 + 16) x 4
// bytes; no ONNX node (this module was not imported). Its output, which the
// batch norm's gradient reads, is kept for the backward pass ("k"), as are
// the batch statistics; the batch norm's output is not.
// CHECK-SAME: op 0 1 288 264 blpa.conv 2x1x4x4,2x1x3x3->k2x2x2x2\0Aop 1 1 96 240 blpa.batch_norm_relu k2x2x2x2,2,2,2,2->2x2x2x2,k2,k2\0A
// CHECK-SAME: param 0 trainable 4 2 1 3 3 conv.weight\0Aparam 1 trainable 1 2 bn.weight\0Aparam 2 trainable 1 2 bn.bias\0Aparam 3 state 1 2 bn.running_mean\0A
// CHECK-DAG: llvm.func @blpa_conv(!llvm.ptr, !llvm.ptr, !llvm.ptr, !llvm.ptr, !llvm.ptr, i64, i64, i64, i64, i64, !llvm.ptr, !llvm.ptr, !llvm.ptr, !llvm.ptr, !llvm.ptr, !llvm.ptr)
// CHECK-DAG: llvm.func @blpa_sgd_update(!llvm.ptr, !llvm.ptr, !llvm.ptr, !llvm.ptr, !llvm.ptr, i64)
// CHECK-LABEL: llvm.func @blpa_forward(
// CHECK: llvm.call @blpa_batch_norm_infer(
// CHECK-LABEL: llvm.func @blpa_train_step(
// Profiling hooks around each op of the step (only there), numbered as the
// manifest's op records.
// CHECK: %[[B0:.*]] = llvm.mlir.constant(0 : i64) : i64
// CHECK-NEXT: llvm.call @blpa_profile_begin(%{{.*}}, %[[B0]]) : (!llvm.ptr, i64) -> ()
// CHECK: llvm.call @blpa_conv(
// CHECK-NEXT: %[[E0:.*]] = llvm.mlir.constant(0 : i64) : i64
// CHECK-NEXT: llvm.call @blpa_profile_end(%{{.*}}, %[[E0]]) : (!llvm.ptr, i64) -> ()
// CHECK-NEXT: %[[B1:.*]] = llvm.mlir.constant(1 : i64) : i64
// CHECK-NEXT: llvm.call @blpa_profile_begin(%{{.*}}, %[[B1]]) : (!llvm.ptr, i64) -> ()
// The running statistics are updated as soon as the batch is normalized,
// each parameter as soon as its gradient is known (--blpa-schedule-updates).
// CHECK: llvm.call @blpa_batch_norm_relu_train(
// CHECK: llvm.call @blpa_update_running_stats(
// CHECK: llvm.call @blpa_softmax_cross_entropy_grad(
// CHECK: llvm.call @blpa_batch_norm_relu_grad(
// CHECK: llvm.call @blpa_sgd_update(

// REPORT: "lower_bound_bytes":
// REPORT: "peak_bytes":
// REPORT: "saved_activation_bytes":
// REPORT: "saved_float32_bytes":
// REPORT: "saved_packed_bytes": 0
// REPORT: "saved_per_channel_bytes":

// With --act-bits the training step encodes in the forward pass and decodes
// in the backward pass; evaluation (@blpa_forward) is unchanged.
// BITS-LABEL: llvm.func @blpa_forward(
// BITS: llvm.call @blpa_batch_norm_infer(
// BITS-LABEL: llvm.func @blpa_train_step(
// BITS: llvm.call @blpa_batch_norm_relu_train_encode(
// BITS: llvm.call @blpa_batch_norm_relu_grad_decode(
// BADBITS: error: --act-bits must be 0, 8, 4, 2 or auto
// NAIVE: error: --act-quant-naive needs --act-bits 8, 4 or 2
// PINQ: error: --act-policy NODE=quantize needs --act-bits 8, 4 or 2 (the width of the generic quantizer)
// PININFER: error: --act-policy applies to --train only
// INFER: error: --act-bits applies to --train only (inference keeps no activations for a backward pass)
// TARGET: error: --target must be cpu or cuda
// MODE: error: pass exactly one of --train and --infer
// OUTPUT: error: -o FILE is required to write an executable or object file
// DIR: error: cannot write {{.*}}.missing/exe: directory '{{.*}}.missing' does not exist
// SOURCE: error: {{.*}}the module has no 'blpa.source' ONNX model to take the initial weights from

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
