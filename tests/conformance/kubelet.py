"""
A real kubelet (``make kubelet``) in front of the shim: a sandbox node
(:mod:`dev.node`), two sandbox registries, the shim, and a standalone
kubelet (:mod:`dev.kubelet_node`) whose image and runtime services are both
the shim's socket, running one static pod of ``nginx:latest``.

- The shim's registry (``address:``, with a login) holds a stand-in
  ``library/nginx:latest`` (:mod:`dev.critest_images`' web server image), so
  the kubelet's pull of ``nginx:latest`` is rewritten to it.
- The other registry (a ``registries:`` entry of the shim, without a login)
  holds the pause image, which containerd pulls itself through its registry
  hosts config, as a node with a mirror would.

The pod counts as running when the kubelet says so: its phase in the
kubelet's ``/pods`` (the read-only port) is ``Running``.  What the runtime
says of it then is read with ``crictl`` against containerd.

Run it once and print what happened::

    .venv/bin/python -m tests.conformance.kubelet [--runtime LABEL] [--keep]
"""

import argparse
import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import time

from dev import critest_images, kubelet_node, node
from tests import e2e_support
from tests.conformance import critest

#: The image of the static pod, as its spec names it.
IMAGE = "nginx:latest"
#: The stand-in's name as the shim's registry holds it.
STAND_IN = "docker.io/library/nginx:latest"
POD = "web"
CONTAINER = "nginx"
#: How long the pod may take to run after the manifest is written.
POD_TIMEOUT = 120.0
_POLL_INTERVAL = 0.5


@dataclasses.dataclass
class Result:
    """
    One run.

    :ivar runtime: e.g. ``containerd 2.4``; ``version`` its version string.
    :ivar kubelet_start: seconds from starting the kubelet to its healthz
        answering ``ok``.
    :ivar pod_running: seconds from writing the manifest to the kubelet
        reporting the pod's phase ``Running``, or ``None`` if it never did.
    :ivar pod_phase: the pod's last phase the kubelet reported.
    :ivar status_images: ``(image, imageID)`` of each container in the
        kubelet's pod status.
    :ivar stand_in_digest: the manifest digest of the stand-in nginx.
    :ivar pod_state: what the runtime says of the pod's sandbox and
        container then, e.g. ``SANDBOX_READY/CONTAINER_RUNNING``.
    :ivar container_image: the container's image ref, as the runtime has it.
    :ivar pull_lines: the shim's log lines about pulling ``IMAGE``.
    :ivar kubelet_errors: the kubelet's error lines (klog ``E``).
    :ivar left: what the kubelet made outside its folder's files and the
        cleanup left (mounts, cgroups, paths).
    :ivar directory: the node's folder (gone unless kept).
    """

    runtime: str
    version: str
    kubelet_start: float = None
    pod_running: float = None
    pod_phase: str = ""
    status_images: list = dataclasses.field(default_factory=list)
    stand_in_digest: str = ""
    pod_state: str = ""
    container_image: str = ""
    pull_lines: list = dataclasses.field(default_factory=list)
    kubelet_errors: list = dataclasses.field(default_factory=list)
    left: list = dataclasses.field(default_factory=list)
    directory: str = ""


def skip_reason(binary=node.CONTAINERD2):
    """
    :return: why the kubelet run cannot happen here, or ``None``.
    """
    reason = e2e_support.skip_reason() or node.skip_reason(binary)
    if reason is None:
        reason = kubelet_node.skip_reason()
    return reason or critest_images.skip_reason()


def images(like=critest_images.E2E + "nginx:1.14-2", name=STAND_IN):
    """
    :return: ``(pause, stand-in)``: the :class:`critest_images.Image` of
        containerd's sandbox image, and critest's stand-in ``like`` (by
        default the web server) under ``name``.
    """
    by_name = {image.names[0]: image for image in critest_images.stand_ins()}
    model = by_name[like]
    return (by_name[node.SANDBOX_IMAGE],
            critest_images.Image([name], model.layers, model.config))


def make_node(runtime):
    """
    A sandbox node of ``runtime`` (a key of :data:`critest.RUNTIMES`) for
    the shim, not started: two registries, the first (the shim's
    ``address:``, with a login) for the stand-ins the shim pulls, the other
    (a ``registries:`` entry, without a login) for the pause image.

    :return: ``(e2e_support.ShimNode, node.NodeContainerd)``; the caller
        cleans the ShimNode up.
    """
    shim_node = e2e_support.ShimNode(registries=(critest.SHIM_LOGIN, None))
    containerd = node.NodeContainerd(os.path.join(shim_node.sandbox.directory, "c"),
                                     binary=critest.RUNTIMES[runtime])
    shim_node.sandbox.containerd = containerd
    return shim_node, containerd


def start_node(shim_node, containerd, stand_in):
    """
    Start a node of :func:`make_node` with the shim in front: the pause
    image in the second registry, which containerd's registry hosts config
    sends ``registry.k8s.io`` to; ``stand_in`` (a
    :class:`critest_images.Image`) in the shim's registry; the shim's
    default config.

    :return: ``{name: manifest digest}`` of ``stand_in``.
    """
    shim_node.start_sandbox()
    private, mirror = shim_node.sandbox.registries
    critest_images.push(mirror, [images()[0]])
    containerd.mirror(critest_images.split_name(node.SANDBOX_IMAGE)[0], mirror.url)
    digests = critest_images.push(private, [stand_in])
    shim_node.write_config()
    shim_node.start_shim()
    return digests


def image_id(image):
    """
    :return: the image ID (``sha256:`` and its config's digest) of a
        :class:`critest_images.Image`, as the runtime reports it.
    """
    return "sha256:" + hashlib.sha256(image.blobs()[1][-1]).hexdigest()


def crictl(endpoint, *args, parse=True):
    """
    Run ``crictl ARGS`` (``-o json`` after the command when ``parse``) with
    ``endpoint`` (``unix://...``) as its runtime and image endpoint.

    :return: its output, parsed when ``parse``.
    :raise subprocess.CalledProcessError: when it fails.
    """
    result = subprocess.run(
        [node.CRICTL, "--runtime-endpoint", endpoint, "--image-endpoint", endpoint,
         "--timeout", "10s", args[0]] + (["-o", "json"] if parse else []) + list(args[1:]),
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30, check=True)
    return json.loads(result.stdout) if parse else result.stdout


def pod_state(containerd, kubelet):
    """
    :return: ``(state, image ref)`` of the static pod as the runtime has
        it: its sandbox's and its container's states (``"-"`` where there is
        none), and the container's image.
    """
    pods = crictl(containerd.address, "pods", "--name", f"{POD}-{kubelet.hostname}")["items"]
    sandbox_state = pods[0]["state"] if pods else "-"
    containers = crictl(containerd.address, "ps", "--all", "--name", CONTAINER)["containers"]
    if not containers:
        return f"{sandbox_state}/-", ""
    return f"{sandbox_state}/{containers[0]['state']}", containers[0]["imageRef"]


def pod_status(kubelet):
    """
    :return: the static pod's ``status`` as the kubelet reports it (its
        read-only port's ``/pods``), or ``{}``.
    """
    for pod in (kubelet.pods() or {}).get("items") or ():
        if pod["metadata"]["name"] == f"{POD}-{kubelet.hostname}":
            return pod.get("status") or {}
    return {}


def wait_running(result, containerd, kubelet, timeout=POD_TIMEOUT):
    """
    Poll the kubelet until it reports the pod's phase ``Running``, or
    ``timeout`` passes, or the kubelet exits; then fill in ``result`` from
    the kubelet's status and the runtime's.
    """
    started = time.monotonic()
    status = {}
    while time.monotonic() - started < timeout and kubelet.process.poll() is None:
        status = pod_status(kubelet)
        if status.get("phase") == "Running":
            result.pod_running = time.monotonic() - started
            break
        time.sleep(_POLL_INTERVAL)
    result.pod_phase = status.get("phase", "")
    result.status_images = [(c.get("image"), c.get("imageID"))
                            for c in status.get("containerStatuses") or ()]
    result.pod_state, result.container_image = pod_state(containerd, kubelet)


def _lines(path, keep):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return [line.rstrip("\n") for line in f if keep(line)]
    except OSError:
        return []


def run(runtime="containerd 2.4", keep=False):
    """
    One run on a fresh node, cleaned up whatever happens (but for the
    node's folder when ``keep``).

    :param runtime: a key of :data:`critest.RUNTIMES`.
    :return: the :class:`Result`.
    """
    shim_node, containerd = make_node(runtime)
    directory = shim_node.sandbox.directory
    # Every CRI call through the shim, as README's optional
    # containerRuntimeEndpoint has it: the pod status reads ContainerStatus.
    kubelet = kubelet_node.Kubelet(os.path.join(directory, "k"), shim_node.socket,
                                   shim_node.socket)
    result = Result(runtime, containerd.version, directory=directory)
    try:
        result.stand_in_digest = start_node(shim_node, containerd, images()[1])[STAND_IN]
        started = time.monotonic()
        kubelet.start(timeout=60)
        result.kubelet_start = time.monotonic() - started
        kubelet.add_static_pod(kubelet_node.pod_manifest(POD, IMAGE, CONTAINER))
        wait_running(result, containerd, kubelet)
    finally:
        kubelet.stop()
        result.kubelet_errors = _lines(kubelet.log_path, lambda line: line.startswith("E"))
        result.pull_lines = _lines(shim_node.log_path, lambda line: f"PullImage {IMAGE}" in line)
        # The runtime removes the pods first, then the kubelet's cgroups can go.
        if keep:
            shim_node.sandbox.stop()
            shim_node.stop_shim()
        else:
            shim_node.cleanup()
        kubelet.cleanup()
        result.left = kubelet.leftovers()
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tests.conformance.kubelet")
    parser.add_argument("--runtime", default="containerd 2.4", choices=list(critest.RUNTIMES))
    parser.add_argument("--keep", action="store_true", help="keep the node's folder")
    options = parser.parse_args(argv)
    reason = skip_reason(critest.RUNTIMES[options.runtime])
    if reason:
        sys.exit(f"cannot run: {reason}")
    result = run(options.runtime, options.keep)
    print(f"{result.runtime} ({result.version}), kubelet {kubelet_node.KUBELET}")
    print(f"kubelet healthy after {result.kubelet_start} s")
    print(f"pod {POD}: phase {result.pod_phase!r} after {result.pod_running} s; "
          f"kubelet's container status images {result.status_images}; runtime: "
          f"{result.pod_state}, image {result.container_image}")
    print("shim's pull lines:\n  " + "\n  ".join(result.pull_lines))
    print(f"kubelet error lines ({len(result.kubelet_errors)}):\n  "
          + "\n  ".join(result.kubelet_errors[:40]))
    print(f"left behind: {result.left}; folder {result.directory}")
    return 0 if result.pod_running is not None else 1


if __name__ == "__main__":
    sys.exit(main())
