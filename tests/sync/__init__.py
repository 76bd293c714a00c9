"""
Tests of the config sync on the reactor (C{cri_shim.sync}).
"""
