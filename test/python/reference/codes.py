"""The codes blpa keeps of saved activations, restated in float64 torch
from their specification (see the package docstring). Every function
takes and returns float64 tensors; per-channel constants broadcast over
[N, C, ...]."""

import torch


def channel_shape(x):
    """The shape that broadcasts a per-channel [C] vector over x (dim 1)."""
    return (1, -1) + (1,) * (x.dim() - 2)


class BatchNormCodes:
    """The method's K-bit codes of a training batch norm's output y."""

    def __init__(self, y, gamma, beta, bits):
        shape = channel_shape(y)
        gamma = gamma.detach().double().reshape(shape)
        beta = beta.detach().double().reshape(shape)
        if bool((gamma == 0).any()):
            raise ValueError("the reference does not restate gamma == 0")
        self.bits, self.max_code = bits, 2 ** bits - 1
        self.w = 6.0 / 2 ** bits
        self.a, self.sgn = gamma.abs(), torch.sign(gamma)
        self.t = beta / self.a
        self.shift = torch.clamp(2 ** (bits - 1) - torch.floor(self.t / self.w),
                                 1, self.max_code)
        u = y.detach() / self.a
        positive = torch.minimum(self.shift + torch.floor(u / self.w),
                                 torch.tensor(float(self.max_code)))
        other = torch.clamp(self.shift - 1 - torch.floor(-u / self.w), min=0)
        self.q = torch.where(y > 0, positive, other)

    def centre(self):
        """u~, the centre of each element's bin."""
        return (self.q - self.shift + 0.5) * self.w

    def y(self):
        return self.a * self.centre()

    def relu(self):
        """z~ = relu(y~): zero exactly where the mask q >= shift fails."""
        return torch.where(self.q >= self.shift, self.y(),
                           torch.zeros((), dtype=torch.float64))

    def xhat(self):
        return self.sgn * (self.centre() - self.t)


def channel_view(x):
    """x as [N, C, rest] (rank 2: rest 1; rank < 2: one channel)."""
    if x.dim() < 2:
        return x.reshape(1, 1, -1)
    return x.reshape(x.shape[0], x.shape[1], -1)


def affine(x, bits):
    """Decoded affine codes: per channel lo, hi = min, max, step =
    (hi - lo) / L, q = clamp(round(x - lo) / step), 0, L) ties to even
    (0 when step is 0), decoded lo + q step."""
    view = channel_view(x)
    lo = view.amin((0, 2), keepdim=True)
    step = (view.amax((0, 2), keepdim=True) - lo) / (2 ** bits - 1)
    safe = torch.where(step > 0, step, torch.ones_like(step))
    q = torch.clamp(torch.round((view - lo) / safe), 0, 2 ** bits - 1)
    q = torch.where(step > 0, q, torch.zeros_like(q))
    return (lo + q * step).reshape(x.shape)


def nonneg(x, bits):
    """Decoded nonneg codes of x >= 0: step = max / L, q = x > 0 ?
    clamp(ceil(x / step), 1, L) : 0, decoded q ? (q - 0.5) step : 0."""
    view = channel_view(x)
    step = view.amax((0, 2), keepdim=True).clamp(min=0) / (2 ** bits - 1)
    safe = torch.where(step > 0, step, torch.ones_like(step))
    q = torch.clamp(torch.ceil(view / safe), 1, 2 ** bits - 1)
    q = torch.where(view > 0, q, torch.zeros_like(q))
    return torch.where(q > 0, (q - 0.5) * step,
                       torch.zeros_like(view)).reshape(x.shape)
