// RUN: not blpa-opt %s --blpa-compress-activations="bits=3" 2>&1 | FileCheck %s --check-prefix=BITS
// RUN: not blpa-opt %s --blpa-compress-activations 2>&1 | FileCheck %s --check-prefix=NOSTEP
// RUN: not blpa-opt %s --blpa-autodiff --blpa-compress-activations="policy=relu0" 2>&1 | FileCheck %s --check-prefix=SYNTAX
// RUN: not blpa-opt %s --blpa-autodiff --blpa-compress-activations="policy=relu0=int4" 2>&1 | FileCheck %s --check-prefix=SYNTAX4
// RUN: not blpa-opt %s --blpa-autodiff --blpa-compress-activations="policy=relu9=float32" 2>&1 | FileCheck %s --check-prefix=UNKNOWN
// RUN: not blpa-opt %s --blpa-autodiff --blpa-compress-activations="bits=0 policy=relu0=quantize" 2>&1 | FileCheck %s --check-prefix=NOWIDTH

// BITS: error: bits must be 8, 4, 2 or 0 (only ops with a blpa.act_choice), got 3
// NOSTEP: error: no func.func @train_step to compress; run --blpa-autodiff first
// SYNTAX: error: policy 'relu0' must be NODE=float32|quantize|auto
// SYNTAX4: error: policy 'relu0=int4' must be NODE=float32|quantize|auto
// UNKNOWN: error: policy names node 'relu9', which saves no activation in @train_step
// NOWIDTH: error: policy 'relu0=quantize' needs a width: give bits=8|4|2, or set blpa.act_choice on the producer
module {
  func.func @forward(%x: tensor<2x4xf32> {blpa.name = "input"}) -> (tensor<2x3xf32> {blpa.name = "logits"}) {
    %fw = blpa.param "fc.weight" trainable : tensor<3x4xf32>
    %r = blpa.relu %x : (tensor<2x4xf32>) -> tensor<2x4xf32> loc("relu0")
    %l = blpa.gemm %r, %fw {trans_b = true} : (tensor<2x4xf32>, tensor<3x4xf32>) -> tensor<2x3xf32> loc("fc")
    return %l : tensor<2x3xf32>
  }
}
