"""Models shared by the demo, the tests and the benchmarks.

Each builder returns a torch.nn.Module; `export` writes it as ONNX in
training mode with a symbolic batch dimension, which is what users of blpa
hand to `blpa-opt`.

    PYTHONPATH=python /usr/bin/python3 -m blpa.models example-cnn -o out.onnx
"""

import argparse
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class ExampleCNN(nn.Module):
    """The bundled example for Fashion-MNIST (1x28x28, 10 classes): three
    conv-BN-ReLU stages, a max pool, a residual block, global average pooling
    and a linear classifier."""

    def __init__(self, width=32, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1,
                               bias=False)
        self.bn3 = nn.BatchNorm2d(2 * width)
        self.conv4 = nn.Conv2d(2 * width, 2 * width, 3, padding=1, bias=False)
        self.bn4 = nn.BatchNorm2d(2 * width)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        x = F.max_pool2d(x, 2)
        x = F.relu(self.bn3(self.conv3(x)))
        x = x + F.relu(self.bn4(self.conv4(x)))
        x = F.adaptive_avg_pool2d(x, 1)
        return self.fc(torch.flatten(x, 1))


class ResidualCNN(nn.Module):
    """Small residual CNN for gradient checks: conv (with bias, so a bias
    feeding batch norm has a zero true gradient), BN, ReLU, residual add, max
    pool, strided conv, global average pool, linear."""

    def __init__(self, in_channels=3, width=8, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1)
        self.bn3 = nn.BatchNorm2d(2 * width)
        self.fc = nn.Linear(2 * width, num_classes)
        # Non-trivial affine parameters, so the check exercises them.
        for bn in (self.bn1, self.bn2, self.bn3):
            nn.init.uniform_(bn.weight, 0.5, 1.5)
            nn.init.uniform_(bn.bias, -0.5, 0.5)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = x + F.relu(self.bn2(self.conv2(x)))
        x = F.max_pool2d(x, 2)
        x = F.relu(self.bn3(self.conv3(x)))
        x = F.adaptive_avg_pool2d(x, 1)
        return self.fc(torch.flatten(x, 1))


class Bottleneck(nn.Module):
    """Pre-activation bottleneck block (He et al. 2016): BN-ReLU-conv1x1,
    BN-ReLU-conv3x3, BN-ReLU-conv1x1, plus the (projected) shortcut."""

    def __init__(self, in_channels, mid, out, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, mid, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride=stride, padding=1,
                               bias=False)
        self.bn3 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, out, 1, bias=False)
        self.shortcut = None
        if stride != 1 or in_channels != out:
            self.shortcut = nn.Conv2d(in_channels, out, 1, stride=stride,
                                      bias=False)

    def forward(self, x):
        pre = F.relu(self.bn1(x))
        shortcut = self.shortcut(pre) if self.shortcut is not None else x
        y = self.conv1(pre)
        y = self.conv2(F.relu(self.bn2(y)))
        y = self.conv3(F.relu(self.bn3(y)))
        return y + shortcut


class PreActResNet(nn.Module):
    """The paper's CIFAR network family: depth 9n+2, three stages of n
    bottleneck blocks with (mid, out) widths, He-normal initialisation."""

    def __init__(self, depth=164, widths=((16, 64), (32, 128), (64, 256)),
                 in_channels=3, num_classes=10):
        super().__init__()
        if (depth - 2) % 9 != 0:
            raise ValueError("depth must be 9n+2, got %d" % depth)
        blocks = (depth - 2) // 9
        self.conv = nn.Conv2d(in_channels, widths[0][0], 3, padding=1,
                              bias=False)
        layers, channels = [], widths[0][0]
        for stage, (mid, out) in enumerate(widths):
            for i in range(blocks):
                stride = 2 if stage > 0 and i == 0 else 1
                layers.append(Bottleneck(channels, mid, out, stride))
                channels = out
        self.blocks = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(channels)
        self.fc = nn.Linear(channels, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out",
                                        nonlinearity="relu")

    def forward(self, x):
        x = self.blocks(self.conv(x))
        x = F.relu(self.bn(x))
        x = F.adaptive_avg_pool2d(x, 1)
        return self.fc(torch.flatten(x, 1))


def example_cnn(seed=0):
    torch.manual_seed(seed)
    return ExampleCNN()


def residual_cnn(seed=0, in_channels=3):
    torch.manual_seed(seed)
    return ResidualCNN(in_channels=in_channels)


def preact_resnet(depth=164, widths=((16, 64), (32, 128), (64, 256)),
                  in_channels=3, num_classes=10, seed=0):
    torch.manual_seed(seed)
    return PreActResNet(depth, widths, in_channels, num_classes)


def export(model, path, input_shape, training=True, opset=15):
    """Writes `model` as ONNX with a symbolic batch dimension ('batch'), in
    training mode (batch norms with training_mode=1) unless told otherwise.
    Returns the path."""
    mode = (torch.onnx.TrainingMode.TRAINING if training
            else torch.onnx.TrainingMode.EVAL)
    model.train(training)
    example = torch.randn(2, *input_shape[1:])
    torch.onnx.export(
        model, example, path, training=mode, do_constant_folding=False,
        opset_version=opset, input_names=["input"], output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    return path


_BUILDERS = {
    "example-cnn": (example_cnn, (1, 1, 28, 28)),
    "residual-cnn": (residual_cnn, (1, 3, 16, 16)),
    "preact-resnet": (preact_resnet, (1, 3, 32, 32)),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", choices=sorted(_BUILDERS))
    parser.add_argument("-o", "--output", required=True)
    parser.add_argument("--depth", type=int, default=164,
                        help="preact-resnet depth (9n+2)")
    parser.add_argument("--in-channels", type=int, default=None)
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--eval", action="store_true",
                        help="export in evaluation mode")
    args = parser.parse_args()
    builder, shape = _BUILDERS[args.model]
    channels = args.in_channels or shape[1]
    size = args.image_size or shape[2]
    kwargs = {}
    if args.model == "preact-resnet":
        kwargs = {"depth": args.depth, "in_channels": channels}
    elif args.model == "residual-cnn":
        kwargs = {"in_channels": channels}
    export(builder(**kwargs), args.output, (1, channels, size, size),
           training=not args.eval)


if __name__ == "__main__":
    main()
