"""Example models used by the demo, the tests and the benchmarks.

Every factory returns ``(module, example_inputs)`` so it can be given to the CLI as
``examples/models.py:<factory>`` or to :func:`sparseforge.load`.

* ``transformer_encoder``: a stack of ``torch.nn.TransformerEncoderLayer`` (small, for the demo and tests).
* ``bert_encoder``: a 12-layer BERT-base-shaped encoder (hidden 768, 12 heads, FFN 3072), for benchmarks.
* ``structured_mlp``: an MLP whose weights have structure beyond zeros: a low-rank adapter merged on a zero base
  (rank 16) and a grouped (block-diagonal, 4 groups) projection, as trained adapters and grouped layers leave them.
* ``hyena``: a Hyena-style long-convolution model (gated projections, a short depthwise conv, and a causal
  depthwise convolution as long as the sequence whose filter an implicit MLP generates), as Hyena/H3 layers are at
  inference time.
* ``transformer_dead_heads``: ``transformer_encoder`` after head pruning: value rows of heads 1 and 2 zero in layer
  0, output-projection columns of head 3 zero in layer 1 (the heads ShrinkChannels removes).
* ``mobilenetv2``: a MobileNetV2-style CNN (inverted residuals, depthwise 3x3, 1x1 expand/project, BatchNorm,
  ReLU6), ``width`` scales the channels.
* ``resnet18`` / ``small_resnet``: ResNet-18 (torchvision's architecture, defined here: basic blocks of two 3x3
  convolutions, stride-2 3x3 and 1x1 downsampling, a 7x7 stride-2 stem) and a reduced one for tests.
* ``gpt2``: GPT-2 (Radford et al. 2019) as Hugging Face's ``GPT2LMHeadModel`` computes it, defined here from
  its config (12 layers, hidden 768, 12 heads, GELU-tanh MLP, pre-LayerNorm, causal attention with the fused
  ``c_attn`` projection, tied LM head); input: token ids ``[batch, seq]``.
* ``mobilenetv3_small`` / ``efficientnet_b0``: torchvision's MobileNetV3-Small and EfficientNet-B0 architectures,
  defined here (inverted residuals with 3x3/5x5 depthwise convolutions, squeeze-and-excitation, Hardswish/SiLU),
  because PyPI's torchvision wheel expects the CUDA build of torch.
"""

from __future__ import annotations

import torch
from torch import nn


def _seeded(seed: int) -> None:
    torch.manual_seed(seed)


class TransformerEncoderModel(nn.Module):
    """``TransformerEncoderLayer`` stack with a final LayerNorm; input ``[batch, seq, d_model]``."""

    def __init__(self, d_model: int, nhead: int, dim_ff: int, layers: int, activation: str = "gelu"):
        super().__init__()
        layer = nn.TransformerEncoderLayer(
            d_model, nhead, dim_ff, dropout=0.0, activation=activation, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.encoder(x))


def transformer_encoder(
    d_model: int = 128, nhead: int = 4, dim_ff: int = 512, layers: int = 2, seq: int = 32, batch: int = 1,
    seed: int = 0,
):
    """Small Transformer encoder (2 layers, d_model 128, FFN 512) for the demo and tests."""
    _seeded(seed)
    model = TransformerEncoderModel(d_model, nhead, dim_ff, layers).eval()
    return model, (torch.randn(batch, seq, d_model),)


def transformer_dead_heads(seq: int = 32, batch: int = 1, seed: int = 0):
    """``transformer_encoder`` (4 heads of 32) with three heads pruned the way head pruning leaves them."""
    model, inputs = transformer_encoder(seq=seq, batch=batch, seed=seed)
    d_model, head = 128, 32
    with torch.no_grad():
        first = model.encoder.layers[0].self_attn
        rows = slice(2 * d_model + head, 2 * d_model + 3 * head)  # V rows of heads 1 and 2 in the fused in_proj
        first.in_proj_weight[rows] = 0
        first.in_proj_bias[rows] = 0
        model.encoder.layers[1].self_attn.out_proj.weight[:, 3 * head:] = 0  # head 3 is never read
    return model, inputs


def bert_encoder(seq: int = 128, batch: int = 1, layers: int = 12, seed: int = 0):
    """BERT-base-shaped encoder: 12 layers, hidden 768, 12 heads, FFN 3072, GELU."""
    _seeded(seed)
    model = TransformerEncoderModel(768, 12, 3072, layers).eval()
    return model, (torch.randn(batch, seq, 768),)


def _make_divisible(v: float, divisor: int = 8) -> int:
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class ConvBNReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1):
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU6(inplace=False),
        )


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        self.use_res = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(ConvBNReLU(cin, hidden, kernel=1))
        layers += [
            ConvBNReLU(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return x + y if self.use_res else y


class MobileNetV2(nn.Module):
    """MobileNetV2 (Sandler et al. 2018) layout; ``width`` multiplies every channel count."""

    SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                (6, 320, 1, 1)]

    def __init__(self, width: float = 1.0, num_classes: int = 1000, settings=None):
        super().__init__()
        cin = _make_divisible(32 * width)
        last = _make_divisible(1280 * max(1.0, width))
        feats: list[nn.Module] = [ConvBNReLU(3, cin, stride=2)]
        for t, c, n, s in settings or self.SETTINGS:
            cout = _make_divisible(c * width)
            for i in range(n):
                feats.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        feats.append(ConvBNReLU(cin, last, kernel=1))
        self.features = nn.Sequential(*feats)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(last, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def _randomize_bn(model: nn.Module) -> None:
    """Give BatchNorm layers non-trivial statistics, as in a trained network."""
    g = torch.Generator().manual_seed(1234)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)


def mobilenetv2(width: float = 1.0, resolution: int = 224, batch: int = 1, num_classes: int = 1000, seed: int = 0):
    """Full MobileNetV2 at 224x224 (the benchmark model)."""
    _seeded(seed)
    model = MobileNetV2(width, num_classes)
    _randomize_bn(model)
    return model.eval(), (torch.randn(batch, 3, resolution, resolution),)


def small_cnn(seed: int = 0):
    """A reduced MobileNetV2 (width 0.5, 96x96, fewer blocks, 100 classes) for the demo and tests."""
    _seeded(seed)
    settings = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 2, 2), (6, 64, 2, 2)]
    model = MobileNetV2(0.5, 100, settings)
    _randomize_bn(model)
    return model.eval(), (torch.randn(1, 3, 96, 96),)


class StructuredMLP(nn.Module):
    """``x -> LoRA-merged Linear (rank 16) -> GELU -> grouped Linear (4 groups) -> GELU -> Linear``."""

    def __init__(self, width: int = 512, rank: int = 16, groups: int = 4, classes: int = 10):
        super().__init__()
        self.adapter = nn.Linear(width, width)
        self.grouped = nn.Linear(width, width)
        self.head = nn.Linear(width, classes)
        with torch.no_grad():
            # an adapter merged on a zero base: W = B @ A, rank 16
            self.adapter.weight.copy_(torch.randn(width, rank) @ torch.randn(rank, width) / width)
            # a grouped layer written as one Linear: block-diagonal, its channels shuffled as pruning leaves them
            mask = torch.block_diag(*[torch.ones(width // groups, width // groups) for _ in range(groups)])
            perm_out, perm_in = torch.randperm(width), torch.randperm(width)
            self.grouped.weight.mul_(mask[perm_out][:, perm_in])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.nn.functional.gelu(self.grouped(torch.nn.functional.gelu(self.adapter(x)))))


def structured_mlp(batch: int = 8, width: int = 512, seed: int = 0):
    """An MLP with a rank-16 merged adapter and a 4-group block-diagonal layer (for the structured-forms demo)."""
    _seeded(seed)
    model = StructuredMLP(width).eval()
    return model, (torch.randn(batch, width),)


class HyenaOperator(nn.Module):
    """One order-2 Hyena operator on ``[batch, channels, seq]``: ``out(x1 * long(x2 * short(v)))``.

    The long filter ``h [channels, 1, seq]`` comes from an implicit filter (sine positional features -> MLP with
    sine activations -> exponential decay per channel), evaluated once: at inference it is a constant, which the
    export carries as the weight of a causal depthwise ``Conv1d`` (``F.pad`` left by ``seq - 1``).
    """

    def __init__(self, channels: int, seq: int, filter_hidden: int = 32):
        super().__init__()
        self.seq = seq
        self.in_proj = nn.Conv1d(channels, 3 * channels, 1)
        self.short = nn.Conv1d(3 * channels, 3 * channels, 3, padding=2, groups=3 * channels)
        self.out_proj = nn.Conv1d(channels, channels, 1)
        t = torch.linspace(0, 1, seq)[:, None]
        bands = torch.arange(1, 9, dtype=torch.float32)[None, :]
        features = torch.cat([t, torch.sin(2 * torch.pi * bands * t), torch.cos(2 * torch.pi * bands * t)], dim=1)
        mlp = nn.Sequential(nn.Linear(features.shape[1], filter_hidden), nn.Linear(filter_hidden, channels))
        with torch.no_grad():
            h = mlp[1](torch.sin(mlp[0](features))).T  # [channels, seq]
            decay = torch.exp(-t.T * torch.linspace(2, 12, channels)[:, None])
            self.filter = nn.Parameter((h * decay / seq ** 0.5)[:, None, :], requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v, x1, x2 = self.short(self.in_proj(x))[..., : self.seq].chunk(3, dim=1)
        z = nn.functional.pad(x2 * v, (self.seq - 1, 0))
        z = nn.functional.conv1d(z, self.filter, groups=z.shape[1])
        return self.out_proj(x1 * z)


class HyenaModel(nn.Module):
    """``layers`` Hyena operators with residuals and LayerNorm over channels; input ``[batch, channels, seq]``."""

    def __init__(self, channels: int, seq: int, layers: int):
        super().__init__()
        self.blocks = nn.ModuleList(HyenaOperator(channels, seq) for _ in range(layers))
        self.norms = nn.ModuleList(nn.GroupNorm(1, channels) for _ in range(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block, norm in zip(self.blocks, self.norms):
            x = x + block(norm(x))
        return x


def hyena(channels: int = 128, seq: int = 2048, layers: int = 2, batch: int = 1, seed: int = 0):
    """A small Hyena-style long-convolution model (2 order-2 operators, 128 channels, sequence 2048)."""
    _seeded(seed)
    model = HyenaModel(channels, seq, layers).eval()
    return model, (torch.randn(batch, channels, seq),)


class BasicBlock(nn.Module):
    """ResNet basic block: 3x3 conv-BN-ReLU, 3x3 conv-BN, identity or 1x1 stride-s projection, add, ReLU."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + (x if self.down is None else self.down(x)))


class ResNet(nn.Module):
    """ResNet with basic blocks (``blocks`` per stage, ``widths`` channels per stage)."""

    def __init__(self, blocks=(2, 2, 2, 2), widths=(64, 128, 256, 512), num_classes: int = 1000):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 7, 2, 3, bias=False), nn.BatchNorm2d(widths[0]),
                                  nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        layers, cin = [], widths[0]
        for i, (count, width) in enumerate(zip(blocks, widths)):
            for j in range(count):
                layers.append(BasicBlock(cin, width, 2 if (j == 0 and i > 0) else 1))
                cin = width
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        y = self.layers(self.stem(x))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(y, 1), 1))


def resnet18(resolution: int = 224, batch: int = 1, num_classes: int = 1000, seed: int = 0):
    """ResNet-18 at 224x224 (the benchmark model)."""
    _seeded(seed)
    model = ResNet(num_classes=num_classes)
    _randomize_bn(model)
    return model.eval(), (torch.randn(batch, 3, resolution, resolution),)


def small_resnet(seed: int = 0):
    """A reduced ResNet (one block per stage, widths 16-64, 48x48, 10 classes) for tests."""
    _seeded(seed)
    model = ResNet((1, 1, 1), (16, 32, 64), num_classes=10)
    _randomize_bn(model)
    return model.eval(), (torch.randn(1, 3, 48, 48),)


class SqueezeExcitation(nn.Module):
    """``x * gate(fc2(act(fc1(avgpool(x)))))`` with 1x1 convolutions as the two fully connected layers."""

    def __init__(self, channels: int, squeeze: int, activation: type[nn.Module], gate: type[nn.Module]):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.act = activation()
        self.gate = gate()

    def forward(self, x):
        s = nn.functional.adaptive_avg_pool2d(x, 1)
        return x * self.gate(self.fc2(self.act(self.fc1(s))))


def _conv_bn_act(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1,
                 activation: type[nn.Module] | None = None) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
                               nn.BatchNorm2d(cout)]
    if activation is not None:
        layers.append(activation())
    return nn.Sequential(*layers)


class MBConv(nn.Module):
    """Inverted residual of MobileNetV3 / EfficientNet: 1x1 expansion, k x k depthwise, optional SE, 1x1 projection."""

    def __init__(self, cin: int, kernel: int, hidden: int, cout: int, stride: int, activation: type[nn.Module],
                 se_squeeze: int | None, se_activation: type[nn.Module], se_gate: type[nn.Module]):
        super().__init__()
        self.use_res = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if hidden != cin:
            layers.append(_conv_bn_act(cin, hidden, 1, activation=activation))
        layers.append(_conv_bn_act(hidden, hidden, kernel, stride, groups=hidden, activation=activation))
        if se_squeeze:
            layers.append(SqueezeExcitation(hidden, se_squeeze, se_activation, se_gate))
        layers.append(_conv_bn_act(hidden, cout, 1))
        self.block = nn.Sequential(*layers)

    def forward(self, x):
        y = self.block(x)
        return x + y if self.use_res else y


class MobileNetV3Small(nn.Module):
    """torchvision's ``mobilenet_v3_small`` layout (Howard et al. 2019)."""

    #: (input, kernel, expanded, output, SE, Hardswish, stride)
    SETTINGS = [(16, 3, 16, 16, True, False, 2), (16, 3, 72, 24, False, False, 2), (24, 3, 88, 24, False, False, 1),
                (24, 5, 96, 40, True, True, 2), (40, 5, 240, 40, True, True, 1), (40, 5, 240, 40, True, True, 1),
                (40, 5, 120, 48, True, True, 1), (48, 5, 144, 48, True, True, 1), (48, 5, 288, 96, True, True, 2),
                (96, 5, 576, 96, True, True, 1), (96, 5, 576, 96, True, True, 1)]

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        feats: list[nn.Module] = [_conv_bn_act(3, 16, 3, 2, activation=nn.Hardswish)]
        for cin, k, hidden, cout, se, hs, stride in self.SETTINGS:
            act = nn.Hardswish if hs else nn.ReLU
            feats.append(MBConv(cin, k, hidden, cout, stride, act, _make_divisible(hidden // 4) if se else None,
                                nn.ReLU, nn.Hardsigmoid))
        feats.append(_conv_bn_act(96, 576, 1, activation=nn.Hardswish))
        self.features = nn.Sequential(*feats)
        self.classifier = nn.Sequential(nn.Linear(576, 1024), nn.Hardswish(), nn.Linear(1024, num_classes))

    def forward(self, x):
        y = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(y, 1))


class EfficientNetB0(nn.Module):
    """torchvision's ``efficientnet_b0`` layout (Tan and Le 2019); stochastic depth is the identity at inference."""

    #: (expansion, kernel, stride, input, output, repeats)
    SETTINGS = [(1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
                (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1)]

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        feats: list[nn.Module] = [_conv_bn_act(3, 32, 3, 2, activation=nn.SiLU)]
        for expand, k, stride, cin, cout, repeats in self.SETTINGS:
            for i in range(repeats):
                c = cin if i == 0 else cout
                feats.append(MBConv(c, k, _make_divisible(c * expand), cout, stride if i == 0 else 1, nn.SiLU,
                                    max(1, c // 4), nn.SiLU, nn.Sigmoid))
        feats.append(_conv_bn_act(320, 1280, 1, activation=nn.SiLU))
        self.features = nn.Sequential(*feats)
        self.classifier = nn.Linear(1280, num_classes)

    def forward(self, x):
        y = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(y, 1))


def mobilenetv3_small(resolution: int = 224, batch: int = 1, num_classes: int = 1000, seed: int = 0):
    """MobileNetV3-Small at 224x224 (a benchmark model)."""
    _seeded(seed)
    model = MobileNetV3Small(num_classes)
    _randomize_bn(model)
    return model.eval(), (torch.randn(batch, 3, resolution, resolution),)


def efficientnet_b0(resolution: int = 224, batch: int = 1, num_classes: int = 1000, seed: int = 0):
    """EfficientNet-B0 at 224x224 (a benchmark model)."""
    _seeded(seed)
    model = EfficientNetB0(num_classes)
    _randomize_bn(model)
    return model.eval(), (torch.randn(batch, 3, resolution, resolution),)


class GPT2Block(nn.Module):
    """Pre-LN block: ``x + attn(ln_1(x))``, then ``x + mlp(ln_2(x))``; causal attention with one fused QKV Linear."""

    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln_1 = nn.LayerNorm(d, eps=1e-5)
        self.c_attn = nn.Linear(d, 3 * d)
        self.c_proj = nn.Linear(d, d)
        self.ln_2 = nn.LayerNorm(d, eps=1e-5)
        self.c_fc = nn.Linear(d, 4 * d)
        self.mlp_proj = nn.Linear(4 * d, d)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        y = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.c_proj(y.transpose(1, 2).reshape(b, t, d))
        return x + self.mlp_proj(nn.functional.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT2(nn.Module):
    """GPT-2 language model (config: ``vocab``, ``positions``, ``d``, ``layers``, ``heads``); logits ``[b, t, vocab]``."""

    def __init__(self, vocab: int = 50257, positions: int = 1024, d: int = 768, layers: int = 12, heads: int = 12):
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.wpe = nn.Embedding(positions, d)
        self.blocks = nn.ModuleList(GPT2Block(d, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d, eps=1e-5)

    def forward(self, tokens):
        t = tokens.shape[1]
        x = self.wte(tokens) + self.wpe(torch.arange(t, device=tokens.device))[None]
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x) @ self.wte.weight.t()  # tied LM head


def gpt2(seq: int = 128, batch: int = 1, layers: int = 12, vocab: int = 50257, seed: int = 0):
    """GPT-2 (124M parameters at the defaults), random weights (std 0.02 as GPT-2 initializes), token input."""
    _seeded(seed)
    model = GPT2(vocab=vocab, layers=layers)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.02)
    return model.eval(), (torch.randint(0, vocab, (batch, seq)),)
