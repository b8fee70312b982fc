"""emo: tell what emotion an image evokes.

The command line lives in :mod:`emo.cli`; the library is :mod:`emo.pipeline` (one streaming batch
loop), :mod:`emo.models` (registry and builders) and :mod:`emo.features`. Importing ``emo`` does
not import torch.
"""

__version__ = "0.1.0"

__all__ = ["Predictor", "__version__"]


def __getattr__(name: str):
    # Lazy, so `import emo` (and every TAB press of the CLI) stays free of torch.
    if name == "Predictor":
        from emo.predictor import Predictor

        return Predictor
    raise AttributeError(f"module 'emo' has no attribute {name!r}")
