"""
[worker threads] The request path: the gRPC server on the shim's socket, the
handlers that relay or rewrite each CRI call, and the runtime's channel.

Code here runs on gRPC worker threads.  It reads the published snapshot
without locks and reaches the reactor only through L{cri_shim.serve.bridge};
it never imports L{cri_shim.registries}, L{cri_shim.sync} or
L{cri_shim.ops}, and never meets a Deferred.
"""
