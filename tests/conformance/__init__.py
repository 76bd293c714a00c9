"""
The CRI conformance suite (critest) directly and through the shim, on
containerd 1.6 and 2.x: needs root and ``make tools``.
"""
