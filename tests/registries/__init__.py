"""
Tests of the registry clients on the reactor (C{cri_shim.registries}).
"""
