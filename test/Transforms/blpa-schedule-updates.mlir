// RUN: blpa-opt %s -split-input-file --blpa-schedule-updates | FileCheck %s

// Each update moves up to right after its last input; the weight's update
// also waits for the op that still reads the weight (the input gradient,
// here after the weight gradient), and the running statistics are updated
// right after the batch statistics exist.
// CHECK-LABEL: func.func @train_step
// CHECK: %[[W:.*]] = blpa.param "w" trainable
// CHECK: %[[RM:.*]] = blpa.param "bn.running_mean"
// CHECK: %{{.*}}, %[[MEAN:.*]], %[[IS:.*]] = blpa.batch_norm
// CHECK-NEXT: blpa.update_running_stats %[[RM]], %{{.*}}, %[[MEAN]], %[[IS]]
// CHECK: %[[DW:.*]] = blpa.gemm %{{.*}}, %{{.*}} {blpa.phase = "backward", trans_a = true}
// CHECK-NEXT: %[[DX:.*]] = blpa.gemm %{{.*}}, %[[W]] {blpa.phase = "backward"}
// CHECK-NEXT: blpa.sgd_update %[[W]], %[[DW]]
// CHECK-NEXT: %{{.*}}, %[[DS:.*]], %{{.*}} = blpa.batch_norm_grad %[[DX]]
// CHECK-NEXT: blpa.sgd_update %{{.*}}, %[[DS]]
// CHECK-NEXT: blpa.sgd_update
// CHECK-NEXT: return
func.func @train_step(%x: tensor<4x6xf32>, %labels: tensor<4xi64>) -> tensor<f32> {
  %w = blpa.param "w" trainable {blpa.phase = "forward"} : tensor<3x6xf32>
  %s = blpa.param "bn.weight" trainable {blpa.phase = "forward"} : tensor<6xf32>
  %t = blpa.param "bn.bias" trainable {blpa.phase = "forward"} : tensor<6xf32>
  %rm = blpa.param "bn.running_mean" {blpa.phase = "forward"} : tensor<6xf32>
  %rv = blpa.param "bn.running_var" {blpa.phase = "forward"} : tensor<6xf32>
  %n:3 = blpa.batch_norm %x, %s, %t, %rm, %rv {blpa.phase = "forward", epsilon = 1.0e-5 : f64, momentum = 0.9 : f64} : (tensor<4x6xf32>, tensor<6xf32>, tensor<6xf32>, tensor<6xf32>, tensor<6xf32>) -> (tensor<4x6xf32>, tensor<6xf32>, tensor<6xf32>)
  %l = blpa.gemm %n#0, %w {blpa.phase = "forward", trans_b = true} : (tensor<4x6xf32>, tensor<3x6xf32>) -> tensor<4x3xf32>
  %loss = blpa.softmax_cross_entropy %l, %labels {blpa.phase = "forward"} : (tensor<4x3xf32>, tensor<4xi64>) -> tensor<f32>
  %one = blpa.fill 1.0 {blpa.phase = "backward"} : tensor<f32>
  %dl = blpa.softmax_cross_entropy_grad %l, %labels, %one {blpa.phase = "backward"} : (tensor<4x3xf32>, tensor<4xi64>, tensor<f32>) -> tensor<4x3xf32>
  %dw = blpa.gemm %dl, %n#0 {blpa.phase = "backward", trans_a = true} : (tensor<4x3xf32>, tensor<4x6xf32>) -> tensor<3x6xf32>
  %dx = blpa.gemm %dl, %w {blpa.phase = "backward"} : (tensor<4x3xf32>, tensor<3x6xf32>) -> tensor<4x6xf32>
  %g:3 = blpa.batch_norm_grad %dx, %x, %s, %n#1, %n#2 {blpa.phase = "backward"} : (tensor<4x6xf32>, tensor<4x6xf32>, tensor<6xf32>, tensor<6xf32>, tensor<6xf32>) -> (tensor<4x6xf32>, tensor<6xf32>, tensor<6xf32>)
  blpa.sgd_update %w, %dw {blpa.phase = "update"} : tensor<3x6xf32>
  blpa.sgd_update %s, %g#1 {blpa.phase = "update"} : tensor<6xf32>
  blpa.sgd_update %t, %g#2 {blpa.phase = "update"} : tensor<6xf32>
  blpa.update_running_stats %rm, %rv, %n#1, %n#2 {blpa.phase = "update", count = 4 : i64, epsilon = 1.0e-5 : f64, momentum = 0.9 : f64} : tensor<6xf32>
  return %loss : tensor<f32>
}
