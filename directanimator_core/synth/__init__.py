"""A synthetic world of 2D articulated figures with exact cross-identity ground truth.

Any identity (identity.py) can perform any motion (motion.py) in any scene (scene.py); render.py draws
it with OpenCV and returns frames with exact person and face masks, face boxes and joints.
dataset.py pairs them into same-ID clips and cross-ID triples under a seed-parity train / held-out
split; skeleton_map.py draws OpenPose-style skeletons from the exact joints.
"""

from .dataset import SPLITS, Clip, CrossPair, cross_id_pair, same_id_clip, split_of, split_seed
from .identity import Identity, sample_identity
from .kinematics import JOINT_NAMES, forward_kinematics
from .motion import ANGLE_NAMES, MOTION_KINDS, Motion, sample_motion
from .render import Render, render
from .scene import Scene, flat_scene, sample_scene
from .skeleton_map import draw_skeleton

__all__ = [
    "ANGLE_NAMES", "JOINT_NAMES", "MOTION_KINDS", "SPLITS", "Clip", "CrossPair", "Identity", "Motion", "Render",
    "Scene", "cross_id_pair", "draw_skeleton", "flat_scene", "forward_kinematics", "render", "same_id_clip",
    "sample_identity", "sample_motion", "sample_scene", "split_of", "split_seed",
]
