"""
crictl (cri-tools v1.37.0, built by C{make tools}) through the shim, as a
user at a node runs it: a sandbox node (L{tests.conformance.kubelet.make_node})
of containerd 1.6 and of 2.4 with the shim in front, the shim's registry
holding a stand-in C{library/busybox:latest} (critest's busybox stand-in,
L{dev.critest_images}), and crictl's runtime and image endpoints both the
shim's socket.

One session per runtime: C{pull busybox}; C{images} and C{inspecti busybox}
name it as asked, not by the registry the shim pulled it from; C{runp},
C{create} (C{image: busybox}), C{start}, C{ps} show it running; the container
and pod are stopped and removed; C{rmi busybox} removes the image, and the
shim's names store forgets it.
"""

import json
import os
import subprocess
import time

from twisted.trial import unittest

from dev import critest_images, node
from tests import e2e_support
from tests.conformance import critest, kubelet

#: The image as the user names it, and as a node shows it.
IMAGE = "busybox"
REQUESTED = "docker.io/library/busybox:latest"
#: How long the container may take to run after C{crictl start}.
RUNNING_TIMEOUT = 30.0
_POLL_INTERVAL = 0.2


def skip_reason(binary):
    """
    :return: why crictl cannot run on a node with the containerd
        ``binary`` here, or ``None``.
    """
    return (e2e_support.skip_reason() or node.skip_reason(binary)
            or critest_images.skip_reason())


def _names(state_dir):
    """
    :return: the shim's names store as ``{requested: stored}``, read from
        its file (crictl's pulls carry no pod: every name is in the
        unrestricted scope).
    """
    with open(os.path.join(state_dir, "names.json"), encoding="utf-8") as f:
        entries = json.load(f)["names"]
    assert all(scope == [] for _, _, scope in entries), entries
    return {requested: stored for requested, stored, _ in entries}


def _table(text):
    """
    :return: the rows of a crictl table (its header left out), each split
        on whitespace.
    """
    return [line.split() for line in text.splitlines()[1:] if line.strip()]


class _CrictlMixin:
    """
    A crictl session through the shim on one runtime: set L{runtime} (a key
    of L{critest.RUNTIMES}).
    """

    runtime = None

    def setUp(self):
        reason = skip_reason(critest.RUNTIMES[self.runtime])
        if reason is not None:
            raise unittest.SkipTest(reason)
        self.node, containerd = kubelet.make_node(self.runtime)
        self.addCleanup(self.node.cleanup)
        stand_in = kubelet.images(critest_images.E2E + "busybox:1.29-2", REQUESTED)[1]
        self.digest = kubelet.start_node(self.node, containerd, stand_in)[REQUESTED]
        self.endpoint = "unix://" + self.node.socket
        self.registry_name = "{}/library/busybox:latest".format(
            self.node.offline.url.split("://", 1)[1])
        self.directory = self.node.sandbox.directory

    def crictl(self, *args, parse=True):
        try:
            return kubelet.crictl(self.endpoint, *args, parse=parse)
        except subprocess.CalledProcessError as e:
            self.fail("crictl {} failed ({}): {}\nshim's log:\n{}".format(
                " ".join(args), e.returncode, e.stderr, self.node.shim_log()[-3000:]))

    def write_json(self, name, document):
        path = os.path.join(self.directory, name)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(document, f)
        return path

    def wait_state(self, container, state, timeout=RUNNING_TIMEOUT):
        """
        Poll C{crictl ps} until C{container} is in C{state}, or fail after
        C{timeout} seconds.
        """
        started, seen = time.monotonic(), None
        while time.monotonic() - started < timeout:
            found = self.crictl("ps", "--all", "--id", container)["containers"]
            seen = found[0]["state"] if found else None
            if seen == state:
                return found[0]
            time.sleep(_POLL_INTERVAL)
        self.fail("container {} is {} after {} s, not {}".format(container, seen, timeout,
                                                                  state))

    def test_session(self):
        """
        pull, images, inspecti, runp, create, start, ps, stop, rm, stopp,
        rmp and rmi of C{busybox} through the shim.
        """
        # pull: the shim moves it to its registry, and remembers the name.
        self.assertIn("Image is up to date for sha256:",
                      self.crictl("pull", IMAGE, parse=False))
        self.assertEqual(_names(self.node.state_dir), {REQUESTED: self.registry_name})

        # images: listed as asked, never by the registry's name.
        rows = _table(self.crictl("images", parse=False))
        self.assertIn(["docker.io/library/busybox", "latest"], [row[:2] for row in rows])
        listed = self.crictl("images")["images"]
        tags = [tag for image in listed for tag in image["repoTags"]]
        self.assertIn(REQUESTED, tags)
        self.assertNotIn(self.registry_name, tags)

        # inspecti: the requested name, and the digest in its repository.
        status = self.crictl("inspecti", IMAGE)["status"]
        self.assertEqual(status["repoTags"], [REQUESTED])
        self.assertEqual(status["repoDigests"], ["docker.io/library/busybox@" + self.digest])

        # A pod, and a container of busybox in it.
        pod_config = self.write_json("pod.json", {
            "metadata": {"name": "crictl-pod", "namespace": "default",
                         "uid": "crictl-pod-uid", "attempt": 1},
            "log_directory": os.path.join(self.directory, "pod-logs"),
            "linux": {},
        })
        container_config = self.write_json("container.json", {
            "metadata": {"name": "sleeper"},
            "image": {"image": IMAGE},
            "command": ["sleep", "3600"],
            "log_path": "sleeper.log",
            "linux": {},
        })
        pod = self.crictl("runp", pod_config, parse=False).strip()
        container = self.crictl("create", pod, container_config, pod_config,
                                parse=False).strip()
        self.crictl("start", container, parse=False)
        running = self.wait_state(container, "CONTAINER_RUNNING")
        self.assertEqual(running["podSandboxId"], pod)
        self.assertEqual(running["imageRef"], status["id"])
        self.assertIn(container, [c["id"] for c in self.crictl("ps")["containers"]])

        # Stopped and removed: nothing is left.
        self.crictl("stop", container, parse=False)
        self.wait_state(container, "CONTAINER_EXITED")
        self.crictl("rm", container, parse=False)
        self.crictl("stopp", pod, parse=False)
        self.crictl("rmp", pod, parse=False)
        self.assertEqual(self.crictl("ps", "--all")["containers"], [])
        self.assertEqual(self.crictl("pods")["items"], [])

        # rmi: gone by either name, and forgotten by the shim.
        self.crictl("rmi", IMAGE, parse=False)
        tags = [tag for image in self.crictl("images")["images"] for tag in image["repoTags"]]
        self.assertNotIn(REQUESTED, tags)
        self.assertNotIn(self.registry_name, tags)
        self.assertEqual(_names(self.node.state_dir), {})


class Containerd16Tests(_CrictlMixin, unittest.SynchronousTestCase):
    runtime = "containerd 1.6"


class Containerd24Tests(_CrictlMixin, unittest.SynchronousTestCase):
    runtime = "containerd 2.4"
