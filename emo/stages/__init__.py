"""Pipeline stages: each one small, each one a step a subcommand can choose.

``features.py``: hand-crafted groups and writing features out; ``backbone.py``: object and deep
features from a network through an engine. Heads and regions add their own modules here.
"""
