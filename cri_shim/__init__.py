"""
image-cri-shim: a CRI proxy that rewrites image names to the registry that holds them.
"""

__version__ = "0.1.0"
