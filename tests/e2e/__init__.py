"""
Tests of the shim run for real against containerd and registries.
"""
