"""The numbers of the HumanML3D motion format, defined once; every module and default imports them.

Joint counts and the skeleton live in skeleton.py (NUM_JOINTS is the length of its joint list).
"""

FPS = 20  # frames per second of every motion, joints and features alike
FEATURE_DIM = 263  # features per frame (HumanML3D's new_joint_vecs; layout in features.py)
# Feature frames of a usable motion: HumanML3D keeps 40..199 and crops to 196; MAX_FRAMES is also
# the padded length of a batch (the denoiser's, the evaluators').
MIN_FRAMES, MAX_FRAMES = 40, 196
