# -*- test-case-name: tests.serve.test_image_service -*-
"""
[worker threads] The pod a CRI pull is for: kubelet's C{sandbox_config}
translated to a L{cri_shim.model.selector.Pod}, which the routing rules and
the pod events read.
"""

from cri_shim.model.selector import Pod


def pod_of(request):
    """
    :param request: a C{PullImageRequest} (either CRI version).
    :return: the L{Pod} it is for, from its C{sandbox_config} (kubelet sends
        it; crictl and pre-pulls do not), or C{None}.
    """
    if not request.HasField("sandbox_config"):
        return None
    config = request.sandbox_config
    metadata = config.metadata
    if not metadata.name or not metadata.namespace:
        return None
    return Pod(metadata.name, metadata.namespace, metadata.uid, dict(config.labels))
