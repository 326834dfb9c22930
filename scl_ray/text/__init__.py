"""Caption text, shared by diffusion (conditioning) and evaluation (caption embeddings).

    encoders.py  frozen text encoders (MiniLM, hashing) and the per-dataset token-embedding cache

It imports neither torch (MiniLM loads it on first use) nor anything of diffusion or evaluation.
"""
