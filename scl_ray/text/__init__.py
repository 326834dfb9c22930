"""Caption text, shared by motion (dataset captions), diffusion (conditioning) and evaluation.

    encoders.py  frozen text encoders (MiniLM, hashing) and the per-dataset token-embedding cache
    tokens.py    HumanML3D `word/POS` tokens of a caption (a small English part-of-speech tagger)

Neither module imports torch (MiniLM loads it on first use) nor anything of diffusion or evaluation.
"""
