# -*- test-case-name: tests.conformance.test_node,tests.conformance.test_critest -*-
"""
Stand-ins for the images that critest (cri-tools v1.37.0, ``pkg/validate``
and ``pkg/framework``) pulls, under the same names, built here and pushed
to a sandbox registry: the real ones live on public registries this machine
cannot reach.

Each stand-in gives the suite what it observes of the real image:

- the shell images: Debian's ``busybox-static`` (``/bin/busybox`` and a
  link per applet), with ``/etc/passwd`` and ``/etc/group`` as busybox
  images have them;
- the user images: busybox with the ``User`` the suite expects
  (``1002``, ``www-data``, ``1003:1004``, ``www-data:1004``, and a user
  1000 in a group 50000 defined in the image);
- the tag and list images: busybox plus one file named after the image, so
  that different names are different images and the ``test-image-tags``
  tags are one image.  Their command is ``sleep``, not the real images'
  ``sh``, which exits at once without stdin: "same image identifier across
  all APIs" removes such a container while it runs, and containerd 2.4 then
  fails at random ("container is still running, to stop first") as the
  exit races the removal;
- the web servers (nginx, httpd, hostnet-nginx): busybox plus ``web``
  (``dev/tools/images/web``), which logs its name, writes nginx's pid file
  and runs under nginx's ``master process`` title;
- ``nonewprivs``: busybox plus ``nnp`` (``dev/tools/images/nnp``), setuid
  root, printing its effective uid;
- ``pause``: ``dev/tools/images/pause`` alone.

What cannot be stood in: ``test-image-digest@sha256:9700f9...`` is pinned by
the digest of the real image, so its pull fails wherever it is run.

The programs are built by ``make tools`` into ``.tools/images``.  Standard
library only.
"""

import dataclasses
import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
import urllib.parse

from dev import node

MANIFEST_MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_MEDIA_TYPE = "application/vnd.docker.container.image.v1+json"
LAYER_MEDIA_TYPE = "application/vnd.docker.image.rootfs.diff.tar.gzip"

BUSYBOX = "/bin/busybox"
PROGRAMS_DIR = os.path.join(node.TOOLS_DIR, "images")
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_EPOCH = "1970-01-01T00:00:00Z"

GCR = "gcr.io/k8s-staging-cri-tools/"
E2E = "registry.k8s.io/e2e-test-images/"
#: The registries critest's image names are on.
REGISTRY_HOSTS = ("gcr.io", "registry.k8s.io", "k8s.gcr.io")

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
"""
GROUP = """\
root:x:0:
daemon:x:1:
www-data:x:33:
users:x:100:
nogroup:x:65534:
"""
PGREP = """\
#!/bin/sh
# Stand-in for procps' pgrep NAME: the pids of the processes called NAME.
pidof "$@" | tr ' ' '\\n'
"""
IPCS = """\
#!/bin/sh
# Stand-in for util-linux's ipcs: the System V IPC tables as the kernel has them.
case "$1" in
  -q) exec cat /proc/sysvipc/msg ;;
  -s) exec cat /proc/sysvipc/sem ;;
  *) exec cat /proc/sysvipc/shm ;;
esac
"""


def _sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _canonical_json(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


class Layer:
    """
    A reproducible layer: directories, files and symlinks, owned by root
    unless said otherwise, every time stamp 0.
    """

    def __init__(self):
        self._entries = {}
        self._blobs = None

    def directory(self, path, mode=0o755):
        self._entries[path] = ("dir", None, mode, 0, 0)
        return self

    def file(self, path, content, mode=0o644, uid=0, gid=0):
        self._parents(path)
        self._entries[path] = ("file", content, mode, uid, gid)
        return self

    def hardlink(self, path, target):
        self._parents(path)
        self._entries[path] = ("hardlink", target.lstrip("/"), 0o755, 0, 0)
        return self

    def symlink(self, path, target):
        self._parents(path)
        self._entries[path] = ("symlink", target, 0o777, 0, 0)
        return self

    def _parents(self, path):
        parent = os.path.dirname(path)
        while parent not in ("", "/") and parent not in self._entries:
            self._entries[parent] = ("dir", None, 0o755, 0, 0)
            parent = os.path.dirname(parent)

    def blobs(self):
        """
        :return: ``(tar, gzipped tar)``, computed once.
        """
        if self._blobs is None:
            tar = self.tar()
            self._blobs = tar, gzip.compress(tar, mtime=0)
        return self._blobs

    def tar(self):
        """
        :return: the uncompressed tar, entries sorted by path, hard links
            last (after their targets).
        """
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for path in sorted(self._entries,
                               key=lambda p: (self._entries[p][0] == "hardlink", p)):
                kind, content, mode, uid, gid = self._entries[path]
                info = tarfile.TarInfo(path.lstrip("/"))
                info.mode, info.uid, info.gid, info.mtime = mode, uid, gid, 0
                if kind == "dir":
                    info.type = tarfile.DIRTYPE
                    tar.addfile(info)
                elif kind in ("symlink", "hardlink"):
                    info.type = tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE
                    info.linkname = content
                    tar.addfile(info)
                else:
                    info.size = len(content)
                    tar.addfile(info, io.BytesIO(content))
        return buffer.getvalue()


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def busybox_layer(passwd=PASSWD, group=GROUP):
    """
    :return: the base :class:`Layer`: busybox, a hard link per applet (as
        busybox images have them: masking ``/bin/ls`` must not mask the
        shell), ``pgrep`` and ``ipcs`` (which Debian's busybox lacks) as
        scripts, the usual top-level directories, passwd and group.
    """
    applets = subprocess.run(
        [BUSYBOX, "--list"], capture_output=True, text=True, check=True,
        timeout=30, stdin=subprocess.DEVNULL).stdout.split()
    layer = Layer()
    for directory in ("/bin", "/dev", "/etc", "/home", "/proc", "/root", "/sys",
                      "/usr/bin", "/usr/sbin", "/usr/local/bin", "/var/run",
                      "/var/www"):
        layer.directory(directory, 0o700 if directory == "/root" else 0o755)
    layer.directory("/tmp", 0o1777)
    layer.file("/bin/busybox", _read(BUSYBOX), 0o755)
    for applet in applets:
        if applet != "busybox":
            layer.hardlink("/bin/" + applet, "/bin/busybox")
    layer.file("/usr/bin/pgrep", PGREP.encode(), 0o755)
    layer.file("/usr/bin/ipcs", IPCS.encode(), 0o755)
    layer.file("/etc/passwd", passwd.encode())
    layer.file("/etc/group", group.encode())
    return layer


@dataclasses.dataclass
class Image:
    """
    One stand-in: its layers and config, and the names it is pushed under.
    """

    names: list
    layers: list
    config: dict

    def blobs(self):
        """
        :return: ``(manifest, [blob, ...])`` of this image.
        """
        tars = [layer.blobs()[0] for layer in self.layers]
        compressed = [layer.blobs()[1] for layer in self.layers]
        goos, goarch = node.platform_string().split("/")
        config = _canonical_json({
            "architecture": goarch,
            "os": goos,
            "created": _EPOCH,
            "config": dict({"Env": [PATH_ENV]}, **self.config),
            "rootfs": {"type": "layers", "diff_ids": [_sha256(t) for t in tars]},
            "history": [{"created": _EPOCH, "created_by": __name__}
                        for _ in tars],
        })
        manifest = _canonical_json({
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": {"mediaType": CONFIG_MEDIA_TYPE, "size": len(config),
                       "digest": _sha256(config)},
            "layers": [{"mediaType": LAYER_MEDIA_TYPE, "size": len(blob),
                        "digest": _sha256(blob)} for blob in compressed],
        })
        return manifest, compressed + [config]


def _program(name):
    return _read(os.path.join(PROGRAMS_DIR, name))


#: The programs :func:`stand_ins` puts in images (``dev/tools/images/*``).
PROGRAMS = ("pause", "web", "nnp")


def skip_reason():
    """
    :return: why :func:`stand_ins` cannot build here (a program ``make
        tools`` builds is missing), or ``None``.
    """
    missing = [name for name in PROGRAMS
               if not os.path.exists(os.path.join(PROGRAMS_DIR, name))]
    if missing:
        return "no stand-in image programs {} in {} (make tools)".format(
            ", ".join(missing), PROGRAMS_DIR)
    return None


def stand_ins(sandbox_image=node.SANDBOX_IMAGE):
    """
    :return: the :class:`Image` list: every image critest v1.37.0 pulls on
        Linux, and ``sandbox_image`` for containerd.
    """
    base = busybox_layer()
    web = Layer().file("/usr/sbin/web", _program("web"), 0o755)
    web.symlink("/usr/sbin/nginx", "web").symlink("/usr/local/bin/httpd", "/usr/sbin/web")
    web.file("/usr/share/nginx/html/index.html", b"<html>stand-in</html>\n")
    predefined = busybox_layer(
        PASSWD + "default-user:x:1000:1000::/home/default-user:/bin/sh\n",
        GROUP + "default-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n")
    pause = Layer().file("/pause", _program("pause"), 0o755)

    def tagged(name):
        return Layer().file("/" + name, b"")

    sleeping = {"Cmd": ["sleep", "3600"]}

    images = [
        Image([sandbox_image], [pause],
              # Not the same image as pause:3.9, which the suite removes.
              {"Entrypoint": ["/pause"], "Labels": {"org.image-cri-shim.role": "sandbox"}}),
        Image(["registry.k8s.io/pause:3.9", "k8s.gcr.io/pause:3.9"], [pause],
              {"Entrypoint": ["/pause"]}),
        Image([E2E + "busybox:1.29-2"], [base], {"Cmd": ["sh"]}),
        Image([E2E + "nginx:1.14-2"], [base, web], {
            "Cmd": ["/usr/sbin/nginx", "-addr", ":80", "-pidfile", "/var/run/nginx.pid",
                    "-title", "nginx: master process nginx -g daemon off;"],
            "ExposedPorts": {"80/tcp": {}}}),
        Image([E2E + "httpd:2.4.39-4"], [base, web], {
            "Cmd": ["/usr/local/bin/httpd", "-addr", ":80"],
            "ExposedPorts": {"80/tcp": {}}}),
        # Host network: on loopback only.
        Image([GCR + "hostnet-nginx-" + node.platform_string().split("/")[1] + ":latest"],
              [base, web], {"Cmd": ["/usr/sbin/nginx", "-addr", "127.0.0.1:12003"]}),
        Image([E2E + "nonewprivs:1.3"],
              [base, Layer().file("/usr/local/bin/nnp", _program("nnp"), 0o4755)],
              {"Entrypoint": ["/usr/local/bin/nnp"]}),
        Image([GCR + "test-image-user-uid:latest"], [base], {"User": "1002", "Cmd": ["sh"]}),
        Image([GCR + "test-image-user-username:latest"], [base],
              {"User": "www-data", "Cmd": ["sh"]}),
        Image([GCR + "test-image-user-uid-group:latest"], [base],
              {"User": "1003:1004", "Cmd": ["sh"]}),
        Image([GCR + "test-image-user-username-group:latest"], [base],
              {"User": "www-data:1004", "Cmd": ["sh"]}),
        Image([GCR + "test-image-predefined-group:latest"], [predefined],
              {"User": "1000", "Cmd": ["sh"]}),
        Image([GCR + "test-image-tags:1", GCR + "test-image-tags:2", GCR + "test-image-tags:3"],
              [base, tagged("same-image")], sleeping),
        Image([GCR + "test-image-tag:test", GCR + "test-image-tag:all"],
              [base, tagged("test-image-tag")], sleeping),
    ]
    for name in ("test-image-1", "test-image-2", "test-image-3", "test-image-latest"):
        images.append(Image([GCR + name + ":latest"], [base, tagged(name)], sleeping))
    return images


def split_name(name):
    """
    :return: ``(host, repository, tag)`` of a fully qualified ``HOST/REPO:TAG``.
    """
    host, rest = name.split("/", 1)
    repository, tag = rest.rsplit(":", 1)
    return host, repository, tag


def push(registry, images):
    """
    Push ``images`` to the sandbox ``registry`` (a ``sandbox.Registry``),
    each name under its repository without the host (as a mirror serves
    ``registry.k8s.io/pause:3.9`` at ``/v2/pause/manifests/3.9``).

    :return: ``{name: manifest digest}``.
    """
    digests = {}
    for image in images:
        manifest, blobs = image.blobs()
        for name in image.names:
            _, repository, tag = split_name(name)
            for blob in blobs:
                _upload_blob(registry, repository, blob)
            _expect(registry, 201, "PUT", f"/v2/{repository}/manifests/{tag}", manifest,
                    {"Content-Type": MANIFEST_MEDIA_TYPE})
            digests[name] = _sha256(manifest)
    return digests


def _expect(registry, status, method, path, body=None, headers=None):
    got, response_headers, response_body = registry.request(method, path, body, headers)
    if got != status:
        raise RuntimeError(f"{method} {path}: expected {status}, got {got}: "
                           f"{response_body[:300]!r}")
    return response_headers


def _upload_blob(registry, repository, blob):
    digest = _sha256(blob)
    if registry.request("HEAD", f"/v2/{repository}/blobs/{digest}")[0] == 200:
        return
    location = _expect(registry, 202, "POST", f"/v2/{repository}/blobs/uploads/")["Location"]
    separator = "&" if "?" in location else "?"
    _expect(registry, 201, "PUT",
            f"{location}{separator}digest={urllib.parse.quote(digest)}", blob,
            {"Content-Type": "application/octet-stream"})
