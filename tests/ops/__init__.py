"""
Tests of the operator's tools (C{cri_shim.ops}).
"""
