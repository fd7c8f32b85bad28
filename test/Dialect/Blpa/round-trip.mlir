// RUN: blpa-opt %s | blpa-opt | FileCheck %s

// CHECK-LABEL: func.func @conv_bn_relu
func.func @conv_bn_relu(%x: tensor<2x3x8x8xf32>) -> tensor<2x4x4x4xf32> {
  // CHECK: blpa.param "w" trainable : tensor<4x3x3x3xf32>
  %w = blpa.param "w" trainable : tensor<4x3x3x3xf32>
  %b = blpa.param "b" trainable : tensor<4xf32>
  %s = blpa.param "bn.scale" trainable : tensor<4xf32>
  %c = blpa.param "bn.bias" trainable : tensor<4xf32>
  // CHECK: blpa.param "bn.mean" : tensor<4xf32>
  %m = blpa.param "bn.mean" : tensor<4xf32>
  %v = blpa.param "bn.var" : tensor<4xf32>
  // CHECK: blpa.conv %{{.*}} {pads = array<i64: 1, 1, 1, 1>, strides = array<i64: 2, 2>} : (tensor<2x3x8x8xf32>, tensor<4x3x3x3xf32>, tensor<4xf32>) -> tensor<2x4x4x4xf32>
  %y = blpa.conv %x, %w, %b {strides = array<i64: 2, 2>, pads = array<i64: 1, 1, 1, 1>} : (tensor<2x3x8x8xf32>, tensor<4x3x3x3xf32>, tensor<4xf32>) -> tensor<2x4x4x4xf32>
  // CHECK: blpa.batch_norm {{.*}} -> (tensor<2x4x4x4xf32>, tensor<4xf32>, tensor<4xf32>)
  %n:3 = blpa.batch_norm %y, %s, %c, %m, %v {epsilon = 1.0e-05 : f64, momentum = 0.9 : f64} : (tensor<2x4x4x4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>) -> (tensor<2x4x4x4xf32>, tensor<4xf32>, tensor<4xf32>)
  // CHECK: blpa.relu
  %r = blpa.relu %n#0 : (tensor<2x4x4x4xf32>) -> tensor<2x4x4x4xf32>
  return %r : tensor<2x4x4x4xf32>
}

// CHECK-LABEL: func.func @pool_gemm_loss
func.func @pool_gemm_loss(%x: tensor<2x4x8x8xf32>, %labels: tensor<2xi64>) -> tensor<f32> {
  // CHECK: blpa.max_pool {{.*}} -> tensor<2x4x4x4xf32>
  %p = blpa.max_pool %x {kernel_shape = array<i64: 2, 2>, strides = array<i64: 2, 2>, pads = array<i64: 0, 0, 0, 0>} : (tensor<2x4x8x8xf32>) -> tensor<2x4x4x4xf32>
  // CHECK: blpa.avg_pool {{.*}} -> tensor<2x4x4x4xf32>
  %a = blpa.avg_pool %p {kernel_shape = array<i64: 3, 3>, strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, count_include_pad = true} : (tensor<2x4x4x4xf32>) -> tensor<2x4x4x4xf32>
  // CHECK: blpa.add {{.*}} : (tensor<2x4x4x4xf32>, tensor<4x1x1xf32>) -> tensor<2x4x4x4xf32>
  %k = blpa.param "k" : tensor<4x1x1xf32>
  %s = blpa.add %a, %k : (tensor<2x4x4x4xf32>, tensor<4x1x1xf32>) -> tensor<2x4x4x4xf32>
  // CHECK: blpa.global_avg_pool {{.*}} -> tensor<2x4x1x1xf32>
  %g = blpa.global_avg_pool %s : (tensor<2x4x4x4xf32>) -> tensor<2x4x1x1xf32>
  // CHECK: blpa.reshape {{.*}} : tensor<2x4x1x1xf32> -> tensor<2x4xf32>
  %f = blpa.reshape %g : tensor<2x4x1x1xf32> -> tensor<2x4xf32>
  %w = blpa.param "fc.weight" trainable : tensor<10x4xf32>
  %b = blpa.param "fc.bias" trainable : tensor<10xf32>
  // CHECK: blpa.gemm {{.*}} {trans_b = true} : (tensor<2x4xf32>, tensor<10x4xf32>, tensor<10xf32>) -> tensor<2x10xf32>
  %l = blpa.gemm %f, %w, %b {trans_b = true} : (tensor<2x4xf32>, tensor<10x4xf32>, tensor<10xf32>) -> tensor<2x10xf32>
  // CHECK: blpa.softmax_cross_entropy {{.*}} -> tensor<f32>
  %loss = blpa.softmax_cross_entropy %l, %labels : (tensor<2x10xf32>, tensor<2xi64>) -> tensor<f32>
  return %loss : tensor<f32>
}

// CHECK-LABEL: func.func @updates
func.func @updates(%g: tensor<4xf32>, %mean: tensor<4xf32>, %istd: tensor<4xf32>) {
  %p = blpa.param "p" trainable : tensor<4xf32>
  // CHECK: blpa.sgd_update %{{.*}}, %{{.*}} : tensor<4xf32>
  blpa.sgd_update %p, %g : tensor<4xf32>
  %m = blpa.param "m" : tensor<4xf32>
  %v = blpa.param "v" : tensor<4xf32>
  // CHECK: blpa.update_running_stats {{.*}} {count = 32 : i64, epsilon = 1.000000e-05 : f64, momentum = 9.000000e-01 : f64} : tensor<4xf32>
  blpa.update_running_stats %m, %v, %mean, %istd {momentum = 0.9 : f64, epsilon = 1.0e-5 : f64, count = 32 : i64} : tensor<4xf32>
  // CHECK: blpa.fill 1.000000e+00 : tensor<f32>
  %one = blpa.fill 1.0 : tensor<f32>
  return
}

// Packed codes and the ops that make and read them.
// CHECK-LABEL: func.func @codes
func.func @codes(%x: tensor<2x3x5x5xf32>, %s: tensor<3xf32>, %t: tensor<3xf32>, %dy: tensor<2x3x5x5xf32>) -> tensor<2x3x5x5xf32> {
  // CHECK: blpa.batch_norm_encode {{.*}} -> (tensor<2x3x5x5xf32>, tensor<3xf32>, tensor<3xf32>, !blpa.packed<2x3x5x5xi4, bn_relu>)
  %n:4 = blpa.batch_norm_encode %x, %s, %t, %s, %t {bits = 4 : i64, epsilon = 1.0e-05 : f64, momentum = 0.9 : f64} : (tensor<2x3x5x5xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>) -> (tensor<2x3x5x5xf32>, tensor<3xf32>, tensor<3xf32>, !blpa.packed<2x3x5x5xi4, bn_relu>)
  // CHECK: blpa.batch_norm_decode {{.*}} {relu} : (!blpa.packed<2x3x5x5xi4, bn_relu>, tensor<3xf32>, tensor<3xf32>) -> tensor<2x3x5x5xf32>
  %z = blpa.batch_norm_decode %n#3, %s, %t {relu} : (!blpa.packed<2x3x5x5xi4, bn_relu>, tensor<3xf32>, tensor<3xf32>) -> tensor<2x3x5x5xf32>
  // CHECK: blpa.batch_norm_grad_decode
  %g:3 = blpa.batch_norm_grad_decode %dy, %n#3, %s, %t, %n#2 : (tensor<2x3x5x5xf32>, !blpa.packed<2x3x5x5xi4, bn_relu>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>) -> (tensor<2x3x5x5xf32>, tensor<3xf32>, tensor<3xf32>)
  // CHECK: blpa.quantize {{.*}} -> (!blpa.packed<2x3x5x5xi2, affine>, tensor<2x3xf32>)
  %q:2 = blpa.quantize %x {bits = 2 : i64, scheme = "affine"} : (tensor<2x3x5x5xf32>) -> (!blpa.packed<2x3x5x5xi2, affine>, tensor<2x3xf32>)
  // CHECK: blpa.dequantize {{.*}} : (!blpa.packed<2x3x5x5xi2, affine>, tensor<2x3xf32>) -> tensor<2x3x5x5xf32>
  %d = blpa.dequantize %q#0, %q#1 : (!blpa.packed<2x3x5x5xi2, affine>, tensor<2x3xf32>) -> tensor<2x3x5x5xf32>
  // Probability codes pad each row of 5 to whole bytes (6 2-bit codes);
  // decoding into a view of another shape with the same rows is allowed.
  // CHECK: blpa.probability_encode {{.*}} {bits = 2 : i64} : (tensor<2x3x5x5xf32>) -> (!blpa.packed<30x8xi2, logprob>, tensor<30x2xf32>)
  %pc:2 = blpa.probability_encode %x {bits = 2 : i64} : (tensor<2x3x5x5xf32>) -> (!blpa.packed<30x8xi2, logprob>, tensor<30x2xf32>)
  // CHECK: blpa.probability_decode {{.*}} {shape = array<i64: 6, 5, 5>} : (!blpa.packed<30x8xi2, logprob>, tensor<30x2xf32>) -> tensor<6x5x5xf32>
  %pd = blpa.probability_decode %pc#0, %pc#1 {shape = array<i64: 6, 5, 5>} : (!blpa.packed<30x8xi2, logprob>, tensor<30x2xf32>) -> tensor<6x5x5xf32>
  // CHECK: blpa.quantize {{.*}} -> !blpa.packed<2x3x5x5xi1, mask>
  %m = blpa.quantize %z {bits = 1 : i64, scheme = "mask"} : (tensor<2x3x5x5xf32>) -> !blpa.packed<2x3x5x5xi1, mask>
  // CHECK: blpa.dequantize {{.*}} : (!blpa.packed<2x3x5x5xi1, mask>) -> tensor<2x3x5x5xf32>
  %md = blpa.dequantize %m : (!blpa.packed<2x3x5x5xi1, mask>) -> tensor<2x3x5x5xf32>
  // CHECK: blpa.max_pool_argmax {{.*}} -> (tensor<2x3x3x3xf32>, !blpa.packed<2x3x3x3xi4, argmax>)
  %p:2 = blpa.max_pool_argmax %x {kernel_shape = array<i64: 3, 3>, strides = array<i64: 2, 2>, pads = array<i64: 1, 1, 1, 1>} : (tensor<2x3x5x5xf32>) -> (tensor<2x3x3x3xf32>, !blpa.packed<2x3x3x3xi4, argmax>)
  // CHECK: blpa.max_pool_grad_argmax {{.*}} -> tensor<2x3x5x5xf32>
  %pg = blpa.max_pool_grad_argmax %p#0, %p#1 {kernel_shape = array<i64: 3, 3>, strides = array<i64: 2, 2>, pads = array<i64: 1, 1, 1, 1>, input_shape = array<i64: 2, 3, 5, 5>} : (tensor<2x3x3x3xf32>, !blpa.packed<2x3x3x3xi4, argmax>) -> tensor<2x3x5x5xf32>
  // CHECK: %[[HS:.*]] = blpa.activation_region %{{.*}} {alpha = 0.000000e+00 : f32, beta = 0.000000e+00 : f32, kind = 2 : i64} : (tensor<2x3x5x5xf32>) -> !blpa.packed<2x3x5x5xi2, region>
  %hs = blpa.activation_region %x {kind = 2 : i64, alpha = 0.0 : f32, beta = 0.0 : f32} : (tensor<2x3x5x5xf32>) -> !blpa.packed<2x3x5x5xi2, region>
  // CHECK: blpa.activation_grad_region %{{.*}}, %[[HS]], %{{.*}} {{.*}} : (tensor<2x3x5x5xf32>, !blpa.packed<2x3x5x5xi2, region>, tensor<2x3x5x5xf32>) -> tensor<2x3x5x5xf32>
  %hg = blpa.activation_grad_region %pg, %hs, %d {kind = 2 : i64, alpha = 0.0 : f32, beta = 0.0 : f32} : (tensor<2x3x5x5xf32>, !blpa.packed<2x3x5x5xi2, region>, tensor<2x3x5x5xf32>) -> tensor<2x3x5x5xf32>
  // CHECK: blpa.activation_region %{{.*}} alpha %{{.*}} {{.*}} : (tensor<2x3x5x5xf32>, tensor<1xf32>) -> !blpa.packed<2x3x5x5xi1, region>
  %lo = blpa.param "lo" : tensor<1xf32>
  %cr = blpa.activation_region %x alpha %lo {kind = 3 : i64, alpha = 0xFF800000 : f32, beta = 6.0 : f32} : (tensor<2x3x5x5xf32>, tensor<1xf32>) -> !blpa.packed<2x3x5x5xi1, region>
  // CHECK: blpa.activation_grad_region %{{.*}}, %{{.*}} {{.*}} : (tensor<2x3x5x5xf32>, !blpa.packed<2x3x5x5xi1, region>) -> tensor<2x3x5x5xf32>
  %cg = blpa.activation_grad_region %hg, %cr {kind = 3 : i64, alpha = 0xFF800000 : f32, beta = 6.0 : f32} : (tensor<2x3x5x5xf32>, !blpa.packed<2x3x5x5xi1, region>) -> tensor<2x3x5x5xf32>
  return %cg : tensor<2x3x5x5xf32>
}

// Batch norm fused with its ReLU (--blpa-fuse-batch-norm-relu).
// CHECK-LABEL: func.func @fused_batch_norm_relu
func.func @fused_batch_norm_relu(%x: tensor<2x3x5x5xf32>, %s: tensor<3xf32>, %t: tensor<3xf32>, %dy: tensor<2x3x5x5xf32>) -> tensor<2x3x5x5xf32> {
  // CHECK: blpa.batch_norm_relu {{.*}} -> (tensor<2x3x5x5xf32>, tensor<3xf32>, tensor<3xf32>)
  %n:3 = blpa.batch_norm_relu %x, %s, %t, %s, %t {epsilon = 1.0e-05 : f64, momentum = 0.9 : f64} : (tensor<2x3x5x5xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>) -> (tensor<2x3x5x5xf32>, tensor<3xf32>, tensor<3xf32>)
  // CHECK: blpa.batch_norm_apply {{.*}} {relu} : {{.*}} -> tensor<2x3x5x5xf32>
  %r = blpa.batch_norm_apply %x, %s, %t, %n#1, %n#2 {relu} : (tensor<2x3x5x5xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>) -> tensor<2x3x5x5xf32>
  // CHECK: blpa.batch_norm_relu_grad {{.*}} -> (tensor<2x3x5x5xf32>, tensor<3xf32>, tensor<3xf32>)
  %g:3 = blpa.batch_norm_relu_grad %dy, %x, %s, %t, %n#1, %n#2 : (tensor<2x3x5x5xf32>, tensor<2x3x5x5xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>) -> (tensor<2x3x5x5xf32>, tensor<3xf32>, tensor<3xf32>)
  return %g#0 : tensor<2x3x5x5xf32>
}

// Channel shuffle's permutation, and NCHW to NHWC.
// CHECK-LABEL: func.func @transpose
func.func @transpose(%x: tensor<2x3x4x5x6xf32>, %y: tensor<2x3x4x5xf32>) -> tensor<2x4x5x3xf32> {
  // CHECK: blpa.transpose %{{.*}} {perm = array<i64: 0, 2, 1, 3, 4>} : (tensor<2x3x4x5x6xf32>) -> tensor<2x4x3x5x6xf32>
  %s = blpa.transpose %x {perm = array<i64: 0, 2, 1, 3, 4>} : (tensor<2x3x4x5x6xf32>) -> tensor<2x4x3x5x6xf32>
  // CHECK: blpa.transpose %{{.*}} {perm = array<i64: 0, 2, 3, 1>} : (tensor<2x3x4x5xf32>) -> tensor<2x4x5x3xf32>
  %t = blpa.transpose %y {perm = array<i64: 0, 2, 3, 1>} : (tensor<2x3x4x5xf32>) -> tensor<2x4x5x3xf32>
  return %t : tensor<2x4x5x3xf32>
}

// Softmax over the channels, log-softmax over the last axis, and their
// gradients from the output.
// CHECK-LABEL: func.func @softmax
func.func @softmax(%x: tensor<2x3x4xf32>, %g: tensor<2x3x4xf32>) -> tensor<2x3x4xf32> {
  // CHECK: %[[S:.*]] = blpa.softmax %{{.*}} {axis = 1 : i64} : (tensor<2x3x4xf32>) -> tensor<2x3x4xf32>
  %s = blpa.softmax %x {axis = 1 : i64} : (tensor<2x3x4xf32>) -> tensor<2x3x4xf32>
  // CHECK: %[[L:.*]] = blpa.log_softmax %[[S]] {axis = 2 : i64} : (tensor<2x3x4xf32>) -> tensor<2x3x4xf32>
  %l = blpa.log_softmax %s {axis = 2 : i64} : (tensor<2x3x4xf32>) -> tensor<2x3x4xf32>
  // CHECK: %[[DL:.*]] = blpa.log_softmax_grad %{{.*}}, %[[L]] {axis = 2 : i64} : (tensor<2x3x4xf32>, tensor<2x3x4xf32>) -> tensor<2x3x4xf32>
  %dl = blpa.log_softmax_grad %g, %l {axis = 2 : i64} : (tensor<2x3x4xf32>, tensor<2x3x4xf32>) -> tensor<2x3x4xf32>
  // CHECK: blpa.softmax_grad %[[DL]], %[[S]] {axis = 1 : i64} : (tensor<2x3x4xf32>, tensor<2x3x4xf32>) -> tensor<2x3x4xf32>
  %ds = blpa.softmax_grad %dl, %s {axis = 1 : i64} : (tensor<2x3x4xf32>, tensor<2x3x4xf32>) -> tensor<2x3x4xf32>
  return %ds : tensor<2x3x4xf32>
}

// Batched products: equal batches, and a batch of 1 broadcast, transposed.
// CHECK-LABEL: func.func @batch_matmul
func.func @batch_matmul(%a: tensor<2x3x4xf32>, %b: tensor<2x4x5xf32>, %c: tensor<1x4x5xf32>) -> tensor<2x5x3xf32> {
  // CHECK: %[[P:.*]] = blpa.batch_matmul %{{.*}}, %{{.*}} : (tensor<2x3x4xf32>, tensor<2x4x5xf32>) -> tensor<2x3x5xf32>
  %p = blpa.batch_matmul %a, %b : (tensor<2x3x4xf32>, tensor<2x4x5xf32>) -> tensor<2x3x5xf32>
  // CHECK: %[[Q:.*]] = blpa.batch_matmul %[[P]], %{{.*}} {trans_b = true} : (tensor<2x3x5xf32>, tensor<1x4x5xf32>) -> tensor<2x3x4xf32>
  %q = blpa.batch_matmul %p, %c {trans_b = true} : (tensor<2x3x5xf32>, tensor<1x4x5xf32>) -> tensor<2x3x4xf32>
  // CHECK: blpa.batch_matmul %{{.*}}, %[[Q]] {trans_a = true, trans_b = true} : (tensor<1x4x5xf32>, tensor<2x3x4xf32>) -> tensor<2x5x3xf32>
  %r = blpa.batch_matmul %c, %q {trans_a = true, trans_b = true} : (tensor<1x4x5xf32>, tensor<2x3x4xf32>) -> tensor<2x5x3xf32>
  return %r : tensor<2x5x3xf32>
}

// A gradient bucket summed over the replicas: both results view the bucket.
// CHECK-LABEL: func.func @allreduce_bucket
func.func @allreduce_bucket(%g: tensor<30xf32>) -> tensor<30xf32> {
  // CHECK: %[[S:.*]] = blpa.allreduce_start %{{.*}} {index = 2 : i64} : tensor<30xf32>
  %s = blpa.allreduce_start %g {index = 2 : i64} : tensor<30xf32>
  // CHECK: blpa.allreduce_wait %[[S]] {index = 2 : i64} : tensor<30xf32>
  %m = blpa.allreduce_wait %s {index = 2 : i64} : tensor<30xf32>
  return %m : tensor<30xf32>
}
