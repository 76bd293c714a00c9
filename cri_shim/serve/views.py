# -*- test-case-name: tests.serve.test_views,tests.security.test_tenants -*-
"""
[worker threads] The node as seen through requested names (config
C{names: requested}): ImageStatus and ListImages answers show each image
pulled through the shim under the names it was asked for (the
L{cri_shim.serve.name_store}'s view), ListImages filters by them,
CreateContainer by an image name finds the image the way ImageStatus does
(for the pod it names), and ContainerStatus and ListContainers name each
container's image as it was requested (the kubelet's pod status shows it).

A response is re-encoded only when a name in it changes, and a
CreateContainer request only in its image name (L{cri_shim.model.wire}).
"""

import grpc
from google.protobuf.message import DecodeError
from twisted.logger import Logger

from cri_shim.model import config as configuration, rewrite, wire
from cri_shim.model.names import parse_requested
from cri_shim.serve import methods
from cri_shim.metrics import Metrics
from cri_shim.serve.pods import pod_of_sandbox
from cri_shim.serve.upstream import Abort, guarded, thd_call

#: Deadline of the ListImages call that reconciles the store at start.
RECONCILE_TIMEOUT = 60.0


def shows_requested(snapshot):
    """
    :return: whether C{snapshot}'s config shows requested names.
    """
    return snapshot.config.names == configuration.NAMES_REQUESTED


def _present_image(view, image):
    """
    Show C{image} (a protobuf C{Image}) through C{view}, in place.

    :return: whether a name changed.
    """
    tags, digests = view.present(image.repo_tags, image.repo_digests)
    if tags == list(image.repo_tags) and digests == list(image.repo_digests):
        return False
    del image.repo_tags[:]
    image.repo_tags.extend(tags)
    del image.repo_digests[:]
    image.repo_digests.extend(digests)
    return True


def present_status(api, view, raw):
    """
    :return: the raw ImageStatusResponse C{raw} shown through C{view}.
    """
    response = api.ImageStatusResponse.FromString(raw)
    if response.HasField("image") and _present_image(view, response.image):
        return response.SerializeToString()
    return raw


#: Images whose shown form is kept between ListImages calls, at most.
MAX_KEPT_IMAGES = 4096


def _present_list(api, view, raw, kept):
    """
    :param kept: a dict of an C{images} field's bytes to its shown bytes,
        for L{view}: each image is decoded only the first time it is seen
        (a runtime lists its images in any order, so whole answers seldom
        repeat, but the images in them do).
    :return: the raw ListImagesResponse C{raw} shown through C{view}.
    """
    parts = []
    for number, kind, start, value_start, end in wire.split(raw):
        piece = raw[start:end]
        if number == 1 and kind == 2:
            shown = kept.get(piece)
            if shown is None:
                image = api.Image.FromString(raw[value_start:end])
                shown = piece
                if _present_image(view, image):
                    shown = wire.field(1, image.SerializeToString())
                if len(kept) >= MAX_KEPT_IMAGES:
                    kept.clear()
                kept[piece] = shown
            piece = shown
        parts.append(piece)
    return b"".join(parts)


def thd_image_names(upstream, packages=("runtime.v1", "runtime.v1alpha2")):
    """
    Every name the runtime holds an image under: its tags and digests, by
    ListImages of the first CRI version it serves.

    :raise grpc.RpcError: when the runtime does not answer.
    """
    for package in packages:
        call = upstream.unary(methods.path(package, "ImageService", "ListImages"))
        try:
            raw = call(b"", timeout=RECONCILE_TIMEOUT)
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.UNIMPLEMENTED and package != packages[-1]:
                continue
            raise
        names = set()
        for image in methods.API[package].ListImagesResponse.FromString(raw).images:
            names.update(image.repo_tags)
            names.update(image.repo_digests)
        return names


class NameView:
    """
    The ListImages and CreateContainer handlers for one CRI version.

    :param package: the CRI package, C{"runtime.v1"} or C{"runtime.v1alpha2"}.
    :param upstream: the L{cri_shim.serve.upstream.Upstream}.
    :param holder: the L{cri_shim.snapshot.SnapshotHolder}.
    :param store: the L{cri_shim.serve.name_store.NameStore}.
    :param local_name: a blocking callable C{(context, snapshot, ref, pod)}
        returning the name the runtime holds C{ref} under for C{pod} (a
        L{cri_shim.model.selector.Pod} or C{None}), or C{None}
        (L{cri_shim.serve.image_service.ImageService.thd_local_name}).
    """

    log = Logger()

    def __init__(self, package, upstream, holder, store, local_name, metrics=None):
        self._metrics = metrics or Metrics()
        self._api = methods.API[package]
        self._package = package
        self._holder = holder
        self._store = store
        self._local_name = local_name
        self._list = upstream.unary(methods.path(package, "ImageService", "ListImages"))
        self._create = upstream.unary(methods.path(package, "RuntimeService", "CreateContainer"))
        self._container_status = upstream.unary(
            methods.path(package, "RuntimeService", "ContainerStatus"))
        self._list_containers = upstream.unary(
            methods.path(package, "RuntimeService", "ListContainers"))
        # The view and the images shown through it (see _present_list).
        self._kept = (None, {})

    def handlers(self):
        """
        :return: a dict of method path to C{grpc.RpcMethodHandler}.
        """
        handlers = {}
        for service, name in (("ImageService", "ListImages"),
                              ("RuntimeService", "CreateContainer"),
                              ("RuntimeService", "ContainerStatus"),
                              ("RuntimeService", "ListContainers")):
            path = methods.path(self._package, service, name)
            handlers[path] = grpc.unary_unary_rpc_method_handler(
                self._metrics.instrument(path, guarded(getattr(self, name), self.log)))
        return handlers

    def ListImages(self, raw, context):
        """
        List the images, each under the names it was requested by.
        """
        snapshot = self._holder.current
        view = self._store.view
        if not (view.targets and shows_requested(snapshot)):
            return self._call(self._list, raw, context)
        try:
            request = self._api.ListImagesRequest.FromString(raw)
        except DecodeError:
            return self._call(self._list, raw, context)
        ref = parse_requested(request.filter.image.image)
        target = view.targets.get(str(ref)) if ref is not None else None
        if target is not None:
            request.filter.image.image = target
            raw = request.SerializeToString()
        kept_view, kept = self._kept
        if kept_view is not view:
            kept = {}
            self._kept = (view, kept)
        answer = self._call(self._list, raw, context)
        try:
            return _present_list(self._api, view, answer, kept)
        except (wire.WireError, DecodeError):
            # Not ours to judge: the caller gets what the runtime said.
            return answer

    def CreateContainer(self, raw, context):
        """
        Create the container from the image found under the name asked for,
        for the pod its C{sandbox_config} names; the request is otherwise
        relayed byte for byte.  A name whose image depends on the pod
        (L{rewrite.contested}) and was never pulled for this pod's scope is
        refused: relayed, the runtime would resolve it node-wide.
        """
        try:
            asked = wire.strings_at(raw, wire.CONTAINER_IMAGE)
        except wire.WireError:
            asked = []
        ref = parse_requested(asked[-1]) if asked else None
        if ref is None:
            return self._call(self._create, raw, context)
        snapshot = self._holder.current
        pod = self._pod(raw)
        found = self._local_name(context, snapshot, ref, pod)
        if found is None and rewrite.contested(snapshot.config, ref):
            raise Abort(grpc.StatusCode.NOT_FOUND, (
                "image {} was not pulled for this pod: registries restricted to some workloads "
                "serve it, so only a pull for the pod (with its sandbox config) tells which "
                "image it is; pull it first, or name the image by its ID").format(asked[-1]))
        if found is None or found == str(ref):
            return self._call(self._create, raw, context)
        if snapshot.config.debug:
            self.log.debug("CreateContainer {original} -> {found}", original=asked[-1],
                           found=found)
        return self._call(self._create, wire.replace_strings(raw, wire.CONTAINER_IMAGE, found),
                          context)

    def ContainerStatus(self, raw, context):
        """
        The container's status, its image under the name it was requested
        by (C{image_ref} in the requested repository, with its digest).
        """
        return self._show_images(self._container_status, raw, context,
                                 (wire.STATUS_IMAGE, wire.STATUS_IMAGE_REF))

    def ListContainers(self, raw, context):
        """
        The containers, each image under the name it was requested by.
        """
        return self._show_images(self._list_containers, raw, context,
                                 (wire.LISTED_IMAGE, wire.LISTED_IMAGE_REF))

    def _show_images(self, call, raw, context, paths):
        """
        :return: the runtime's answer to C{call}, the image names at
            C{paths} shown as requested (each as the first name it was
            requested by); re-encoded only where a name changes.
        """
        answer = self._call(call, raw, context)
        view = self._store.view
        if not (view.targets and shows_requested(self._holder.current)):
            return answer
        try:
            shown = answer
            for path in paths:
                shown = wire.map_strings(shown, path, lambda name: view.requested(name)[0])
        except wire.WireError:
            # Not ours to judge: the caller gets what the runtime said.
            return answer
        return shown

    def _pod(self, raw):
        """
        :return: the L{cri_shim.model.selector.Pod} a CreateContainerRequest
            names in its C{sandbox_config}, or C{None}.
        """
        try:
            sandbox = self._api.PodSandboxConfig.FromString(
                b"".join(wire.messages_at(raw, wire.CONTAINER_SANDBOX)))
        except (wire.WireError, DecodeError):
            return None
        return pod_of_sandbox(sandbox)

    def _call(self, call, body, context):
        return thd_call(call, body, context, self._holder.current.config.timeout)

