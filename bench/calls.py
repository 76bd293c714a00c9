"""
The CRI calls the bench makes and how their times are summed up: method
paths, request bodies, timeouts, the sandbox registries' logins, the order the
three targets take turns in, percentiles and how times are written.

The bench's modules run as scripts (``python bench/run.py``, and the load
workers as ``python bench/workers.py``), so ``bench/`` is first on the path;
this module puts the shim's tree after it, for ``cri_shim`` and ``dev``.
Import it before those.
"""

import math
import os
import sys

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
sys.path.insert(0, REPO)

from cri_shim.serve import methods  # noqa: E402

PACKAGE = "runtime.v1"
API = methods.API[PACKAGE]
VERSION = methods.path(PACKAGE, "RuntimeService", "Version")
LIST_IMAGES = methods.path(PACKAGE, "ImageService", "ListImages")
IMAGE_STATUS = methods.path(PACKAGE, "ImageService", "ImageStatus")
PULL = methods.path(PACKAGE, "ImageService", "PullImage")
REMOVE = methods.path(PACKAGE, "ImageService", "RemoveImage")

TARGETS = ("direct", "floor", "shim")
MAX_MESSAGE = 16 * 1024 * 1024
CHANNEL_OPTIONS = (("grpc.max_receive_message_length", MAX_MESSAGE),
                   ("grpc.max_send_message_length", MAX_MESSAGE))
ALICE = ("alice", "alice-pw")
BOB = ("bob", "b:o:b-pw")
CALL_TIMEOUT = 30.0
PULL_TIMEOUT = 120.0

VERSION_BODY = API.VersionRequest(version="0.1.0").SerializeToString()


def status_body(name):
    return API.ImageStatusRequest(image=API.ImageSpec(image=name)).SerializeToString()


def status_bodies(local, asked):
    """
    The one C{ImageStatus} per target: direct and floor ask containerd for the
    name it holds (C{local}), the shim gets the name kubelet would ask.
    """
    return {"direct": status_body(local), "floor": status_body(local),
            "shim": status_body(asked)}


def pull_body(name, auth=None):
    request = API.PullImageRequest(image=API.ImageSpec(image=name))
    if auth is not None:
        request.auth.username, request.auth.password = auth
    return request.SerializeToString()


def remove_body(name):
    return API.RemoveImageRequest(image=API.ImageSpec(image=name)).SerializeToString()


def rotated(k):
    """The targets in round C{k}'s order (each round starts with the next one)."""
    k %= len(TARGETS)
    return TARGETS[k:] + TARGETS[:k]


def percentile(samples, q):
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def us(seconds):
    return "{:.0f} µs".format(seconds * 1e6)


def ms(seconds):
    return "{:.1f} ms".format(seconds * 1e3)
