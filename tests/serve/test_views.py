"""
Tests for L{cri_shim.serve.views} and the names store in the image calls
(L{cri_shim.serve.image_service}), over real gRPC in front of a runtime that
names its images as containerd does (L{cri_shim.testing.images.ImageRuntime}).
"""

import json
import os

import attr
from twisted.logger import LogLevel, capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from cri_shim.model import config, wire
from cri_shim.serve.name_store import NameStore
from cri_shim.testing.images import ImageRuntime
from tests.serve.test_image_service import UNKNOWN_FIELD, ShimTestMixin

HUB = "sealos.hub:5000/library/nginx:latest"
ID = "sha256:" + "9" * 64


def _field(number, payload):
    """
    :return: a length-delimited protobuf field (numbers and lengths < 128).
    """
    return bytes([number << 3 | 2, len(payload)]) + payload


class ViewHarness(ShimTestMixin):
    """
    A shim with a names store in a temporary folder.
    """

    runtime_type = ImageRuntime

    def make_store(self, folder):
        return NameStore(os.path.join(folder, "state"))

    def pull_nginx(self):
        self.holders["docker.io/library/nginx:latest"] = ["sealos.hub:5000"]
        return self.pull("nginx").image_ref

    def list_images(self, name=""):
        request = self.api.ListImagesRequest()
        request.filter.image.image = name
        response = self.client.ListImages(request, timeout=10)
        return {image.id: (list(image.repo_tags), list(image.repo_digests))
                for image in response.images}

    def create_body(self, image):
        """
        :return: a CreateContainerRequest for C{image}, with a sandbox ID, a
            label, annotations on the image and an unknown field.
        """
        spec = self.api.ImageSpec(image=image, annotations={"b": "2", "a": "1"})
        # Deterministic: protobuf 3.21 (Debian's) may write map entries in
        # another order each time.
        container = (_field(1, _field(1, b"web")) + _field(2, spec.SerializeToString(
            deterministic=True))
                     + _field(9, _field(1, b"k") + _field(2, b"v")))
        return _field(1, b"sandbox-1") + _field(2, container) + UNKNOWN_FIELD

    def use_names(self, names):
        self.holder.publish(attr.evolve(self.holder.current.config, names=names))


class ViewTestsMixin(ViewHarness):
    """
    The requested-names view and store, in the image calls.
    """

    # -- ImageStatus -------------------------------------------------------------

    def test_status_shows_requested_name(self):
        """
        An image pulled as C{nginx} from a registry shows, by the name asked
        for and by its ID, under C{docker.io/library/nginx:latest}, with its
        digest in the requested repository; the runtime holds it under the
        registry's name.
        """
        image_id = self.pull_nginx()
        self.assertEqual(list(self.runtime.images), [HUB])
        digest = self.runtime.digest(image_id)
        for name in ("nginx", "docker.io/library/nginx:latest", image_id):
            image = self.status(name).image
            self.assertEqual((list(image.repo_tags), list(image.repo_digests)),
                             (["docker.io/library/nginx:latest"],
                              ["docker.io/library/nginx@" + digest]), name)

    def test_status_found_under_registry_name(self):
        """
        An image the runtime holds under a registry's name, never pulled
        through the shim, shows under the name asked for when found by it,
        and unchanged by its ID.
        """
        self.runtime.images["mirror.example/library/nginx:1"] = ID
        self.assertEqual(list(self.status("nginx:1").image.repo_tags),
                         ["docker.io/library/nginx:1"])
        self.assertEqual(list(self.status(ID).image.repo_tags),
                         ["mirror.example/library/nginx:1"])

    def test_registry_view(self):
        """
        With C{names: registry}, images show under the registry's names and
        nothing is remembered.
        """
        self.use_names(config.NAMES_REGISTRY)
        self.pull_nginx()
        self.assertEqual(list(self.status("nginx").image.repo_tags), [HUB])
        self.assertEqual([tags for tags, _ in self.list_images().values()], [[HUB]])
        self.assertFalse(os.path.exists(self.store.path))

    # -- ListImages --------------------------------------------------------------

    def test_list_shows_requested_names(self):
        """
        ListImages shows an image pulled through the shim under its
        requested name; an image never pulled through it is unchanged.
        """
        image_id = self.pull_nginx()
        self.runtime.images["quay.io/team/app:1"] = ID
        listed = self.list_images()
        self.assertEqual(listed[image_id][0], ["docker.io/library/nginx:latest"])
        self.assertEqual(listed[ID], (["quay.io/team/app:1"],
                                      ["quay.io/team/app@" + self.runtime.digest(ID)]))

    def test_list_filter_by_requested_name(self):
        """
        A filter by a requested name reaches the runtime as the name the
        image is stored under; other filters reach it unchanged.
        """
        self.pull_nginx()
        self.list_images("nginx")
        self.list_images("quay.io/team/app:1")
        sent = [self.api.ListImagesRequest.FromString(raw).filter.image.image
                for _, raw, _, _ in self.runtime_calls("ListImages")]
        self.assertEqual(sent, [HUB, "quay.io/team/app:1"])

    def test_list_relayed_as_is_without_names(self):
        """
        With nothing remembered, ListImages is relayed byte for byte both
        ways.
        """
        self.runtime.images["quay.io/team/app:1"] = ID
        body = self.api.ListImagesRequest().SerializeToString() + UNKNOWN_FIELD
        self.raw("ImageService", "ListImages")(body, timeout=10)
        [(_, raw, _, _)] = self.runtime_calls("ListImages")
        self.assertEqual(raw, body)

    # -- CreateContainer ---------------------------------------------------------

    def test_create_container_by_requested_name(self):
        """
        CreateContainer by the name pulled reaches the runtime with the
        stored name; every other byte is as sent.
        """
        self.pull_nginx()
        self.raw("RuntimeService", "CreateContainer")(self.create_body("nginx"), timeout=10)
        [(_, raw, _, _)] = self.runtime_calls("CreateContainer")
        self.assertEqual(raw, self.create_body(HUB))

    def test_create_container_unchanged(self):
        """
        CreateContainer by an image ID, by a name the runtime holds as
        asked, or by a name it does not hold, is relayed byte for byte.
        """
        self.runtime.images["quay.io/team/app:1"] = ID
        bodies = [self.create_body(name) for name in (ID, "quay.io/team/app:1", "absent:1")]
        for body in bodies:
            self.raw("RuntimeService", "CreateContainer")(body, timeout=10)
        self.assertEqual([raw for _, raw, _, _ in self.runtime_calls("CreateContainer")],
                         bodies)

    # -- ContainerStatus and ListContainers -------------------------------------

    def container_call(self, method, container_id=""):
        body = _field(1, container_id.encode()) if container_id else b""
        return self.raw("RuntimeService", method)(body, timeout=10)

    def test_container_status_shows_requested_name(self):
        """
        ContainerStatus names the image of a container as it was requested,
        its image ref in the requested repository with the real digest;
        every other byte is as the runtime sent it.
        """
        image_id = self.pull_nginx()
        digest = self.runtime.digest(image_id)
        self.runtime.containers["c1"] = (HUB, "sealos.hub:5000/library/nginx@" + digest)
        answer = self.container_call("ContainerStatus", "c1")
        self.runtime.containers["c1"] = ("docker.io/library/nginx:latest",
                                         "docker.io/library/nginx@" + digest)
        self.assertEqual(answer, wire.field(1, self.runtime.container("c1", status=True)))

    def test_list_containers_shows_requested_names(self):
        """
        ListContainers names each container's image as it was requested;
        images never pulled through the shim, and images named by ID, are
        left as they are.
        """
        image_id = self.pull_nginx()
        digest = self.runtime.digest(image_id)
        self.runtime.containers.update({
            "a": (HUB, "sealos.hub:5000/library/nginx@" + digest),
            "b": ("quay.io/team/app:1", "quay.io/team/app@" + digest),
            "c": (image_id, image_id)})
        answer = self.container_call("ListContainers")
        self.runtime.containers["a"] = ("docker.io/library/nginx:latest",
                                        "docker.io/library/nginx@" + digest)
        self.assertEqual(answer, b"".join(wire.field(1, self.runtime.container(name))
                                          for name in "abc"))

    def test_containers_as_the_runtime_says(self):
        """
        With nothing remembered, with C{names: registry}, or when the
        runtime's answer is no message, container answers are relayed as
        they came.
        """
        self.runtime.containers["a"] = (HUB, "sealos.hub:5000/library/nginx@sha256:" + "1" * 64)
        expected = wire.field(1, self.runtime.container("a"))
        self.assertEqual(self.container_call("ListContainers"), expected)
        self.pull_nginx()
        self.use_names(config.NAMES_REGISTRY)
        self.assertEqual(self.container_call("ListContainers"), expected)
        self.assertEqual(self.container_call("ContainerStatus", "a"),
                         wire.field(1, self.runtime.container("a", status=True)))
        self.use_names(config.NAMES_REQUESTED)
        self.runtime.containers["a"] = (HUB, b"\xff")
        self.assertEqual(self.container_call("ListContainers"),
                         wire.field(1, self.runtime.container("a")))

    # -- the store ---------------------------------------------------------------

    def test_pull_remembered_in_file(self):
        """
        A pull moved to a registry is written to the store's file, mode
        0600 in a 0700 folder.
        """
        self.pull_nginx()
        with open(self.store.path) as f:
            self.assertEqual(json.load(f)["names"], [["docker.io/library/nginx:latest", HUB, []]])
        self.assertEqual(os.stat(self.store.path).st_mode & 0o777, 0o600)
        self.assertEqual(os.stat(self.store.folder).st_mode & 0o777, 0o700)

    def test_remove_forgets(self):
        """
        RemoveImage by the requested name, or by ID, removes the image and
        forgets its requested names.
        """
        for name in ("nginx", None):
            image_id = self.pull_nginx()
            self.client.RemoveImage(self.api.RemoveImageRequest(
                image=self.api.ImageSpec(image=name or image_id)), timeout=10)
            self.assertEqual(self.runtime.images, {})
            self.assertEqual(self.store.view.targets, {}, name)

    def test_unwritable_store(self):
        """
        A store that cannot be written loses nothing but the file: the pull
        succeeds, the image shows under its requested name, one warning.
        """
        self.store._write = _refuse
        with capturedLogs() as events:
            self.pull_nginx()
            self.holders["docker.io/library/nginx:1.25"] = ["sealos.hub:5000"]
            self.pull("nginx:1.25")
        self.assertEqual(list(self.status("nginx").image.repo_tags),
                         ["docker.io/library/nginx:latest"])
        warnings = [event for event in events if event["log_level"] == LogLevel.warn]
        self.assertEqual(len(warnings), 1)


def _refuse(folder, name, data, mode):
    raise PermissionError(13, "Permission denied")


class V1ViewTests(ViewTestsMixin, SynchronousTestCase):
    package = "runtime.v1"


class V1Alpha2ViewTests(ViewTestsMixin, SynchronousTestCase):
    package = "runtime.v1alpha2"
