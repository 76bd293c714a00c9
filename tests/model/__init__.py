"""
Tests of the pure model (C{cri_shim.model}).
"""
