"""The evaluation batch size shared by :mod:`rankopt.data` and :mod:`rankopt.evaluators`.

Neutral ground (imports no rankopt subpackage).
"""

from __future__ import annotations

__all__ = ["EVAL_BATCH"]

EVAL_BATCH = 128
"""Images per forward pass when rankopt evaluates (accuracy, logits) without gradients.

Evaluation memory is this many images' activations, whatever the split's size: a fixed
batch keeps a search's peak resident memory independent of the validation split (with 512,
a 200-image split was one batch of 200 and an 800-image split batches of 512, which alone
grew the peak by ~150 MB for resnet8 on 64x64 images). 128 costs no measurable speed on the
CPU for the built-in models.
"""
