// RUN: blpa-opt %s -split-input-file --blpa-allreduce-gradients="bucket-bytes=64" | FileCheck %s --check-prefix=SMALL
// RUN: blpa-opt %s -split-input-file --blpa-allreduce-gradients | FileCheck %s --check-prefix=ONE

// Gradients are bucketed in the order the backward pass finishes them; a
// bucket starts right after its last gradient and is waited for after the
// backward pass, where the updates move to read their slices of the mean.
// With 64-byte buckets the weight's 72-byte gradient is a bucket alone (its
// own buffer, viewed 1-D: no copy) and the batch norm's two 24-byte
// gradients share one; the running statistics stay where they were.
// SMALL-LABEL: func.func @train_step
// SMALL: blpa.update_running_stats
// SMALL: %[[DW:.*]] = blpa.gemm %{{.*}}, %{{.*}} {blpa.phase = "backward", trans_a = true}
// SMALL-NEXT: %[[FLAT:.*]] = blpa.reshape %[[DW]] {blpa.phase = "backward"} : tensor<3x6xf32> -> tensor<18xf32>
// SMALL-NEXT: %[[B0:.*]] = blpa.allreduce_start %[[FLAT]] {blpa.phase = "backward", index = 0 : i64} : tensor<18xf32>
// SMALL-NEXT: blpa.gemm
// SMALL-NEXT: %{{.*}}, %[[DS:.*]], %[[DT:.*]] = blpa.batch_norm_grad
// SMALL-NEXT: %[[JOINED:.*]] = blpa.concat %[[DS]], %[[DT]] {axis = 0 : i64, blpa.phase = "backward"}
// SMALL-NEXT: %[[B1:.*]] = blpa.allreduce_start %[[JOINED]] {blpa.phase = "backward", index = 1 : i64} : tensor<12xf32>
// SMALL-NEXT: %[[M0:.*]] = blpa.allreduce_wait %[[B0]] {blpa.phase = "backward", index = 0 : i64}
// SMALL-NEXT: %[[W:.*]] = blpa.reshape %[[M0]] {blpa.phase = "backward"} : tensor<18xf32> -> tensor<3x6xf32>
// SMALL-NEXT: blpa.sgd_update %{{.*}}, %[[W]]
// SMALL-NEXT: %[[M1:.*]] = blpa.allreduce_wait %[[B1]] {blpa.phase = "backward", index = 1 : i64}
// SMALL-NEXT: %[[S:.*]] = blpa.slice %[[M1]] {axis = 0 : i64, blpa.phase = "backward", size = 6 : i64, start = 0 : i64}
// SMALL-NEXT: blpa.sgd_update %{{.*}}, %[[S]]
// SMALL-NEXT: %[[T:.*]] = blpa.slice %[[M1]] {axis = 0 : i64, blpa.phase = "backward", size = 6 : i64, start = 6 : i64}
// SMALL-NEXT: blpa.sgd_update %{{.*}}, %[[T]]
// SMALL-NEXT: return

// With the default 1 MiB, one bucket of all three, in finishing order.
// ONE-LABEL: func.func @train_step
// ONE: blpa.batch_norm_grad
// ONE-NEXT: %[[FLAT:.*]] = blpa.reshape
// ONE-NEXT: %[[JOINED:.*]] = blpa.concat %[[FLAT]], %{{.*}}, %{{.*}} {axis = 0 : i64, blpa.phase = "backward"} : (tensor<18xf32>, tensor<6xf32>, tensor<6xf32>) -> tensor<30xf32>
// ONE-NEXT: %[[B:.*]] = blpa.allreduce_start %[[JOINED]] {blpa.phase = "backward", index = 0 : i64}
// ONE-NEXT: %[[M:.*]] = blpa.allreduce_wait %[[B]]
// ONE-NEXT: blpa.slice %[[M]] {axis = 0 : i64, blpa.phase = "backward", size = 18 : i64, start = 0 : i64}
// ONE-NEXT: blpa.reshape
// ONE-NEXT: blpa.sgd_update
// ONE-NEXT: blpa.slice %[[M]] {axis = 0 : i64, blpa.phase = "backward", size = 6 : i64, start = 18 : i64}
// ONE-NEXT: blpa.sgd_update
// ONE-NEXT: blpa.slice %[[M]] {axis = 0 : i64, blpa.phase = "backward", size = 6 : i64, start = 24 : i64}
// ONE-NEXT: blpa.sgd_update
// ONE-NEXT: return
func.func @train_step(%x: tensor<4x6xf32>, %labels: tensor<4xi64>) -> tensor<f32> {
  %w = blpa.param "w" trainable {blpa.phase = "forward"} : tensor<3x6xf32>
  %s = blpa.param "bn.weight" trainable {blpa.phase = "forward"} : tensor<6xf32>
  %t = blpa.param "bn.bias" trainable {blpa.phase = "forward"} : tensor<6xf32>
  %rm = blpa.param "bn.running_mean" {blpa.phase = "forward"} : tensor<6xf32>
  %rv = blpa.param "bn.running_var" {blpa.phase = "forward"} : tensor<6xf32>
  %n:3 = blpa.batch_norm %x, %s, %t, %rm, %rv {blpa.phase = "forward", epsilon = 1.0e-5 : f64, momentum = 0.9 : f64} : (tensor<4x6xf32>, tensor<6xf32>, tensor<6xf32>, tensor<6xf32>, tensor<6xf32>) -> (tensor<4x6xf32>, tensor<6xf32>, tensor<6xf32>)
  blpa.update_running_stats %rm, %rv, %n#1, %n#2 {blpa.phase = "update", count = 4 : i64, epsilon = 1.0e-5 : f64, momentum = 0.9 : f64} : tensor<6xf32>
  %l = blpa.gemm %n#0, %w {blpa.phase = "forward", trans_b = true} : (tensor<4x6xf32>, tensor<3x6xf32>) -> tensor<4x3xf32>
  %loss = blpa.softmax_cross_entropy %l, %labels {blpa.phase = "forward"} : (tensor<4x3xf32>, tensor<4xi64>) -> tensor<f32>
  %one = blpa.fill 1.0 {blpa.phase = "backward"} : tensor<f32>
  %dl = blpa.softmax_cross_entropy_grad %l, %labels, %one {blpa.phase = "backward"} : (tensor<4x3xf32>, tensor<4xi64>, tensor<f32>) -> tensor<4x3xf32>
  %dw = blpa.gemm %dl, %n#0 {blpa.phase = "backward", trans_a = true} : (tensor<4x3xf32>, tensor<4x6xf32>) -> tensor<3x6xf32>
  %dx = blpa.gemm %dl, %w {blpa.phase = "backward"} : (tensor<4x3xf32>, tensor<3x6xf32>) -> tensor<4x6xf32>
  blpa.sgd_update %w, %dw {blpa.phase = "update"} : tensor<3x6xf32>
  %g:3 = blpa.batch_norm_grad %dx, %x, %s, %n#1, %n#2 {blpa.phase = "backward"} : (tensor<4x6xf32>, tensor<4x6xf32>, tensor<6xf32>, tensor<6xf32>, tensor<6xf32>) -> (tensor<4x6xf32>, tensor<6xf32>, tensor<6xf32>)
  blpa.sgd_update %s, %g#1 {blpa.phase = "update"} : tensor<6xf32>
  blpa.sgd_update %t, %g#2 {blpa.phase = "update"} : tensor<6xf32>
  return %loss : tensor<f32>
}

// -----

// A step without updates (an inference function) is left alone.
// SMALL-LABEL: func.func @forward
// SMALL-NOT: allreduce
// ONE-LABEL: func.func @forward
// ONE-NOT: allreduce
func.func @forward(%x: tensor<4x6xf32>) -> tensor<4x6xf32> {
  %y = blpa.relu %x : (tensor<4x6xf32>) -> tensor<4x6xf32>
  return %y : tensor<4x6xf32>
}
