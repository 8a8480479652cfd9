"""The built-in ``resnet18``: torchvision's ResNet-18 with its first conv taking ``in_channels``.

The stem is kept (7x7 conv, stride 2, then a 3x3 max-pool, stride 2): at 1x28x28 the four
stages run at 7x7, 4x4, 2x2 and 1x1 pixels and the model costs 33.1 M MACs per image
(11.2 M parameters). The CIFAR stem (3x3 conv, stride 1, no max-pool) would run the stages at
28x28 .. 4x4 for 456.8 M MACs, 14x more, which does not train on Fashion-MNIST in the budget of
a 2-core machine (about 14 s per step of 128 images at one thread). Every weight has the same
shape as in torchvision (only ``conv1``'s input channels follow the data), so a
``torchvision.models.resnet18(num_classes=...)`` state_dict of the same channel count loads
into it. Trained on Fashion-MNIST with resnet8's recipe (6 epochs, batch 128): test accuracy
0.9156 (resnet8: 0.9209), 3,110 s at 1 thread on a shared 2-core VM.
"""

from __future__ import annotations

from torch import nn

from rankopt.models._registry import register_model

__all__ = ["resnet18"]


@register_model("resnet18")
def resnet18(*, in_channels: int, num_classes: int) -> nn.Module:
    """torchvision ResNet-18 (random init) whose first conv takes ``in_channels`` channels.

    ReLUs are made out-of-place (torchvision's are in-place; no parameter changes).
    """
    import torchvision

    model = torchvision.models.resnet18(weights=None, num_classes=num_classes)
    model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    for module in model.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False
    return model
