// RUN: blpa-opt %s --split-input-file --pass-pipeline='builtin.module(func.func(blpa-fuse-gelu))' | FileCheck %s

// torch.onnx's nn.GELU before opset 20: x * (1 + erf(x / sqrt(2))) * 0.5
// becomes one blpa.gelu; the intermediates are gone.
// CHECK-LABEL: func.func @torch_order(
// CHECK-SAME: %[[X:.*]]: tensor<2x8xf32>
// CHECK-NEXT: %[[G:.*]] = blpa.gelu %[[X]] : (tensor<2x8xf32>) -> tensor<2x8xf32>
// CHECK-NEXT: return %[[G]]
func.func @torch_order(%x: tensor<2x8xf32>) -> tensor<2x8xf32> {
  %s = blpa.fill 1.4142135381698608 : tensor<f32>
  %one = blpa.fill 1.0 : tensor<f32>
  %half = blpa.fill 0.5 : tensor<f32>
  %d = blpa.div %x, %s : (tensor<2x8xf32>, tensor<f32>) -> tensor<2x8xf32>
  %e = blpa.erf %d : (tensor<2x8xf32>) -> tensor<2x8xf32>
  %a = blpa.add %e, %one : (tensor<2x8xf32>, tensor<f32>) -> tensor<2x8xf32>
  %m = blpa.mul %x, %a : (tensor<2x8xf32>, tensor<2x8xf32>) -> tensor<2x8xf32>
  %y = blpa.mul %m, %half : (tensor<2x8xf32>, tensor<f32>) -> tensor<2x8xf32>
  return %y : tensor<2x8xf32>
}

// -----

// 0.5 * x first, constants on the left.
// CHECK-LABEL: func.func @half_first(
// CHECK-SAME: %[[X:.*]]: tensor<4xf32>
// CHECK-NEXT: %[[G:.*]] = blpa.gelu %[[X]]
// CHECK-NEXT: return %[[G]]
func.func @half_first(%x: tensor<4xf32>) -> tensor<4xf32> {
  %s = blpa.fill 1.4142135 : tensor<f32>
  %one = blpa.fill 1.0 : tensor<f32>
  %half = blpa.fill 0.5 : tensor<f32>
  %h = blpa.mul %half, %x : (tensor<f32>, tensor<4xf32>) -> tensor<4xf32>
  %d = blpa.div %x, %s : (tensor<4xf32>, tensor<f32>) -> tensor<4xf32>
  %e = blpa.erf %d : (tensor<4xf32>) -> tensor<4xf32>
  %a = blpa.add %one, %e : (tensor<f32>, tensor<4xf32>) -> tensor<4xf32>
  %y = blpa.mul %h, %a : (tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32>
  return %y : tensor<4xf32>
}

// -----

// Another x in the product, or another constant, is not a GELU.
// CHECK-LABEL: func.func @not_gelu(
// CHECK-NOT: blpa.gelu
func.func @not_gelu(%x: tensor<4xf32>, %z: tensor<4xf32>) -> (tensor<4xf32>, tensor<4xf32>) {
  %s = blpa.fill 1.4142135 : tensor<f32>
  %one = blpa.fill 1.0 : tensor<f32>
  %half = blpa.fill 0.5 : tensor<f32>
  %third = blpa.fill 0.3333 : tensor<f32>
  %d = blpa.div %x, %s : (tensor<4xf32>, tensor<f32>) -> tensor<4xf32>
  %e = blpa.erf %d : (tensor<4xf32>) -> tensor<4xf32>
  %a = blpa.add %e, %one : (tensor<4xf32>, tensor<f32>) -> tensor<4xf32>
  %m = blpa.mul %z, %a : (tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32>
  %y = blpa.mul %m, %half : (tensor<4xf32>, tensor<f32>) -> tensor<4xf32>
  %m2 = blpa.mul %x, %a : (tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32>
  %y2 = blpa.mul %m2, %third : (tensor<4xf32>, tensor<f32>) -> tensor<4xf32>
  return %y, %y2 : tensor<4xf32>, tensor<4xf32>
}
