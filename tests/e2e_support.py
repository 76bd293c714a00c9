"""
Shared machinery for the suites that run the shim for real: a
L{dev.sandbox.Sandbox} (containerd and registries), the shim's config
file, the shim itself as a C{twistd -n image-cri-shim} subprocess, and CRI
clients on its socket and on containerd's.

Blocking and standard library only (plus the shim's own clients, CRI and ctl): use it from
C{SynchronousTestCase} methods or plain scripts, or from a C{TestCase} on
the real reactor through C{deferToThread} (but start processes from the
main thread: they die with the thread that started them).  Every wait is
bounded.
"""

import base64
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

from cri_shim.ops import ctl
from dev import sandbox
from dev.cri_client import CRIClient
from tests import secrets_guard

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARIES = ("containerd", "ctr", "docker-registry", "htpasswd")

#: The offline registry's login and the second registry's (its password
#: holds colons).
ALICE = ("alice", "alice-pw")
BOB = ("bob", "b:o:b-pw")
#: What kubelet would send for an image on the registry it names.
KUBELET_AUTH = ("kubelet-user", "kubelet-secret-pw")
secrets_guard.register_login(*KUBELET_AUTH, origin="e2e_support.KUBELET_AUTH")

PACKAGES = ("runtime.v1", "runtime.v1alpha2")

#: The exit statuses of a clean stop on SIGTERM.  After a clean shutdown,
#: twistd ends itself with the signal that stopped the reactor
#: (twisted.scripts.twistd.runApp calls app._exitWithSignal), so the status
#: is -SIGTERM, not 0; systemd counts that as a clean exit too.
CLEAN_STOP_STATUSES = (0, -signal.SIGTERM)
#: What twistd logs last on a clean shutdown.
SHUT_DOWN_LINE = "Server Shut Down."

SHIM_START_TIMEOUT = 15.0
SHIM_STOP_TIMEOUT = 15.0
#: Deadline of every CRI call a test makes.
CALL_TIMEOUT = 30.0
POLL_INTERVAL = 0.02
#: How long L{ShimNode.serving} waits for the admin endpoint's answer.
ANSWER_TIMEOUT = 1.0


def skip_reason():
    """
    :return: why the real end-to-end suites cannot run here, or C{None}.
    """
    if os.geteuid() != 0:
        return "containerd needs root"
    if not os.path.exists("/usr/bin/containerd"):
        return "no /usr/bin/containerd: apt-get install containerd"
    missing = [name for name in BINARIES if shutil.which(name) is None]
    if missing:
        return "missing {}: apt-get install containerd docker-registry apache2-utils".format(
            ", ".join(missing))
    return None


def basic_token(username, password):
    """
    :return: the base64 C{user:password} a Basic C{Authorization} header holds.
    """
    return base64.b64encode("{}:{}".format(username, password).encode()).decode()


class ShimError(Exception):
    """
    The shim did not start or stop as expected; the message holds its log.
    """


class ShimNode:
    """
    One sandbox node with the shim in front of its containerd.

    Typical use, from a test's C{setUp}::

        node = ShimNode()
        self.addCleanup(node.cleanup)
        node.start_sandbox()
        image = node.offline.push_image("library/nginx", "latest", content=b"a")
        node.write_config()
        node.start_shim()
        client = node.client("runtime.v1")

    :param registries: the sandbox registries' C{(user, password)} pairs (or
        C{None} for one without auth, or a L{sandbox.Registry} factory: see
        L{sandbox.Sandbox}); the first is the offline (C{address:}) registry,
        the others the C{registries:} entries.
    :param environment: changes to the shim's environment (which is this
        process's otherwise, with C{HOME} in the sandbox and no cluster
        variables, so the machine's own kubeconfig is never found):
        C{name: value}, a value of C{None} removing the variable.
    :ivar sandbox: the L{sandbox.Sandbox}.
    :ivar config_path: the shim's config file.
    :ivar socket: the shim's socket.
    :ivar log_path: the shim's captured stdout and stderr.
    :ivar process: the shim's C{Popen}, or C{None}.
    """

    def __init__(self, registries=(ALICE, BOB), environment=None):
        self.environment = dict(environment or {})
        self.sandbox = sandbox.Sandbox(registries=registries)
        self.credentials = [None if registry.username is None
                            else (registry.username, registry.password)
                            for registry in self.sandbox.registries]
        directory = self.sandbox.directory
        self.config_path = os.path.join(directory, "shim.yaml")
        self.socket = os.path.join(directory, "shim.sock")
        self.log_path = os.path.join(directory, "shim.log")
        self.admin = os.path.join(directory, "admin.sock")
        # The names store, inside the sandbox (not the host's
        # /var/lib/image-cri-shim, which shims side by side would share).
        self.state_dir = os.path.join(directory, "state")
        self.process = None
        self._clients = []
        for login in self.credentials:
            if login is not None:
                secrets_guard.register_login(*login, origin="a ShimNode registry")
        secrets_guard.register_log_file(self.log_path, "the shim's log")

    # -- the sandbox -----------------------------------------------------------

    @property
    def containerd(self):
        """
        The sandbox's L{sandbox.Containerd}.
        """
        return self.sandbox.containerd

    @property
    def offline(self):
        """
        The offline registry (the config's top-level C{address}).
        """
        return self.sandbox.registries[0]

    @property
    def second(self):
        """
        The first C{registries:} entry.
        """
        return self.sandbox.registries[1]

    def start_sandbox(self, containerd=True):
        """
        Start the registries and, unless C{containerd} is false, containerd.
        """
        if containerd:
            self.sandbox.start()
            return
        for registry in self.sandbox.registries:
            registry.start()

    def secrets(self):
        """
        :return: every registry password and kubelet's, and the base64
            C{user:password} of each: what must never show in a log.
        """
        found = []
        for login in self.credentials + [KUBELET_AUTH]:
            if login is not None:
                found.append(login[1])
                found.append(basic_token(*login))
        return found

    # -- the config --------------------------------------------------------------

    def config_text(self, offline_priority=None, priorities=(), force=None, debug=None,
                    extra="", logins=None):
        """
        The shim's YAML, in the sealos layout, with C{auth: user:password}
        written unquoted as operators write it.

        :param offline_priority: C{offlinePriority}, or C{None} to leave it out.
        :param priorities: the C{registries:} entries' C{priority}, in order;
            missing or C{None} leaves it out.
        :param force: C{force}, or C{None} to leave it out.
        :param debug: C{debug}, or C{None} to leave it out.
        :param extra: more top-level YAML appended as is.
        :param logins: the C{(user, password)} (or C{None}) to write for each
            registry, in the order of C{registries}; by default the ones the
            sandbox registries accept.
        """
        if logins is None:
            logins = self.credentials
        lines = [
            "shim: {}".format(self.socket),
            "cri: {}".format(self.containerd.socket),
            "address: {}".format(self.offline.url),
            "admin: {}".format(self.admin),
            "stateDir: {}".format(self.state_dir),
        ]
        if logins[0] is not None:
            lines.append("auth: {}:{}".format(*logins[0]))
        if offline_priority is not None:
            lines.append("offlinePriority: {}".format(offline_priority))
        if force is not None:
            lines.append("force: {}".format("true" if force else "false"))
        if debug is not None:
            lines.append("debug: {}".format("true" if debug else "false"))
        others = self.sandbox.registries[1:]
        if others:
            lines.append("registries:")
        for index, registry in enumerate(others):
            lines.append("  - address: {}".format(registry.url))
            login = logins[index + 1]
            if login is not None:
                lines.append("    auth: {}:{}".format(*login))
            priority = priorities[index] if index < len(priorities) else None
            if priority is not None:
                lines.append("    priority: {}".format(priority))
        return "\n".join(lines) + "\n" + extra

    def write_config(self, text=None, **options):
        """
        Write the shim's config file: C{text}, or L{config_text}C{(**options)}.

        :return: the text written.
        """
        if text is None:
            text = self.config_text(**options)
        secrets_guard.register_config_text(text, "a ShimNode config")
        with open(self.config_path, "w", encoding="utf-8") as f:
            f.write(text)
        return text

    # -- the shim ----------------------------------------------------------------

    def shim_command(self):
        """
        :return: the argv of C{twistd -n --pidfile= image-cri-shim --config FILE}.
        """
        return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
                "-n", "--pidfile=", "image-cri-shim", "--config", self.config_path]

    def spawn_shim(self):
        """
        Start the shim without waiting for it.

        :return: the C{Popen}.
        """
        if self.process is not None and self.process.poll() is None:
            raise ShimError("the shim is already running")
        env = dict(os.environ, PYTHONUNBUFFERED="1", HOME=self.sandbox.directory)
        # Never find the machine's own cluster: tests say which one, if any.
        for name in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"):
            env.pop(name, None)
        for name, value in self.environment.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                sandbox.dying_with_parent(self.shim_command()),
                cwd=REPO_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        return self.process

    def start_shim(self, timeout=SHIM_START_TIMEOUT):
        """
        Start the shim and wait until its socket accepts connections.

        :raise ShimError: if it exits or does not serve within C{timeout}.
        """
        process = self.spawn_shim()
        deadline = time.monotonic() + timeout
        while not self._serving():
            if process.poll() is not None:
                raise ShimError("the shim exited with status {}:\n{}".format(
                    process.returncode, self.shim_log()))
            if time.monotonic() > deadline:
                raise ShimError("the shim does not serve on {} after {} s:\n{}".format(
                    self.socket, timeout, self.shim_log()))
            time.sleep(POLL_INTERVAL)
        return process

    def serving(self):
        """
        :return: whether the shim serves now: its socket accepts connections
            and its admin endpoint answers (blocks for at most
            L{ANSWER_TIMEOUT}).
        """
        return self._serving()

    def _serving(self):
        # twistd starts the services, which listen at once, before its
        # reactor runs and installs its signal handlers: until then a
        # SIGTERM ends the shim at once, without a clean stop.  The admin
        # endpoint answering (the reactor's work) is the sign that it runs.
        if not os.path.exists(self.socket):
            return False
        with socket.socket(socket.AF_UNIX) as s:
            try:
                s.connect(self.socket)
            except OSError:
                return False
        try:
            ctl.ask(ctl.admin_address(self.config_path), "GET", "/healthz",
                    timeout=ANSWER_TIMEOUT)
        except ctl.AdminError:
            return False
        return True

    def wait_shim(self, timeout=SHIM_STOP_TIMEOUT):
        """
        Wait for the shim to exit by itself.

        :return: its exit status.
        :raise ShimError: if it is still running after C{timeout}.
        """
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise ShimError("the shim still runs after {} s:\n{}".format(
                timeout, self.shim_log()))

    def stop_shim(self, timeout=SHIM_STOP_TIMEOUT):
        """
        SIGTERM the shim and wait for it; SIGKILL it if it lingers.
        Idempotent.

        :return: its exit status, or C{None} if it was not started.
        :raise ShimError: if it had to be killed.
        """
        process = self.process
        if process is None:
            return None
        for client in self._clients:
            client.close()
        self._clients = []
        if sandbox.terminate(process, timeout):
            raise ShimError("the shim ignored SIGTERM for {} s:\n{}".format(
                timeout, self.shim_log()))
        return process.returncode

    def shim_log(self):
        """
        :return: everything the shim wrote to stdout and stderr so far.
        """
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    # -- clients -----------------------------------------------------------------

    def client(self, package="runtime.v1"):
        """
        :return: a L{CRIClient} on the shim's socket, closed by
            L{stop_shim}.
        """
        client = CRIClient(self.socket, package)
        self._clients.append(client)
        return client

    def direct_client(self, package="runtime.v1"):
        """
        :return: a L{CRIClient} on containerd's own socket (no shim), closed
            by L{stop_shim}.
        """
        client = CRIClient(self.containerd.socket, package)
        self._clients.append(client)
        return client

    def containerd_images(self):
        """
        :return: the image names containerd holds in the CRI namespace.
        """
        return self.containerd.ctr("images", "ls", "-q").split()

    def cleanup(self):
        """
        Stop the shim and the sandbox and remove its directory.  Idempotent.
        """
        try:
            self.stop_shim()
        finally:
            # Its folder goes: the secret check keeps the shim's log.
            secrets_guard.capture_log_file(self.log_path)
            self.sandbox.cleanup()

    def replace_config(self, text=None, **options):
        """
        Like L{write_config}, but atomically: the text goes to a temp file
        renamed over the config file (as the ConfigMap sync and most editors
        do), so the shim's reloader never reads half a file.

        :return: the text written.
        """
        real = self.config_path
        self.config_path = real + ".new"
        try:
            text = self.write_config(text, **options)
        finally:
            self.config_path = real
        os.replace(real + ".new", real)
        return text
