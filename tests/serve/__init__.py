"""
Tests of the request path on gRPC worker threads (C{cri_shim.serve}).
"""
