# -*- test-case-name: tests.e2e.test_sandbox -*-
"""
Tests for L{dev.sandbox}: real containerd and docker-registry processes.

Trial does not call C{setUpClass}/C{tearDownClass}, so each test gets its
own sandbox from C{setUp} and removes it with C{addCleanup}; starting one
takes a fraction of a second.  The CRI calls are made with hand-encoded
protobuf so that these tests do not depend on the generated CRI modules.
"""

import base64
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error

from twisted.trial import unittest

from dev import sandbox

from tests.e2e_support import REPO_ROOT
BINARIES = ("containerd", "ctr", "docker-registry", "htpasswd")
MISSING = [name for name in BINARIES if shutil.which(name) is None]
ALICE = ("alice", "alice-pw")
BOB = ("bob", "b:o:b-pw")
WAIT = 10.0

if os.geteuid() != 0:
    SKIP = "containerd needs root"
elif MISSING:
    SKIP = (
        f"missing {', '.join(MISSING)}: "
        "apt-get install containerd docker-registry apache2-utils"
    )
else:
    SKIP = None


def _varint(number):
    out = bytearray()
    while True:
        byte, number = number & 0x7F, number >> 7
        if not number:
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)


def _message(*fields):
    """
    Encode a protobuf message whose fields are all strings or messages.

    :param fields: ``(number, bytes or str)`` pairs.
    """
    out = b""
    for number, value in fields:
        if isinstance(value, str):
            value = value.encode()
        out += _varint(number << 3 | 2) + _varint(len(value)) + value
    return out


def _read_varint(data, position):
    number = shift = 0
    while True:
        byte = data[position]
        position += 1
        number |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return number, position


def _length_delimited(data):
    """
    Decode the length-delimited fields of a protobuf message.

    :return: ``{field number: [bytes, ...]}``; other wire types are skipped.
    """
    fields = {}
    position = 0
    while position < len(data):
        key, position = _read_varint(data, position)
        wire_type = key & 7
        if wire_type == 0:
            _, position = _read_varint(data, position)
        elif wire_type == 1:
            position += 8
        elif wire_type == 5:
            position += 4
        else:
            length, position = _read_varint(data, position)
            fields.setdefault(key >> 3, []).append(data[position : position + length])
            position += length
    return fields


def _cri_image_call(containerd, version, method, request):
    """
    Call one method of the CRI ImageService over containerd's socket.

    :param version: ``v1`` or ``v1alpha2``.
    :return: the serialized response.
    """
    import grpc

    with grpc.insecure_channel(containerd.address) as channel:
        call = channel.unary_unary(f"/runtime.{version}.ImageService/{method}")
        return call(request, timeout=30)


def _wait_for(predicate, what):
    deadline = time.monotonic() + WAIT
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class SandboxTestCase(unittest.TestCase):
    """
    Start a sandbox with registries for alice, bob and anonymous users.
    """

    skip = SKIP

    def setUp(self):
        self.sandbox = sandbox.Sandbox(registries=[ALICE, BOB, None])
        self.addCleanup(self.sandbox.cleanup)
        self.sandbox.start()
        self.alice, self.bob, self.anonymous = self.sandbox.registries
        self.containerd = self.sandbox.containerd

    def pull(self, image, credentials=None):
        """
        Pull ``image`` with ctr into the CRI's namespace.

        :param credentials: ``(username, password)``, or ``None``.
        """
        args = ["images", "pull", "--plain-http"]
        if credentials:
            args += ["--user", ":".join(credentials)]
        return self.containerd.ctr(*args, image.reference())


class RegistryAuthTests(SandboxTestCase):
    """
    The registries' htpasswd basic authentication over plain HTTP.
    """

    def test_anonymous_rejected(self):
        """
        A registry with a user answers 401 with a Basic challenge to an
        anonymous C{GET /v2/}.
        """
        status, headers, _ = self.alice.request("GET", "/v2/", auth=False)
        self.assertEqual(status, 401)
        self.assertEqual(headers["WWW-Authenticate"], 'Basic realm="sandbox"')

    def test_credentials_accepted(self):
        """
        The right credentials, even with colons in the password, get 200.
        """
        self.assertEqual(self.alice.request("GET", "/v2/")[0], 200)
        self.assertEqual(self.bob.request("GET", "/v2/")[0], 200)

    def test_wrong_credentials_rejected(self):
        """
        Another registry's credentials get 401.
        """
        token = base64.b64encode(b"bob:b:o:b-pw").decode()
        status, _, _ = self.alice.request(
            "GET", "/v2/", headers={"Authorization": "Basic " + token}, auth=False
        )
        self.assertEqual(status, 401)

    def test_no_auth(self):
        """
        A registry without a user lets anyone in.
        """
        self.assertIsNone(self.anonymous.username)
        self.assertEqual(self.anonymous.request("GET", "/v2/", auth=False)[0], 200)

    def test_addresses(self):
        """
        C{host} and C{url} name the registry's port on 127.0.0.1, and each
        registry has its own.
        """
        self.assertEqual(self.alice.host, f"127.0.0.1:{self.alice.port}")
        self.assertEqual(self.alice.url, f"http://127.0.0.1:{self.alice.port}")
        ports = {registry.port for registry in self.sandbox.registries}
        self.assertEqual(len(ports), 3)


class PushPullTests(SandboxTestCase):
    """
    Images pushed with L{sandbox.Registry.push_image} are real: containerd
    pulls and unpacks them, with ctr and through the CRI.
    """

    def test_ctr_pull_unpacks(self):
        """
        ctr pulls a pushed image with credentials and unpacks it with the
        native snapshotter: the image's file is on disk with its content.
        """
        image = self.alice.push_image("library/nginx", content=b"unpack me\n")
        self.pull(image, ALICE)
        listing = self.containerd.ctr("images", "ls")
        self.assertIn(f"{image.reference()} ", listing)
        self.assertIn(image.manifest_digest, listing)
        config = json.loads(self.containerd.ctr("content", "get", image.config_digest))
        (diff_id,) = config["rootfs"]["diff_ids"]
        snapshots = self.containerd.ctr("snapshots", "--snapshotter", "native", "ls")
        self.assertIn(diff_id, snapshots)
        files = glob.glob(
            os.path.join(
                self.containerd.root,
                "io.containerd.snapshotter.v1.native",
                "snapshots",
                "*",
                sandbox.CONTENT_PATH,
            )
        )
        self.assertEqual(len(files), 1)
        with open(files[0], "rb") as f:
            self.assertEqual(f.read(), b"unpack me\n")

    def test_image_id_is_config_digest(self):
        """
        The manifest containerd stored points at C{config_digest}, and the
        CRI plugin names the image by it, as the image ID.
        """
        image = self.bob.push_image("library/nginx", "1.25")
        self.pull(image, BOB)
        manifest = json.loads(
            self.containerd.ctr("content", "get", image.manifest_digest)
        )
        self.assertEqual(manifest["config"]["digest"], image.config_digest)
        _wait_for(
            lambda: image.config_digest
            in self.containerd.ctr("images", "ls", "-q").split(),
            "the CRI plugin to add the image ID reference",
        )

    def test_wrong_credentials_pull_fails(self):
        """
        ctr cannot pull from a registry with auth without its credentials.
        """
        image = self.alice.push_image("library/nginx")
        self.assertRaises(sandbox.SandboxError, self.pull, image, BOB)
        self.assertRaises(sandbox.SandboxError, self.pull, image)

    def test_cri_pull_with_auth(self):
        """
        The CRI plugin answers runtime.v1 and runtime.v1alpha2 on the socket:
        PullImage with credentials over plain HTTP returns the config digest
        as the image ref, and ImageStatus reports it as the image ID.
        """
        for version, content in [("v1", b"one\n"), ("v1alpha2", b"two\n")]:
            image = self.bob.push_image(f"cri/{version}", content=content)
            spec = _message((1, image.reference()))
            pulled = _cri_image_call(
                self.containerd,
                version,
                "PullImage",
                _message((1, spec), (2, _message((1, BOB[0]), (2, BOB[1])))),
            )
            self.assertEqual(
                _length_delimited(pulled)[1], [image.config_digest.encode()]
            )
            status = _cri_image_call(
                self.containerd, version, "ImageStatus", _message((1, spec))
            )
            (found,) = _length_delimited(status)[1]
            fields = _length_delimited(found)
            self.assertEqual(fields[1], [image.config_digest.encode()])
            self.assertEqual(fields[2], [image.reference().encode()])

    def test_different_content_different_image(self):
        """
        Different content gives a different image ID; the same content gives
        the same digests again.
        """
        first = self.alice.push_image("library/nginx", "a", content=b"first\n")
        second = self.alice.push_image("library/nginx", "b", content=b"second\n")
        again = self.alice.push_image("library/nginx", "c", content=b"first\n")
        self.assertNotEqual(first.config_digest, second.config_digest)
        self.assertNotEqual(first.manifest_digest, second.manifest_digest)
        self.assertEqual(first.config_digest, again.config_digest)
        self.assertEqual(first.manifest_digest, again.manifest_digest)
        self.pull(first, ALICE)
        self.pull(second, ALICE)

    def test_push_by_digest(self):
        """
        A push with C{digest_only} creates no tag, is named by digest, and
        pulls.
        """
        image = self.anonymous.push_image("only/digest", digest_only=True)
        self.assertIsNone(image.tag)
        reference = f"{self.anonymous.host}/only/digest@{image.manifest_digest}"
        self.assertEqual(image.reference(), reference)
        self.assertEqual(image.digest_reference(), reference)
        manifest = f"/v2/only/digest/manifests/{image.manifest_digest}"
        headers = {"Accept": sandbox.MANIFEST_MEDIA_TYPE}
        self.assertEqual(self.anonymous.request("GET", manifest, None, headers)[0], 200)
        tags = self.anonymous.request("GET", "/v2/only/digest/tags/list")
        self.assertEqual(tags[0], 404)
        self.pull(image)

    def test_reference_other_host(self):
        """
        C{reference} can name the image under another registry host.
        """
        image = self.alice.push_image("library/nginx", "1.25")
        self.assertEqual(image.reference("docker.io"), "docker.io/library/nginx:1.25")
        self.assertEqual(image.tag, "1.25")
        self.assertEqual(self.alice.push_image("x/y").tag, "latest")

    def test_tag_with_digest_only(self):
        """
        A tag and C{digest_only} together are refused.
        """
        self.assertRaises(
            ValueError, self.alice.push_image, "x/y", "1", digest_only=True
        )


class FaultTests(SandboxTestCase):
    """
    Restarts, crashes and pauses of the sandbox's processes.
    """

    def test_containerd_restart(self):
        """
        After a restart containerd still has the images it pulled and pulls
        more.
        """
        first = self.alice.push_image("library/nginx", "a", content=b"first\n")
        self.pull(first, ALICE)
        old_pid = self.containerd.process.pid
        self.containerd.restart()
        self.assertNotEqual(self.containerd.process.pid, old_pid)
        self.assertFalse(sandbox.alive(old_pid))
        self.assertIn(first.reference(), self.containerd.ctr("images", "ls", "-q"))
        second = self.alice.push_image("library/nginx", "b", content=b"second\n")
        self.pull(second, ALICE)

    def test_containerd_kill_and_start(self):
        """
        containerd comes back after a SIGKILL.
        """
        self.containerd.kill()
        self.assertFalse(self.containerd.running)
        self.containerd.start()
        self.pull(self.anonymous.push_image("library/nginx"))

    def test_registry_restart_keeps_port_and_data(self):
        """
        A restarted registry listens on the same port and keeps its images.
        """
        image = self.bob.push_image("library/nginx")
        port = self.bob.port
        self.bob.restart()
        self.assertEqual(self.bob.port, port)
        self.pull(image, BOB)

    def test_registry_pause(self):
        """
        A paused registry accepts connections but does not answer until it
        is resumed.
        """
        self.alice.pause()
        try:
            self.assertRaises(
                (urllib.error.URLError, OSError),
                sandbox._OPENER.open,
                self.alice.url + "/v2/",
                timeout=0.5,
            )
        finally:
            self.alice.resume()
        self.assertEqual(self.alice.request("GET", "/v2/")[0], 200)

    def test_stop_paused_registry(self):
        """
        C{stop} ends a paused registry promptly, and twice is fine.
        """
        pid = self.alice.process.pid
        self.alice.pause()
        started = time.monotonic()
        self.alice.stop()
        self.assertLess(time.monotonic() - started, sandbox.STOP_TIMEOUT)
        self.assertFalse(sandbox.alive(pid))
        self.alice.stop()

    def test_stop_kills_shims(self):
        """
        C{stop} kills the shims of this containerd and their children, which
        containerd itself leaves running, and only those.
        """
        # bash named like a shim (Python would look for its library next to
        # the real shim); ours has a child, the other one waits on a pipe.
        shim, other = (
            subprocess.Popen(
                ["containerd-shim-runc-v2", "-c", script, "shim", "-address", address],
                executable="/bin/bash",
                stdin=subprocess.PIPE,
            )
            for script, address in [
                ("sleep 60 & wait", self.containerd.socket),
                ("read -t 60", "/elsewhere.sock"),
            ]
        )
        self.addCleanup(shim.stdin.close)
        self.addCleanup(other.stdin.close)
        self.addCleanup(other.wait)
        self.addCleanup(other.kill)
        _wait_for(lambda: len(self.containerd.shim_pids()) == 2, "the fake shim")
        pids = self.containerd.shim_pids()
        self.containerd.stop()
        self.assertEqual(shim.wait(WAIT), -signal.SIGKILL)
        self.assertEqual([pid for pid in pids if sandbox.alive(pid)], [])
        self.assertIsNone(other.poll())


class LifecycleTests(unittest.TestCase):
    """
    Starting, failing and cleaning up sandboxes.
    """

    skip = SKIP

    def test_cleanup(self):
        """
        C{cleanup} stops every process and removes the directory, including
        unpacked images; calling it again is fine.
        """
        with sandbox.Sandbox(registries=[ALICE]) as box:
            image = box.registries[0].push_image("library/nginx")
            box.containerd.ctr(
                "images", "pull", "--plain-http", "--user", ":".join(ALICE),
                image.reference(),
            )
            pids = [box.containerd.process.pid, box.registries[0].process.pid]
        self.assertFalse(os.path.exists(box.directory))
        self.assertEqual([pid for pid in pids if sandbox.alive(pid)], [])
        self.assertFalse(box.containerd.running)
        box.cleanup()

    def test_cleanup_unmounts(self):
        """
        C{cleanup} unmounts what is mounted in the sandbox (such as a
        container's rootfs left by a killed shim) before removing anything,
        so that it deletes nothing through the mount.
        """
        source = self.mktemp()
        os.makedirs(source)
        with open(os.path.join(source, "keep"), "w"):
            pass
        box = sandbox.Sandbox(registries=[])
        self.addCleanup(box.cleanup)
        target = os.path.join(box.directory, "c", "state", "rootfs")
        os.makedirs(target)
        if subprocess.run(["mount", "--bind", source, target]).returncode:
            raise unittest.SkipTest("cannot bind-mount here")
        box.cleanup()
        self.assertFalse(os.path.exists(box.directory))
        self.assertTrue(os.path.exists(os.path.join(source, "keep")))
        with open("/proc/self/mountinfo") as mountinfo:
            self.assertNotIn(box.directory, mountinfo.read())

    def test_short_socket_path(self):
        """
        The socket lives in a short directory under /tmp.
        """
        box = sandbox.Sandbox(registries=[])
        self.addCleanup(box.cleanup)
        self.assertTrue(box.containerd.socket.startswith("/tmp/ics-"))
        self.assertEqual(box.containerd.address, "unix://" + box.containerd.socket)
        self.assertLess(len(box.containerd.socket), 64)

    def test_port_taken(self):
        """
        A registry given a port already in use fails to start with a clear
        error holding the end of its log.
        """
        box = sandbox.Sandbox(registries=[])
        self.addCleanup(box.cleanup)
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            registry = sandbox.Registry(
                os.path.join(box.directory, "r"), port=taken.getsockname()[1]
            )
            error = self.assertRaises(sandbox.SandboxError, registry.start)
        self.assertIn("address already in use", str(error))
        self.assertFalse(registry.running)

    def test_port_collision_retried(self):
        """
        When the port picked for a registry is taken before it binds it, the
        registry picks another.
        """
        box = sandbox.Sandbox(registries=[])
        self.addCleanup(box.cleanup)
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            ports = [taken.getsockname()[1]]
            free_port = sandbox._free_port
            self.patch(
                sandbox, "_free_port", lambda: ports.pop() if ports else free_port()
            )
            registry = sandbox.Registry(os.path.join(box.directory, "r"))
            registry.start()
            self.addCleanup(registry.stop)
            self.assertNotEqual(registry.port, taken.getsockname()[1])
        self.assertEqual(registry.request("GET", "/v2/")[0], 200)

    def test_parent_death(self):
        """
        The sandbox's processes die with the process that started them, even
        when it is killed before it can clean up.
        """
        script = textwrap.dedent(
            f"""
            import json, sys, time
            sys.path.insert(0, {REPO_ROOT!r})
            from dev import sandbox
            box = sandbox.Sandbox(registries=[None])
            box.start()
            print(json.dumps([box.directory, box.containerd.process.pid,
                              box.registries[0].process.pid]), flush=True)
            time.sleep(60)
            """
        )
        parent = subprocess.Popen(
            [sys.executable, "-c", script], stdout=subprocess.PIPE
        )
        self.addCleanup(parent.wait)
        self.addCleanup(parent.kill)
        directory, *pids = json.loads(parent.stdout.readline())
        self.addCleanup(sandbox._remove_tree, directory)
        parent.stdout.close()
        self.assertTrue(all(sandbox.alive(pid) for pid in pids))
        parent.kill()
        _wait_for(lambda: not any(sandbox.alive(pid) for pid in pids), "orphans to die")
