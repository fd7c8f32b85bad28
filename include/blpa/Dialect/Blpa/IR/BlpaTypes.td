//===- BlpaTypes.td - blpa dialect types -------------------*- tablegen -*-===//

#ifndef BLPA_DIALECT_BLPA_IR_BLPATYPES_TD
#define BLPA_DIALECT_BLPA_IR_BLPATYPES_TD

include "blpa/Dialect/Blpa/IR/BlpaDialect.td"
include "mlir/IR/AttrTypeBase.td"

def Blpa_PackedType : TypeDef<Blpa_Dialect, "Packed"> {
  let mnemonic = "packed";
  let summary = "K-bit codes of a tensor, packed into bytes";
  let description = [{
    The compact copy of an activation that is kept for the backward pass:
    one `bits`-bit code per element of a tensor of shape `shape`, packed in
    row-major order, least significant bits first (docs/design.md, "Data
    layouts"), `ceil(numel * bits / 8)` bytes in all. `scheme` says how the
    codes were made and so how they decode:

    * `bn_relu`: the method's batch-norm codes of `y / |gamma|`, with the ReLU
      threshold on a bin boundary (decoded with the batch norm's scale and
      bias);
    * `affine`: a uniform grid over each channel's [min, max];
    * `nonneg`: a uniform grid over each channel's (0, max], zero exact;
    * `mask`: one bit, `x > 0`;
    * `argmax`: the position of each max-pool window's maximum.

    Written `!blpa.packed<8x16x32x32xi4, bn_relu>`: the shape and the code
    width as a tensor-like `NxMx..xiK`, then the scheme.
  }];
  let parameters = (ins ArrayRefParameter<"int64_t">:$shape, "unsigned":$bits,
                        StringRefParameter<"the encoding scheme">:$scheme);
  let hasCustomAssemblyFormat = 1;
  let genVerifyDecl = 1;
  let extraClassDeclaration = [{
    int64_t getNumElements() const;
    /// Bytes of the packed codes: ceil(numel * bits / 8).
    int64_t getNumBytes() const;
  }];
}

#endif // BLPA_DIALECT_BLPA_IR_BLPATYPES_TD
