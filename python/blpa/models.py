"""Models shared by the demo, the tests and the benchmarks.

Each builder returns a torch.nn.Module; `export` writes it as ONNX in
training mode with a symbolic batch dimension, which is what users of blpa
hand to `blpa-opt`.

    PYTHONPATH=python /usr/bin/python3 -m blpa.models example-cnn -o out.onnx
"""

import argparse
import math
import warnings

import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import numpy_helper


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


def _with_input_shape(model, channels, size):
    """Records the single-example input shape `export` uses by default."""
    model.input_shape = (1, channels, size, size)
    return model


def example_cnn(seed=0, num_classes=10):
    """The bundled Fashion-MNIST example (input [N, 1, 28, 28])."""
    torch.manual_seed(seed)
    return _with_input_shape(ExampleCNN(num_classes=num_classes), 1, 28)


def residual_cnn(seed=0, in_channels=3, image_size=16, num_classes=10):
    """The gradient-check model (any image size; 16x16 by default)."""
    torch.manual_seed(seed)
    return _with_input_shape(
        ResidualCNN(in_channels=in_channels, num_classes=num_classes),
        in_channels, image_size)


def preact_resnet(depth=164, widths=((16, 64), (32, 128), (64, 256)),
                  in_channels=3, num_classes=10, image_size=32, seed=0):
    """The paper's pre-activation bottleneck ResNet (depth 9n+2; 164 is
    ResNet-164) for image_size x image_size inputs."""
    torch.manual_seed(seed)
    return _with_input_shape(
        PreActResNet(depth, widths, in_channels, num_classes), in_channels,
        image_size)


def vision_transformer(seed=0, in_channels=3, image_size=32, num_classes=10,
                       patch_size=4, layers=4, width=128, heads=4,
                       mlp_width=512):
    """torchvision's VisionTransformer (issue 18's example: 32x32 input,
    patch 4, 4 layers, width 128, 4 heads, no dropout), its patch
    projection rebuilt for `in_channels` (Fashion-MNIST's 1 channel).
    torchvision initializes the head to zeros, as here. Export it with
    opset >= 17 for LayerNormalization nodes (15 writes them op by op)."""
    from torchvision.models import VisionTransformer
    torch.manual_seed(seed)
    model = VisionTransformer(
        image_size=image_size, patch_size=patch_size, num_layers=layers,
        num_heads=heads, hidden_dim=width, mlp_dim=mlp_width,
        num_classes=num_classes, dropout=0.0, attention_dropout=0.0)
    if in_channels != 3:
        model.conv_proj = nn.Conv2d(in_channels, width, patch_size,
                                    stride=patch_size)
    return _with_input_shape(model, in_channels, image_size)


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention under a causal mask, written out as GPT-2
    is: one projection to queries, keys and values, the scores masked by
    the upper triangle of -inf (torch.triu, exported as Trilu) and a
    softmax over the keys."""

    def __init__(self, width, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x):
        batch, steps, width = x.shape
        head = width // self.heads
        q, k, v = self.qkv(x).split(width, dim=2)
        q, k, v = (t.reshape(batch, steps, self.heads, head).transpose(1, 2)
                   for t in (q, k, v))
        scores = q @ k.transpose(-2, -1) * (1.0 / math.sqrt(head))
        mask = torch.triu(torch.full((steps, steps), float("-inf")),
                          diagonal=1)
        attention = torch.softmax(scores + mask, dim=-1)
        y = (attention @ v).transpose(1, 2).reshape(batch, steps, width)
        return self.proj(y)


class DecoderBlock(nn.Module):
    """A pre-norm GPT block: attention and a GELU MLP (4x wide), each in a
    residual branch behind a layer norm."""

    def __init__(self, width, heads):
        super().__init__()
        self.ln1 = nn.LayerNorm(width)
        self.attention = CausalSelfAttention(width, heads)
        self.ln2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(),
                                 nn.Linear(4 * width, width))

    def forward(self, x):
        x = x + self.attention(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """A GPT-style decoder over token ids [N, context]: token embeddings
    (an ONNX Gather of a trainable table) plus learned positions, pre-norm
    blocks, a final layer norm and a linear head to next-token logits
    [N, context, vocab]. Positions are a parameter of the full context, so
    the model reads exactly `context` tokens, as its executable does."""

    def __init__(self, vocab, context, layers, width, heads, tied=False):
        super().__init__()
        self.context = context
        self.vocab = vocab
        self.tokens = nn.Embedding(vocab, width)
        self.positions = nn.Parameter(torch.zeros(1, context, width))
        self.blocks = nn.Sequential(
            *[DecoderBlock(width, heads) for _ in range(layers)])
        self.ln = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab, bias=False)
        # GPT-2's initialization.
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.positions, std=0.02)
        if tied:
            # One table for the input embedding and the output head (GPT-2's
            # tying): its gradient sums both uses.
            self.head.weight = self.tokens.weight

    def forward(self, ids):
        x = self.tokens(ids) + self.positions
        return self.head(self.ln(self.blocks(x)))

    def example(self, batch):
        """Token ids to trace the export with."""
        return torch.randint(0, self.vocab, (batch, self.context))


def gpt(seed=0, vocab=256, context=128, layers=4, width=128, heads=4,
        tied=False):
    """Issue 18's language model: byte vocabulary, context 128, 4 layers,
    width 128, 4 heads, untied embeddings (`tied`: the head reuses the
    token table). Export it with opset 17."""
    torch.manual_seed(seed)
    model = GPT(vocab, context, layers, width, heads, tied)
    model.input_shape = (1, context)
    return model


def export(model, path, input_shape=None, training=True, opset=15):
    """Writes `model` as ONNX with a symbolic batch dimension ('batch'), in
    training mode (batch norms with training_mode=1) unless told otherwise.
    `input_shape` is one example's shape with a leading batch entry (its
    value is ignored); it defaults to the builder's `model.input_shape`.
    Returns the path.

    Tracing in training mode runs the model once, which would move its
    batch-norm running statistics towards the random example's; they are
    restored, and the file carries the model's statistics as they were."""
    if input_shape is None:
        input_shape = model.input_shape
    mode = (torch.onnx.TrainingMode.TRAINING if training
            else torch.onnx.TrainingMode.EVAL)
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    model.train(training)
    example = (model.example(2) if hasattr(model, "example")
               else torch.randn(2, *input_shape[1:]))
    with warnings.catch_warnings():
        # "Removing mutation from node aten::add_ on ... num_batches_tracked"
        # is expected: the counter has no ONNX equivalent.
        warnings.filterwarnings("ignore", message=".*num_batches_tracked")
        # Batch norm's batch-size sanity check is traced as a constant; the
        # exported graph does not contain it.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(
            model, example, path, training=mode, do_constant_folding=False,
            opset_version=opset, input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    with torch.no_grad():
        for name, b in model.named_buffers():
            b.copy_(buffers[name])
    _set_initializers(path, buffers)
    return path


def _set_initializers(path, values):
    """Rewrites the initializers of the ONNX file at `path` that are named
    in `values` (name -> tensor)."""
    proto = onnx.load(path)
    changed = False
    for init in proto.graph.initializer:
        if init.name in values:
            array = values[init.name].detach().numpy()
            init.CopyFrom(numpy_helper.from_array(
                array.astype(numpy_helper.to_array(init).dtype), init.name))
            changed = True
    if changed:
        onnx.save(proto, path)


_BUILDERS = {
    "example-cnn": example_cnn,
    "residual-cnn": residual_cnn,
    "preact-resnet": preact_resnet,
    "vit": vision_transformer,
    "gpt": gpt,
}


def _builder_options(args):
    """The builder keyword arguments the command line set."""
    if args.model == "gpt":
        return {"seed": args.seed}
    options = {"seed": args.seed, "num_classes": args.num_classes}
    if args.model == "preact-resnet":
        options["depth"] = args.depth
    if args.model != "example-cnn":
        for key in ("in_channels", "image_size"):
            if getattr(args, key) is not None:
                options[key] = getattr(args, key)
    return options


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", choices=sorted(_BUILDERS))
    parser.add_argument("-o", "--output", required=True)
    parser.add_argument("--depth", type=int, default=164,
                        help="preact-resnet depth (9n+2; default 164)")
    parser.add_argument("--in-channels", type=int, default=None,
                        help="residual-cnn / preact-resnet / vit input channels")
    parser.add_argument("--image-size", type=int, default=None,
                        help="residual-cnn / preact-resnet / vit image size")
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the initial weights")
    parser.add_argument("--eval", action="store_true",
                        help="export in evaluation mode")
    parser.add_argument("--opset", type=int, default=None,
                        help="ONNX opset (default 15; 17 for vit and gpt)")
    args = parser.parse_args(argv)
    opset = args.opset or (17 if args.model in ("vit", "gpt") else 15)
    export(_BUILDERS[args.model](**_builder_options(args)), args.output,
           training=not args.eval, opset=opset)


if __name__ == "__main__":
    main()
