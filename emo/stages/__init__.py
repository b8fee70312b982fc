"""Pipeline stages: each one small, each one a step a subcommand can choose.

``carried_check.py``: the feature groups records carry, checked before any stage reads them;
``handcrafted_stage.py``: hand-crafted groups and writing features out; ``backbone_stage.py``:
object and deep features from a network through an engine; ``head_stages.py``: emotion, sentiment
and va from features, and the lazily built stage; ``regions_stage.py`` and ``scene_stage.py``.
Which stages a subcommand runs is decided in :mod:`emo.assembly`.
"""
