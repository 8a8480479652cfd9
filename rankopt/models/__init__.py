"""rankopt.models: the built-in model zoo, user models, and cached pretrained weights.

Built-in models (``list_models()``): ``resnet8``, ``resnet20`` (CIFAR-style ResNets,
16/32/64 channels), ``vgg_small`` and ``mobilenet_small``; all accept 1x28x28 and 1x8x8
inputs (global average pooling before the head); ``resnet18`` is torchvision's ResNet-18 with
its first conv taking the data's channels (33 M MACs at 1x28x28, 11.2 M parameters).
"""

from rankopt.models import _resnet18, _zoo  # noqa: F401  (register the built-in models)
from rankopt.models._pretrained import (
    TrainRecipe,
    default_cache_dir,
    get_pretrained,
    pretrained_recipe,
)
from rankopt.models._registry import ModelFactory, create_model, list_models, register_model
from rankopt.models._user import load_state_dict_file, load_user_model
from rankopt.models._zoo import CifarResNet, MobileNetSmall, VGGSmall

__all__ = [
    "CifarResNet",
    "MobileNetSmall",
    "ModelFactory",
    "TrainRecipe",
    "VGGSmall",
    "create_model",
    "default_cache_dir",
    "get_pretrained",
    "list_models",
    "load_state_dict_file",
    "load_user_model",
    "pretrained_recipe",
    "register_model",
]
