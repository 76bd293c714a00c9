"""
Edge cases of L{cri_shim.model.reference} found by mutation testing (make
mutate): each error message whole, as the operator reads it, the cut of a
huge input in a message, a move without a prefix, registry addresses' parts
and refusals, and C{mirrorOf} domains.
"""

from twisted.trial.unittest import SynchronousTestCase

import attr

from cri_shim.model.reference import (
    InvalidReference,
    InvalidRegistryAddress,
    RegistryAddress,
    normalize_domain,
    parse,
    parse_registry_address,
)

HEX = "0123456789abcdef" * 4


def wrong_messages(case, error, function, opening, table):
    """
    :param table: C{(text, problem)} pairs: C{function(text)} must raise
        C{error} saying C{opening} with the text quoted, then the problem.
    :return: C{(message, expected)} for each message that differs.
    """
    wrong = []
    for text, problem in table:
        expected = "{} {!r}: {}".format(opening, text, problem)
        message = str(case.assertRaises(error, function, text))
        if message != expected:
            wrong.append((message, expected))
    return wrong


class MessageTests(SynchronousTestCase):
    """
    The whole message of each kind of L{InvalidReference}: the reference
    quoted, then the one problem, with nothing around it.
    """

    def test_parse(self):
        """
        Each problem L{parse} finds reads as the operator should see it.
        """
        table = [
            ("", "empty reference"),
            ("Nginx", "repository name must be lowercase"),
            (":tag", "missing repository name"),
            ("a/b//c", "empty path component in 'a/b//c'"),
            ("-a/b", "invalid path component '-a'"),
            ("nginx:", "empty tag"),
            ("nginx:" + "t" * 129, "tag longer than 128 characters"),
            ("nginx:-tag", "invalid tag '-tag'"),
            ("nginx@sha256:short", "invalid digest 'sha256:short'"),
            ("nginx@md5:" + HEX,
             "invalid digest 'md5:{}': unsupported algorithm 'md5'".format(HEX)),
            ("nginx@sha256:" + HEX[:32],
             "invalid digest 'sha256:{}': sha256 needs 64 lowercase hex characters".format(
                 HEX[:32])),
            (HEX, "cannot specify 64-byte hexadecimal strings (they are ambiguous with image "
                  "IDs)"),
            ("http://nginx", "an image reference has no URL scheme"),
            ("dock..er/docker", "invalid domain 'dock..er'"),
            ("quay.io/" + "a" * 256, "repository name longer than 255 characters (256)"),
        ]
        self.assertEqual(
            wrong_messages(self, InvalidReference, parse, "invalid reference", table), [])

    def test_moved(self):
        """
        A move refused names the reference, the target and the problem.
        """
        nginx = parse("nginx")
        self.assertEqual(
            [str(self.assertRaises(InvalidReference, nginx.moved, *target))
             for target in [("myreg",), ("x.io", "Proj")]],
            ["invalid reference 'docker.io/library/nginx': cannot move to 'myreg': not a "
             "domain",
             "invalid reference 'docker.io/library/nginx': cannot move under prefix 'Proj': "
             "repository name must be lowercase"])

    def test_huge_input_cut(self):
        """
        An input of up to 300 characters is quoted whole; a longer one by
        its first 300, followed by C{...}.
        """
        whole = "A" * 300
        self.assertEqual(str(self.assertRaises(InvalidReference, parse, whole)),
                         "invalid reference {!r}: repository name must be lowercase".format(
                             whole))
        longer = "A" * 301
        self.assertEqual(str(self.assertRaises(InvalidReference, parse, longer)),
                         "invalid reference {!r}...: repository name must be lowercase".format(
                             whole))


class MovedTests(SynchronousTestCase):
    """
    L{Reference.moved} without a prefix.
    """

    def test_no_prefix(self):
        """
        Without a prefix, the path is kept as it is under the new domain.
        """
        self.assertEqual(str(parse("nginx:1").moved("sealos.hub:5000")),
                         "sealos.hub:5000/library/nginx:1")


class RegistryAddressTests(SynchronousTestCase):
    """
    L{parse_registry_address}'s results and refusals.
    """

    def test_parts(self):
        """
        An address gives its name as image names show it, the host a TLS
        connection names, and its port, the scheme's default when none is
        given.
        """
        table = [
            ("https://harbor.local/proxy/", ("harbor.local/proxy", "harbor.local", 443)),
            ("http://sealos.hub:5000", ("sealos.hub:5000", "sealos.hub", 5000)),
            ("http://sealos.hub", ("sealos.hub", "sealos.hub", 80)),
            ("x.io:1", ("x.io:1", "x.io", 1)),
            ("https://[::1]:5000", ("[::1]:5000", "::1", 5000)),
        ]
        self.assertEqual(
            [(text, (address.name, address.hostname, address.port))
             for text, address in ((t, parse_registry_address(t)) for t, _ in table)],
            table)

    def test_without_prefix(self):
        """
        An address made without a prefix has none.
        """
        address = RegistryAddress("https", "x.io", "x.io")
        self.assertEqual((address.prefix, address.name), ("", "x.io"))

    def test_immutable(self):
        """
        Addresses cannot be changed: every snapshot of the config shares them.
        """
        address = parse_registry_address("x.io")
        self.assertRaises(attr.exceptions.FrozenInstanceError, setattr, address, "host", "y.io")

    def test_refused(self):
        """
        Each refusal quotes the address, user information never, and names
        the problem.
        """
        table = [
            ("ftp://x.io", "unsupported scheme 'ftp' (use http or https)"),
            ("x.io?a", "a query or fragment is not allowed"),
            ("", "empty host"),
            ("a_b:1", "invalid host 'a_b:1'"),
            ("x.io:0", "invalid port '0'"),
            ("x.io:65536", "invalid port '65536'"),
            ("a", "host 'a' would read as a Docker Hub namespace in image names: give a "
                  "fully qualified name or a port"),
            ("x.io/proX", "invalid prefix: repository name must be lowercase"),
        ]
        self.assertEqual(wrong_messages(self, InvalidRegistryAddress, parse_registry_address,
                                        "invalid registry address", table), [])
        self.assertEqual(
            str(self.assertRaises(InvalidRegistryAddress, parse_registry_address,
                                  "https://user:se@cret@x.io/p")),
            "invalid registry address 'https://<redacted>@x.io/p': user information is not "
            "allowed")


class NormalizeDomainTests(SynchronousTestCase):
    """
    L{normalize_domain}, for C{mirrorOf}.
    """

    def test_normalized(self):
        """
        Domains are lowercased; Docker Hub's names are C{docker.io}.
        """
        self.assertEqual([normalize_domain(text) for text in (
            "Quay.IO", "docker.io", "index.docker.io", "registry-1.docker.io", "localhost:5000")],
            ["quay.io", "docker.io", "docker.io", "docker.io", "localhost:5000"])

    def test_refused(self):
        """
        What image names could not carry as a domain is refused, quoted.
        """
        self.assertEqual(
            [str(self.assertRaises(InvalidRegistryAddress, normalize_domain, text))
             for text in ("library", "a_b.c")],
            ["invalid registry domain 'library'", "invalid registry domain 'a_b.c'"])
