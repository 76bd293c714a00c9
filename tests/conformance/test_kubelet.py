"""
A real kubelet (``make kubelet``) runs a static pod of ``nginx:latest`` with
the shim as its image service: see L{tests.conformance.kubelet}.

The run takes some seconds, so it is made once per process and shared by
the tests that read it.
"""

from twisted.trial import unittest

from tests.conformance import critest, kubelet

_results = {}


def _run(runtime):
    if runtime not in _results:
        result = kubelet.run(runtime)
        _results[runtime] = result
        print(f"\nkubelet on {runtime} ({result.version}): healthy after "
              f"{result.kubelet_start:.1f} s, pod phase {result.pod_phase!r} after "
              f"{result.pod_running} s, runtime {result.pod_state}")
    return _results[runtime]


class _KubeletMixin:
    """
    The tests for one runtime: set L{runtime} (a key of
    L{critest.RUNTIMES}).
    """

    runtime = None

    def setUp(self):
        reason = kubelet.skip_reason(critest.RUNTIMES[self.runtime])
        if reason is not None:
            raise unittest.SkipTest(reason)
        self.result = _run(self.runtime)

    def test_pod_running(self):
        """
        The kubelet reports the static pod Running; the runtime has its
        sandbox ready and its container running, of the image the shim
        pulled.
        """
        self.assertIsNotNone(
            self.result.pod_running,
            "pod phase {!r} after {} s; kubelet errors:\n{}".format(
                self.result.pod_phase, kubelet.POD_TIMEOUT,
                "\n".join(self.result.kubelet_errors[-20:])))
        self.assertEqual(self.result.pod_state, "SANDBOX_READY/CONTAINER_RUNNING")
        self.assertEqual(self.result.container_image, kubelet.image_id(kubelet.images()[1]))

    def test_status_names_requested(self):
        """
        The kubelet's pod status names the image as the pod spec asked for
        it, in the requested repository with the real digest, not the
        registry the shim pulled it from: the kubelet's RuntimeService goes
        through the shim, which shows ContainerStatus's image as requested.
        """
        self.assertEqual(self.result.status_images, [
            (kubelet.STAND_IN,
             "docker.io/library/nginx@" + self.result.stand_in_digest)])

    def test_pull_rewritten(self):
        """
        The shim rewrote the kubelet's pull of C{nginx:latest} to its
        registry.
        """
        self.assertTrue(self.result.pull_lines, "no PullImage line in the shim's log")
        for line in self.result.pull_lines:
            self.assertRegex(line, r"PullImage nginx:latest -> 127\.0\.0\.1:\d+/library/nginx:latest ")

    def test_cleanup(self):
        """
        Nothing the kubelet made outside its folder is left: cgroups, its
        device plugin folder, the links to its containers' logs.
        """
        self.assertEqual(self.result.left, [])


class Containerd16Tests(_KubeletMixin, unittest.SynchronousTestCase):
    """
    Debian's containerd 1.6, which lacks RuntimeConfig: the kubelet falls
    back to its config's C{cgroupDriver} (until Kubernetes 1.38).
    """

    runtime = "containerd 1.6"


class Containerd24Tests(_KubeletMixin, unittest.SynchronousTestCase):
    """
    containerd 2.4 (C{make tools}), which tells the kubelet its cgroup driver.
    """

    runtime = "containerd 2.4"
