"""
Tests of the shim under runtime, registry and config faults.
"""
