// RUN: blpa-opt %s --blpa-autodiff --blpa-compress-activations="bits=4 min-elements=1" | FileCheck %s

// An activation that keeps codes of its input (GELU) codes the value its
// input's producer computed, and the memory report names that producer: a
// width chosen there (a user's --act-policy pin, the budget solver's
// choice) counts as much as one on the activation, the more exact of the
// two winning, as for the other ops that take over another's saved tensor.
// - fc1 "8", gelu1 without a choice (the pass's 4 bits): 8-bit codes;
// - fc2 "2", gelu2 without a choice: 4-bit codes, the more exact;
// - fc3 without a choice, gelu3 "8": 8-bit codes, the activation's own.
// CHECK-LABEL: func.func @train_step(
// CHECK: %[[H1:.*]] = blpa.gemm {{.*}}blpa.act_choice = "8"
// CHECK-NEXT: blpa.gelu %[[H1]]
// CHECK-NEXT: blpa.quantize %[[H1]] {bits = 8 : i64
// CHECK: %[[H2:.*]] = blpa.gemm {{.*}}blpa.act_choice = "2"
// CHECK-NEXT: blpa.gelu %[[H2]]
// CHECK-NEXT: blpa.quantize %[[H2]] {bits = 4 : i64
// CHECK: %[[H3:.*]] = blpa.gemm
// CHECK-NEXT: blpa.gelu %[[H3]] {blpa.act_choice = "8"
// CHECK-NEXT: blpa.quantize %[[H3]] {bits = 8 : i64
module {
  func.func @forward(%x: tensor<8x8xf32>) -> tensor<8x5xf32> {
    %w1 = blpa.param "fc1" trainable : tensor<16x8xf32>
    %w2 = blpa.param "fc2" trainable : tensor<16x16xf32>
    %w3 = blpa.param "fc3" trainable : tensor<16x16xf32>
    %w4 = blpa.param "head" trainable : tensor<5x16xf32>
    %h1 = blpa.gemm %x, %w1 {trans_b = true, blpa.act_choice = "8"} : (tensor<8x8xf32>, tensor<16x8xf32>) -> tensor<8x16xf32> loc("fc1")
    %g1 = blpa.gelu %h1 : (tensor<8x16xf32>) -> tensor<8x16xf32> loc("gelu1")
    %h2 = blpa.gemm %g1, %w2 {trans_b = true, blpa.act_choice = "2"} : (tensor<8x16xf32>, tensor<16x16xf32>) -> tensor<8x16xf32> loc("fc2")
    %g2 = blpa.gelu %h2 : (tensor<8x16xf32>) -> tensor<8x16xf32> loc("gelu2")
    %h3 = blpa.gemm %g2, %w3 {trans_b = true} : (tensor<8x16xf32>, tensor<16x16xf32>) -> tensor<8x16xf32> loc("fc3")
    %g3 = blpa.gelu %h3 {blpa.act_choice = "8"} : (tensor<8x16xf32>) -> tensor<8x16xf32> loc("gelu3")
    %y = blpa.gemm %g3, %w4 {trans_b = true} : (tensor<8x16xf32>, tensor<5x16xf32>) -> tensor<8x5xf32> loc("head")
    return %y : tensor<8x5xf32>
  }
}
