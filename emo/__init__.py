"""emo: tell what emotion an image evokes.

The command line lives in :mod:`emo.cli`; the library is :mod:`emo.pipeline` (one streaming batch
loop), :mod:`emo.models` (registry and builders) and :mod:`emo.features`. Importing ``emo`` does
not import torch.
"""

__version__ = "0.1.0"
