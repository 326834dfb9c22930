"""scl-ray: self-correcting self-consuming loops for text-to-motion diffusion, on Ray."""

__version__ = "0.1.0"
