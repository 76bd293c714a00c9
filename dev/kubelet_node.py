# -*- test-case-name: tests.conformance.test_kubelet -*-
"""
A real kubelet (built by ``make kubelet``) for a sandbox node
(:mod:`dev.node`): standalone, as a child process that runs the static pods
of a folder of its own and nothing else.

Standalone means no API server: no ``--kubeconfig``, so the kubelet registers
no node and reads pods only from its ``staticPodPath``.  Everything it keeps
is in its own directory under the node's (root dir, pod logs, volume
plugins, config, manifests); its HTTP ports (the authenticated one, the
read-only one and healthz) listen on 127.0.0.1 only, with authentication and
authorization webhooks off.  It talks CRI to ``runtime_socket`` for pods and
containers and to ``image_socket`` (the shim's, say) for images.

This machine's cgroups decide part of the config: a kubelet of v1.35 or
later refuses cgroup v1 unless ``failCgroupV1`` is false, and without
systemd as PID 1 the cgroup driver is ``cgroupfs``.  The kubelet makes its
pods' cgroups (``kubepods`` and its QoS children) in every hierarchy and
leaves them when it stops, as it leaves the bind mount of its root dir on
itself and two folders it makes at fixed paths (:data:`HOST_PATHS`):
:meth:`Kubelet.cleanup` removes them once the runtime has removed the pods.

Standard library only, like the sandbox.  Root only.
"""

import json
import os
import shutil
import urllib.error
import urllib.request

from dev import node, sandbox

KUBELET = os.path.join(node.TOOLS_BIN, "kubelet")
CGROUP_ROOT = "/sys/fs/cgroup"
#: The cgroup under which the kubelet puts its pods (cgroupsPerQOS).
PODS_CGROUP = "kubepods"
#: What the kubelet makes outside its folder whatever its config says: its
#: device plugin socket's folder (``DevicePluginPath`` of
#: ``k8s.io/kubelet/pkg/apis/deviceplugin``, a constant) and the links to
#: its containers' logs (``DefaultContainerLogsDir``, a constant).
HOST_PATHS = frozenset(["/var/lib/kubelet", "/var/log/containers"])

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_HTTP_TIMEOUT = 5.0


def cgroup_v2():
    """
    :return: whether ``/sys/fs/cgroup`` is the unified (v2) hierarchy.
    """
    return os.path.exists(os.path.join(CGROUP_ROOT, "cgroup.controllers"))


def cgroup_driver():
    """
    :return: ``systemd`` when systemd is PID 1 (it then owns the cgroups),
        else ``cgroupfs``.
    """
    return "systemd" if os.path.isdir("/run/systemd/system") else "cgroupfs"


def skip_reason(binary=KUBELET):
    """
    :return: why a standalone kubelet cannot run here, or ``None``.
    """
    if os.geteuid() != 0:
        return "a kubelet needs root"
    if not os.path.exists(binary):
        return f"no {binary} (make kubelet)"
    return None


def pod_manifest(name, image, container="main"):
    """
    :return: a static pod with one container of ``image``, as a dict (JSON
        is YAML, which the kubelet reads).
    """
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "containers": [{"name": container, "image": image}],
            "terminationGracePeriodSeconds": 1,
        },
    }


class Kubelet(sandbox._Daemon):
    """
    One standalone kubelet (see the module docstring).

    :ivar hostname: its node name; a static pod ``P`` runs as ``P-HOSTNAME``.
    :ivar manifests: its ``staticPodPath``.
    :ivar port: its authenticated port; ``read_only_port`` and
        ``healthz_port`` the others.
    """

    name = "kubelet"

    def __init__(self, directory, runtime_socket, image_socket, binary=KUBELET,
                 hostname="ics-kubelet"):
        """
        :param directory: its folder; created if needed.
        :param runtime_socket: the path of the CRI runtime service's socket.
        :param image_socket: the path of the CRI image service's socket.
        :param binary: the kubelet executable.
        :param hostname: its node name (``--hostname-override``).
        """
        super().__init__(directory)
        self.binary = binary
        self.runtime_socket = runtime_socket
        self.image_socket = image_socket
        self.hostname = hostname
        self.root_dir = os.path.join(directory, "root")
        self.manifests = os.path.join(directory, "manifests")
        self.config_path = os.path.join(directory, "config.json")
        self.port = self.read_only_port = self.healthz_port = None
        self._host_paths_before = None

    def config(self):
        """
        :return: its ``KubeletConfiguration``, as a dict.
        """
        d = self.directory
        return {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "staticPodPath": self.manifests,
            "fileCheckFrequency": "1s",
            "containerRuntimeEndpoint": "unix://" + self.runtime_socket,
            "imageServiceEndpoint": "unix://" + self.image_socket,
            "cgroupDriver": cgroup_driver(),
            "failCgroupV1": False,
            "failSwapOn": False,
            "address": "127.0.0.1",
            "port": self.port,
            "readOnlyPort": self.read_only_port,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": self.healthz_port,
            "authentication": {"anonymous": {"enabled": True},
                               "webhook": {"enabled": False},
                               "x509": {}},
            "authorization": {"mode": "AlwaysAllow"},
            "podLogsDir": os.path.join(d, "pod-logs"),
            "volumePluginDir": os.path.join(d, "volume-plugins"),
            "registerNode": False,
        }

    def add_static_pod(self, manifest):
        """
        Put a pod manifest (see :func:`pod_manifest`) in the static pod
        folder; the kubelet notices within its ``fileCheckFrequency``.
        """
        os.makedirs(self.manifests, exist_ok=True)
        name = manifest["metadata"]["name"] + ".json"
        # Written aside and renamed: the kubelet reads a file as soon as it
        # appears, and skips names that start with a dot.
        part = os.path.join(self.manifests, "." + name)
        with open(part, "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=2)
        os.rename(part, os.path.join(self.manifests, name))

    def _prepare(self):
        if self.port is None:
            self.port, self.read_only_port, self.healthz_port = (
                sandbox._free_port() for _ in range(3))
        for path in (self.root_dir, self.manifests):
            os.makedirs(path, exist_ok=True)
        with open(self.config_path, "w", encoding="utf-8") as f:
            json.dump(self.config(), f, indent=2)

    def _command(self):
        return [self.binary, "--config", self.config_path, "--root-dir", self.root_dir,
                "--cert-dir", os.path.join(self.directory, "pki"),
                "--hostname-override", self.hostname, "--v=2"]

    def get(self, port, path):
        """
        :return: the body of ``GET http://127.0.0.1:PORT/PATH``, or ``None``
            if it does not answer 200.
        """
        try:
            with _OPENER.open(f"http://127.0.0.1:{port}{path}",
                              timeout=_HTTP_TIMEOUT) as response:
                return response.read()
        except (OSError, urllib.error.URLError):
            return None

    def _ready(self):
        return self.get(self.healthz_port, "/healthz") == b"ok"

    def pods(self):
        """
        :return: the pods the kubelet runs, as its read-only port's
            ``/pods`` lists them (a ``PodList`` dict), or ``None``.
        """
        body = self.get(self.read_only_port, "/pods")
        return None if body is None else json.loads(body)

    def start(self, timeout=sandbox.START_TIMEOUT):
        """
        As :meth:`sandbox._Daemon.start`, noting first which of
        :data:`HOST_PATHS` exist, so that :meth:`cleanup` removes only the
        ones this kubelet made.
        """
        if self._host_paths_before is None:
            self._host_paths_before = {path for path in HOST_PATHS if os.path.lexists(path)}
        super().start(timeout)

    def cleanup(self):
        """
        Undo what the kubelet leaves outside its folder's files once it has
        stopped: the bind mount of its root dir on itself, the
        :data:`HOST_PATHS` it made (pre-existing ones stay), and its pods'
        cgroups (``kubepods`` and below, deepest first, in every hierarchy).
        Call it after the runtime has removed the pods: a cgroup with a
        process left in it stays.  Best effort and idempotent:
        :meth:`leftovers` says what is left.
        """
        self.stop()
        sandbox._unmount_under(self.root_dir)
        for path in self._host_paths_made():
            shutil.rmtree(path, ignore_errors=True)
        for top in _pods_cgroups():
            for path, _, _ in os.walk(top, topdown=False):
                try:
                    os.rmdir(path)
                except OSError:
                    pass

    def leftovers(self):
        """
        :return: what the kubelet made outside its folder's files that
            exists now: mount points under its folder, :data:`HOST_PATHS`
            that did not exist before it started, its pods' cgroups.
        """
        with open("/proc/self/mountinfo", encoding="utf-8") as f:
            mounts = [line.split()[4] for line in f]
        return sorted(
            [point for point in mounts if point.startswith(self.directory + "/")]
            + [path for path in self._host_paths_made() if os.path.lexists(path)]
            + [top for top in _pods_cgroups() if os.path.isdir(top)])

    def _host_paths_made(self):
        if self._host_paths_before is None:
            return set()
        return HOST_PATHS - self._host_paths_before


def _pods_cgroups():
    """
    :return: the paths of the kubelet's ``kubepods`` cgroup in every
        hierarchy, whether they exist or not.
    """
    if cgroup_v2():
        return [os.path.join(CGROUP_ROOT, PODS_CGROUP)]
    return [os.path.join(CGROUP_ROOT, hierarchy, PODS_CGROUP)
            for hierarchy in sorted(os.listdir(CGROUP_ROOT))]
