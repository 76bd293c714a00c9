"""
End-to-end tests of transparent names: a real shim in front of a real
containerd and registries shows each image pulled through it under the name
it was asked for, remembers those names in its store across restarts, and
survives losing the store.

(CreateContainer by a requested name needs a pod sandbox, i.e. runc and CNI,
which the plain sandbox lacks: its request rewriting is tested in
L{tests.serve.test_views}, the real run by the conformance harness.)
"""

import json
import os
import time

import grpc
from twisted.trial import unittest

from tests.e2e.test_pulls import NOBODY_PULL_LIMIT, POLL_INTERVAL, _ImageTests, _NodeMixin

BUSYBOX = "docker.io/library/busybox:latest"
#: How long the shim may take to reconcile its store after it serves.
RECONCILE_LIMIT = 10.0


class NamesTests(_NodeMixin, unittest.SynchronousTestCase):
    """
    Requested names through the shim, CRI v1.
    """

    package = "runtime.v1"
    # The image calls of test_pulls, without its tests.
    start, status, pull, remove = (_ImageTests.start, _ImageTests.status, _ImageTests.pull,
                                   _ImageTests.remove)

    def setUp(self):
        _ImageTests.setUp(self)
        self.image = self.offline.push_image("library/busybox", "latest", content=b"busybox")
        self.stored = "{}/library/busybox:latest".format(self.offline.host)
        self.store_path = os.path.join(self.node.state_dir, "names.json")

    def restart(self):
        self.assertStopsCleanly(self.node)
        self.node.start_shim()
        self.client = self.node.client(self.package)

    def stored_names(self):
        with open(self.store_path) as f:
            return json.load(f)["names"]

    def assertShowsRequested(self):
        status = self.status("busybox")
        self.assertEqual(status.image.id, self.image.config_digest)
        self.assertEqual((list(status.image.repo_tags), list(status.image.repo_digests)),
                         ([BUSYBOX], ["docker.io/library/busybox@" + self.image.manifest_digest]))

    def test_status_and_list_show_requested_name(self):
        """
        C{busybox}, stored by containerd under the offline registry's name,
        shows as C{docker.io/library/busybox:latest} in ImageStatus and
        ListImages, and a ListImages filter by it finds it.
        """
        self.start()
        self.pull("busybox")
        self.assertIn(self.stored, self.node.containerd_images())
        self.assertNotIn(BUSYBOX, self.node.containerd_images())
        self.assertShowsRequested()
        for name in ("", "busybox"):
            request = self.api.ListImagesRequest()
            request.filter.image.image = name
            listed = {image.id: list(image.repo_tags) for image in
                      self.client.ListImages(request, timeout=10).images}
            self.assertEqual(listed[self.image.config_digest], [BUSYBOX])

    def test_kept_across_restart_and_forgotten_on_remove(self):
        """
        The names survive a restart of the shim; RemoveImage by the
        requested name removes the image and forgets them.
        """
        self.start()
        self.pull("busybox")
        self.assertEqual(self.stored_names(), [[BUSYBOX, self.stored, []]])
        self.assertEqual(os.stat(self.store_path).st_mode & 0o777, 0o600)
        self.restart()
        self.assertShowsRequested()
        self.remove("busybox")
        self.assertNotIn(self.stored, self.node.containerd_images())
        self.assertEqual(self.stored_names(), [])

    def test_reconciled_at_start(self):
        """
        An image removed behind the shim's back is forgotten at its next
        start.
        """
        self.start()
        self.pull("busybox")
        self.assertStopsCleanly(self.node)
        direct = self.node.direct_client(self.package)
        direct.RemoveImage(self.api.RemoveImageRequest(image=direct.image(self.stored)),
                           timeout=10)
        self.node.start_shim()
        deadline = time.monotonic() + RECONCILE_LIMIT
        while self.stored_names():
            self.assertLess(time.monotonic(), deadline, self.node.shim_log())
            time.sleep(POLL_INTERVAL)

    def test_corrupt_store_survived(self):
        """
        A corrupt store file is logged and replaced: pulls and status work,
        and show requested names again.
        """
        os.makedirs(self.node.state_dir, mode=0o700)
        with open(self.store_path, "w") as f:
            f.write("{not json")
        self.start()
        self.pull("busybox")
        self.assertShowsRequested()
        self.assertEqual(self.stored_names(), [[BUSYBOX, self.stored, []]])
        self.assertEqual(self.node.shim_log().count("names store {} unusable".format(
            self.store_path)), 1)

    def test_open_state_folder_refused(self):
        """
        A state folder every user may write in, holding a link at
        C{names.json} to a root-only file: the shim starts and serves, shows
        the requested name from memory, logs the refusal once, and never
        writes through the link.
        """
        victim = os.path.join(os.path.dirname(self.node.state_dir), "shadow")
        with open(victim, "w") as f:
            f.write("root only\n")
        os.chmod(victim, 0o600)
        os.makedirs(self.node.state_dir)
        os.chmod(self.node.state_dir, 0o777)
        os.symlink(victim, self.store_path)
        self.start()
        self.pull("busybox")
        self.assertShowsRequested()
        with open(victim) as f:
            self.assertEqual(f.read(), "root only\n")
        self.assertEqual(os.readlink(self.store_path), victim)
        self.assertEqual(self.node.shim_log().count("stateDir {} refused".format(
            self.node.state_dir)), 1)

    def test_relayed_pull_failure_logged(self):
        """
        A pull of a name no registry holds, relayed unchanged, that fails
        leaves a line in the log with debug off.
        """
        self.start()
        started = time.monotonic()
        with self.assertRaises(grpc.RpcError):
            self.pull("nosuchimage:1")
        self.assertLess(time.monotonic() - started, NOBODY_PULL_LIMIT)
        self.assertIn("PullImage nosuchimage:1 (relayed unchanged) failed",
                      self.node.shim_log())
