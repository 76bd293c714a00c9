"""
The twistd plugin: C{twistd -n image-cri-shim --config FILE}.
"""

from twisted.application.service import ServiceMaker

imageCriShim = ServiceMaker(
    "image-cri-shim",
    "cri_shim.tap",
    "CRI proxy that rewrites image pulls to the private registry that holds them",
    "image-cri-shim",
)
