"""
End-to-end tests: the shim as a real C{twistd -n image-cri-shim} process in
front of a real containerd, with two real docker-registry processes behind
htpasswd, each with its own login (the second's password holds colons).

Every call goes through the shim's socket with L{dev.cri_client}.  The
image tests are written once in L{_ImageTests} and run for both CRI
versions (L{V1Tests}, L{V1Alpha2Tests}); what does not depend on the CRI
version is in L{ProcessTests}.

Trial does not call C{setUpClass}: each test makes its own sandbox in
C{setUp} (a fraction of a second) and removes it with C{addCleanup}.
"""

import os
import stat
import time

import grpc
from twisted.trial import unittest

from tests.e2e_support import (
    ALICE, BOB, CALL_TIMEOUT, CLEAN_STOP_STATUSES, KUBELET_AUTH, SHUT_DOWN_LINE, ShimNode,
    skip_reason)

#: A digest no registry holds.
UNKNOWN_DIGEST = "sha256:" + "0" * 64
#: How long a pull nobody can serve may take (the network is closed, so the
#: runtime fails fast).
NOBODY_PULL_LIMIT = 5.0
#: How long the shim may take to reach a runtime that came up after it.
RUNTIME_APPEARS_LIMIT = 5.0
POLL_INTERVAL = 0.05
#: The Go shim's view: images show under the names they were pulled by.
REGISTRY_VIEW = "names: registry\n"


class _NodeMixin:
    """
    A L{ShimNode} per test, skipped where the sandbox cannot run.
    """

    def setUp(self):
        reason = skip_reason()
        if reason is not None:
            raise unittest.SkipTest(reason)

    def assertStopsCleanly(self, node):
        """
        SIGTERM the shim: it must shut down cleanly and remove its socket.

        :return: its output.
        """
        status = node.stop_shim()
        output = node.shim_log()
        self.assertIn(status, CLEAN_STOP_STATUSES, output)
        self.assertIn(SHUT_DOWN_LINE, output)
        self.assertFalse(os.path.lexists(node.socket))
        return output

    def make_node(self, registries=(ALICE, BOB)):
        """
        :return: a new L{ShimNode} cleaned up after the test.
        """
        node = ShimNode(registries)
        self.addCleanup(node.cleanup)
        return node


class _ImageTests(_NodeMixin):
    """
    The image calls through the shim, for the CRI version L{package}.
    """

    package = None

    def setUp(self):
        _NodeMixin.setUp(self)
        self.node = self.make_node()
        self.node.start_sandbox()
        self.offline = self.node.offline
        self.second = self.node.second

    def start(self, **config):
        """
        Write the config (L{ShimNode.config_text} options), start the shim and
        make a client for L{package}.
        """
        self.node.write_config(**config)
        self.node.start_shim()
        self.client = self.node.client(self.package)
        self.api = self.client.api

    # -- calls --------------------------------------------------------------------

    def status(self, name):
        return self.client.ImageStatus(
            self.api.ImageStatusRequest(image=self.client.image(name)), timeout=CALL_TIMEOUT)

    def pull(self, name, auth=None):
        request = self.api.PullImageRequest(image=self.client.image(name))
        if auth is not None:
            request.auth.username, request.auth.password = auth
        return self.client.PullImage(request, timeout=CALL_TIMEOUT)

    def remove(self, name):
        return self.client.RemoveImage(
            self.api.RemoveImageRequest(image=self.client.image(name)), timeout=CALL_TIMEOUT)

    def list_ids(self):
        response = self.client.ListImages(self.api.ListImagesRequest(), timeout=CALL_TIMEOUT)
        return [image.id for image in response.images]

    def assertPullFails(self, name, auth=None):
        """
        :return: the C{grpc.RpcError} the pull failed with.
        """
        with self.assertRaises(grpc.RpcError) as caught:
            self.pull(name, auth)
        self.assertNotEqual(caught.exception.code(), grpc.StatusCode.OK)
        return caught.exception

    def assertNoImage(self, name):
        response = self.status(name)
        self.assertFalse(response.HasField("image"),
                         "{} is present: {}".format(name, response.image))

    # -- 1: the offline registry -------------------------------------------------

    def test_pull_status_list_remove(self):
        """
        C{nginx:latest}, sent without auth, is pulled from the offline
        registry with its credentials; ImageStatus, ListImages and
        RemoveImage then find it under the rewritten name (C{names:
        registry}, the Go shim's view), and RemoveImage removes it from
        containerd.
        """
        image = self.offline.push_image("library/nginx", "latest", content=b"offline nginx")
        self.start(extra=REGISTRY_VIEW)
        self.assertNoImage("nginx:latest")

        self.assertEqual(self.pull("nginx:latest").image_ref, image.config_digest)

        status = self.status("nginx:latest")
        self.assertTrue(status.HasField("image"))
        self.assertEqual(status.image.id, image.config_digest)
        self.assertIn("{}/library/nginx:latest".format(self.offline.host),
                      status.image.repo_tags)
        self.assertIn(image.config_digest, self.list_ids())

        self.remove("nginx:latest")
        self.assertNoImage("nginx:latest")
        self.assertNotIn(image.config_digest, self.list_ids())
        left = [name for name in self.node.containerd_images()
                if name.startswith("{}/library/nginx".format(self.offline.host))]
        self.assertEqual(left, [])

    # -- 2: the second registry --------------------------------------------------

    def test_pull_from_second_registry(self):
        """
        An image only the C{registries:} entry holds is pulled from it, with
        its own credentials, and stored under its host (shown so with
        C{names: registry}).
        """
        self.offline.push_image("library/nginx", "latest", content=b"offline nginx")
        image = self.second.push_image("only/second", "v1", content=b"second only")
        self.start(extra=REGISTRY_VIEW)

        self.assertEqual(self.pull("only/second:v1").image_ref, image.config_digest)

        stored = "{}/only/second:v1".format(self.second.host)
        self.assertIn(stored, self.node.containerd_images())
        status = self.status("only/second:v1")
        self.assertEqual(status.image.id, image.config_digest)
        self.assertIn(stored, status.image.repo_tags)

    # -- 3: priorities -----------------------------------------------------------

    def test_higher_priority_registry_wins(self):
        """
        With the same repo:tag on both registries, a C{registries:} entry
        whose priority is above C{offlinePriority} supplies the image.
        """
        self.offline.push_image("library/app", "1", content=b"offline app")
        second = self.second.push_image("library/app", "1", content=b"second app")
        self.start(priorities=[2000])

        self.assertEqual(self.pull("app:1").image_ref, second.config_digest)
        self.assertIn("{}/library/app:1".format(self.second.host),
                      self.node.containerd_images())

    def test_offline_registry_wins_by_default(self):
        """
        With default priorities, the offline registry supplies an image both
        registries hold.
        """
        offline = self.offline.push_image("library/app", "1", content=b"offline app")
        self.second.push_image("library/app", "1", content=b"second app")
        self.start()

        self.assertEqual(self.pull("app:1").image_ref, offline.config_digest)
        names = self.node.containerd_images()
        self.assertIn("{}/library/app:1".format(self.offline.host), names)
        self.assertFalse([name for name in names if name.startswith(self.second.host)])

    # -- 4: nobody has it --------------------------------------------------------

    def test_pull_nobody_has_fails_fast(self):
        """
        An image no registry holds is relayed under its original name, and
        the runtime's error for that name comes back within a few seconds.
        """
        self.start()
        started = time.monotonic()
        error = self.assertPullFails("nothere:v9")
        elapsed = time.monotonic() - started

        self.assertIn("docker.io/library/nothere:v9", error.details())
        self.assertLess(elapsed, NOBODY_PULL_LIMIT)

    # -- 5: digests --------------------------------------------------------------

    def push_two_apps(self):
        """
        Push C{library/app:1} with different content to both registries.

        :return: the second registry's L{sandbox.PushedImage}.
        """
        offline = self.offline.push_image("library/app", "1", content=b"offline app")
        second = self.second.push_image("library/app", "1", content=b"second app")
        self.assertNotEqual(offline.manifest_digest, second.manifest_digest)
        status, _, _ = self.offline.request(
            "HEAD", "/v2/library/app/manifests/" + second.manifest_digest)
        self.assertEqual(status, 404, "the offline registry must not hold the digest")
        return second

    def test_digest_pinned_pull(self):
        """
        C{app@DIGEST}, a digest only the lower-priority registry holds, is
        pulled from that registry: the digest is never dropped for the
        offline registry's tag.
        """
        second = self.push_two_apps()
        self.start()

        name = "app@" + second.manifest_digest
        self.assertEqual(self.pull(name).image_ref, second.config_digest)
        self.assertEqual(self.status(name).image.id, second.config_digest)

    def test_tag_and_digest_pinned_pull(self):
        """
        C{app:1@DIGEST} is pulled by its digest from the registry that holds
        it, even though the offline registry has the tag.
        """
        second = self.push_two_apps()
        self.start()

        name = "app:1@" + second.manifest_digest
        self.assertEqual(self.pull(name).image_ref, second.config_digest)
        self.assertEqual(self.status(name).image.id, second.config_digest)

    def test_unknown_digest_fails(self):
        """
        A digest no registry holds fails the pull, with or without a tag
        that the registries do hold: the tag is never pulled instead.
        """
        self.push_two_apps()
        self.start()

        self.assertPullFails("app@" + UNKNOWN_DIGEST)
        self.assertPullFails("app:1@" + UNKNOWN_DIGEST)
        self.assertEqual(self.list_ids(), [])
        self.assertEqual(self.node.containerd_images(), [])

    # -- 6: kubelet's credentials ------------------------------------------------

    def test_kubelet_auth_replaced(self):
        """
        Credentials kubelet sends for the upstream name are replaced with the
        offline registry's own on rewrite (the pull succeeds although that
        registry knows no such user), and never reach that registry.
        """
        image = self.offline.push_image("library/nginx", "latest", content=b"offline nginx")
        self.start()

        self.assertEqual(self.pull("nginx:latest", auth=KUBELET_AUTH).image_ref,
                         image.config_digest)

        with open(self.offline.log_path, encoding="utf-8", errors="replace") as f:
            registry_log = f.read()
        # The registry logs user names, accepted or not: the check means
        # something.
        self.assertTrue("auth.user.name={}".format(ALICE[0]) in registry_log,
                        "the registry log names no user: {}".format(self.offline.log_path))
        self.assertFalse(KUBELET_AUTH[0] in registry_log,
                         "kubelet's user reached the offline registry")

    # -- 7: pass-through ---------------------------------------------------------

    def test_runtime_calls_pass_through(self):
        """
        RuntimeService Version and Status, and ImageService ImageFsInfo,
        answer through the shim as containerd answers directly.
        """
        self.start()
        direct = self.node.direct_client(self.package)

        version = self.client.Version(self.api.VersionRequest(), timeout=CALL_TIMEOUT)
        self.assertEqual(version.runtime_name, "containerd")
        self.assertEqual(version, direct.Version(self.api.VersionRequest(),
                                                 timeout=CALL_TIMEOUT))

        status = self.client.Status(self.api.StatusRequest(), timeout=CALL_TIMEOUT)
        self.assertTrue(status.status.conditions)
        direct_status = direct.Status(self.api.StatusRequest(), timeout=CALL_TIMEOUT)
        self.assertEqual([c.type for c in status.status.conditions],
                         [c.type for c in direct_status.status.conditions])

        fs = self.client.ImageFsInfo(self.api.ImageFsInfoRequest(), timeout=CALL_TIMEOUT)
        direct_fs = direct.ImageFsInfo(self.api.ImageFsInfoRequest(), timeout=CALL_TIMEOUT)
        self.assertEqual([f.fs_id.mountpoint for f in fs.image_filesystems],
                         [f.fs_id.mountpoint for f in direct_fs.image_filesystems])

    # -- 8: image IDs ------------------------------------------------------------

    def test_image_status_by_id(self):
        """
        An image ID is relayed to the runtime as is: absent before the pull,
        present with that ID after it (under the registry's name with
        C{names: registry}).
        """
        image = self.offline.push_image("library/nginx", "latest", content=b"offline nginx")
        self.start(extra=REGISTRY_VIEW)
        self.assertNoImage(image.config_digest)

        self.pull("nginx")

        status = self.status(image.config_digest)
        self.assertEqual(status.image.id, image.config_digest)
        self.assertIn("{}/library/nginx:latest".format(self.offline.host),
                      status.image.repo_tags)
        self.assertNoImage(UNKNOWN_DIGEST)

    # -- 10: secrets -------------------------------------------------------------

    def test_no_secret_in_log(self):
        """
        After pulls with injected credentials from both registries, a pull
        with kubelet's credentials, failed pulls, status and removal calls,
        all with C{debug: true}, the shim's whole output holds no password
        and no base64 C{user:password}.
        """
        self.offline.push_image("library/nginx", "latest", content=b"offline nginx")
        self.offline.push_image("library/busybox", "1", content=b"offline busybox")
        self.second.push_image("only/second", "v1", content=b"second only")
        self.start(debug=True)

        self.pull("nginx:latest")
        self.pull("only/second:v1")
        self.pull("busybox:1", auth=KUBELET_AUTH)
        self.assertPullFails("nothere:v9", auth=KUBELET_AUTH)
        self.assertPullFails("{}/library/nothere:v9".format(self.offline.host))
        self.status("nginx:latest")
        self.remove("nginx:latest")

        log = self.assertStopsCleanly(self.node)
        self.assertIn("PullImage", log)
        for secret in self.node.secrets():
            self.assertNotIn(secret, log)

    # -- 11: colons in passwords -------------------------------------------------

    def test_passwords_with_colons(self):
        """
        C{auth: user:pass:word}, unquoted, is split on the first colon: pulls
        from both registries work when both passwords hold colons.
        """
        node = self.make_node([("alice", "a:l:i:c:e-pw"), BOB])
        node.start_sandbox()
        offline = node.offline.push_image("library/nginx", "latest", content=b"offline")
        second = node.second.push_image("only/second", "v1", content=b"second")
        text = node.write_config()
        self.assertIn("\nauth: alice:a:l:i:c:e-pw\n", text)
        self.assertIn("\n    auth: bob:b:o:b-pw\n", text)
        node.start_shim()
        self.client = node.client(self.package)
        self.api = self.client.api

        self.assertEqual(self.pull("nginx").image_ref, offline.config_digest)
        self.assertEqual(self.pull("only/second:v1").image_ref, second.config_digest)

    # -- 9: force ----------------------------------------------------------------

    def test_force_waits_for_runtime(self):
        """
        With C{force: true} and no runtime yet, the shim serves and calls
        fail with UNAVAILABLE; once containerd comes up, calls go through
        within a few seconds, without a shim restart.
        """
        node = self.make_node()
        node.start_sandbox(containerd=False)
        image = node.offline.push_image("library/nginx", "latest", content=b"offline")
        node.write_config(force=True)
        self.assertFalse(os.path.exists(node.containerd.socket))
        process = node.start_shim()
        client = node.client(self.package)
        api = client.api

        with self.assertRaises(grpc.RpcError) as caught:
            client.Version(api.VersionRequest(), timeout=CALL_TIMEOUT)
        self.assertEqual(caught.exception.code(), grpc.StatusCode.UNAVAILABLE)

        node.containerd.start()
        deadline = time.monotonic() + RUNTIME_APPEARS_LIMIT
        while True:
            try:
                version = client.Version(api.VersionRequest(), timeout=CALL_TIMEOUT)
                break
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                    raise
            time.sleep(POLL_INTERVAL)
        self.assertEqual(version.runtime_name, "containerd")
        self.assertIs(node.process, process)
        self.assertIsNone(process.poll())

        response = client.PullImage(api.PullImageRequest(image=client.image("nginx")),
                                    timeout=CALL_TIMEOUT)
        self.assertEqual(response.image_ref, image.config_digest)

    # -- 12: the socket ----------------------------------------------------------

    def test_socket_mode_and_clean_stop(self):
        """
        The shim's socket is mode 0660 while it serves; SIGTERM stops the
        process cleanly (see L{CLEAN_STOP_STATUSES}) and removes the socket.
        """
        self.start()
        mode = os.lstat(self.node.socket).st_mode
        self.assertTrue(stat.S_ISSOCK(mode))
        self.assertEqual(stat.S_IMODE(mode), 0o660)
        self.client.Version(self.api.VersionRequest(), timeout=CALL_TIMEOUT)

        self.assertStopsCleanly(self.node)


class V1Tests(_ImageTests, unittest.SynchronousTestCase):
    """
    The end-to-end image tests over CRI C{runtime.v1}.
    """

    package = "runtime.v1"


class V1Alpha2Tests(_ImageTests, unittest.SynchronousTestCase):
    """
    The end-to-end image tests over CRI C{runtime.v1alpha2}.
    """

    package = "runtime.v1alpha2"


class ProcessTests(_NodeMixin, unittest.SynchronousTestCase):
    """
    How the twistd process starts without a runtime: no CRI call is made,
    so there is nothing to repeat per CRI version.
    """

    def no_runtime(self):
        """
        Start the registries only, write a config whose C{cri} socket does not
        exist (C{force: false}), run the shim and wait for it to exit.

        :return: C{(node, exit status, output)}.
        """
        node = self.make_node()
        node.start_sandbox(containerd=False)
        node.write_config(force=False)
        node.spawn_shim()
        return node, node.wait_shim(), node.shim_log()

    def test_no_runtime_without_force_exits(self):
        """
        With C{force: false} and no CRI socket, the shim exits non-zero with
        a message naming the socket, and leaves no socket of its own.
        """
        node, status, output = self.no_runtime()
        self.assertNotEqual(status, 0)
        self.assertIn("no CRI socket at {}".format(node.containerd.socket), output)
        self.assertIn("force: true", output)
        self.assertFalse(os.path.lexists(node.socket))

    def test_no_runtime_message_is_not_a_traceback(self):
        """
        The missing-socket message is a plain error, not a Python traceback.
        """
        node, status, output = self.no_runtime()
        self.assertNotEqual(status, 0)
        self.assertNotIn("Traceback", output)
