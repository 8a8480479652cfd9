"""rankopt.data: built-in data sets (offline, fixed split) and user data loading.

Built-in: ``mnist5k`` (5,000 MNIST digits, 1x28x28, split 3,500 / 500 / 1,000) and
``digits`` (scikit-learn's 1,797 digits, 1x8x8, split 1,257 / 180 / 360); see
:func:`load_data` for ImageFolder directories and ``.pt`` tensor files.
"""

from rankopt.data._adapt import EVAL_BATCH, Split, as_split
from rankopt.data._builtin import BUILTIN_DATA
from rankopt.data._loaders import list_data, load_data, split_tensors
from rankopt.data._splits import SPLIT_VERSION, DataSplits, split_indices

__all__ = [
    "BUILTIN_DATA",
    "EVAL_BATCH",
    "SPLIT_VERSION",
    "DataSplits",
    "Split",
    "as_split",
    "list_data",
    "load_data",
    "split_indices",
    "split_tensors",
]
