# -*- test-case-name: tests.serve.test_views -*-
"""
A recording CRI runtime whose images have names as containerd gives them:
each image under its tags and its C{repo@digest} names, found by any of them
or by its ID, listed by ListImages, and removed with all its names.
"""

import hashlib

from cri_shim.model import wire
from cri_shim.testing.runtime import FakeRuntime


class ImageRuntime(FakeRuntime):
    """
    L{FakeRuntime} with named images, and containers that name theirs as
    containerd does (by the image's first tag and C{repo@digest}).

    :ivar images: image name (tag or digest form) -> image ID.
    :ivar containers: container ID -> C{(image name, image ref)} as the
        runtime reports them (strings, or bytes that may be no UTF-8); ContainerStatus and ListContainers answer
        from it, with an unknown field in each container.
    """

    def __init__(self, *args, **kwargs):
        FakeRuntime.__init__(self, *args, **kwargs)
        self.containers = {}

    def container(self, container_id, status=False):
        """
        :return: the encoded C{ContainerStatus} (or, not C{status}, the
            C{Container}) of C{container_id}.
        """
        image, image_ref = (name if isinstance(name, bytes) else name.encode()
                            for name in self.containers[container_id])
        image_field, ref_field = (8, 9) if status else (4, 5)
        return (wire.field(1, container_id.encode()) + wire.field(image_field, wire.field(1, image))
                + wire.field(ref_field, image_ref) + wire.field(999, b"future"))

    def digest(self, image_id):
        """
        :return: the manifest digest of the image C{image_id}.
        """
        return "sha256:" + hashlib.sha256(image_id.encode("ascii")).hexdigest()

    def names(self, image_id):
        """
        :return: C{(repo_tags, repo_digests)} of the image C{image_id}.
        """
        held = [name for name, held_id in self.images.items() if held_id == image_id]
        tags = [name for name in held if "@" not in name]
        digests = [name.rpartition(":")[0] + "@" + self.digest(image_id) for name in tags]
        digests += [name for name in held if "@" in name and name not in digests]
        return tags, digests

    def find(self, name):
        """
        :return: the ID of the image C{name} names (a tag, a digest form or
            an ID), or C{None}.
        """
        if name in self.images:
            return self.images[name]
        for image_id in set(self.images.values()):
            if name == image_id or name in self.names(image_id)[1]:
                return image_id
        return None

    def _image(self, message, image_id):
        message.id = image_id
        tags, digests = self.names(image_id)
        message.repo_tags.extend(tags)
        message.repo_digests.extend(digests)

    def _unary(self, path, raw, context):
        method = path.rsplit("/", 1)[1]
        api = self.api
        if method == "ImageStatus":
            self._record(path, raw, context)
            self._fail_if(method, context)
            response = api.ImageStatusResponse()
            image_id = self.find(api.ImageStatusRequest.FromString(raw).image.image)
            if image_id is not None:
                self._image(response.image, image_id)
            return response.SerializeToString()
        if method == "ListImages":
            self._record(path, raw, context)
            self._fail_if(method, context)
            response = api.ListImagesResponse()
            for image_id in sorted(set(self.images.values())):
                self._image(response.images.add(), image_id)
            return response.SerializeToString()
        if method == "RemoveImage":
            self._record(path, raw, context)
            self._fail_if(method, context)
            image_id = self.find(api.RemoveImageRequest.FromString(raw).image.image)
            for name in [name for name, held in self.images.items() if held == image_id]:
                del self.images[name]
            return b""
        if method in ("ContainerStatus", "ListContainers"):
            self._record(path, raw, context)
            self._fail_if(method, context)
            if method == "ListContainers":
                return b"".join(wire.field(1, self.container(container_id))
                                for container_id in sorted(self.containers))
            container_id = wire.strings_at(raw, (1,))[-1]
            return wire.field(1, self.container(container_id, status=True))
        return FakeRuntime._unary(self, path, raw, context)

