"""emo: tell what emotion an image evokes.

The command line lives in :mod:`emo.cli` and only declares options; :mod:`emo.assembly` turns
options into each subcommand's stages and runs them through :mod:`emo.pipeline` (one streaming
batch loop); :mod:`emo.models` holds the registry and builders, :mod:`emo.features` the
hand-crafted features. ``emo.Predictor`` is a subcommand as a callable. Importing ``emo`` does
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
