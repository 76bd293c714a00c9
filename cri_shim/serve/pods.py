# -*- test-case-name: tests.serve.test_image_service,tests.security.test_tenants -*-
"""
[worker threads] The pod a CRI pull or container is for: kubelet's
C{sandbox_config} translated to a L{cri_shim.model.selector.Pod}, which the
routing rules, the local image lookups and the pod events read.
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
    return pod_of_sandbox(request.sandbox_config)


def pod_of_sandbox(config):
    """
    :param config: a C{PodSandboxConfig} (either CRI version).
    :return: the L{Pod} it describes, or C{None} when it names none.
    """
    metadata = config.metadata
    if not metadata.name or not metadata.namespace:
        return None
    return Pod(metadata.name, metadata.namespace, metadata.uid, dict(config.labels))
