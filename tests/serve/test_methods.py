"""
Tests for L{cri_shim.serve.methods}, written from what mutation testing (make
mutate) found untested: the unary fast path (with the configured default
deadline) must list every unary CRI method, checked against the CRI
descriptors linked into containerd, an independent copy of the contract.
"""

from twisted.trial import unittest

from cri_shim.serve import methods
from tests.serve import test_proto_wire


class UnaryTableTests(unittest.TestCase):
    """
    L{methods.UNARY} against containerd's CRI descriptors.
    """

    def test_every_unary_method_listed(self):
        """
        Every RuntimeService and ImageService method containerd defines
        without streaming, other than the rewritten ones, is relayed on the
        unary path; no streaming one is.
        """
        upstream = test_proto_wire.WireContractTests("run").upstream
        checked = 0
        for package in sorted(methods.API):
            try:
                copies = upstream(package)
            except unittest.SkipTest:
                continue
            for theirs in copies:
                services = test_proto_wire._index(theirs)[2]
                unary, streaming = set(), set()
                for service in ("RuntimeService", "ImageService"):
                    for method in services[service].method:
                        path = methods.path(package, service, method.name)
                        if method.client_streaming or method.server_streaming:
                            streaming.add(path)
                        elif method.name not in methods.REWRITTEN:
                            unary.add(path)
                self.assertEqual((unary - methods.UNARY, streaming & methods.UNARY),
                                 (set(), set()), package)
            checked += 1
        if not checked:
            raise unittest.SkipTest("no upstream CRI descriptors found")
