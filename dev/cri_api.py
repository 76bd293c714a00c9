# -*- test-case-name: tests.serve.test_proto_wire,tests.serve.test_methods -*-
"""
Upstream's CRI contract, read from the ``k8s.io/cri-api`` modules that
``make tools`` leaves in the Go module cache (linked from
``.tools/cri-api/VERSION``), compiled with protoc into
``FileDescriptorProto``s for comparing ours with.

The v0.25 files import gogo/protobuf's ``gogo.proto`` for Go code
generation options only; those lines are dropped before compiling, as they
say nothing about the wire.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile

from google.protobuf import descriptor_pb2

from dev import node

#: Where ``make tools`` links each pinned version's module folder.
LINKS = os.path.join(node.TOOLS_DIR, "cri-api")
#: A package's file inside the module, e.g. for ``runtime.v1``.
PROTO_PATH = "pkg/apis/runtime/{}/api.proto"

#: gogo.proto's import and its options (file or field level): Go only.
_GOGO = re.compile(
    r'^\s*import\s+"github\.com/gogo/protobuf/gogoproto/gogo\.proto";\s*$'
    r'|^\s*option\s+\(gogoproto\.\w+\)\s*=\s*[^;]*;\s*$'
    r'|\[\s*\(gogoproto\.\w+\)\s*=\s*[^\]]*\]', re.M)


def protoc_argv():
    """
    :return: the argv prefix of the protoc to use: grpc_tools' if importable,
        else the one on ``PATH``, else ``None``.
    """
    try:
        import grpc_tools.protoc  # noqa: F401
    except ImportError:
        path = shutil.which("protoc")
        return None if path is None else [path]
    return [sys.executable, "-m", "grpc_tools.protoc"]


def _version_key(version):
    return tuple(int(part) for part in re.findall(r"\d+", version))


def newest(package):
    """
    :param package: e.g. ``runtime.v1alpha2``.
    :return: ``(version, path of its api.proto)`` of the newest linked
        module that ships ``package``, or ``None``.
    """
    try:
        versions = sorted(os.listdir(LINKS), key=_version_key, reverse=True)
    except OSError:
        return None
    for version in versions:
        path = os.path.join(LINKS, version, PROTO_PATH.format(package.split(".")[-1]))
        if os.path.isfile(path):
            return version, path
    return None


def descriptor(path, protoc=None):
    """
    Compile one upstream api.proto, without its gogo lines.

    :param protoc: the argv prefix of protoc (default :func:`protoc_argv`).
    :return: its ``FileDescriptorProto``.
    :raise RuntimeError: when protoc fails, with its complaint.
    """
    with open(path, encoding="utf-8") as f:
        text = _GOGO.sub("", f.read())
    with tempfile.TemporaryDirectory(prefix="cri-api-") as scratch:
        source = os.path.join(scratch, "api.proto")
        out = os.path.join(scratch, "api.pb")
        with open(source, "w", encoding="utf-8") as f:
            f.write(text)
        proc = subprocess.run(
            (protoc or protoc_argv()) + ["-I" + scratch, "--descriptor_set_out=" + out, source],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if proc.returncode != 0:
            raise RuntimeError("protoc failed on {} ({}):\n{}".format(
                path, proc.returncode, proc.stdout.decode("utf-8", "replace")))
        files = descriptor_pb2.FileDescriptorSet()
        with open(out, "rb") as f:
            files.ParseFromString(f.read())
    return files.file[0]


def kinds(fdp):
    """
    :return: ``{gRPC method path: kind}`` of every method of ``fdp``'s
        services, the kind one of ``unary``, ``server_streaming``,
        ``client_streaming`` and ``bidi_streaming``.
    """
    names = {(False, False): "unary", (False, True): "server_streaming",
             (True, False): "client_streaming", (True, True): "bidi_streaming"}
    return {"/{}.{}/{}".format(fdp.package, service.name, method.name):
            names[method.client_streaming, method.server_streaming]
            for service in fdp.service for method in service.method}
