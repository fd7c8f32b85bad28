// RUN: blpa-opt %s -split-input-file --blpa-inference-batch-norm | FileCheck %s
// RUN: blpa-opt %s -split-input-file --pass-pipeline='builtin.module(blpa-inference-batch-norm)' | FileCheck %s

// @forward evaluates with the running statistics; @train_step is untouched.
// CHECK-LABEL: func.func @forward
// CHECK: %[[Y:.*]] = blpa.batch_norm_inference %{{.*}}, %{{.*}}, %{{.*}}, %[[M:.*]], %[[V:.*]] {epsilon = 1.000000e-05 : f64, momentum = 9.000000e-01 : f64}
// CHECK-NOT: blpa.batch_norm %
// CHECK: return %[[Y]]
// CHECK-LABEL: func.func @train_step
// CHECK: blpa.batch_norm %
func.func @forward(%x: tensor<2x3xf32>) -> tensor<2x3xf32> {
  %s = blpa.param "s" trainable : tensor<3xf32>
  %t = blpa.param "t" trainable : tensor<3xf32>
  %m = blpa.param "m" : tensor<3xf32>
  %v = blpa.param "v" : tensor<3xf32>
  %y:3 = blpa.batch_norm %x, %s, %t, %m, %v {epsilon = 1.0e-5 : f64, momentum = 0.9 : f64} : (tensor<2x3xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>) -> (tensor<2x3xf32>, tensor<3xf32>, tensor<3xf32>)
  return %y#0 : tensor<2x3xf32>
}
func.func @train_step(%x: tensor<2x3xf32>) -> tensor<2x3xf32> {
  %s = blpa.param "s" trainable : tensor<3xf32>
  %t = blpa.param "t" trainable : tensor<3xf32>
  %m = blpa.param "m" : tensor<3xf32>
  %v = blpa.param "v" : tensor<3xf32>
  %y:3 = blpa.batch_norm %x, %s, %t, %m, %v {epsilon = 1.0e-5 : f64, momentum = 0.9 : f64} : (tensor<2x3xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>) -> (tensor<2x3xf32>, tensor<3xf32>, tensor<3xf32>)
  return %y#0 : tensor<2x3xf32>
}

// -----

// Not applicable: a batch norm whose statistics are read stays in training
// mode.
// CHECK-LABEL: func.func @forward
// CHECK: blpa.batch_norm %
// CHECK-NOT: blpa.batch_norm_inference
func.func @forward(%x: tensor<2x3xf32>) -> tensor<3xf32> {
  %s = blpa.param "s" trainable : tensor<3xf32>
  %t = blpa.param "t" trainable : tensor<3xf32>
  %m = blpa.param "m" : tensor<3xf32>
  %v = blpa.param "v" : tensor<3xf32>
  %y:3 = blpa.batch_norm %x, %s, %t, %m, %v {epsilon = 1.0e-5 : f64, momentum = 0.9 : f64} : (tensor<2x3xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>) -> (tensor<2x3xf32>, tensor<3xf32>, tensor<3xf32>)
  return %y#1 : tensor<3xf32>
}
