# -*- test-case-name: tests.serve.test_methods,tests.serve.test_proto_wire,tests.serve.test_image_service -*-
"""
The CRI method table: which gRPC paths the shim rewrites, which it relays as
unary calls, and the generated protobuf modules for each API version.

Anything not listed (a server-streaming method, or a method added to CRI
after this was written) is relayed as a bidirectional stream, which carries
every cardinality unchanged on the wire.
"""

from cri_shim._proto.runtime.v1 import api_pb2 as v1
from cri_shim._proto.runtime.v1alpha2 import api_pb2 as v1alpha2

#: The generated modules by CRI package name.
API = {"runtime.v1": v1, "runtime.v1alpha2": v1alpha2}

#: ImageService methods whose image names the shim rewrites.
REWRITTEN = ("PullImage", "ImageStatus", "RemoveImage")

_RUNTIME_UNARY = (
    "Version", "RunPodSandbox", "StopPodSandbox", "RemovePodSandbox", "PodSandboxStatus",
    "ListPodSandbox", "CreateContainer", "StartContainer", "StopContainer", "RemoveContainer",
    "ListContainers", "ContainerStatus", "UpdateContainerResources", "ReopenContainerLog",
    "ExecSync", "Exec", "Attach", "PortForward", "ContainerStats", "ListContainerStats",
    "PodSandboxStats", "ListPodSandboxStats", "UpdateRuntimeConfig", "Status",
    "CheckpointContainer", "ListMetricDescriptors", "ListPodSandboxMetrics", "RuntimeConfig",
    "UpdatePodSandboxResources",
)
_IMAGE_UNARY = ("ListImages", "ImageFsInfo")


def path(package, service, method):
    """
    :return: the gRPC method path, e.g. C{/runtime.v1.ImageService/PullImage}.
    """
    return "/{}.{}/{}".format(package, service, method)


#: Paths relayed as unary-unary calls (the fast path).
UNARY = frozenset(
    [path(package, "RuntimeService", name) for package in API for name in _RUNTIME_UNARY]
    + [path(package, "ImageService", name) for package in API for name in _IMAGE_UNARY]
)
