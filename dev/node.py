# -*- test-case-name: tests.conformance.test_node,tests.conformance.test_critest -*-
"""
A sandbox node that runs containers, for the conformance suite
(``tests/conformance``): the :mod:`dev.sandbox` node with a containerd that
runs pods with runc and CNI, in either of two versions:

- Debian's containerd 1.6 (``/usr/bin/containerd``, config version 2), or
- containerd 2.x built by ``make tools`` (``.tools/bin/containerd``, config
  version 3: the CRI plugin is split into ``io.containerd.cri.v1.images``,
  ``io.containerd.cri.v1.runtime`` and ``io.containerd.grpc.v1.cri``, and
  pulls go through the transfer service).

Both keep the sandbox's ways: a temporary directory under /tmp, the native
snapshotter only, processes that die with the thread that started them,
bounded waits.  On top of them:

- ``restrict_oom_score_adj = true``: runc in these VMs cannot start a
  container whose oom_score_adj is below its parent's otherwise;
- CNI: Debian's ``containernetworking-plugins`` (bridge, host-local,
  portmap, loopback) with the network config in the node's directory.  Pods
  get addresses in :data:`POD_SUBNET` on a bridge of the node's own, in
  network namespaces that containerd makes: no masquerade, no default route
  in the pods, so nothing they send can leave the machine.  The bridge goes
  with the node;
- registry hosts config (``config_path``): :meth:`NodeContainerd.mirror`
  sends every pull for a registry (``registry.k8s.io``...) to a sandbox
  registry, so that images with public names are pulled from 127.0.0.1;
- the pod sandbox ("pause") image is :data:`SANDBOX_IMAGE`, which the
  caller pushes (containerd pulls it itself, never through the shim).

Standard library only, no Twisted, like the sandbox.  Root only.
"""

import json
import os
import platform
import secrets
import shutil
import subprocess

from dev import sandbox

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: Where ``make tools`` installs (git-ignored); ``ICS_TOOLS_DIR`` overrides.
TOOLS_DIR = os.environ.get("ICS_TOOLS_DIR") or os.path.join(REPO_ROOT, ".tools")
TOOLS_BIN = os.path.join(TOOLS_DIR, "bin")
#: Debian's containernetworking-plugins.
CNI_BIN_DIR = "/usr/lib/cni"
#: The pod network: a /24 on the node's own bridge, reachable from this
#: machine only (see the module's docstring).
POD_SUBNET = "10.213.0.0/24"
#: The image containerd runs as each pod's sandbox container.
SANDBOX_IMAGE = "registry.k8s.io/pause:3.10"

DEBIAN_CONTAINERD = "/usr/bin/containerd"
CONTAINERD2 = os.path.join(TOOLS_BIN, "containerd")
CRICTL = os.path.join(TOOLS_BIN, "crictl")

_GOARCH = {"x86_64": "amd64", "aarch64": "arm64"}
_BRIDGE_PREFIX = "icsbr"
_IP_FORWARD = "/proc/sys/net/ipv4/ip_forward"


def platform_string():
    """
    :return: e.g. ``linux/amd64``: the platform containerd unpacks for here.
    """
    machine = platform.machine()
    return "linux/" + _GOARCH.get(machine, machine)


def containerd_version(binary):
    """
    :return: the version that ``BINARY --version`` prints, e.g. ``1.6.20~ds1``
        or ``v2.4.2``, without a leading ``v``.
    :raise sandbox.SandboxError: if the binary does not answer.
    """
    try:
        result = subprocess.run(
            [binary, "--version"], capture_output=True, text=True,
            timeout=sandbox.CTR_TIMEOUT, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise sandbox.SandboxError(f"{binary} --version: {e}") from e
    # "containerd github.com/containerd/containerd/v2 v2.4.2 v2.4.2"
    fields = result.stdout.split()
    if result.returncode or len(fields) < 3:
        raise sandbox.SandboxError(
            f"{binary} --version: status {result.returncode}: {result.stdout}{result.stderr}")
    return fields[2].lstrip("v")


def _q(value):
    # A JSON string is a TOML basic string.
    return json.dumps(value)


class NodeContainerd(sandbox.Containerd):
    """
    A :class:`sandbox.Containerd` that runs pods: runc, CNI, registry hosts
    config, in version 1.x or 2.x (see the module docstring).

    :ivar binary: the containerd executable.
    :ivar version: its version string, e.g. ``2.4.2``.
    :ivar major: its major version, 1 or 2.
    :ivar hosts_dir: the registry hosts config (``config_path``).
    :ivar bridge: the name of the node's CNI bridge.
    """

    def __init__(self, directory, binary=DEBIAN_CONTAINERD, version=None,
                 pod_subnet=POD_SUBNET, sandbox_image=SANDBOX_IMAGE):
        """
        :param directory: as for :class:`sandbox.Containerd`.
        :param binary: the containerd executable: Debian's 1.6 by default,
            or :data:`CONTAINERD2`.
        :param version: its version, e.g. ``2.4.2``; asked from the binary
            when ``None``.
        :param pod_subnet: the pods' addresses.
        :param sandbox_image: the pause image containerd runs in each pod.
        """
        super().__init__(directory)
        self.binary = binary
        self.version = version or containerd_version(binary)
        self.major = int(self.version.split(".")[0])
        if self.major not in (1, 2):
            raise ValueError(f"containerd {self.version}: only 1.x and 2.x are known")
        # ctr of the same release: Debian's for 1.6, the one built with 2.x.
        self.ctr_binary = os.path.join(os.path.dirname(binary), "ctr")
        self.shim_binary = os.path.join(os.path.dirname(binary), "containerd-shim-runc-v2")
        self.pod_subnet = pod_subnet
        self.sandbox_image = sandbox_image
        self.hosts_dir = os.path.join(directory, "certs.d")
        self.cni_conf_dir = os.path.join(directory, "cni", "net.d")
        self.bridge = _BRIDGE_PREFIX + secrets.token_hex(4)
        self._ip_forward = None

    # -- config -------------------------------------------------------------------

    def mirror(self, registry_host, url):
        """
        Send every pull of an image named on ``registry_host`` (e.g.
        ``registry.k8s.io``) to ``url`` (e.g. a sandbox registry's
        ``http://127.0.0.1:PORT``), and only there: its ``hosts.toml`` names
        that registry as the server, so the real one is never asked.  Takes
        effect at the next pull; containerd need not restart.
        """
        directory = os.path.join(self.hosts_dir, registry_host)
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, "hosts.toml"), "w", encoding="utf-8") as f:
            f.write(f"server = {_q(url)}\n\n"
                    f"[host.{_q(url)}]\n"
                    f"  capabilities = [\"pull\", \"resolve\"]\n")

    def _prepare(self):
        if self._ip_forward is None:
            with open(_IP_FORWARD) as f:
                self._ip_forward = f.read().strip()
        for path in (self.hosts_dir, self.cni_conf_dir):
            os.makedirs(path, exist_ok=True)
        self._write_cni_config()
        config = self._config_v3() if self.major == 2 else self._config_v2()
        with open(self.config_path, "w", encoding="utf-8") as f:
            f.write(config)

    def _write_cni_config(self):
        conflist = {
            "cniVersion": "1.0.0",
            "name": "ics-conformance",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self.bridge,
                    "isGateway": True,
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": self.pod_subnet}]],
                        "dataDir": os.path.join(self.directory, "cni", "ipam"),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }
        with open(os.path.join(self.cni_conf_dir, "10-ics.conflist"), "w",
                  encoding="utf-8") as f:
            json.dump(conflist, f, indent=2)

    def _top(self):
        d = self.directory
        return f"""\
root = {_q(os.path.join(d, "root"))}
state = {_q(os.path.join(d, "state"))}
"""

    def _grpc(self):
        return f"""\
[grpc]
  address = {_q(self.socket)}
"""

    def _config_v2(self):
        d = self.directory
        cri = '[plugins."io.containerd.grpc.v1.cri"'
        return f"""\
version = 2
{self._top()}
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.overlayfs",
  "io.containerd.snapshotter.v1.zfs",
]

{self._grpc()}
[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = {_q(os.path.join(d, "opt"))}
  {cri}]
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    restrict_oom_score_adj = true
    sandbox_image = {_q(self.sandbox_image)}
  {cri}.containerd]
    snapshotter = "native"
  {cri}.cni]
    bin_dir = {_q(CNI_BIN_DIR)}
    conf_dir = {_q(self.cni_conf_dir)}
  {cri}.registry]
    config_path = {_q(self.hosts_dir)}
"""

    def _config_v3(self):
        d = self.directory
        images = '[plugins."io.containerd.cri.v1.images"'
        runtime = '[plugins."io.containerd.cri.v1.runtime"'
        return f"""\
version = 3
{self._top()}
# Only the native snapshotter, as in 1.6; no NRI (its socket would be the
# host's /var/run/nri).
disabled_plugins = [
  "io.containerd.snapshotter.v1.overlayfs",
  "io.containerd.snapshotter.v1.blockfile",
  "io.containerd.snapshotter.v1.erofs",
  "io.containerd.nri.v1.nri",
]

{self._grpc()}
[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = {_q(os.path.join(d, "opt"))}
  # CRI pulls go through the transfer service, which unpacks only for the
  # snapshotters listed here (by default overlayfs, disabled above).
  [plugins."io.containerd.transfer.v1.local"]
    [[plugins."io.containerd.transfer.v1.local".unpack_config]]
      platform = {_q(platform_string())}
      snapshotter = "native"
      differ = "walking"
  {images}]
    snapshotter = "native"
  {images}.pinned_images]
    sandbox = {_q(self.sandbox_image)}
  {images}.registry]
    config_path = {_q(self.hosts_dir)}
  {runtime}]
    restrict_oom_score_adj = true
  {runtime}.cni]
    bin_dirs = [{_q(CNI_BIN_DIR)}]
    conf_dir = {_q(self.cni_conf_dir)}
  # The runc shim built with this containerd, not whichever one is first
  # on PATH (Debian's 1.6 shim is).
  {runtime}.containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    runtime_path = {_q(self.shim_binary)}
  [plugins."io.containerd.grpc.v1.cri"]
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
"""

    def _command(self):
        return [self.binary, "--config", self.config_path]

    # -- tools ----------------------------------------------------------------------

    def ctr(self, *args, namespace="k8s.io", timeout=sandbox.CTR_TIMEOUT):
        """
        As :meth:`sandbox.Containerd.ctr`, with the ``ctr`` of this
        containerd's release.
        """
        command = [self.ctr_binary, "--address", self.socket, "--namespace", namespace]
        command.extend(args)
        try:
            result = subprocess.run(
                command, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                timeout=timeout, env=dict(os.environ, CONTAINERD_SNAPSHOTTER="native"))
        except subprocess.TimeoutExpired as e:
            raise sandbox.SandboxError(f"{' '.join(command)} took over {timeout} s") from e
        if result.returncode:
            raise sandbox.SandboxError(
                f"{' '.join(command)} failed with status {result.returncode}: "
                f"{result.stderr.strip()}")
        return result.stdout

    def remove_pods(self, timeout=sandbox.CTR_TIMEOUT):
        """
        Stop and remove every pod through the CRI (so that CNI tears down
        their network namespaces and port mappings).  Best effort: does
        nothing when containerd is down or crictl is missing.
        """
        if not self.running or not os.path.exists(CRICTL):
            return
        try:
            subprocess.run(
                [CRICTL, "--runtime-endpoint", self.address, "--timeout", "30s",
                 "rmp", "--all", "--force"],
                stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            pass

    def stop(self, timeout=sandbox.STOP_TIMEOUT):
        """
        Remove the pods, stop containerd and its shims (as the sandbox
        does), then delete the node's bridge and switch IPv4 forwarding back
        off if it was off (the CNI bridge plugin switches it on; the pods
        never need it: the machine talks to them on the bridge itself).
        Idempotent.
        """
        self.remove_pods()
        super().stop(timeout)
        if os.path.exists(f"/sys/class/net/{self.bridge}"):
            subprocess.run(["ip", "link", "delete", self.bridge],
                           stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=sandbox.CTR_TIMEOUT)
        if self._ip_forward == "0":
            with open(_IP_FORWARD, "w") as f:
                f.write("0\n")


def skip_reason(binary=DEBIAN_CONTAINERD):
    """
    :return: why a node with the containerd ``binary`` cannot run here, or
        ``None``.
    """
    if os.geteuid() != 0:
        return "a node that runs containers needs root"
    needed = [binary, os.path.join(CNI_BIN_DIR, "bridge"), shutil.which("runc") or "runc",
              shutil.which("docker-registry") or "docker-registry",
              shutil.which("iptables") or "iptables", CRICTL]
    missing = [path for path in needed if not os.path.exists(path)]
    if missing:
        return "missing {} (make setup tools)".format(", ".join(missing))
    return None


class Node(sandbox.Sandbox):
    """
    A :class:`sandbox.Sandbox` whose containerd is a :class:`NodeContainerd`.

    :ivar containerd: the :class:`NodeContainerd`.
    """

    def __init__(self, registries=(None,), binary=DEBIAN_CONTAINERD, version=None):
        """
        :param registries: as for :class:`sandbox.Sandbox`.
        :param binary: containerd's executable, as for :class:`NodeContainerd`.
        :param version: its version, or ``None`` to ask it.
        """
        super().__init__(registries=registries)
        self.containerd = NodeContainerd(
            os.path.join(self.directory, "c"), binary=binary, version=version)
