# -*- test-case-name: tests.serve.test_views -*-
"""
A recording CRI runtime whose images have names as containerd gives them:
each image under its tags and its C{repo@digest} names, found by any of them
or by its ID, listed by ListImages, and removed with all its names.
"""

import hashlib

from cri_shim.testing.runtime import FakeRuntime


class ImageRuntime(FakeRuntime):
    """
    L{FakeRuntime} with named images.

    :ivar images: image name (tag or digest form) -> image ID.
    """

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
        return FakeRuntime._unary(self, path, raw, context)
