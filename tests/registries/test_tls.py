"""
Tests for L{cri_shim.registries.tls}: real HTTPS registries on 127.0.0.1 with
certificates made in the test, probed through the shim's TLS policy.
"""

import os
import shutil
import tempfile

from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.internet.ssl import Certificate, PrivateCertificate
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool
from twisted.web.server import Site

from cri_shim.model import reference, schema
from cri_shim.registries.probe import ProbeError, Prober
from cri_shim.registries.tls import agent, registry_policy
from cri_shim.snapshot import SnapshotHolder
from cri_shim.testing import FakeRegistries, FakeRegistry, make_ca, make_cert


class RegistryTLSTests(TestCase):
    timeout = 20

    def setUp(self):
        self.folder = tempfile.mkdtemp(prefix="ics-", dir="/tmp")
        self.addCleanup(shutil.rmtree, self.folder, True)
        self.ca = make_ca()
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(self.pool.closeCachedConnections)

    def write(self, name, data):
        path = os.path.join(self.folder, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def serve(self, sans=("127.0.0.1",), ca=None, client_ca=None):
        """
        An HTTPS registry holding C{library/nginx:latest}.

        :return: its C{host:port}.
        """
        cert, key = make_cert(ca or self.ca, sans)
        server = PrivateCertificate.loadPEM(cert + key)
        # Naming a CA requires clients to present a certificate it signed.
        authorities = [Certificate.loadPEM(client_ca[0])] if client_ca else []
        context = server.options(*authorities)
        routes = FakeRegistries()
        port = reactor.listenSSL(0, Site(routes), context, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        host = "127.0.0.1:{}".format(port.getHost().port)
        registry = routes.add(host, FakeRegistry())
        registry.add(reference.parse(host + "/library/nginx:latest"))
        return host

    def probe(self, *registries_text):
        """
        Load a config with C{registries_text} entries and probe each one.

        :return: a Deferred firing with the list of results (True or the
            ProbeError's reason).
        """
        text = "registries:\n" + "".join(registries_text)
        loaded, _ = schema.load(text.encode("utf-8"))
        holder = SnapshotHolder(loaded, reactor.seconds)
        prober = Prober(HTTPClient(agent(reactor, registry_policy(holder, reactor), self.pool)),
                        reactor)
        results = []

        def one(index):
            if index == len(loaded.registries):
                return results
            registry = loaded.registries[index]
            target = reference.parse("nginx").moved(registry.address.host)
            d = prober.has_manifest(registry, target, 5.0)
            d.addCallbacks(results.append,
                           lambda failure: results.append(failure.trap(ProbeError) and
                                                          failure.value.reason))
            return d.addCallback(lambda _: one(index + 1))

        return one(0)

    def refused(self, d):
        """
        :return: C{d} (a L{probe} of one registry), checked to be refused.
        """
        def check(results):
            [reason] = results
            self.assertIsNot(reason, True)
            return reason
        return d.addCallback(check)

    def entry(self, host, **options):
        lines = "  - address: https://{}\n".format(host)
        for key, value in options.items():
            lines += "    {}: {}\n".format(key, value)
        return lines

    def test_untrusted_refused(self):
        """
        A registry whose certificate the system does not trust is refused.
        """
        host = self.serve()
        d = self.refused(self.probe(self.entry(host)))
        return d.addCallback(lambda reason: self.assertIn("SSL", reason))

    def test_ca_file(self):
        """
        With the registry's CA configured, the probe succeeds.
        """
        host = self.serve()
        ca_file = self.write("ca.pem", self.ca[0])
        return self.probe(self.entry(host, caFile=ca_file)).addCallback(
            self.assertEqual, [True])

    def test_wrong_name_refused(self):
        """
        A trusted certificate for another name is refused.
        """
        host = self.serve(sans=("registry.example",))
        ca_file = self.write("ca.pem", self.ca[0])
        return self.refused(self.probe(self.entry(host, caFile=ca_file)))

    def test_insecure_for_that_registry_alone(self):
        """
        insecureSkipVerify lets its own registry through and no other.
        """
        lax = self.serve()
        strict = self.serve(ca=make_ca("another CA"))
        d = self.probe(self.entry(lax, insecureSkipVerify="true", priority=900),
                       self.entry(strict, priority=800))

        def check(results):
            self.assertEqual(results[0], True)
            self.assertIsNot(results[1], True)
        return d.addCallback(check)

    def test_client_certificate(self):
        """
        A registry requiring a client certificate accepts the configured one.
        """
        client_ca = make_ca("client CA")
        host = self.serve(client_ca=client_ca)
        cert, key = make_cert(client_ca, ["image-cri-shim"])
        ca_file = self.write("ca.pem", self.ca[0])
        d = self.probe(self.entry(host, caFile=ca_file, certFile=self.write("c.pem", cert),
                                  keyFile=self.write("k.pem", key)))
        return d.addCallback(self.assertEqual, [True])

    def test_client_certificate_missing(self):
        """
        Without the client certificate, such a registry refuses the probe.
        """
        client_ca = make_ca("client CA")
        host = self.serve(client_ca=client_ca)
        ca_file = self.write("ca.pem", self.ca[0])
        return self.refused(self.probe(self.entry(host, caFile=ca_file)))
