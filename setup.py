"""
Packaging for image-cri-shim.

The CRI protobuf modules are generated at build time from ``proto/`` into
``cri_shim/_proto/`` (git-ignored), with ``grpc_tools.protoc`` when it is
importable and the system ``protoc`` otherwise, so that the generated code
always matches the protobuf runtime it is built against (Debian 12's 3.21 as
well as today's PyPI releases).
"""

import os
import shutil
import subprocess
import sys

from setuptools import Command, setup
from setuptools.command.build_py import build_py
from setuptools.command.develop import develop

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_ROOT = os.path.join(HERE, "proto")
OUT_ROOT = os.path.join(HERE, "cri_shim", "_proto")
PROTO_FILES = ["runtime/v1/api.proto", "runtime/v1alpha2/api.proto"]
#: The shipped package's wings (dev/ and tests/ are never shipped).
WINGS = ["model", "serve", "registries", "sync", "ops"]
PROTO_PACKAGES = [
    "cri_shim._proto",
    "cri_shim._proto.runtime",
    "cri_shim._proto.runtime.v1",
    "cri_shim._proto.runtime.v1alpha2",
]


def _protoc_command():
    """
    The protoc invocation to use: grpc_tools' bundled compiler when it is
    importable (it matches the pip-installed protobuf), else the system one.
    """
    try:
        import grpc_tools.protoc  # noqa: F401
    except ImportError:
        protoc = shutil.which("protoc")
        if protoc is None:
            sys.exit("image-cri-shim: neither grpc_tools nor protoc is available to "
                     "generate the CRI protobuf code (install grpcio-tools or "
                     "protobuf-compiler)")
        return [protoc]
    return [sys.executable, "-m", "grpc_tools.protoc"]


def generate_protos():
    """
    Generate ``cri_shim/_proto/runtime/{v1,v1alpha2}/api_pb2.py``.
    """
    for package in PROTO_PACKAGES:
        folder = os.path.join(HERE, *package.split("."))
        os.makedirs(folder, exist_ok=True)
        init = os.path.join(folder, "__init__.py")
        if not os.path.exists(init):
            with open(init, "w") as f:
                f.write('"""Generated at build time from proto/; do not edit."""\n')
    command = _protoc_command() + ["-I" + PROTO_ROOT, "--python_out=" + OUT_ROOT]
    command += [os.path.join(PROTO_ROOT, name) for name in PROTO_FILES]
    subprocess.check_call(command)


class GenerateProtos(Command):
    """``python setup.py build_protos``: regenerate the protobuf modules."""

    description = "generate the CRI protobuf modules from proto/"
    user_options = []

    def initialize_options(self):
        pass

    def finalize_options(self):
        pass

    def run(self):
        generate_protos()


class BuildPy(build_py):
    def run(self):
        generate_protos()
        build_py.run(self)


class Develop(develop):
    def run(self):
        generate_protos()
        develop.run(self)


setup(
    name="image-cri-shim",
    version="0.1.0",
    description="CRI proxy that rewrites image pulls to the private registry that holds them",
    license="Apache-2.0",
    python_requires=">=3.9",
    packages=(["cri_shim", "cri_shim.testing"] + ["cri_shim." + wing for wing in WINGS]
              + PROTO_PACKAGES + ["twisted.plugins"]),
    install_requires=[
        "twisted>=22.4",
        "grpcio>=1.51",
        "protobuf>=3.21",
        "PyYAML>=6.0",
        "treq>=22.2",
        "service-identity",
        "attrs",
    ],
    entry_points={"console_scripts": ["image-cri-shim-ctl = cri_shim.ops.ctl:main"]},
    cmdclass={"build_protos": GenerateProtos, "build_py": BuildPy, "develop": Develop},
)
