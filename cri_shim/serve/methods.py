# -*- test-case-name: tests.serve.test_methods,tests.serve.test_proto_wire -*-
"""
The CRI method table: every method upstream defines (k8s.io/cri-api: its
newest release for C{runtime.v1}, its last with C{runtime.v1alpha2},
v0.25.16, for that one) and whether the runtime streams its answers, which
gRPC paths the shim rewrites, and the generated protobuf modules for each API
version.

Unary methods are relayed as unary calls (with a deadline and a latency
metric); anything else (a server-streaming method, or a method added to CRI
after this was written) is relayed as a bidirectional stream, which carries
every cardinality unchanged on the wire.
"""

from cri_shim._proto.runtime.v1 import api_pb2 as v1
from cri_shim._proto.runtime.v1alpha2 import api_pb2 as v1alpha2

#: The generated modules by CRI package name.
API = {"runtime.v1": v1, "runtime.v1alpha2": v1alpha2}

#: ImageService methods whose image names the shim rewrites.
REWRITTEN = ("PullImage", "ImageStatus", "RemoveImage")

_RUNTIME_V1ALPHA2 = (
    "Version", "RunPodSandbox", "StopPodSandbox", "RemovePodSandbox", "PodSandboxStatus",
    "ListPodSandbox", "CreateContainer", "StartContainer", "StopContainer", "RemoveContainer",
    "ListContainers", "ContainerStatus", "UpdateContainerResources", "ReopenContainerLog",
    "ExecSync", "Exec", "Attach", "PortForward", "ContainerStats", "ListContainerStats",
    "PodSandboxStats", "ListPodSandboxStats", "UpdateRuntimeConfig", "Status",
)
_IMAGE = REWRITTEN + ("ListImages", "ImageFsInfo")

#: ``{package: {service: (unary methods, server-streaming methods)}}``.
METHODS = {
    "runtime.v1": {
        "RuntimeService": (
            _RUNTIME_V1ALPHA2 + (
                "CheckpointContainer", "CheckpointPod", "RestorePod", "ListMetricDescriptors",
                "ListPodSandboxMetrics", "RuntimeConfig", "UpdatePodSandboxResources"),
            ("GetContainerEvents", "StreamPodSandboxes", "StreamContainers",
             "StreamContainerStats", "StreamPodSandboxStats", "StreamPodSandboxMetrics")),
        "ImageService": (_IMAGE, ("StreamImages",)),
    },
    "runtime.v1alpha2": {
        "RuntimeService": (_RUNTIME_V1ALPHA2, ()),
        "ImageService": (_IMAGE, ()),
    },
}


def path(package, service, method):
    """
    :return: the gRPC method path, e.g. C{/runtime.v1.ImageService/PullImage}.
    """
    return "/{}.{}/{}".format(package, service, method)


def _paths(kind):
    return frozenset(path(package, service, name)
                     for package, services in METHODS.items()
                     for service, names in services.items()
                     for name in names[kind])


#: Paths of unary methods: relayed as unary-unary calls (the fast path)
#: unless a rewriting handler takes them over.
UNARY = _paths(0)
#: Paths of server-streaming methods: relayed as streams, counted under
#: their own names.
STREAMING = _paths(1)
