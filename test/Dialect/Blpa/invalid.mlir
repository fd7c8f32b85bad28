// RUN: blpa-opt %s -split-input-file -verify-diagnostics

func.func @conv_channels(%x: tensor<2x3x8x8xf32>, %w: tensor<4x2x3x3xf32>) {
  // expected-error @+2 {{conv channel mismatch: input has 3 channels, weight expects 2 per group with group = 1}}
  // expected-error @+1 {{failed to infer returned types}}
  %y = blpa.conv %x, %w {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>} : (tensor<2x3x8x8xf32>, tensor<4x2x3x3xf32>) -> tensor<2x4x6x6xf32>
  return
}

// -----

func.func @conv_result_type(%x: tensor<2x3x8x8xf32>, %w: tensor<4x3x3x3xf32>) {
  // expected-error @+2 {{inferred type(s) 'tensor<2x4x6x6xf32>' are incompatible with return type(s) of operation 'tensor<2x4x8x8xf32>'}}
  // expected-error @+1 {{failed to infer returned types}}
  %y = blpa.conv %x, %w {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>} : (tensor<2x3x8x8xf32>, tensor<4x3x3x3xf32>) -> tensor<2x4x8x8xf32>
  return
}

// -----

func.func @conv_pads(%x: tensor<2x3x8x8xf32>, %w: tensor<4x3x3x3xf32>) {
  // expected-error @+2 {{'pads' must have 4 entries, got 2}}
  // expected-error @+1 {{failed to infer returned types}}
  %y = blpa.conv %x, %w {strides = array<i64: 1, 1>, pads = array<i64: 1, 1>} : (tensor<2x3x8x8xf32>, tensor<4x3x3x3xf32>) -> tensor<2x4x8x8xf32>
  return
}

// -----

func.func @conv_rank_mismatch(%x: tensor<2x3x4x8x8xf32>, %w: tensor<4x3x3x3xf32>) {
  // expected-error @+2 {{conv expects rank-4 (NCHW, KCRS) or rank-5 (NCDHW, KCTRS) input and weight}}
  // expected-error @+1 {{failed to infer returned types}}
  %y = blpa.conv %x, %w {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>} : (tensor<2x3x4x8x8xf32>, tensor<4x3x3x3xf32>) -> tensor<2x4x4x6x6xf32>
  return
}

// -----

func.func @add_broadcast(%a: tensor<2x3xf32>, %b: tensor<4xf32>) {
  // expected-error @+2 {{add: shapes 'tensor<2x3xf32>' and 'tensor<4xf32>' do not broadcast}}
  // expected-error @+1 {{failed to infer returned types}}
  %y = blpa.add %a, %b : (tensor<2x3xf32>, tensor<4xf32>) -> tensor<2x3xf32>
  return
}

// -----

func.func @reshape_count(%a: tensor<2x3xf32>) {
  // expected-error @+1 {{cannot reshape 'tensor<2x3xf32>' to 'tensor<7xf32>': element counts differ}}
  %y = blpa.reshape %a : tensor<2x3xf32> -> tensor<7xf32>
  return
}

// -----

func.func @reduce_not_broadcast(%a: tensor<2x3xf32>) {
  // expected-error @+1 {{result type 'tensor<2xf32>' does not broadcast to the input type 'tensor<2x3xf32>'}}
  %y = blpa.reduce_to_shape %a : tensor<2x3xf32> -> tensor<2xf32>
  return
}

// -----

func.func @gemm_inner(%a: tensor<2x3xf32>, %b: tensor<4x5xf32>) {
  // expected-error @+2 {{gemm inner dimensions differ: 3 vs 4}}
  // expected-error @+1 {{failed to infer returned types}}
  %y = blpa.gemm %a, %b : (tensor<2x3xf32>, tensor<4x5xf32>) -> tensor<2x5xf32>
  return
}

// -----

func.func @loss_batch(%l: tensor<2x10xf32>, %y: tensor<3xi64>) {
  // expected-error @+2 {{the labels' shape must be the logits' without the last dimension; labels 'tensor<3xi64>', logits 'tensor<2x10xf32>'}}
  // expected-error @+1 {{failed to infer returned types}}
  %loss = blpa.softmax_cross_entropy %l, %y : (tensor<2x10xf32>, tensor<3xi64>) -> tensor<f32>
  return
}

// -----

func.func @sequence_loss_labels(%l: tensor<2x4x10xf32>, %y: tensor<2xi64>) {
  // expected-error @+2 {{the labels' shape must be the logits' without the last dimension}}
  // expected-error @+1 {{failed to infer returned types}}
  %loss = blpa.softmax_cross_entropy %l, %y : (tensor<2x4x10xf32>, tensor<2xi64>) -> tensor<f32>
  return
}

// -----

func.func @embedding_table_rank(%t: tensor<f32>, %ids: tensor<2x3xi64>) {
  // expected-error @+2 {{embedding: the table has rank 0; it needs rows to look up}}
  // expected-error @+1 {{failed to infer returned types}}
  %y = blpa.embedding %t, %ids : (tensor<f32>, tensor<2x3xi64>) -> tensor<2x3xf32>
  return
}

// -----

func.func @embedding_float_ids(%t: tensor<10x4xf32>, %ids: tensor<2x3xf32>) {
  // expected-error @+1 {{operand #1 must be statically shaped tensor of 64-bit signless integer values}}
  %y = blpa.embedding %t, %ids : (tensor<10x4xf32>, tensor<2x3xf32>) -> tensor<2x3x4xf32>
  return
}

// -----

func.func @embedding_grad_shape(%g: tensor<2x4x4xf32>, %ids: tensor<2x3xi64>) {
  // expected-error @+2 {{embedding_grad: the gradient 'tensor<2x4x4xf32>' must be the indices' shape plus a row of the table 'tensor<10x4xf32>'}}
  // expected-error @+1 {{failed to infer returned types}}
  %y = blpa.embedding_grad %g, %ids {table_shape = array<i64: 10, 4>} : (tensor<2x4x4xf32>, tensor<2x3xi64>) -> tensor<10x4xf32>
  return
}

// -----

func.func @sgd_state(%g: tensor<4xf32>) {
  %p = blpa.param "running_mean" : tensor<4xf32>
  // expected-error @+1 {{updates only trainable blpa.param values}}
  blpa.sgd_update %p, %g : tensor<4xf32>
  return
}

// -----

func.func @bn_channels(%x: tensor<2x4x3x3xf32>, %s: tensor<3xf32>) {
  // expected-error @+2 {{batch norm operand must be tensor<4xf32>, got 'tensor<3xf32>'}}
  // expected-error @+1 {{failed to infer returned types}}
  %y:3 = blpa.batch_norm %x, %s, %s, %s, %s {epsilon = 1.0e-5 : f64, momentum = 0.9 : f64} : (tensor<2x4x3x3xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>) -> (tensor<2x4x3x3xf32>, tensor<4xf32>, tensor<4xf32>)
  return
}

// -----

func.func @avg_pool_dilations(%x: tensor<1x1x5x5xf32>) {
  // expected-error @+1 {{dilations must be 1 for average pooling}}
  %y = blpa.avg_pool %x {kernel_shape = array<i64: 2, 2>, strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 2, 1>} : (tensor<1x1x5x5xf32>) -> tensor<1x1x3x4xf32>
  return
}

// -----

func.func @max_pool_rank6(%x: tensor<1x1x2x2x2x2xf32>) {
  // expected-error @+2 {{pooling expects a rank-4 (NCHW) or rank-5 (NCDHW) input}}
  // expected-error @+1 {{failed to infer returned types}}
  %y = blpa.max_pool %x {kernel_shape = array<i64: 2, 2, 2, 2>, strides = array<i64: 1, 1, 1, 1>, pads = array<i64: 0, 0, 0, 0, 0, 0, 0, 0>} : (tensor<1x1x2x2x2x2xf32>) -> tensor<1x1x1x1x1x1xf32>
  return
}

// -----

func.func @max_pool_3d_default_dilations(%x: tensor<1x1x4x4x4xf32>) {
  // The default dilations are a 2-D pooling's: a 3-D one must give its own.
  // expected-error @+2 {{'dilations' must have 3 entries, got 2}}
  // expected-error @+1 {{failed to infer returned types}}
  %y = blpa.max_pool %x {kernel_shape = array<i64: 2, 2, 2>, strides = array<i64: 1, 1, 1>, pads = array<i64: 0, 0, 0, 0, 0, 0>} : (tensor<1x1x4x4x4xf32>) -> tensor<1x1x3x3x3xf32>
  return
}

// -----

func.func @bad_phase(%x: tensor<4xf32>) {
  // expected-error @+1 {{'blpa.phase' must be "forward", "backward" or "update"}}
  %y = blpa.relu %x {blpa.phase = "sideways"} : (tensor<4xf32>) -> tensor<4xf32>
  return
}

// -----

func.func @compute_in_update_phase(%x: tensor<4xf32>) {
  // expected-error @+1 {{only state updates belong to the update phase}}
  %y = blpa.relu %x {blpa.phase = "update"} : (tensor<4xf32>) -> tensor<4xf32>
  return
}

// -----

func.func @unknown_attribute(%x: tensor<4xf32>) {
  // expected-error @+1 {{unknown blpa attribute 'blpa.colour'}}
  %y = blpa.relu %x {blpa.colour = 1 : i64} : (tensor<4xf32>) -> tensor<4xf32>
  return
}

// -----

// expected-error @+1 {{packed codes have 1, 2, 4 or 8 bits, got 3}}
func.func @three_bit_codes(%c: !blpa.packed<4xi3, affine>) {
  return
}

// -----

// expected-error @+1 {{mask codes have 1 bit}}
func.func @wide_mask(%c: !blpa.packed<4xi4, mask>) {
  return
}

// -----

// expected-error @+1 {{unknown packed scheme 'log'; expected bn_relu, affine, nonneg, logprob, mask, argmax or region}}
func.func @unknown_scheme(%c: !blpa.packed<4xi4, log>) {
  return
}

// -----

// expected-error @+1 {{region codes have 1 or 2 bits}}
func.func @wide_region(%c: !blpa.packed<4xi4, region>) {
  return
}

// -----

func.func @region_of_sigmoid(%x: tensor<4x4xf32>) {
  // expected-error @+2 {{activation kind 0 has no region codes}}
  // expected-error @+1 {{failed to infer returned types}}
  %k = blpa.activation_region %x {kind = 0 : i64, alpha = 0.0 : f32, beta = 0.0 : f32} : (tensor<4x4xf32>) -> !blpa.packed<4x4xi1, region>
  return
}

// -----

func.func @region_width(%g: tensor<4x4xf32>, %k: !blpa.packed<4x4xi1, region>) {
  // expected-error @+2 {{activation_grad_region: expected codes '!blpa.packed<4x4xi2, region>', got '!blpa.packed<4x4xi1, region>'}}
  // expected-error @+1 {{failed to infer returned types}}
  %dx = blpa.activation_grad_region %g, %k {kind = 2 : i64, alpha = 0.0 : f32, beta = 0.0 : f32} : (tensor<4x4xf32>, !blpa.packed<4x4xi1, region>) -> tensor<4x4xf32>
  return
}

// -----

func.func @region_values(%g: tensor<4x4xf32>, %k: !blpa.packed<4x4xi2, region>) {
  // expected-error @+2 {{activation_grad_region: values of the grad's type are read by hard swish only}}
  // expected-error @+1 {{failed to infer returned types}}
  %dx = blpa.activation_grad_region %g, %k {kind = 2 : i64, alpha = 0.0 : f32, beta = 0.0 : f32} : (tensor<4x4xf32>, !blpa.packed<4x4xi2, region>) -> tensor<4x4xf32>
  return
}

// -----

func.func @quantize_scheme(%x: tensor<4x4xf32>) {
  // expected-error @+2 {{quantize scheme must be affine, nonneg or mask, got 'bn_relu'}}
  // expected-error @+1 {{failed to infer returned types}}
  %q:2 = blpa.quantize %x {bits = 4 : i64, scheme = "bn_relu"} : (tensor<4x4xf32>) -> (!blpa.packed<4x4xi4, bn_relu>, tensor<2x4xf32>)
  return
}

// -----

func.func @dequantize_mask_with_params(%c: !blpa.packed<4x4xi1, mask>, %p: tensor<2x4xf32>) {
  // expected-error @+2 {{dequantize takes [2, C] parameters exactly when the codes are not a mask}}
  // expected-error @+1 {{failed to infer returned types}}
  %y = blpa.dequantize %c, %p : (!blpa.packed<4x4xi1, mask>, tensor<2x4xf32>) -> tensor<4x4xf32>
  return
}

// -----

func.func @decode_wrong_codes(%c: !blpa.packed<2x3x4x4xi4, affine>, %s: tensor<3xf32>) {
  // expected-error @+2 {{expected bn_relu codes, got '!blpa.packed<2x3x4x4xi4, affine>'}}
  // expected-error @+1 {{failed to infer returned types}}
  %y = blpa.batch_norm_decode %c, %s, %s : (!blpa.packed<2x3x4x4xi4, affine>, tensor<3xf32>, tensor<3xf32>) -> tensor<2x3x4x4xf32>
  return
}

// -----

func.func @codes_shape(%dy: tensor<2x3x4x4xf32>, %c: !blpa.packed<2x3x4x5xi4, bn_relu>, %s: tensor<3xf32>) {
  // expected-error @+2 {{codes '!blpa.packed<2x3x4x5xi4, bn_relu>' do not match the tensor shape}}
  // expected-error @+1 {{failed to infer returned types}}
  %g:3 = blpa.batch_norm_grad_decode %dy, %c, %s, %s, %s : (tensor<2x3x4x4xf32>, !blpa.packed<2x3x4x5xi4, bn_relu>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>) -> (tensor<2x3x4x4xf32>, tensor<3xf32>, tensor<3xf32>)
  return
}

// -----

func.func @argmax_window(%x: tensor<1x1x20x20xf32>) {
  // expected-error @+2 {{argmax codes need a window of at most 256 positions}}
  // expected-error @+1 {{failed to infer returned types}}
  %p:2 = blpa.max_pool_argmax %x {kernel_shape = array<i64: 17, 17>, strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>} : (tensor<1x1x20x20xf32>) -> (tensor<1x1x4x4xf32>, !blpa.packed<1x1x4x4xi8, argmax>)
  return
}

// -----

func.func @fused_grad_types(%dy: tensor<2x3x4x5xf32>, %x: tensor<2x3x4x4xf32>, %s: tensor<3xf32>) {
  // expected-error @+2 {{batch_norm_relu_grad: grad and input types differ}}
  // expected-error @+1 {{failed to infer returned types}}
  %g:3 = blpa.batch_norm_relu_grad %dy, %x, %s, %s, %s, %s : (tensor<2x3x4x5xf32>, tensor<2x3x4x4xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>) -> (tensor<2x3x4x4xf32>, tensor<3xf32>, tensor<3xf32>)
  return
}

// -----

func.func @apply_channels(%x: tensor<2x3x4x4xf32>, %s: tensor<3xf32>, %m: tensor<4xf32>) {
  // expected-error @+2 {{batch norm operand}}
  // expected-error @+1 {{failed to infer returned types}}
  %y = blpa.batch_norm_apply %x, %s, %s, %m, %s {relu} : (tensor<2x3x4x4xf32>, tensor<3xf32>, tensor<3xf32>, tensor<4xf32>, tensor<3xf32>) -> tensor<2x3x4x4xf32>
  return
}

// -----

func.func @transpose_repeated_axis(%x: tensor<2x3x4xf32>) {
  // expected-error @+2 {{transpose: perm [0, 2, 2] is not a permutation of 0..2}}
  // expected-error @+1 {{failed to infer returned types}}
  %y = blpa.transpose %x {perm = array<i64: 0, 2, 2>} : (tensor<2x3x4xf32>) -> tensor<2x4x4xf32>
  return
}

// -----

func.func @transpose_axis_out_of_range(%x: tensor<2x3xf32>) {
  // expected-error @+2 {{transpose: perm [2, 0] is not a permutation of 0..1}}
  // expected-error @+1 {{failed to infer returned types}}
  %y = blpa.transpose %x {perm = array<i64: 2, 0>} : (tensor<2x3xf32>) -> tensor<3x2xf32>
  return
}

// -----

func.func @transpose_rank(%x: tensor<2x3xf32>) {
  // expected-error @+2 {{transpose: 3 perm entries for rank 2}}
  // expected-error @+1 {{failed to infer returned types}}
  %y = blpa.transpose %x {perm = array<i64: 1, 0, 2>} : (tensor<2x3xf32>) -> tensor<3x2xf32>
  return
}

// -----

func.func @transpose_result_type(%x: tensor<2x3x4xf32>) {
  // expected-error @+2 {{inferred type(s) 'tensor<4x2x3xf32>' are incompatible with return type(s) of operation 'tensor<2x4x3xf32>'}}
  // expected-error @+1 {{failed to infer returned types}}
  %y = blpa.transpose %x {perm = array<i64: 2, 0, 1>} : (tensor<2x3x4xf32>) -> tensor<2x4x3xf32>
  return
}

// -----

func.func @pad_reflect_too_large(%x: tensor<2x3xf32>) {
  // expected-error @+2 {{pad: reflect pads 3 and 0 of dimension 1 must be under its size 3}}
  // expected-error @+1 {{failed to infer returned types}}
  %y = blpa.pad %x {mode = "reflect", pads = array<i64: 0, 3, 0, 0>} : (tensor<2x3xf32>) -> tensor<2x6xf32>
  return
}

// -----

func.func @pad_edge_negative(%x: tensor<2x3xf32>) {
  // expected-error @+2 {{pad: edge pads of dimension 0 are negative}}
  // expected-error @+1 {{failed to infer returned types}}
  %y = blpa.pad %x {mode = "edge", pads = array<i64: -1, 0, 0, 0>} : (tensor<2x3xf32>) -> tensor<1x3xf32>
  return
}

// -----

func.func @pad_unknown_mode(%x: tensor<2x3xf32>) {
  // expected-error @+2 {{pad: unknown mode 'wrap'; expected constant, reflect or edge}}
  // expected-error @+1 {{failed to infer returned types}}
  %y = blpa.pad %x {mode = "wrap", pads = array<i64: 0, 1, 0, 0>} : (tensor<2x3xf32>) -> tensor<2x4xf32>
  return
}

// -----

func.func @pad_runtime_value_reflect(%x: tensor<2x3xf32>, %v: tensor<f32>) {
  // expected-error @+2 {{pad: a run-time value in reflect mode}}
  // expected-error @+1 {{failed to infer returned types}}
  %y = blpa.pad %x, %v {mode = "reflect", pads = array<i64: 0, 1, 0, 0>} : (tensor<2x3xf32>, tensor<f32>) -> tensor<2x4xf32>
  return
}

// -----

func.func @pad_grad_no_input(%dy: tensor<2x3xf32>) {
  // expected-error @+2 {{pad_grad: dimension 1 of size 0 would become 3}}
  // expected-error @+1 {{failed to infer returned types}}
  %dx = blpa.pad_grad %dy {mode = "edge", pads = array<i64: 0, 1, 0, 2>} : (tensor<2x3xf32>) -> tensor<2x0xf32>
  return
}

// -----

func.func @clip_bound_twice(%x: tensor<2x3xf32>, %lo: tensor<f32>) {
  // expected-error @+1 {{'blpa.clip' op has both a run-time min and min 0}}
  %y = blpa.clip %x min %lo {min = 0.0 : f32} : (tensor<2x3xf32>, tensor<f32>) -> tensor<2x3xf32>
  return
}

// -----

func.func @clip_bound_vector(%x: tensor<2x3xf32>, %hi: tensor<2xf32>) {
  // expected-error @+1 {{'blpa.clip' op runtime_max must have one element; it has type 'tensor<2xf32>'}}
  %y = blpa.clip %x max %hi : (tensor<2x3xf32>, tensor<2xf32>) -> tensor<2x3xf32>
  return
}

// -----

func.func @softmax_axis_out_of_range(%x: tensor<2x3xf32>) {
  // expected-error @+2 {{softmax: axis 2 is not a dimension of a rank-2 tensor}}
  // expected-error @+1 {{failed to infer returned types}}
  %y = blpa.softmax %x {axis = 2 : i64} : (tensor<2x3xf32>) -> tensor<2x3xf32>
  return
}

// -----

func.func @log_softmax_negative_axis(%x: tensor<2x3xf32>) {
  // expected-error @+2 {{log_softmax: axis -1 is not a dimension of a rank-2 tensor}}
  // expected-error @+1 {{failed to infer returned types}}
  %y = blpa.log_softmax %x {axis = -1 : i64} : (tensor<2x3xf32>) -> tensor<2x3xf32>
  return
}

// -----

func.func @softmax_grad_types(%g: tensor<2x3xf32>, %y: tensor<3x2xf32>) {
  // expected-error @+2 {{softmax_grad: grad and output types differ}}
  // expected-error @+1 {{failed to infer returned types}}
  %dx = blpa.softmax_grad %g, %y {axis = 1 : i64} : (tensor<2x3xf32>, tensor<3x2xf32>) -> tensor<2x3xf32>
  return
}

// -----

func.func @log_softmax_grad_axis(%g: tensor<2x3xf32>, %y: tensor<2x3xf32>) {
  // expected-error @+2 {{log_softmax_grad: axis 5 is not a dimension of a rank-2 tensor}}
  // expected-error @+1 {{failed to infer returned types}}
  %dx = blpa.log_softmax_grad %g, %y {axis = 5 : i64} : (tensor<2x3xf32>, tensor<2x3xf32>) -> tensor<2x3xf32>
  return
}

// -----

func.func @batch_matmul_batches(%a: tensor<2x3x4xf32>, %b: tensor<3x4x5xf32>) {
  // expected-error @+2 {{batch_matmul batches differ: 2 vs 3}}
  // expected-error @+1 {{failed to infer returned types}}
  %y = blpa.batch_matmul %a, %b : (tensor<2x3x4xf32>, tensor<3x4x5xf32>) -> tensor<2x3x5xf32>
  return
}

// -----

func.func @batch_matmul_inner(%a: tensor<2x3x4xf32>, %b: tensor<1x4x5xf32>) {
  // expected-error @+2 {{batch_matmul inner dimensions differ: 3 vs 4}}
  // expected-error @+1 {{failed to infer returned types}}
  %y = blpa.batch_matmul %a, %b {trans_a = true} : (tensor<2x3x4xf32>, tensor<1x4x5xf32>) -> tensor<2x4x5xf32>
  return
}

// -----

func.func @batch_matmul_rank(%a: tensor<3x4xf32>, %b: tensor<1x4x5xf32>) {
  // expected-error @+2 {{batch_matmul operand a must have rank 3, got 'tensor<3x4xf32>'}}
  // expected-error @+1 {{failed to infer returned types}}
  %y = blpa.batch_matmul %a, %b : (tensor<3x4xf32>, tensor<1x4x5xf32>) -> tensor<1x3x5xf32>
  return
}

// -----

func.func @layer_norm_scale_shape(%x: tensor<2x3x4xf32>, %s: tensor<3xf32>) -> tensor<2x3x4xf32> {
  // expected-error @+2 {{layer norm operand of type 'tensor<3xf32>' must have the normalized shape of 'tensor<2x3x4xf32>' from axis 2}}
  // expected-error @+1 {{failed to infer returned types}}
  %y, %m, %i = blpa.layer_norm %x, %s {axis = 2 : i64, epsilon = 1.0e-5 : f64} : (tensor<2x3x4xf32>, tensor<3xf32>) -> (tensor<2x3x4xf32>, tensor<6xf32>, tensor<6xf32>)
  return %y : tensor<2x3x4xf32>
}

// -----

func.func @layer_norm_axis(%x: tensor<2x3x4xf32>, %s: tensor<4xf32>) -> tensor<2x3x4xf32> {
  // expected-error @+2 {{layer norm axis 3 is out of range for rank 3}}
  // expected-error @+1 {{failed to infer returned types}}
  %y, %m, %i = blpa.layer_norm %x, %s {axis = 3 : i64, epsilon = 1.0e-5 : f64} : (tensor<2x3x4xf32>, tensor<4xf32>) -> (tensor<2x3x4xf32>, tensor<6xf32>, tensor<6xf32>)
  return %y : tensor<2x3x4xf32>
}

// -----

func.func @probability_codes_of_three_bits(%x: tensor<4x6xf32>) {
  // expected-error @+2 {{probability codes have 2, 4 or 8 bits, got 3}}
  // expected-error @+1 {{failed to infer returned types}}
  %c:2 = blpa.probability_encode %x {bits = 3 : i64} : (tensor<4x6xf32>) -> (!blpa.packed<4x6xi4, logprob>, tensor<4x2xf32>)
  return
}

// -----

// Codes of rows of 6 do not decode into rows of 4, although the elements
// are as many.
func.func @probability_decode_other_rows(%c: !blpa.packed<4x6xi4, logprob>, %p: tensor<4x2xf32>) {
  // expected-error @+2 {{probability_decode: codes '!blpa.packed<4x6xi4, logprob>' do not encode a 'tensor<6x4xf32>'; expected '!blpa.packed<6x4xi4, logprob>'}}
  // expected-error @+1 {{failed to infer returned types}}
  %y = blpa.probability_decode %c, %p {shape = array<i64: 6, 4>} : (!blpa.packed<4x6xi4, logprob>, tensor<4x2xf32>) -> tensor<6x4xf32>
  return
}

// -----

func.func @allreduce_wait_for_another_bucket(%g: tensor<30xf32>) {
  %s = blpa.allreduce_start %g {index = 0 : i64} : tensor<30xf32>
  // expected-error @+1 {{waits for bucket 1 but its operand is bucket 0}}
  %m = blpa.allreduce_wait %s {index = 1 : i64} : tensor<30xf32>
  return
}

// -----

func.func @allreduce_wait_without_start(%g: tensor<30xf32>) {
  // expected-error @+1 {{waits for a value no blpa.allreduce_start made}}
  %m = blpa.allreduce_wait %g {index = 0 : i64} : tensor<30xf32>
  return
}

// -----

// A bucket in flight is read by its wait alone: nothing else may touch it
// while the replicas sum it.
func.func @allreduce_bucket_read_in_flight(%g: tensor<30xf32>) {
  // expected-error @+1 {{must be read by exactly one blpa.allreduce_wait}}
  %s = blpa.allreduce_start %g {index = 0 : i64} : tensor<30xf32>
  %r = blpa.relu %s : (tensor<30xf32>) -> tensor<30xf32>
  %m = blpa.allreduce_wait %s {index = 0 : i64} : tensor<30xf32>
  return
}

// -----

func.func @allreduce_of_a_matrix(%g: tensor<5x6xf32>) {
  // expected-error @+1 {{must be 1D tensor of 32-bit float values}}
  %s = blpa.allreduce_start %g {index = 0 : i64} : tensor<5x6xf32>
  return
}
