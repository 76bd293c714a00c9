"""
The operator's tools: the admin endpoint, the periodic cache statistics line,
C{--dry-run}, and C{image-cri-shim-ctl}.
"""
