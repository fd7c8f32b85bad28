// RUN: blpa-opt %s --blpa-autodiff="ignore-index=0" | FileCheck %s

// The loss leaves out the rows labelled --ignore-index (here 0, a padding
// token), in the forward loss and in its gradient.
// CHECK: blpa.softmax_cross_entropy %{{.*}}, %{{.*}} {blpa.phase = "forward", ignore_index = 0 : i64}
// CHECK: blpa.softmax_cross_entropy_grad %{{.*}}, %{{.*}}, %{{.*}} {blpa.phase = "backward", ignore_index = 0 : i64}
module {
  func.func @forward(%x: tensor<2x4xf32> {blpa.name = "input"}) -> (tensor<2x3xf32> {blpa.name = "logits"}) {
    %w = blpa.param "fc.weight" trainable : tensor<3x4xf32>
    %l = blpa.gemm %x, %w {trans_b = true} : (tensor<2x4xf32>, tensor<3x4xf32>) -> tensor<2x3xf32>
    return %l : tensor<2x3xf32>
  }
}
