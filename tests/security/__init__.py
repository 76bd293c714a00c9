"""
Tests of what a hostile registry, user or config can reach.
"""
