# -*- test-case-name: tests.e2e.test_pulls -*-
"""
C{make demo}: a sandbox node (a real containerd and an offline registry with
a login, seeded with a tiny C{library/nginx:latest}) with the shim in front,
one pull of C{nginx:latest} through it, and the rewrite it made; then the
shim keeps serving until Ctrl-C.  Run as root (containerd needs it).
"""

import os
import signal
import subprocess
import sys
import time

from cri_shim.ops import ctl
from dev import sandbox
from dev.cri_client import CRIClient

USER, PASSWORD = "admin", "passw0rd"


def main():
    if os.geteuid() != 0:
        sys.exit("make demo runs containerd, which needs root: run it as root")
    node = sandbox.Sandbox(registries=[(USER, PASSWORD)])
    node.start()
    shim = None
    try:
        registry = node.registries[0]
        pushed = registry.push_image("library/nginx", "latest")
        socket_path = os.path.join(node.directory, "shim.sock")
        # Inside the sandbox, not the default: that one is the real node's.
        admin_path = os.path.join(node.directory, "admin.sock")
        config_path = os.path.join(node.directory, "image-cri-shim.yaml")
        with open(os.open(config_path, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
            f.write("shim: {}\nadmin: {}\nstateDir: {}\ncri: {}\naddress: {}\nauth: {}:{}\n"
                    .format(socket_path, admin_path, os.path.join(node.directory, "state"),
                            node.containerd.socket, registry.url, USER, PASSWORD))
        print("sandbox node in {}: containerd on {}, offline registry {} holding "
              "library/nginx:latest".format(node.directory, node.containerd.socket,
                                            registry.url))
        shim = subprocess.Popen(_twistd() + ["-n", "--pidfile=", "image-cri-shim",
                                             "--config", config_path])
        _wait_for(socket_path, shim)
        client = CRIClient(socket_path)
        api = client.api
        started = time.monotonic()
        reply = client.PullImage(api.PullImageRequest(image=api.ImageSpec(image="nginx:latest")),
                                 timeout=60)
        took = time.monotonic() - started
        status = client.ImageStatus(api.ImageStatusRequest(
            image=api.ImageSpec(image="nginx:latest")), timeout=10)
        print("\nPullImage nginx:latest through the shim took {:.0f} ms".format(took * 1000))
        print("  the node shows it as: {} (names: requested)".format(
            ", ".join(status.image.repo_tags)))
        print("  image id {} (pushed as {})".format(reply.image_ref, pushed.config_digest))
        print("\nimage-cri-shim-ctl --admin {} explain nginx:latest".format(admin_path))
        ctl.main(["--admin", admin_path, "explain", "nginx:latest"])
        print("\nThe shim serves CRI on {}; try it with e.g.\n  crictl --image-endpoint "
              "unix://{} pull nginx:latest\n  image-cri-shim-ctl --admin {} registries\n"
              "Ctrl-C stops the shim and removes the sandbox."
              .format(socket_path, socket_path, admin_path))
        client.close()
        signal.signal(signal.SIGTERM, _interrupt)
        while shim.poll() is None:
            signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        if shim is not None:
            _stop(shim)
        node.cleanup()


def _stop(shim):
    # Ctrl-C in a terminal reaches the shim too: give it a moment to stop on
    # that before sending SIGTERM.
    try:
        shim.wait(5)
    except subprocess.TimeoutExpired:
        shim.terminate()
        shim.wait(15)


def _interrupt(signum, frame):
    raise KeyboardInterrupt()


def _twistd():
    script = os.path.join(os.path.dirname(sys.executable), "twistd")
    if os.path.exists(script):
        return [script]
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


def _wait_for(path, process, timeout=15.0):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if process.poll() is not None:
            sys.exit("the shim exited with status {}".format(process.returncode))
        if time.monotonic() > deadline:
            sys.exit("the shim did not create {} within {:g}s".format(path, timeout))
        time.sleep(0.05)


if __name__ == "__main__":
    main()
