"""Emotional regions (Rao et al. sections 3-4): proposals, emotion score, local features, drawing.

``proposals.py`` proposes boxes from class activation maps (the ``cam`` source); ``rcnn.py``
from a Faster R-CNN on a feature pyramid (the ``rcnn`` source); ``emotion_score.py`` ranks them by
S_emo = sqrt(p_emo^2 + p_obj^2) with non-maximum suppression; ``local.py`` pools each box's
features with RoIAlign; ``layers.py`` holds the small trained layers (CAM, region head) and
their files; ``draw.py`` draws the boxes for a person to look at.
"""
