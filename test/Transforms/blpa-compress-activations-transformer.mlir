// RUN: blpa-opt %s --blpa-autodiff --blpa-compress-activations="bits=4 min-elements=1" | FileCheck %s

// A transformer block's saved tensors (docs/design.md, "Transformer
// blocks"): the layer norm keeps per-row codes of its input, which its
// gradient reads decoded and from which the next linear layer's weight
// gradient reads the layer norm run again; the attention probabilities
// keep log-domain codes, read decoded by the gradient of P @ V (through
// its views) and by the softmax gradient; GELU keeps codes of its input,
// and the next linear layer's weight gradient reads GELU of them. The
// head (the last layer) keeps its input exact.
// CHECK-LABEL: func.func @train_step(
// CHECK: %[[LN:.*]], %[[MEAN:.*]], %[[ISTD:.*]] = blpa.layer_norm %[[X:[^,]*]], %[[S:[^,]*]], %[[B:[^ ]*]] {{.*}}blpa.phase = "forward"
// CHECK-NEXT: %[[XROWS:.*]] = blpa.reshape %[[X]] {blpa.phase = "forward"} : tensor<2x4x8xf32> -> tensor<1x8x8xf32>
// CHECK-NEXT: %[[XC:.*]], %[[XP:.*]] = blpa.quantize %[[XROWS]] {bits = 4 : i64, blpa.phase = "forward", scheme = "affine"} : (tensor<1x8x8xf32>) -> (!blpa.packed<1x8x8xi4, affine>, tensor<2x8xf32>)
// CHECK: %[[P:.*]] = blpa.softmax %{{.*}} {axis = 2 : i64, blpa.phase = "forward"}
// CHECK-NEXT: %[[PC:.*]], %[[PP:.*]] = blpa.probability_encode %[[P]] {bits = 4 : i64, blpa.phase = "forward"} : (tensor<2x4x4xf32>) -> (!blpa.packed<8x4xi4, logprob>, tensor<8x2xf32>)
// CHECK: %[[H:.*]] = blpa.gemm
// CHECK-NEXT: %[[G:.*]] = blpa.gelu %[[H]] {blpa.phase = "forward"}
// CHECK-NEXT: %[[HC:.*]], %[[HP:.*]] = blpa.quantize %[[H]] {bits = 4 : i64, blpa.phase = "forward", scheme = "affine"}
// CHECK-NOT: blpa.quantize %[[G]]
// CHECK: %[[HD:.*]] = blpa.dequantize %[[HC]], %[[HP]] {blpa.phase = "backward"}
// CHECK-NEXT: %[[GD:.*]] = blpa.gelu %[[HD]] {blpa.phase = "backward"}
// CHECK-NEXT: blpa.gemm %{{.*}}, %[[GD]] {blpa.phase = "backward", trans_a = true}
// CHECK: blpa.activation_grad %{{.*}}, %[[HD]] {{.*}}kind = 6
// CHECK: %[[PD:.*]] = blpa.probability_decode %[[PC]], %[[PP]] {blpa.phase = "backward", shape = array<i64: 2, 4, 4>}
// CHECK-NEXT: blpa.batch_matmul %[[PD]], %{{.*}} {blpa.phase = "backward", trans_a = true}
// CHECK: blpa.softmax_grad %{{.*}}, %[[PD]] {axis = 2 : i64, blpa.phase = "backward"}
// CHECK: %[[XD:.*]] = blpa.dequantize %[[XC]], %[[XP]] {blpa.phase = "backward"}
// CHECK-NEXT: %[[XT:.*]] = blpa.reshape %[[XD]] {blpa.phase = "backward"} : tensor<1x8x8xf32> -> tensor<2x4x8xf32>
// CHECK-NEXT: %[[LND:.*]], %{{.*}}, %{{.*}} = blpa.layer_norm %[[XT]], %[[S]], %[[B]] {axis = 2 : i64, blpa.phase = "backward"
// CHECK-NEXT: %[[LNV:.*]] = blpa.reshape %[[LND]] {blpa.phase = "backward"} : tensor<2x4x8xf32> -> tensor<8x8xf32>
// CHECK-NEXT: blpa.gemm %{{.*}}, %[[LNV]] {blpa.phase = "backward", trans_a = true}
// CHECK: blpa.layer_norm_grad %{{.*}}, %[[XT]], %[[S]], %[[MEAN]], %[[ISTD]]
module {
  func.func @forward(%x: tensor<2x4x8xf32>) -> tensor<8x5xf32> {
    %s = blpa.param "ln.scale" trainable : tensor<8xf32>
    %b = blpa.param "ln.bias" trainable : tensor<8xf32>
    %wq = blpa.param "wq" trainable : tensor<8x8xf32>
    %w1 = blpa.param "fc1" trainable : tensor<16x8xf32>
    %w2 = blpa.param "fc2" trainable : tensor<5x16xf32>
    %w3 = blpa.param "head" trainable : tensor<5x5xf32>
    %n, %m, %i = blpa.layer_norm %x, %s, %b {axis = 2 : i64, epsilon = 1.0e-5 : f64} : (tensor<2x4x8xf32>, tensor<8xf32>, tensor<8xf32>) -> (tensor<2x4x8xf32>, tensor<8xf32>, tensor<8xf32>) loc("ln")
    %nr = blpa.reshape %n : tensor<2x4x8xf32> -> tensor<8x8xf32> loc("ln_view")
    %q = blpa.gemm %nr, %wq {trans_b = true} : (tensor<8x8xf32>, tensor<8x8xf32>) -> tensor<8x8xf32> loc("q")
    %q3 = blpa.reshape %q : tensor<8x8xf32> -> tensor<2x4x8xf32> loc("q_view")
    %sc = blpa.batch_matmul %q3, %q3 {trans_b = true} : (tensor<2x4x8xf32>, tensor<2x4x8xf32>) -> tensor<2x4x4xf32> loc("scores")
    %p = blpa.softmax %sc {axis = 2 : i64} : (tensor<2x4x4xf32>) -> tensor<2x4x4xf32> loc("softmax")
    %pv = blpa.reshape %p : tensor<2x4x4xf32> -> tensor<1x8x4xf32> loc("p_view")
    %pr = blpa.reshape %pv : tensor<1x8x4xf32> -> tensor<2x4x4xf32> loc("p_view2")
    %o = blpa.batch_matmul %pr, %q3 : (tensor<2x4x4xf32>, tensor<2x4x8xf32>) -> tensor<2x4x8xf32> loc("pv")
    %o2 = blpa.reshape %o : tensor<2x4x8xf32> -> tensor<8x8xf32> loc("o_view")
    %h = blpa.gemm %o2, %w1 {trans_b = true} : (tensor<8x8xf32>, tensor<16x8xf32>) -> tensor<8x16xf32> loc("fc1")
    %g = blpa.gelu %h : (tensor<8x16xf32>) -> tensor<8x16xf32> loc("gelu")
    %h2 = blpa.gemm %g, %w2 {trans_b = true} : (tensor<8x16xf32>, tensor<5x16xf32>) -> tensor<8x5xf32> loc("fc2")
    %y = blpa.gemm %h2, %w3 {trans_b = true} : (tensor<8x5xf32>, tensor<5x5xf32>) -> tensor<8x5xf32> loc("head")
    return %y : tensor<8x5xf32>
  }
}
