"""The built-in model zoo: small CIFAR-style CNNs that train in minutes on 2 CPU cores.

Every model uses only standard torch layers (``Conv2d``, ``BatchNorm2d``, ``ReLU``,
``MaxPool2d``, ``AdaptiveAvgPool2d``, ``Flatten``, ``Linear``), no in-place activations and
no shared modules, and ends with a global average pool, so it accepts any input of at least
8x8 pixels (28x28 MNIST and 8x8 digits included).
"""

from __future__ import annotations

import torch
from torch import nn

from rankopt.models._registry import register_model

__all__ = ["BasicBlock", "CifarResNet", "InvertedResidual", "MobileNetSmall", "VGGSmall"]


def _init_weights(model: nn.Module) -> None:
    """Kaiming-normal init for convs, unit/zero BN, small normal init for linear layers."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 conv + BN, identity or 1x1 conv + BN projection shortcut.

    Args:
        in_planes: Input channels.
        planes: Output channels.
        stride: Stride of the first 3x3 conv and of the projection shortcut.
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU()
        self.shortcut: nn.Module
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block to a (N, in_planes, H, W) batch."""
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """CIFAR-style ResNet (He et al. 2016, §4.2): 3 stages of 16/32/64 channels.

    Depth is ``6 * blocks_per_stage + 2`` (ResNet-8: 1 block per stage, ResNet-20: 3).

    Args:
        blocks_per_stage: Basic blocks in each of the three stages.
        in_channels: Input image channels.
        num_classes: Output logits.
        widths: Channels of the three stages.
    """

    def __init__(
        self,
        blocks_per_stage: int,
        *,
        in_channels: int = 1,
        num_classes: int = 10,
        widths: tuple[int, int, int] = (16, 32, 64),
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU()
        in_planes = widths[0]
        stages = []
        for i, planes in enumerate(widths):
            blocks = []
            for j in range(blocks_per_stage):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(BasicBlock(in_planes, planes, stride))
                in_planes = planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(in_planes, num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, num_classes) of a (N, in_channels, H, W) batch."""
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.flatten(self.avgpool(x)))


def _conv_bn_relu(cin: int, cout: int, kernel: int = 3, stride: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(),
    ]


class VGGSmall(nn.Module):
    """VGG-style plain CNN: conv 32, 32, pool, 64, 64, pool, 128, global pool, Linear.

    Args:
        in_channels: Input image channels.
        num_classes: Output logits.
    """

    def __init__(self, *, in_channels: int = 1, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *_conv_bn_relu(in_channels, 32),
            *_conv_bn_relu(32, 32),
            nn.MaxPool2d(2),
            *_conv_bn_relu(32, 64),
            *_conv_bn_relu(64, 64),
            nn.MaxPool2d(2),
            *_conv_bn_relu(64, 128),
        )
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(128, num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, num_classes) of a (N, in_channels, H, W) batch."""
        return self.classifier(self.flatten(self.avgpool(self.features(x))))


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, 3x3 depthwise (groups=channels), 1x1 linear project.

    The residual connection is used when ``stride == 1`` and ``cin == cout``.

    Args:
        cin: Input channels.
        cout: Output channels.
        stride: Stride of the depthwise conv.
        expand: Expansion factor of the hidden width.
    """

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.use_residual = stride == 1 and cin == cout
        self.block = nn.Sequential(
            *_conv_bn_relu(cin, hidden, kernel=1),
            nn.Conv2d(hidden, hidden, 3, stride=stride, padding=1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block to a (N, cin, H, W) batch."""
        out = self.block(x)
        return x + out if self.use_residual else out


class MobileNetSmall(nn.Module):
    """A small MobileNetV2-style network (16-64 channels, expansion 2).

    Stem conv 3x3 -> 16, then inverted residual blocks 16->24 (s2), 24->24, 24->32 (s2),
    32->32, 32->64, global pool, Linear.

    Args:
        in_channels: Input image channels.
        num_classes: Output logits.
    """

    def __init__(self, *, in_channels: int = 1, num_classes: int = 10) -> None:
        super().__init__()
        cfg = [(16, 24, 2), (24, 24, 1), (24, 32, 2), (32, 32, 1), (32, 64, 1)]
        self.features = nn.Sequential(
            *_conv_bn_relu(in_channels, 16),
            *[InvertedResidual(cin, cout, stride, expand=2) for cin, cout, stride in cfg],
        )
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(64, num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, num_classes) of a (N, in_channels, H, W) batch."""
        return self.classifier(self.flatten(self.avgpool(self.features(x))))


@register_model("resnet8")
def resnet8(*, in_channels: int, num_classes: int) -> nn.Module:
    """CIFAR-style ResNet-8 (1 basic block per stage, 16/32/64 channels)."""
    return CifarResNet(1, in_channels=in_channels, num_classes=num_classes)


@register_model("resnet20")
def resnet20(*, in_channels: int, num_classes: int) -> nn.Module:
    """CIFAR-style ResNet-20 (3 basic blocks per stage, 16/32/64 channels)."""
    return CifarResNet(3, in_channels=in_channels, num_classes=num_classes)


@register_model("vgg_small")
def vgg_small(*, in_channels: int, num_classes: int) -> nn.Module:
    """VGG-style plain CNN with 5 convs (32-128 channels) and a Linear head."""
    return VGGSmall(in_channels=in_channels, num_classes=num_classes)


@register_model("mobilenet_small")
def mobilenet_small(*, in_channels: int, num_classes: int) -> nn.Module:
    """MobileNetV2-style network with depthwise 3x3 + pointwise 1x1 convs (16-64 channels)."""
    return MobileNetSmall(in_channels=in_channels, num_classes=num_classes)
