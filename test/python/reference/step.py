"""One training step of a PyTorch model with blpa's compressed saved
activations, in float64 (see the package docstring for the rules)."""

import copy

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from . import codes

MIN_ELEMENTS = 4096  # smaller saved tensors stay exact

# Functions whose result is non-negative whatever their input, and those
# whose result is non-negative when their (first) input is.
_NONNEG = {F.relu, torch.relu, torch.Tensor.relu, torch.sigmoid,
           torch.Tensor.sigmoid, torch.softmax, F.softmax,
           torch.Tensor.softmax}
_KEEPS_NONNEG = {F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d,
                 F.adaptive_max_pool2d, torch.flatten, torch.Tensor.flatten,
                 torch.reshape, torch.Tensor.reshape, torch.Tensor.view}


def _storage(t):
    """The address of t's storage, shared by all views of it."""
    return t.storage().data_ptr()


def _key(t):
    """Identifies a tensor (and the view of it) among live tensors."""
    return (t.data_ptr(), tuple(t.shape), tuple(t.stride()))


class _Recorder(TorchFunctionMode):
    """Records, during the forward pass, what blpa keeps of each tensor:
    `approx[key]` is the tensor to give the backward pass instead (the
    batch-norm decodes), `exact` the keys kept exact, `nonneg` the keys known
    non-negative, `width[key]` the bits of a tensor's codes (0: exact) and
    `pinned` the keys whose width was chosen for their producer (coded
    however small); `constant` holds the storages of the parameters and the
    input, whose views (a transposed weight) stay exact too. Tensors are
    held so that their addresses stay unique.

    `widths` maps (function name, call index) -- ("relu", 1) is the second
    F.relu of the forward pass -- to the width its output gets, as
    blpa.act_choice gives a producer its own; other calls get `bits`."""

    def __init__(self, bits, widths=None):
        super().__init__()
        self.bits = bits
        self.widths = widths or {}
        self.calls = {}
        self.width, self.pinned = {}, set()
        self.approx, self.exact, self.nonneg = {}, set(), set()
        self.constant = set()
        self.held = []
        self.bn_outputs = {}  # key of y -> its BatchNormCodes
        self.last_linear = None  # (input key, output)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if not isinstance(out, torch.Tensor) or not args or \
                not isinstance(args[0], torch.Tensor):
            return out
        self.held += [args[0], out]
        name = getattr(func, "__name__", "")
        call = (name, self.calls.get(name, 0))
        self.calls[name] = call[1] + 1
        self.width[_key(out)] = self.widths.get(call, self.bits)
        if call in self.widths:
            self.pinned.add(_key(out))
        if func is F.batch_norm and self.width[_key(out)]:
            self._batch_norm(out, *args, **kwargs)
        elif func is F.linear:
            self.last_linear = (_key(args[0]), out)
        if func in (F.relu, torch.relu, torch.Tensor.relu) and \
                _key(args[0]) in self.bn_outputs:
            self.approx[_key(out)] = self.bn_outputs[_key(args[0])].relu()
        if func in _NONNEG or (func in _KEEPS_NONNEG and
                               _key(args[0]) in self.nonneg):
            self.nonneg.add(_key(out))
        return out

    def _batch_norm(self, y, x, running_mean, running_var, weight=None,
                    bias=None, training=False, momentum=0.1, eps=1e-5):
        if not training:
            return
        dims = [d for d in range(x.dim()) if d != 1]
        shape = codes.channel_shape(x)
        mean = x.detach().mean(dims).reshape(shape)
        s = torch.sqrt(x.detach().var(dims, unbiased=False).reshape(shape) +
                       eps)
        bn = codes.BatchNormCodes(y, weight, bias, self.width[_key(y)])
        self.bn_outputs[_key(y)] = bn
        self.approx[_key(y)] = bn.y()
        # Torch's backward normalizes its saved input with its saved mean
        # and inv_std: given this input it computes from xhat~.
        self.approx[_key(x)] = mean + bn.xhat() * s


def _replacement(recorder, t):
    """What the backward pass reads in place of saved tensor t."""
    key = _key(t)
    if key in recorder.approx:
        return recorder.approx[key].reshape(t.shape)
    if key in recorder.exact or _storage(t) in recorder.constant:
        return t
    # Indices (max pooling's, the labels), tensors without a width and small
    # tensors whose width is the default stay exact.
    bits = recorder.width.get(key, recorder.bits)
    if not t.is_floating_point() or not bits or (
            t.numel() < MIN_ELEMENTS and key not in recorder.pinned):
        return t
    if key in recorder.nonneg:
        return codes.nonneg(t.detach(), bits)
    return codes.affine(t.detach(), bits)


def reference_step(model, x, y, bits, widths=None):
    """(loss, {parameter name: gradient}) of one step of a float64 copy of
    `model` in training mode on batch x (numpy) with labels y, mean softmax
    cross-entropy, saved activations as blpa keeps them at `bits` (8, 4 or
    2; 0 for exact), except the outputs of the calls `widths` names
    ({(function name, call index): width}, as _Recorder)."""
    net = copy.deepcopy(model).double().train()
    net.zero_grad()
    inputs = torch.from_numpy(x).double()
    if not bits and not widths:
        loss = F.cross_entropy(net(inputs), torch.from_numpy(y))
    else:
        recorder = _Recorder(bits, widths)
        recorder.constant = {_storage(t) for t in
                             list(net.parameters()) + list(net.buffers()) +
                             [inputs]}

        def unpack(t):
            return _replacement(recorder, t)

        with torch.autograd.graph.saved_tensors_hooks(lambda t: t, unpack):
            with recorder:
                logits = net(inputs)
            # The last layer's input stays exact (unless a batch-norm
            # decode already serves it, as in blpa).
            key, out = recorder.last_linear or (None, None)
            if out is not None and out.data_ptr() == logits.data_ptr():
                recorder.exact.add(key)
            loss = F.cross_entropy(logits, torch.from_numpy(y))
    loss.backward()
    return loss.item(), {name: p.grad.numpy().copy()
                         for name, p in net.named_parameters()}
