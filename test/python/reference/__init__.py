"""An independent float64 restatement of blpa's activation compression, for
the tests to compare blpa's --check-step gradients with.

Nothing here calls blpa: the rules are restated from their specification
(docs/design.md "Activation compression", the code formulas documented in
include/blpa/Runtime/Runtime.h, and the method, /work/shared/blpa-method.md
in the project's notes: Chakrabarti & Moseley, NeurIPS 2019) and applied to
a PyTorch model in float64 with autograd's saved-tensor hooks.

`codes` restates the encoders and decoders:
  * the method's batch-norm codes: per channel a = |gamma|, sgn =
    sign(gamma), t = beta / a, w = 6 / 2^K, u = y / a,
    shift = clamp(2^(K-1) - floor(t / w), 1, 2^K - 1); a positive y gets
    q = min(shift + floor(u / w), 2^K - 1), any other
    q = max(shift - 1 - floor(-u / w), 0) (the paper's
    floor((u - 1e-6) / w) + shift, binned on the sign of y so that the
    ReLU mask q >= shift is exact); decoded at the bin centre
    u~ = (q - shift + 0.5) w: y~ = a u~, xhat~ = sgn (u~ - t),
    z~ = relu(y~) (zero exactly where q < shift);
  * the generic per-channel quantizers over the [N, C, rest] view (channel
    = dim 1, rank 2 has rest 1): affine over the channel's [min, max]
    (round half to even, decoded lo + q step) and nonneg for tensors known
    to be non-negative (lo = 0, code 0 for zero alone, positives
    ceil(x / step) clamped to [1, L], decoded at (q - 0.5) step).

`step` restates which saved tensor gets what (blpa's
--blpa-compress-activations policy):
  * a training batch norm keeps the codes of its output y: its backward
    gets xhat~ in place of its input (torch's batch-norm backward is then
    the method's dgamma = sum(dy xhat~), dx = gamma / s (dy - mean(dy) -
    xhat~ mean(dy xhat~)); dbeta = sum(dy) is exact), and every reader of
    y, or of relu(y), gets y~ or z~ (so the conv weight gradients read z~
    and the ReLU's backward the exact mask);
  * parameters, the network input and the input of the last layer (the
    Linear that makes the logits) stay exact, and so does any other saved
    tensor of fewer than 4096 elements;
  * any other saved tensor is quantized per channel: nonneg when it is
    known non-negative (the output of a ReLU, a sigmoid or a softmax, or a
    pooling, flatten or reshape of such a tensor), affine otherwise.
blpa keeps a ReLU output that only the ReLU's own gradient reads as a
1-bit mask; torch's ReLU backward reads only the sign of what it saved,
which the nonneg codes keep exactly, so the gradients are the same. Max
pooling keeps its argmax in both (torch saves the indices); pooling
backwards read only the shape of their saved input.

Per-tensor widths (blpa.act_choice, blpa-opt --act-policy NODE=8|4|2):
reference_step's `widths` gives the output of one call of the forward
pass, named (function name, call index) -- ("relu", 1) is the second
F.relu --, its own width, which it keeps however small (0: exact); a batch
norm's width is that of its codes; every other tensor takes `bits` (0:
exact, as blpa leaves the ops without a choice at --act-bits 0).

Scope: models whose forward is built from Conv, BatchNorm (training mode,
non-inplace), F.relu, pooling, residual adds, flatten and Linear, with the
network's input as the only input.
"""

from .step import reference_step  # noqa: F401
