# -*- test-case-name: tests.e2e.test_sandbox -*-
"""
A local sandbox node for the end-to-end tests, ``make demo`` and the benchmark.

It runs a real containerd (CRI plugin enabled, native snapshotter) and real
``docker-registry`` processes as children, each in a short directory under
/tmp, and pushes tiny but valid images into the registries over the registry
HTTP API.

Standard library only and no Twisted: it is used from trial's ``setUp``
as well as from plain scripts run by Debian's ``/usr/bin/python3``.  Every
wait is bounded.  The children run in their own session, so a Ctrl-C aimed
at the test runner's process group does not kill them before the runner's
cleanup stops them in order, and they ask the kernel for SIGTERM when the
thread that started them dies (``setpriv --pdeathsig``), so they never outlive
the run: start them from a long-lived thread, such as the main thread.
"""

import base64
import ctypes
import dataclasses
import gzip
import hashlib
import io
import json
import os
import platform
import shutil
import signal
import socket
import stat
import subprocess
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

MANIFEST_MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_MEDIA_TYPE = "application/vnd.docker.container.image.v1+json"
LAYER_MEDIA_TYPE = "application/vnd.docker.image.rootfs.diff.tar.gzip"

DEFAULT_CONTENT = b"hello from the image-cri-shim sandbox\n"
CONTENT_PATH = "sandbox-content"

START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
HTTP_TIMEOUT = 10.0
_PROBE_TIMEOUT = 10.0
CTR_TIMEOUT = 60.0

_POLL_INTERVAL = 0.05
_PORT_ATTEMPTS = 5
_LOG_TAIL_LINES = 40
_UNIX_PATH_MAX = 107
_MNT_DETACH = 2
_EPOCH = "1970-01-01T00:00:00Z"

# platform.machine() -> GOARCH, so that containerd's default platform matcher
# accepts the images pushed here.
_GOARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "i386": "386",
    "i686": "386",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}

# urllib would otherwise honour http_proxy & co, even for 127.0.0.1.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class SandboxError(Exception):
    """
    A sandbox process failed to start or stop, or a registry call failed.
    """


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def terminate(process, timeout=STOP_TIMEOUT):
    """
    Stop a child: SIGTERM (and SIGCONT, as a paused process acts on SIGTERM
    only once continued), then SIGKILL if it lingers past C{timeout}.

    :return: whether it had to be killed.
    """
    if process.poll() is not None:
        return False
    process.terminate()
    process.send_signal(signal.SIGCONT)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout)
        return True
    return False


def dying_with_parent(command):
    """
    :return: C{command} run so that it gets SIGTERM when the thread that
        starts it dies (util-linux C{setpriv --pdeathsig}: no Python code runs
        between fork and exec, which is unsafe in a process with threads,
        gRPC's above all).
    """
    return ["setpriv", "--pdeathsig", "TERM", "--"] + list(command)


def _log_tail(path, offset=0):
    try:
        with open(path, "rb") as log:
            log.seek(offset)
            lines = log.read().decode("utf-8", "replace").splitlines()
    except OSError as e:
        return f"(no log: {e})"
    return "\n".join(lines[-_LOG_TAIL_LINES:])


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _canonical_json(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _layer_tar(content):
    """
    An uncompressed, reproducible tar holding one file whose bytes are
    ``content``.
    """
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo(CONTENT_PATH)
        info.size = len(content)
        info.mode = 0o644
        info.mtime = 0
        tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def _live_stat(pid):
    """
    :return: the fields of ``/proc/PID/stat`` after the command name (the
        state first, then the parent pid), or ``None`` when ``pid`` is gone
        or a zombie (gone for our purposes: it runs nothing any more).
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields if fields[0] != b"Z" else None


def alive(pid):
    """
    :return: whether ``pid`` is a live process (zombies count as dead).
    """
    return _live_stat(pid) is not None


def _process_table():
    """
    :return: ``{pid: (ppid, argv)}`` for every live process in /proc.
    """
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _live_stat(entry)
        if fields is None:
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        table[int(entry)] = (int(fields[1]), argv)
    return table


def _descendants(table, roots):
    """
    :return: ``roots`` and every process below them, each parent before its
        children.
    """
    found = list(roots)
    seen = set(found)
    for parent in found:
        for pid, (ppid, _) in table.items():
            if ppid == parent and pid not in seen:
                seen.add(pid)
                found.append(pid)
    return found


def _unmount_under(directory):
    """
    Lazily unmount whatever is mounted below ``directory``, deepest first.
    """
    prefix = os.path.realpath(directory) + "/"
    with open("/proc/self/mountinfo", encoding="utf-8") as mountinfo:
        points = [
            line.split()[4].encode().decode("unicode_escape") for line in mountinfo
        ]
    libc = _libc()
    for point in sorted((p for p in points if p.startswith(prefix)), reverse=True):
        libc.umount2(point.encode(), _MNT_DETACH)


def _open_up(directory):
    os.chmod(directory, stat.S_IRWXU)
    for entry in os.scandir(directory):
        if entry.is_dir(follow_symlinks=False):
            _open_up(entry.path)


def _remove_tree(directory):
    """
    Remove ``directory``.  Image layers may hold read-only directories,
    which stop a user without CAP_DAC_OVERRIDE: if removal fails, make every
    directory writable and try again.
    """
    try:
        shutil.rmtree(directory)
    except OSError:
        _open_up(directory)
        shutil.rmtree(directory)


@dataclasses.dataclass(frozen=True)
class PushedImage:
    """
    An image pushed by :meth:`Registry.push_image`.

    :ivar host: the ``127.0.0.1:PORT`` of the registry that holds it.
    :ivar repository: e.g. ``library/nginx``.
    :ivar tag: the tag it was pushed under, or ``None`` if pushed by digest.
    :ivar manifest_digest: ``sha256:...`` of the schema2 manifest.
    :ivar config_digest: ``sha256:...`` of the config: the image ID that
        containerd and the CRI report.
    """

    host: str
    repository: str
    tag: "str | None"
    manifest_digest: str
    config_digest: str

    def reference(self, host=None):
        """
        :param host: the registry host to name, by default the one the image
            was pushed to; give e.g. ``docker.io`` to get the name a client
            would use before a mirror rewrites it.
        :return: ``HOST/REPOSITORY:TAG``, or ``HOST/REPOSITORY@DIGEST`` when
            the image has no tag.
        """
        name = f"{host or self.host}/{self.repository}"
        if self.tag is None:
            return f"{name}@{self.manifest_digest}"
        return f"{name}:{self.tag}"

    def digest_reference(self, host=None):
        """
        :param host: as for :meth:`reference`.
        :return: ``HOST/REPOSITORY@MANIFEST_DIGEST``.
        """
        return f"{host or self.host}/{self.repository}@{self.manifest_digest}"


class _Daemon:
    """
    A child process logging to a file, started and stopped in bounded time.
    """

    name = "daemon"

    def __init__(self, directory):
        self.directory = directory
        self.log_path = os.path.join(directory, f"{self.name}.log")
        self.process = None
        self._log_offset = 0

    @property
    def running(self):
        """
        Whether the process was started and has not exited.
        """
        return self.process is not None and self.process.poll() is None

    def _prepare(self):
        raise NotImplementedError

    def _command(self):
        raise NotImplementedError

    def _ready(self):
        raise NotImplementedError

    def _fail(self, message):
        raise SandboxError(
            f"{message}; end of {self.log_path}:\n"
            f"{_log_tail(self.log_path, self._log_offset)}"
        )

    def start(self, timeout=START_TIMEOUT):
        """
        Start the process and wait until it serves.

        :param timeout: seconds to wait before giving up.
        :raise SandboxError: if it exits or is not ready in time; the message
            holds the end of its log.
        """
        if self.running:
            raise SandboxError(f"{self.name} is already running")
        os.makedirs(self.directory, exist_ok=True)
        self._prepare()
        deadline = time.monotonic() + timeout
        with open(self.log_path, "ab") as log:
            self._log_offset = log.tell()
            self.process = subprocess.Popen(
                dying_with_parent(self._command()),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
                start_new_session=True,
            )
        try:
            while not self._ready():
                if self.process.poll() is not None:
                    self._fail(
                        f"{self.name} exited with status {self.process.returncode}"
                    )
                if time.monotonic() > deadline:
                    self._fail(f"{self.name} not ready after {timeout} s")
                time.sleep(_POLL_INTERVAL)
        except BaseException:
            self._halt()
            raise

    def _halt(self, timeout=STOP_TIMEOUT):
        process, self.process = self.process, None
        if process is not None:
            terminate(process, timeout)

    def stop(self, timeout=STOP_TIMEOUT):
        """
        Stop the process: SIGTERM, then SIGKILL if it lingers.  Idempotent.

        :param timeout: seconds to wait after each signal.
        """
        self._halt(timeout)

    def kill(self):
        """
        SIGKILL the process and reap it, as a crash would.
        """
        process, self.process = self.process, None
        if process is not None:
            process.kill()
            process.wait(STOP_TIMEOUT)

    def restart(self, timeout=START_TIMEOUT):
        """
        Stop the process if it runs, then start it again.

        :param timeout: as for :meth:`start`.
        """
        self._halt()
        self.start(timeout)

    def pause(self):
        """
        Freeze the process (SIGSTOP): it keeps its sockets but answers nothing.
        """
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self):
        """
        Undo :meth:`pause` (SIGCONT).
        """
        os.kill(self.process.pid, signal.SIGCONT)


class Registry(_Daemon):
    """
    One ``docker-registry`` on 127.0.0.1 with filesystem storage and, when
    given credentials, htpasswd (bcrypt) basic authentication over plain HTTP.

    :ivar port: the TCP port, chosen at the first :meth:`start` unless given,
        then kept across restarts.
    """

    name = "registry"

    def __init__(self, directory, username=None, password=None, port=None):
        """
        :param directory: where the config, data and log go; created if needed.
        :param username: the one user allowed in, or ``None`` for no auth.
        :param password: that user's password.
        :param port: a fixed port, or ``None`` to pick a free one.
        """
        super().__init__(directory)
        self.username = username
        self.password = password
        self.port = port
        self.config_path = os.path.join(directory, "config.yml")
        self.htpasswd_path = os.path.join(directory, "htpasswd")

    @property
    def host(self):
        """
        ``127.0.0.1:PORT``, as used in image references.
        """
        if self.port is None:
            raise SandboxError("the registry has no port until it is started")
        return f"127.0.0.1:{self.port}"

    @property
    def url(self):
        """
        ``http://127.0.0.1:PORT``.
        """
        return f"http://{self.host}"

    def start(self, timeout=START_TIMEOUT):
        """
        Start the registry and wait until ``GET /v2/`` answers 200 or 401.

        If the port was picked here and someone took it meanwhile, pick
        another and try again, a few times.

        :param timeout: seconds to wait for each attempt.
        :raise SandboxError: if it does not come up.
        """
        retry = self.port is None
        attempts = _PORT_ATTEMPTS if retry else 1
        for attempt in range(1, attempts + 1):
            if retry:
                self.port = _free_port()
            try:
                super().start(timeout)
                return
            except SandboxError:
                taken = "address already in use" in _log_tail(
                    self.log_path, self._log_offset
                )
                if attempt == attempts or not taken:
                    if retry:
                        self.port = None
                    raise

    def _prepare(self):
        config = {
            "version": 0.1,
            "log": {"level": "info"},
            "storage": {
                "filesystem": {
                    "rootdirectory": os.path.join(self.directory, "data")
                },
            },
            "http": {"addr": self.host, "secret": os.urandom(16).hex()},
        }
        auth = self._auth_config()
        if auth is not None:
            config["auth"] = auth
        # JSON is YAML too, and quotes paths safely.
        with open(self.config_path, "w", encoding="utf-8") as f:
            json.dump(config, f, indent=2)

    def _auth_config(self):
        """
        :return: the config's ``auth`` section (after writing the files it
            names), or ``None`` for a registry without auth.
        """
        if self.username is None:
            return None
        self._write_htpasswd()
        return {"htpasswd": {"realm": "sandbox", "path": self.htpasswd_path}}

    def _write_htpasswd(self):
        # distribution only accepts bcrypt entries; -i reads the password
        # from stdin so that it does not show in ps.
        result = subprocess.run(
            ["htpasswd", "-niB", self.username],
            input=self.password.encode(),
            capture_output=True,
            timeout=_PROBE_TIMEOUT,
        )
        if result.returncode:
            raise SandboxError(f"htpasswd failed: {result.stderr.decode()}")
        with open(self.htpasswd_path, "wb") as f:
            f.write(result.stdout)

    def _command(self):
        return ["docker-registry", "serve", self.config_path]

    def _ready(self):
        try:
            with _OPENER.open(self.url + "/v2/", timeout=1):
                return True
        except urllib.error.HTTPError as e:
            return e.code == 401
        except (urllib.error.URLError, OSError):
            return False

    def request(self, method, path, body=None, headers=None, auth=True):
        """
        Send one HTTP request to the registry and read the whole answer.

        :param method: ``GET``, ``HEAD``, ``PUT``...
        :param path: a path such as ``/v2/``, or an absolute URL.
        :param body: bytes to send, or ``None``.
        :param headers: more request headers.
        :param auth: send this registry's credentials, if it has any.
        :return: ``(status, headers, body)``; error statuses are returned,
            not raised.
        :raise SandboxError: if the registry cannot be reached.
        """
        request = urllib.request.Request(
            urllib.parse.urljoin(self.url, path),
            data=body,
            method=method,
            headers=headers or {},
        )
        if auth and self.username is not None:
            token = base64.b64encode(f"{self.username}:{self.password}".encode())
            request.add_header("Authorization", "Basic " + token.decode())
        try:
            with _OPENER.open(request, timeout=HTTP_TIMEOUT) as response:
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as e:
            with e:
                return e.code, e.headers, e.read()
        except (urllib.error.URLError, OSError) as e:
            raise SandboxError(f"{method} {request.full_url} failed: {e}") from e

    def _expect(self, expected, method, path, body=None, headers=None):
        status, response_headers, response_body = self.request(
            method, path, body, headers
        )
        if status != expected:
            raise SandboxError(
                f"{method} {path}: expected {expected}, got {status}: "
                f"{response_body[:500]!r}"
            )
        return response_headers

    def _upload_blob(self, repository, blob):
        digest = _sha256(blob)
        blob_path = f"/v2/{repository}/blobs/{digest}"
        if self.request("HEAD", blob_path)[0] == 200:
            return
        location = self._expect(202, "POST", f"/v2/{repository}/blobs/uploads/")[
            "Location"
        ]
        separator = "&" if "?" in location else "?"
        self._expect(
            201,
            "PUT",
            f"{location}{separator}digest={urllib.parse.quote(digest)}",
            blob,
            {"Content-Type": "application/octet-stream"},
        )

    def push_image(
        self, repository, tag=None, *, content=DEFAULT_CONTENT, digest_only=False
    ):
        """
        Build a tiny but real image and push it: one gzipped layer holding
        the file ``/sandbox-content`` with ``content`` in it, a config for
        this host's architecture, and a Docker schema2 manifest.  The build
        is reproducible: the same content gives the same digests, other
        content gives other ones.

        :param repository: e.g. ``library/nginx``.
        :param tag: the tag to push the manifest under, ``latest`` if ``None``.
        :param content: the bytes of the image's one file.
        :param digest_only: push the manifest by digest, with no tag.
        :return: the :class:`PushedImage`.
        :raise SandboxError: if the registry refuses something.
        """
        if digest_only and tag is not None:
            raise ValueError("a tag makes no sense with digest_only")
        layer_tar = _layer_tar(content)
        layer = gzip.compress(layer_tar, mtime=0)
        config = _canonical_json(
            {
                "architecture": _GOARCH.get(platform.machine(), platform.machine()),
                "os": "linux",
                "created": _EPOCH,
                "config": {
                    "Cmd": ["cat", "/" + CONTENT_PATH],
                    "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
                },
                "rootfs": {"type": "layers", "diff_ids": [_sha256(layer_tar)]},
                "history": [{"created": _EPOCH, "created_by": __name__}],
            }
        )
        manifest = _canonical_json(
            {
                "schemaVersion": 2,
                "mediaType": MANIFEST_MEDIA_TYPE,
                "config": {
                    "mediaType": CONFIG_MEDIA_TYPE,
                    "size": len(config),
                    "digest": _sha256(config),
                },
                "layers": [
                    {
                        "mediaType": LAYER_MEDIA_TYPE,
                        "size": len(layer),
                        "digest": _sha256(layer),
                    }
                ],
            }
        )
        for blob in (layer, config):
            self._upload_blob(repository, blob)
        manifest_digest = _sha256(manifest)
        tag = None if digest_only else tag or "latest"
        headers = self._expect(
            201,
            "PUT",
            f"/v2/{repository}/manifests/{tag or manifest_digest}",
            manifest,
            {"Content-Type": MANIFEST_MEDIA_TYPE},
        )
        if headers["Docker-Content-Digest"] != manifest_digest:
            raise SandboxError(
                f"the registry stored the manifest as "
                f"{headers['Docker-Content-Digest']}, not {manifest_digest}"
            )
        return PushedImage(
            self.host, repository, tag, manifest_digest, _sha256(config)
        )


class Containerd(_Daemon):
    """
    One containerd with its own config, root, state and socket, the CRI
    plugin enabled (runtime.v1 and runtime.v1alpha2 on the same socket) and
    the native snapshotter as the only one, so that nothing is ever mounted
    for images.  :meth:`start` waits until the socket accepts connections
    and ``ctr plugins ls`` shows the CRI plugin ``ok``.

    :ivar socket: the path of the gRPC socket.
    :ivar address: ``unix://`` + :attr:`socket`.
    :ivar root: containerd's persistent directory.
    """

    name = "containerd"

    def __init__(self, directory):
        """
        :param directory: where the config, root, state, socket and log go;
            keep it short, as a unix socket path has at most 107 bytes.
        """
        super().__init__(directory)
        self.socket = os.path.join(directory, "containerd.sock")
        if len(self.socket.encode()) > _UNIX_PATH_MAX:
            raise ValueError(f"socket path too long for a unix socket: {self.socket}")
        self.address = "unix://" + self.socket
        self.root = os.path.join(directory, "root")
        self.state = os.path.join(directory, "state")
        self.config_path = os.path.join(directory, "config.toml")

    def _prepare(self):
        def q(path):
            # A JSON string is a TOML basic string.
            return json.dumps(os.path.join(self.directory, path))

        cri = '[plugins."io.containerd.grpc.v1.cri"'
        config = f"""\
version = 2
root = {q("root")}
state = {q("state")}
# Only the native snapshotter: it never mounts anything, and the others
# are useless or noisy here.
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.overlayfs",
  "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = {q("containerd.sock")}

[plugins]
  # Its default, /opt/containerd, would be created on the host.
  [plugins."io.containerd.internal.v1.opt"]
    path = {q("opt")}
  {cri}]
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
  {cri}.containerd]
    snapshotter = "native"
  # The CRI plugin creates and watches conf_dir: keep it off /etc.  No
  # network config there is only an error in the log.
  {cri}.cni]
    bin_dir = {q("cni/bin")}
    conf_dir = {q("cni/net.d")}
"""
        with open(self.config_path, "w", encoding="utf-8") as f:
            f.write(config)

    def _command(self):
        return ["containerd", "--config", self.config_path]

    def _ready(self):
        with socket.socket(socket.AF_UNIX) as s:
            try:
                s.connect(self.socket)
            except OSError:
                return False
        for line in self.ctr("plugins", "ls", timeout=_PROBE_TIMEOUT).splitlines():
            fields = line.split()
            if fields[:2] == ["io.containerd.grpc.v1", "cri"]:
                if fields[-1] == "ok":
                    return True
                self._fail(f"the CRI plugin is {fields[-1]}")
        return False

    def ctr(self, *args, namespace="k8s.io", timeout=CTR_TIMEOUT):
        """
        Run ``ctr`` against this containerd, with ``native`` as the default
        snapshotter.

        :param args: the ctr command, e.g. ``"images", "ls", "-q"``.
        :param namespace: the containerd namespace; the CRI's is ``k8s.io``.
        :param timeout: seconds before ctr is killed.
        :return: ctr's standard output.
        :raise SandboxError: if ctr fails or times out.
        """
        command = ["ctr", "--address", self.socket, "--namespace", namespace]
        command.extend(args)
        try:
            result = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                env=dict(os.environ, CONTAINERD_SNAPSHOTTER="native"),
            )
        except subprocess.TimeoutExpired as e:
            raise SandboxError(f"{' '.join(command)} took over {timeout} s") from e
        if result.returncode:
            raise SandboxError(
                f"{' '.join(command)} failed with status {result.returncode}: "
                f"{result.stderr.strip()}"
            )
        return result.stdout

    def shim_pids(self):
        """
        :return: the pids of the runtime shims this containerd started and of
            everything below them (the containers' processes), each parent
            before its children.
        """
        table = _process_table()
        socket_path = self.socket.encode()
        shims = [
            pid
            for pid, (_, argv) in table.items()
            if b"containerd-shim" in os.path.basename(argv[0]) and socket_path in argv
        ]
        return _descendants(table, shims)

    def stop(self, timeout=STOP_TIMEOUT):
        """
        Stop containerd (SIGTERM, then SIGKILL if it lingers), then SIGKILL
        its shims and their containers, which outlive containerd by design.
        Idempotent.

        :param timeout: seconds to wait after each signal.
        """
        self._halt(timeout)
        pids = self.shim_pids()
        # Parents first: a shim must not see a child die and exit by itself
        # before its own SIGKILL.
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        # Wait for each process killed, not for shim_pids() to be empty: a
        # shim that died first hides its children, still dying, from it.
        deadline = time.monotonic() + timeout
        while any(alive(pid) for pid in pids):
            if time.monotonic() > deadline:
                raise SandboxError(f"containerd shims {sorted(pids)} do not die")
            time.sleep(_POLL_INTERVAL)


class Sandbox:
    """
    A temporary directory under /tmp with one :class:`Containerd` and some
    :class:`Registry` instances.  Use it as a context manager, or call
    :meth:`start` and then, always, :meth:`cleanup`::

        with Sandbox(registries=[("alice", "alice-pw"), None]) as sandbox:
            image = sandbox.registries[0].push_image("library/nginx")
            sandbox.containerd.ctr("images", "pull", "--plain-http",
                                   "--user", "alice:alice-pw",
                                   image.reference())

    :ivar directory: the temporary directory.
    :ivar containerd: the :class:`Containerd`.
    :ivar registries: the :class:`Registry` list, in the order given.
    """

    def __init__(self, registries=(None,)):
        """
        :param registries: one entry per registry: a ``(username, password)``
            pair, ``None`` for a registry without auth, or a callable that
            makes a :class:`Registry` from its directory (another kind, such
            as ``dev.token_auth.TokenRegistry``).
        """
        self.directory = tempfile.mkdtemp(prefix="ics-", dir="/tmp")
        self.containerd = Containerd(os.path.join(self.directory, "c"))
        self.registries = [
            entry(os.path.join(self.directory, f"r{index}"))
            if callable(entry)
            else Registry(os.path.join(self.directory, f"r{index}"), *(entry or ()))
            for index, entry in enumerate(registries)
        ]

    def start(self, timeout=START_TIMEOUT):
        """
        Start containerd and the registries; clean everything up if one
        fails.

        :param timeout: seconds to wait for each process.
        :raise SandboxError: if one does not come up.
        """
        try:
            self.containerd.start(timeout)
            for registry in self.registries:
                registry.start(timeout)
        except BaseException:
            self.cleanup()
            raise

    def stop(self):
        """
        Stop the registries and containerd, keeping their files.  Idempotent.
        """
        for registry in self.registries:
            registry.stop()
        self.containerd.stop()

    def cleanup(self):
        """
        Stop everything and remove the directory.  Idempotent.
        """
        self.stop()
        if os.path.isdir(self.directory):
            _unmount_under(self.directory)
            _remove_tree(self.directory)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc_info):
        self.cleanup()
