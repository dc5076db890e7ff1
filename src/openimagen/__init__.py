"""openimagen: an open implementation of Imagen (Saharia et al., 2022).

A frozen pretrained text encoder, a cascade of pixel-space diffusion U-Nets, classifier-free
guidance and dynamic thresholding. See docs/ARCHITECTURE.md for the map of the code.
"""

__version__ = "0.1.0"
