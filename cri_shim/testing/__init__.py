"""
Test doubles that run the real request code (shipped, as txkube ships
C{txkube.testing}): a CRI runtime on a real gRPC server, registries and the
Kubernetes API server as C{twisted.web} resources, certificates made on the
fly.  Each kind lives in its own module; the names are gathered here.
"""

from cri_shim.testing.apiserver import FakeAPIServer
from cri_shim.testing.certificates import make_ca, make_cert
from cri_shim.testing.clock import Sequence, no_jitter
from cri_shim.testing.reactor import FakeReactor, ManualPool
from cri_shim.testing.registries import FakeRegistries, FakeRegistry, registry_config
from cri_shim.testing.runtime import FakeRuntime

__all__ = ["FakeAPIServer", "FakeReactor", "FakeRegistries", "FakeRegistry", "FakeRuntime",
           "ManualPool", "make_ca", "make_cert", "no_jitter", "registry_config", "Sequence"]
