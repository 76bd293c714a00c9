"""
Tests for L{cri_shim.model.address}: one registry however its address is
spelled (issue 17, #7b).  Parsing itself is tested in
L{tests.model.test_reference}, where it lived first.
"""

from twisted.trial.unittest import SynchronousTestCase

from cri_shim.model.address import parse_registry_address

#: One registry, as operators write it.
TEAM_A = ["team-a.example", "https://team-a.example/", "HTTPS://Team-A.example",
          "team-a.example/", "https://team-a.example:443", "Team-A.Example:443/",
          "http://team-a.example", "http://team-a.example:80/"]


class KeyTests(SynchronousTestCase):
    """
    L{RegistryAddress.key}: what tells registries apart.
    """

    def test_spellings_share_a_key(self):
        """
        Case, a trailing slash, the default scheme, the scheme's default
        port and the scheme itself do not change the key.
        """
        keys = {text: parse_registry_address(text).key for text in TEAM_A}
        self.assertEqual(keys, {text: ("team-a.example", "") for text in TEAM_A})

    def test_other_registries_differ(self):
        """
        Another port (the other scheme's default one included), another
        prefix or another host is another registry.
        """
        for text, key in [("team-a.example:5000", ("team-a.example:5000", "")),
                          ("http://team-a.example:443", ("team-a.example:443", "")),
                          ("https://team-a.example:80", ("team-a.example:80", "")),
                          ("team-a.example/proxy/", ("team-a.example", "proxy")),
                          ("team-b.example", ("team-b.example", "")),
                          ("[::1]:443", ("[::1]", "")),
                          ("[::1]:8443", ("[::1]:8443", "")),
                          ("team-a.example:8443", ("team-a.example:8443", ""))]:
            self.assertEqual(parse_registry_address(text).key, key, text)

    def test_docker_hub(self):
        """
        Docker Hub under any of its names, with or without the default port,
        is one registry.
        """
        for text in ("docker.io", "index.docker.io:443", "https://registry-1.docker.io:443/",
                     "Docker.IO:443"):
            self.assertEqual(parse_registry_address(text).key, ("docker.io", ""), text)

    def test_host_kept_as_written(self):
        """
        The host images are moved to keeps the port it was written with
        (containerd finds a registry's settings by that name).
        """
        self.assertEqual(parse_registry_address("https://team-a.example:443").host,
                         "team-a.example:443")


class NamesHostTests(SynchronousTestCase):
    """
    L{RegistryAddress.names_host}: whether an image name's domain is the
    registry's host.
    """

    def test_spellings(self):
        """
        In any case, with or without the scheme's default port.
        """
        for text in TEAM_A:
            address = parse_registry_address(text)
            default = "443" if address.scheme == "https" else "80"
            for domain in ("team-a.example", "Team-A.Example", "team-a.example:" + default):
                self.assertTrue(address.names_host(domain), (text, domain))
            for domain in ("team-a.example:5000", "team-b.example", "team-a.example.org",
                           "team-a.example:" + ("80" if default == "443" else "443")):
                self.assertFalse(address.names_host(domain), (text, domain))

    def test_port(self):
        """
        The endpoint's port is the scheme's default when none is given.
        """
        self.assertEqual([parse_registry_address(text).port for text in (
            "team-a.example", "http://team-a.example", "team-a.example:5000")],
            [443, 80, 5000])
