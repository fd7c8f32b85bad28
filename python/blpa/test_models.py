"""Models for the compression tests: batch norms away from their initial
state, and a CNN whose saved tensors take every kind of code.

`models.export` writes them as ONNX like any other model."""

import torch
import torch.nn as nn
import torch.nn.functional as F

from blpa import models


def randomize_batch_norms(model, seed):
    """Gives every batch norm of `model` the state of a trained one: gammas
    of both signs (at least one negative per layer) and magnitudes 0.3 to
    1.5, betas with beta / |gamma| from -4.5 to 4.5 (beyond +-3 the codes'
    shift is clamped at 1 or at 2^K - 1 for K = 2, 4 and 8), and running
    statistics other than 0 and 1. Returns the model."""
    generator = torch.Generator().manual_seed(seed)

    def uniform(n, lo, hi):
        return lo + (hi - lo) * torch.rand(n, generator=generator)

    with torch.no_grad():
        for bn in model.modules():
            if not isinstance(bn, nn.modules.batchnorm._BatchNorm):
                continue
            c = bn.num_features
            sign = torch.where(torch.rand(c, generator=generator) < 0.5,
                               -1.0, 1.0)
            sign[0] = -1.0
            bn.weight.copy_(sign * uniform(c, 0.3, 1.5))
            bn.bias.copy_(bn.weight.abs() * uniform(c, -4.5, 4.5))
            bn.running_mean.copy_(uniform(c, -1.0, 1.0))
            bn.running_var.copy_(uniform(c, 0.5, 2.0))
    return model


class MixedCNN(nn.Module):
    """Each kind of saved-activation code once: BN -> ReLU -> max pool (the
    method's codes, argmax codes), a ReLU without batch norm read by the
    next conv's weight gradient (nonneg), a conv output read by the next
    conv's weight gradient (affine), a batch norm without ReLU read by a
    conv (its decoded output), and a ReLU only its own gradient reads
    (1-bit mask) before global average pooling and the classifier."""

    def __init__(self, in_channels=3, width=16, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.conv3 = nn.Conv2d(width, width, 3, padding=1)
        self.conv4 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv5 = nn.Conv2d(width, width, 3, padding=1)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x):
        h = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        h = self.conv3(F.relu(self.conv2(h)))
        h = self.bn2(self.conv4(h))
        h = F.relu(self.conv5(h))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1))


def mixed_cnn(seed=0, image_size=16):
    """MixedCNN with its batch norms randomized (input [N, 3, S, S])."""
    torch.manual_seed(seed)
    model = randomize_batch_norms(MixedCNN(), seed)
    model.input_shape = (1, 3, image_size, image_size)
    return model


def trained_like_preact_resnet(seed=0, depth=11, image_size=16):
    """models.preact_resnet with its batch norms randomized."""
    return randomize_batch_norms(
        models.preact_resnet(depth=depth, image_size=image_size, seed=seed),
        seed)
