// DEFINE: %{plan} = --blpa-recompute --blpa-compress-activations="bits=0" --blpa-plan-memory --blpa-verify-memory-plan
// RUN: blpa-opt %s --blpa-autodiff --blpa-assign-activation-choices="policy=relu1=float32" %{plan} | FileCheck %s --check-prefix=F32
// RUN: blpa-opt %s --blpa-autodiff --blpa-assign-activation-choices="policy=relu1=float32" %{plan} --mlir-print-op-generic | %python %S/../Inputs/replan.py --buffers 3 | FileCheck %s --check-prefix=F32-REPLAN
// RUN: blpa-opt %s --blpa-autodiff --blpa-assign-activation-choices="policy=relu1=8" %{plan} | FileCheck %s --check-prefix=B8
// RUN: blpa-opt %s --blpa-autodiff --blpa-assign-activation-choices="policy=relu1=8" %{plan} --mlir-print-op-generic | %python %S/../Inputs/replan.py --buffers 3 | FileCheck %s --check-prefix=B8-REPLAN
// RUN: blpa-opt %s --blpa-autodiff --blpa-assign-activation-choices="policy=relu1=4" %{plan} | FileCheck %s --check-prefix=B4
// RUN: blpa-opt %s --blpa-autodiff --blpa-assign-activation-choices="policy=relu1=4" %{plan} --mlir-print-op-generic | %python %S/../Inputs/replan.py --buffers 3 | FileCheck %s --check-prefix=B4-REPLAN
// RUN: blpa-opt %s --blpa-autodiff --blpa-assign-activation-choices="policy=relu1=2" %{plan} | FileCheck %s --check-prefix=B2
// RUN: blpa-opt %s --blpa-autodiff --blpa-assign-activation-choices="policy=relu1=2" %{plan} --mlir-print-op-generic | %python %S/../Inputs/replan.py --buffers 3 | FileCheck %s --check-prefix=B2-REPLAN
// RUN: blpa-opt %s --blpa-autodiff --blpa-assign-activation-choices="policy=relu1=recompute" %{plan} | FileCheck %s --check-prefix=RE
// RUN: blpa-opt %s --blpa-autodiff --blpa-assign-activation-choices="policy=relu1=recompute" %{plan} --mlir-print-op-generic | %python %S/../Inputs/replan.py --buffers 3 | FileCheck %s --check-prefix=RE-REPLAN
// RUN: blpa-opt %s --blpa-autodiff --blpa-assign-activation-choices="policy=relu1=8" --blpa-recompute --blpa-compress-activations="bits=0" --blpa-plan-memory="print=1" --blpa-verify-memory-plan -o /dev/null | FileCheck %s --check-prefix=TABLE
// RUN: not blpa-opt %s --blpa-autodiff --blpa-plan-memory="print=1 profile=%t.missing.json" --blpa-verify-memory-plan -o /dev/null 2>&1 | FileCheck %s --check-prefix=NOPROFILE

// Each choice of one saved tensor on a 5-op MLP (fc1, relu1, fc2, relu2,
// fc3), planned with its exact offsets. The offsets are not pasted from
// the planner alone: replan.py re-derives the plan from each planned IR's
// types and op order and fails on any recorded offset or total it
// disagrees with (its own figures are the -REPLAN lines).
//
// The pinned tensor is relu1's output [4, 16] (64 floats, 256 bytes), which
// fc2's weight gradient reads (values) and relu1's gradient reads (sign).
// relu2's output [4, 16] is the last layer's input and stays float32 (256
// bytes); the logits [4, 3] (48 bytes) stay float32 for the loss gradient.
// Saved bytes, by hand:
//   float32:   256 + 256 + 48 = 560;
//   8 bits:    codes 64 x 8 / 8 = 64 (at 640), per-channel (lo, step)
//              2 x 16 floats = 128 (at 512): 64 + 128 + 256 + 48 = 496;
//   4 bits:    codes 32 + 128 + 304 = 464;
//   2 bits:    codes 16 + 128 + 304 = 448;
//   recompute: relu1 keeps nothing; its copy in the backward pass reads
//              fc1's output [4, 16], now saved in its place: 560.
// The arena (2048) is set by the backward pass, where fc2's weight
// gradient [16, 16] (1024 bytes at 0) is live with the data gradients;
// the lower bound is 1988 in every plan (what decoding or recomputing
// adds lives after that peak). Codes make relu1's 256 bytes die in the
// forward pass (buffer at 0, ops 3..6) instead of living to its last
// gradient (ops 3..16); the decoded copy (at 1280) and the recomputed one
// (at 1024) are transients of the backward pass.
//
// The table's predicted costs of the 8-bit plan (analytical model): the
// codes add their quantizer and dequantizer, one runtime call of 2 us each
// plus well under 0.1 us of memory traffic (under 1 KB at 10 GB/s): 4.1 us.
// Their gradient-error proxy: non-negative codes, n = 4 elements per
// channel, one reader of values (fc2's weight gradient; relu1's gradient
// needs the sign only): (ln 4 / 6) / 255^2 = 3.55e-6. float32 entries: 0.
// TABLE: saved tensors (3, largest first):
// TABLE-NEXT: size choice adds grad error shape op node
// TABLE-NEXT: 256 bytes float32 0 0 4x16 blpa.relu relu2
// TABLE-NEXT: 192 bytes 8 4.1 us 3.55e-06 4x16 blpa.relu relu1
// TABLE-NEXT: 48 bytes float32 0 0 4x3 blpa.gemm fc3
// TABLE-NEXT: 496 bytes in all
// A profile the pass cannot read is one line naming it.
// NOPROFILE: error: --profile {{.*}}.missing.json: cannot read: No such file or directory

// F32-LABEL: func.func @train_step(
// F32-SAME: blpa.arena_size = 2048 : i64, blpa.lower_bound_bytes = 1988 : i64, blpa.saved_activation_bytes = 560 : i64
// F32: blpa.gemm {{.*}}{blpa.offsets = array<i64: 1024>, blpa.phase = "forward", trans_b = true}
// F32-NEXT: blpa.relu {{.*}}{blpa.act_choice = "float32", blpa.offsets = array<i64: 1024>, blpa.phase = "forward", blpa.saved = "float32"}
// F32-NEXT: blpa.gemm {{.*}}{blpa.offsets = array<i64: 0>, blpa.phase = "forward", trans_b = true}
// F32-NEXT: blpa.relu {{.*}}{blpa.offsets = array<i64: 0>, blpa.phase = "forward", blpa.saved = "float32"}
// F32-NEXT: blpa.gemm {{.*}}{blpa.offsets = array<i64: 256>, blpa.phase = "forward", trans_b = true}
// F32-NEXT: blpa.softmax_cross_entropy {{.*}}{blpa.offsets = array<i64: 1984>, blpa.phase = "forward"}
// F32-NEXT: blpa.fill {{.*}}{blpa.offsets = array<i64: 384>, blpa.phase = "backward"}
// F32-NEXT: blpa.softmax_cross_entropy_grad {{.*}}{blpa.offsets = array<i64: 320>, blpa.phase = "backward"}
// F32-NEXT: blpa.gemm {{.*}}{blpa.offsets = array<i64: 1792>, blpa.phase = "backward", trans_a = true}
// F32-NEXT: blpa.gemm {{.*}}{blpa.offsets = array<i64: 1280>, blpa.phase = "backward"}
// F32-NEXT: blpa.relu_grad {{.*}}{blpa.offsets = array<i64: 1280>, blpa.phase = "backward"}
// F32-NEXT: blpa.gemm {{.*}}{blpa.offsets = array<i64: 0>, blpa.phase = "backward", trans_a = true}
// F32-NEXT: blpa.gemm {{.*}}{blpa.offsets = array<i64: 1536>, blpa.phase = "backward"}
// F32-NEXT: blpa.relu_grad {{.*}}{blpa.offsets = array<i64: 1536>, blpa.phase = "backward"}
// F32-NEXT: blpa.gemm {{.*}}{blpa.offsets = array<i64: 1024>, blpa.phase = "backward", trans_a = true}
// F32-REPLAN: @train_step: arena 2048, lower bound 1988, saved 560, buffers 11, peak op 15
// F32-REPLAN-NEXT: buffer 1024 bytes at 0, ops 14..19
// F32-REPLAN-NEXT: buffer 512 bytes at 1024, ops 17..18
// F32-REPLAN-NEXT: buffer 256 bytes at 1024, ops 3..16

// B8-LABEL: func.func @train_step(
// B8-SAME: blpa.arena_size = 2048 : i64, blpa.lower_bound_bytes = 1988 : i64, blpa.saved_activation_bytes = 496 : i64
// B8: blpa.gemm {{.*}}{blpa.offsets = array<i64: 0>, blpa.phase = "forward", trans_b = true}
// B8-NEXT: %[[R1B8:.*]] = blpa.relu {{.*}}{blpa.act_choice = "8", blpa.offsets = array<i64: 0>, blpa.phase = "forward"}
// B8-NEXT: %[[CB8:.*]], %[[PB8:.*]] = blpa.quantize %[[R1B8]] {{.*}}{bits = 8 : i64, blpa.offsets = array<i64: 640, 512>, blpa.phase = "forward", scheme = "nonneg"}
// B8-NEXT: blpa.gemm {{.*}}{blpa.offsets = array<i64: 256>, blpa.phase = "forward", trans_b = true}
// B8-NEXT: blpa.relu {{.*}}{blpa.offsets = array<i64: 256>, blpa.phase = "forward", blpa.saved = "float32"}
// B8-NEXT: blpa.gemm {{.*}}{blpa.offsets = array<i64: 0>, blpa.phase = "forward", trans_b = true}
// B8-NEXT: blpa.softmax_cross_entropy {{.*}}{blpa.offsets = array<i64: 1984>, blpa.phase = "forward"}
// B8-NEXT: blpa.fill {{.*}}{blpa.offsets = array<i64: 128>, blpa.phase = "backward"}
// B8-NEXT: blpa.softmax_cross_entropy_grad {{.*}}{blpa.offsets = array<i64: 64>, blpa.phase = "backward"}
// B8-NEXT: blpa.gemm {{.*}}{blpa.offsets = array<i64: 1792>, blpa.phase = "backward", trans_a = true}
// B8-NEXT: blpa.gemm {{.*}}{blpa.offsets = array<i64: 1024>, blpa.phase = "backward"}
// B8-NEXT: blpa.relu_grad {{.*}}{blpa.offsets = array<i64: 1024>, blpa.phase = "backward"}
// B8-NEXT: %[[DB8:.*]] = blpa.dequantize %[[CB8]], %[[PB8]] {{.*}}{blpa.offsets = array<i64: 1280>, blpa.phase = "backward"}
// B8-NEXT: blpa.gemm %{{.*}}, %[[DB8]] {{.*}}{blpa.offsets = array<i64: 0>, blpa.phase = "backward", trans_a = true}
// B8-NEXT: blpa.gemm {{.*}}{blpa.offsets = array<i64: 1536>, blpa.phase = "backward"}
// B8-NEXT: blpa.relu_grad {{.*}}{blpa.offsets = array<i64: 1536>, blpa.phase = "backward"}
// B8-NEXT: blpa.gemm {{.*}}{blpa.offsets = array<i64: 1024>, blpa.phase = "backward", trans_a = true}
// B8-REPLAN: @train_step: arena 2048, lower bound 1988, saved 496, buffers 14, peak op 17
// B8-REPLAN-NEXT: buffer 1024 bytes at 0, ops 16..21
// B8-REPLAN-NEXT: buffer 512 bytes at 1024, ops 19..20
// B8-REPLAN-NEXT: buffer 256 bytes at 0, ops 3..6

// B4-LABEL: func.func @train_step(
// B4-SAME: blpa.arena_size = 2048 : i64, blpa.lower_bound_bytes = 1988 : i64, blpa.saved_activation_bytes = 464 : i64
// B4: blpa.gemm {{.*}}{blpa.offsets = array<i64: 0>, blpa.phase = "forward", trans_b = true}
// B4-NEXT: %[[R1B4:.*]] = blpa.relu {{.*}}{blpa.act_choice = "4", blpa.offsets = array<i64: 0>, blpa.phase = "forward"}
// B4-NEXT: %[[CB4:.*]], %[[PB4:.*]] = blpa.quantize %[[R1B4]] {{.*}}{bits = 4 : i64, blpa.offsets = array<i64: 640, 512>, blpa.phase = "forward", scheme = "nonneg"}
// B4-NEXT: blpa.gemm {{.*}}{blpa.offsets = array<i64: 256>, blpa.phase = "forward", trans_b = true}
// B4-NEXT: blpa.relu {{.*}}{blpa.offsets = array<i64: 256>, blpa.phase = "forward", blpa.saved = "float32"}
// B4-NEXT: blpa.gemm {{.*}}{blpa.offsets = array<i64: 0>, blpa.phase = "forward", trans_b = true}
// B4-NEXT: blpa.softmax_cross_entropy {{.*}}{blpa.offsets = array<i64: 1984>, blpa.phase = "forward"}
// B4-NEXT: blpa.fill {{.*}}{blpa.offsets = array<i64: 128>, blpa.phase = "backward"}
// B4-NEXT: blpa.softmax_cross_entropy_grad {{.*}}{blpa.offsets = array<i64: 64>, blpa.phase = "backward"}
// B4-NEXT: blpa.gemm {{.*}}{blpa.offsets = array<i64: 1792>, blpa.phase = "backward", trans_a = true}
// B4-NEXT: blpa.gemm {{.*}}{blpa.offsets = array<i64: 1024>, blpa.phase = "backward"}
// B4-NEXT: blpa.relu_grad {{.*}}{blpa.offsets = array<i64: 1024>, blpa.phase = "backward"}
// B4-NEXT: %[[DB4:.*]] = blpa.dequantize %[[CB4]], %[[PB4]] {{.*}}{blpa.offsets = array<i64: 1280>, blpa.phase = "backward"}
// B4-NEXT: blpa.gemm %{{.*}}, %[[DB4]] {{.*}}{blpa.offsets = array<i64: 0>, blpa.phase = "backward", trans_a = true}
// B4-NEXT: blpa.gemm {{.*}}{blpa.offsets = array<i64: 1536>, blpa.phase = "backward"}
// B4-NEXT: blpa.relu_grad {{.*}}{blpa.offsets = array<i64: 1536>, blpa.phase = "backward"}
// B4-NEXT: blpa.gemm {{.*}}{blpa.offsets = array<i64: 1024>, blpa.phase = "backward", trans_a = true}
// B4-REPLAN: @train_step: arena 2048, lower bound 1988, saved 464, buffers 14, peak op 17
// B4-REPLAN-NEXT: buffer 1024 bytes at 0, ops 16..21
// B4-REPLAN-NEXT: buffer 512 bytes at 1024, ops 19..20
// B4-REPLAN-NEXT: buffer 256 bytes at 0, ops 3..6

// B2-LABEL: func.func @train_step(
// B2-SAME: blpa.arena_size = 2048 : i64, blpa.lower_bound_bytes = 1988 : i64, blpa.saved_activation_bytes = 448 : i64
// B2: blpa.gemm {{.*}}{blpa.offsets = array<i64: 0>, blpa.phase = "forward", trans_b = true}
// B2-NEXT: %[[R1B2:.*]] = blpa.relu {{.*}}{blpa.act_choice = "2", blpa.offsets = array<i64: 0>, blpa.phase = "forward"}
// B2-NEXT: %[[CB2:.*]], %[[PB2:.*]] = blpa.quantize %[[R1B2]] {{.*}}{bits = 2 : i64, blpa.offsets = array<i64: 640, 512>, blpa.phase = "forward", scheme = "nonneg"}
// B2-NEXT: blpa.gemm {{.*}}{blpa.offsets = array<i64: 256>, blpa.phase = "forward", trans_b = true}
// B2-NEXT: blpa.relu {{.*}}{blpa.offsets = array<i64: 256>, blpa.phase = "forward", blpa.saved = "float32"}
// B2-NEXT: blpa.gemm {{.*}}{blpa.offsets = array<i64: 0>, blpa.phase = "forward", trans_b = true}
// B2-NEXT: blpa.softmax_cross_entropy {{.*}}{blpa.offsets = array<i64: 1984>, blpa.phase = "forward"}
// B2-NEXT: blpa.fill {{.*}}{blpa.offsets = array<i64: 128>, blpa.phase = "backward"}
// B2-NEXT: blpa.softmax_cross_entropy_grad {{.*}}{blpa.offsets = array<i64: 64>, blpa.phase = "backward"}
// B2-NEXT: blpa.gemm {{.*}}{blpa.offsets = array<i64: 1792>, blpa.phase = "backward", trans_a = true}
// B2-NEXT: blpa.gemm {{.*}}{blpa.offsets = array<i64: 1024>, blpa.phase = "backward"}
// B2-NEXT: blpa.relu_grad {{.*}}{blpa.offsets = array<i64: 1024>, blpa.phase = "backward"}
// B2-NEXT: %[[DB2:.*]] = blpa.dequantize %[[CB2]], %[[PB2]] {{.*}}{blpa.offsets = array<i64: 1280>, blpa.phase = "backward"}
// B2-NEXT: blpa.gemm %{{.*}}, %[[DB2]] {{.*}}{blpa.offsets = array<i64: 0>, blpa.phase = "backward", trans_a = true}
// B2-NEXT: blpa.gemm {{.*}}{blpa.offsets = array<i64: 1536>, blpa.phase = "backward"}
// B2-NEXT: blpa.relu_grad {{.*}}{blpa.offsets = array<i64: 1536>, blpa.phase = "backward"}
// B2-NEXT: blpa.gemm {{.*}}{blpa.offsets = array<i64: 1024>, blpa.phase = "backward", trans_a = true}
// B2-REPLAN: @train_step: arena 2048, lower bound 1988, saved 448, buffers 14, peak op 17
// B2-REPLAN-NEXT: buffer 1024 bytes at 0, ops 16..21
// B2-REPLAN-NEXT: buffer 512 bytes at 1024, ops 19..20
// B2-REPLAN-NEXT: buffer 256 bytes at 0, ops 3..6

// RE-LABEL: func.func @train_step(
// RE-SAME: blpa.arena_size = 2048 : i64, blpa.lower_bound_bytes = 1988 : i64, blpa.saved_activation_bytes = 560 : i64
// RE: %[[H1:.*]] = blpa.gemm {{.*}}{blpa.offsets = array<i64: 1024>, blpa.phase = "forward", trans_b = true}
// RE-NEXT: blpa.relu {{.*}}{blpa.act_choice = "recompute", blpa.offsets = array<i64: 0>, blpa.phase = "forward", blpa.recompute_id = 0 : i64}
// RE-NEXT: blpa.gemm {{.*}}{blpa.offsets = array<i64: 256>, blpa.phase = "forward", trans_b = true}
// RE-NEXT: blpa.relu {{.*}}{blpa.offsets = array<i64: 256>, blpa.phase = "forward", blpa.saved = "float32"}
// RE-NEXT: blpa.gemm {{.*}}{blpa.offsets = array<i64: 0>, blpa.phase = "forward", trans_b = true}
// RE-NEXT: blpa.softmax_cross_entropy {{.*}}{blpa.offsets = array<i64: 1984>, blpa.phase = "forward"}
// RE-NEXT: blpa.fill {{.*}}{blpa.offsets = array<i64: 128>, blpa.phase = "backward"}
// RE-NEXT: blpa.softmax_cross_entropy_grad {{.*}}{blpa.offsets = array<i64: 64>, blpa.phase = "backward"}
// RE-NEXT: blpa.gemm {{.*}}{blpa.offsets = array<i64: 1792>, blpa.phase = "backward", trans_a = true}
// RE-NEXT: blpa.gemm {{.*}}{blpa.offsets = array<i64: 1280>, blpa.phase = "backward"}
// RE-NEXT: blpa.relu_grad {{.*}}{blpa.offsets = array<i64: 1280>, blpa.phase = "backward"}
// RE-NEXT: %[[R1C:.*]] = blpa.relu %[[H1]] {blpa.offsets = array<i64: 1024>, blpa.phase = "backward", blpa.recomputes = array<i64: 0>}
// RE-NEXT: blpa.gemm %{{.*}}, %[[R1C]] {{.*}}{blpa.offsets = array<i64: 0>, blpa.phase = "backward", trans_a = true}
// RE-NEXT: blpa.gemm {{.*}}{blpa.offsets = array<i64: 1536>, blpa.phase = "backward"}
// RE-NEXT: blpa.relu_grad {{.*}}{blpa.offsets = array<i64: 1536>, blpa.phase = "backward"}
// RE-NEXT: blpa.gemm {{.*}}{blpa.offsets = array<i64: 1024>, blpa.phase = "backward", trans_a = true}
// RE-REPLAN: @train_step: arena 2048, lower bound 1988, saved 560, buffers 12, peak op 16
// RE-REPLAN-NEXT: buffer 1024 bytes at 0, ops 15..20
// RE-REPLAN-NEXT: buffer 512 bytes at 1024, ops 18..19
// RE-REPLAN-NEXT: buffer 256 bytes at 1024, ops 3..17

module {
  func.func @forward(%x: tensor<4x8xf32> {blpa.name = "input"}) -> (tensor<4x3xf32> {blpa.name = "logits"}) {
    %w1 = blpa.param "fc1.weight" trainable : tensor<16x8xf32>
    %w2 = blpa.param "fc2.weight" trainable : tensor<16x16xf32>
    %w3 = blpa.param "fc3.weight" trainable : tensor<3x16xf32>
    %h1 = blpa.gemm %x, %w1 {trans_b = true} : (tensor<4x8xf32>, tensor<16x8xf32>) -> tensor<4x16xf32> loc("fc1")
    %r1 = blpa.relu %h1 : (tensor<4x16xf32>) -> tensor<4x16xf32> loc("relu1")
    %h2 = blpa.gemm %r1, %w2 {trans_b = true} : (tensor<4x16xf32>, tensor<16x16xf32>) -> tensor<4x16xf32> loc("fc2")
    %r2 = blpa.relu %h2 : (tensor<4x16xf32>) -> tensor<4x16xf32> loc("relu2")
    %l = blpa.gemm %r2, %w3 {trans_b = true} : (tensor<4x16xf32>, tensor<3x16xf32>) -> tensor<4x3xf32> loc("fc3")
    return %l : tensor<4x3xf32>
  }
}
