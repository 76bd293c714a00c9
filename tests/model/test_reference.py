"""
Tests for :mod:`cri_shim.model.reference`.

The expected results follow github.com/distribution/reference's
``ParseNormalizedNamed`` (v0.6) and github.com/opencontainers/go-digest.
"""

import re

from hypothesis import assume, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from cri_shim.model.reference import (
    InvalidReference,
    InvalidRegistryAddress,
    Reference,
    RegistryAddress,
    is_image_id,
    parse,
    parse_registry_address,
)

HEX = "0123456789abcdef" * 4
DIGEST = "sha256:" + HEX
SHA512 = "sha512:" + HEX * 2
SHA384 = "sha384:" + HEX + HEX[:32]

# (reference, domain, path, tag, digest)
VALID = [
    ("nginx", "docker.io", "library/nginx", None, None),
    ("nginx:latest", "docker.io", "library/nginx", "latest", None),
    ("library/nginx", "docker.io", "library/nginx", None, None),
    ("docker.io/nginx", "docker.io", "library/nginx", None, None),
    ("docker.io/library/nginx", "docker.io", "library/nginx", None, None),
    ("index.docker.io/library/nginx:1.25",
     "docker.io", "library/nginx", "1.25", None),
    ("index.docker.io/nginx", "docker.io", "library/nginx", None, None),
    ("bitnami/redis:7", "docker.io", "bitnami/redis", "7", None),
    ("docker.io/library/foo/bar", "docker.io", "library/foo/bar", None, None),
    ("registry.k8s.io/pause:3.9", "registry.k8s.io", "pause", "3.9", None),
    ("myreg:5000/a/b", "myreg:5000", "a/b", None, None),
    ("localhost/foo", "localhost", "foo", None, None),
    ("localhost:5000/foo:bar", "localhost:5000", "foo", "bar", None),
    ("[::1]:5000/a", "[::1]:5000", "a", None, None),
    ("[2001:db8::1]/repo:tag", "[2001:db8::1]", "repo", "tag", None),
    ("127.0.0.1:5000/library/nginx@" + DIGEST,
     "127.0.0.1:5000", "library/nginx", None, DIGEST),
    ("nginx:1.25@" + DIGEST, "docker.io", "library/nginx", "1.25", DIGEST),
    ("nginx@" + DIGEST, "docker.io", "library/nginx", None, DIGEST),
    ("nginx@" + SHA512, "docker.io", "library/nginx", None, SHA512),
    ("nginx@" + SHA384, "docker.io", "library/nginx", None, SHA384),
    ("quay.io/a/b/c:v1.0-rc.1", "quay.io", "a/b/c", "v1.0-rc.1", None),
    ("a__b/c--d/e.f:tag_x", "docker.io", "a__b/c--d/e.f", "tag_x", None),
    ("xn--n3h.com/myimage:xn--n3h.com",
     "xn--n3h.com", "myimage", "xn--n3h.com", None),
    ("nginx:UPPER_case", "docker.io", "library/nginx", "UPPER_case", None),
    ("nginx:_", "docker.io", "library/nginx", "_", None),
    ("nginx:" + "t" * 128, "docker.io", "library/nginx", "t" * 128, None),
    # An uppercase first component can only be a domain.
    ("Foo/bar", "Foo", "bar", None, None),
    ("DOCKER/docker", "DOCKER", "docker", None, None),
    # Without a "/", nothing is a domain: these are Docker Hub images.
    ("localhost", "docker.io", "library/localhost", None, None),
    ("localhost:5000", "docker.io", "library/localhost", "5000", None),
    ("192.168.0.1:80", "docker.io", "library/192.168.0.1", "80", None),
    # A first component without "." or ":" is a namespace, not a registry.
    ("myreg/a", "docker.io", "myreg/a", None, None),
    # distribution only normalises index.docker.io.
    ("registry-1.docker.io/nginx", "registry-1.docker.io", "nginx",
     None, None),
    # Only a bare 64-hex string is ambiguous; with a domain it is a path.
    ("docker.io/" + HEX, "docker.io", "library/" + HEX, None, None),
    # An image ID with its algorithm is a syntactically valid reference.
    (DIGEST, "docker.io", "library/sha256", HEX, None),
    # 63 hex characters are a name, not an ID.
    (HEX[:63], "docker.io", "library/" + HEX[:63], None, None),
    # The 255 character limit is on the path only ("library/" included).
    ("a" * 247, "docker.io", "library/" + "a" * 247, None, None),
    ("quay.io/" + "a" * 255, "quay.io", "a" * 255, None, None),
]

# (reference, fragment of the error message)
INVALID = [
    ("", "empty reference"),
    ("Nginx", "'Nginx': repository name must be lowercase"),
    ("docker/Docker", "must be lowercase"),
    ("quay.io/Foo/bar", "must be lowercase"),
    ("bad@@@", "invalid digest '@@'"),
    ("nginx:", "empty tag"),
    ("nginx@", "invalid digest ''"),
    (":tag", "missing repository name"),
    ("@" + DIGEST, "missing repository name"),
    ("quay.io/", "missing repository name"),
    ("nginx@sha256:short", "invalid digest 'sha256:short'"),
    ("nginx@sha256:" + HEX[:32], "sha256 needs 64 lowercase hex"),
    ("nginx@sha256:" + HEX.upper(), "sha256 needs 64 lowercase hex"),
    ("nginx@sha256:" + HEX + "0", "sha256 needs 64 lowercase hex"),
    ("nginx@sha512:" + HEX, "sha512 needs 128 lowercase hex"),
    ("nginx@md5:" + HEX, "unsupported algorithm 'md5'"),
    ("nginx@SHA256:" + HEX, "unsupported algorithm 'SHA256'"),
    ("nginx@sha256:" + "g" * 64, "invalid digest"),
    ("nginx@" + DIGEST + "@" + DIGEST, "invalid digest"),
    ("a/b//c", "empty path component"),
    ("docker///docker", "empty path component"),
    ("nginx/", "empty path component"),
    ("/nginx", "empty path component"),
    ("-a/b", "invalid path component '-a'"),
    ("-docker", "invalid path component '-docker'"),
    ("docker-/docker", "invalid path component 'docker-'"),
    ("dock..er/docker", "invalid domain 'dock..er'"),
    ("dock_.er/docker", "invalid domain 'dock_.er'"),
    ("docker/dock..er", "invalid path component 'dock..er'"),
    ("docker/dock_.er", "invalid path component 'dock_.er'"),
    ("____/____", "invalid path component"),
    ("_docker/docker", "invalid path component"),
    ("a___b", "invalid path component"),
    ("nginx:" + "t" * 129, "tag longer than 128 characters"),
    ("nginx:-tag", "invalid tag '-tag'"),
    ("nginx:.tag", "invalid tag"),
    ("nginx:a:b", "invalid tag 'a:b'"),
    ("nginx:a/b", "invalid domain 'nginx:a'"),
    ("a" * 248, "repository name longer than 255 characters"),
    ("quay.io/" + "a" * 256, "repository name longer than 255 characters"),
    ("quay.io/" + "a/" * 127 + "ab", "longer than 255 characters"),
    (HEX, "cannot specify 64-byte hexadecimal strings"),
    ("http://nginx", "no URL scheme"),
    ("https://github.com/docker/docker", "no URL scheme"),
    ("-docker.io/docker/docker", "invalid domain '-docker.io'"),
    ("fc00::1:5000/debian", "invalid domain 'fc00::1:5000'"),
    ("[fc00::1]", "invalid path component"),
    ("[fc00::1]:5000", "invalid"),
    ("[fe80::1%eth0]:5000/debian", "invalid domain"),
    ("[2001:db8:3:4::192.0.2.33]:5000/debian", "invalid domain"),
    ("quay.io:port/a", "invalid domain"),
    # distribution would accept this with an empty domain (see _split_domain).
    ("a_b.c/x", "invalid domain 'a_b.c'"),
    ("ng inx", "invalid path component 'ng inx'"),
    (" nginx", "invalid path component"),
    ("nginx ", "invalid path component"),
    ("nginx:1.0 ", "invalid tag"),
    ("ngïnx", "invalid path component"),
    ("nginx:tаg", "invalid tag"),  # Cyrillic "а"
    ("nginx:١", "invalid tag"),  # Arabic-Indic digit one
    ("quay.íó/a", "invalid domain"),
    ("ng\x00inx", "invalid path component"),
    ("nginx:1\x00", "invalid tag"),
    ("nginx\n", "invalid path component"),
]


class ParseTests(SynchronousTestCase):
    """
    Tests for :func:`parse`.
    """

    def test_valid(self):
        """
        Valid references parse into their normalised domain, path, tag and
        digest.
        """
        for text, domain, path, tag, digest in VALID:
            with self.subTest(text=text):
                self.assertEqual(
                    parse(text),
                    Reference(domain=domain, path=path, tag=tag,
                              digest=digest),
                )

    def test_invalid(self):
        """
        Invalid references raise :class:`InvalidReference`, a
        :class:`ValueError`, whose message quotes the reference and names the
        problem.
        """
        for text, fragment in INVALID:
            with self.subTest(text=text):
                error = self.assertRaises(InvalidReference, parse, text)
                self.assertIsInstance(error, ValueError)
                message = str(error)
                self.assertTrue(
                    message.startswith("invalid reference "), message
                )
                self.assertIn(fragment, message)

    def test_long_input_message(self):
        """
        The message of an error about a huge input quotes only its start.
        """
        error = self.assertRaises(InvalidReference, parse, "A" * 100000)
        self.assertLess(len(str(error)), 500)

    def test_str(self):
        """
        ``str`` gives the fully qualified reference, without adding a tag.
        """
        for text, expected in [
            ("nginx", "docker.io/library/nginx"),
            ("nginx:1.25", "docker.io/library/nginx:1.25"),
            ("nginx@" + DIGEST, "docker.io/library/nginx@" + DIGEST),
            ("nginx:1@" + DIGEST, "docker.io/library/nginx:1@" + DIGEST),
            ("index.docker.io/a/b:c", "docker.io/a/b:c"),
            ("[::1]:5000/a:b", "[::1]:5000/a:b"),
            ("Foo/bar", "Foo/bar"),
        ]:
            with self.subTest(text=text):
                self.assertEqual(str(parse(text)), expected)

    def test_name(self):
        """
        ``name`` is ``domain/path``, without tag or digest.
        """
        self.assertEqual(
            parse("nginx:1@" + DIGEST).name, "docker.io/library/nginx"
        )
        self.assertEqual(parse("localhost:5000/a/b:c").name,
                         "localhost:5000/a/b")

    def test_frozen(self):
        """
        References are immutable and hashable.
        """
        reference = parse("nginx")
        self.assertRaises(AttributeError, setattr, reference, "tag", "x")
        self.assertEqual({parse("nginx"), parse("docker.io/library/nginx")},
                         {reference})


class WithDefaultTagTests(SynchronousTestCase):
    """
    Tests for :meth:`Reference.with_default_tag`.
    """

    def test_table(self):
        """
        Only a reference with neither tag nor digest gets ``latest``.
        """
        for text, expected in [
            ("nginx", "docker.io/library/nginx:latest"),
            ("quay.io/a/b", "quay.io/a/b:latest"),
            ("nginx:1.25", "docker.io/library/nginx:1.25"),
            ("nginx@" + DIGEST, "docker.io/library/nginx@" + DIGEST),
            ("nginx:1@" + DIGEST, "docker.io/library/nginx:1@" + DIGEST),
        ]:
            with self.subTest(text=text):
                self.assertEqual(str(parse(text).with_default_tag()), expected)


class ManifestReferenceTests(SynchronousTestCase):
    """
    Tests for :attr:`Reference.manifest_reference`.
    """

    def test_table(self):
        """
        The digest wins over the tag, and ``latest`` is the default.
        """
        for text, expected in [
            ("nginx", "latest"),
            ("nginx:1.25", "1.25"),
            ("nginx@" + DIGEST, DIGEST),
            ("nginx:1.25@" + DIGEST, DIGEST),
        ]:
            with self.subTest(text=text):
                self.assertEqual(parse(text).manifest_reference, expected)


class MovedTests(SynchronousTestCase):
    """
    Tests for :meth:`Reference.moved`.
    """

    def test_table(self):
        """
        The domain is replaced, the path goes under the prefix, and tag and
        digest are kept.
        """
        for text, domain, prefix, expected in [
            ("nginx", "sealos.hub:5000", "",
             "sealos.hub:5000/library/nginx"),
            ("nginx:1.25", "sealos.hub:5000", "proj",
             "sealos.hub:5000/proj/library/nginx:1.25"),
            ("registry.k8s.io/pause:3.9", "harbor.local", "a/b",
             "harbor.local/a/b/pause:3.9"),
            ("nginx@" + DIGEST, "localhost:5000", "",
             "localhost:5000/library/nginx@" + DIGEST),
            ("quay.io/x/y:1@" + DIGEST, "[::1]:5000", "p",
             "[::1]:5000/p/x/y:1@" + DIGEST),
            ("quay.io/x", "localhost", "", "localhost/x"),
            # Moves to Docker Hub are normalised like parse's results.
            ("quay.io/x", "index.docker.io", "", "docker.io/library/x"),
            ("quay.io/x/y", "docker.io", "", "docker.io/x/y"),
            ("quay.io/x", "docker.io", "mirror", "docker.io/mirror/x"),
        ]:
            with self.subTest(text=text, domain=domain, prefix=prefix):
                moved = parse(text).moved(domain, prefix)
                self.assertEqual(str(moved), expected)
                self.assertEqual(parse(str(moved)), moved)

    def test_already_there(self):
        """
        A reference already on the target domain is returned unchanged,
        prefix or not.
        """
        for text, domain, prefix in [
            ("sealos.hub:5000/library/nginx", "sealos.hub:5000", ""),
            ("sealos.hub:5000/library/nginx", "sealos.hub:5000", "proj"),
            ("sealos.hub:5000/proj/library/nginx", "sealos.hub:5000", "proj"),
            ("Sealos.Hub:5000/nginx", "sealos.hub:5000", "proj"),
            ("nginx", "docker.io", "mirror"),
            ("nginx", "index.docker.io", ""),
        ]:
            with self.subTest(text=text, domain=domain, prefix=prefix):
                reference = parse(text)
                self.assertIs(reference.moved(domain, prefix), reference)

    def test_idempotent(self):
        """
        Moving an already moved reference to the same place changes nothing,
        and a moved reference survives a round trip through its string.
        """
        for text in ["nginx", "nginx:1@" + DIGEST, "quay.io/a/b@" + DIGEST]:
            for domain, prefix in [
                ("sealos.hub:5000", ""),
                ("sealos.hub:5000", "proj"),
                ("docker.io", ""),
                ("harbor.local", "a/b"),
            ]:
                with self.subTest(text=text, domain=domain, prefix=prefix):
                    once = parse(text).moved(domain, prefix)
                    self.assertEqual(once.moved(domain, prefix), once)
                    self.assertEqual(parse(str(once)), once)

    def test_invalid_domain(self):
        """
        The target domain must be valid and recognisable as a domain.
        """
        reference = parse("nginx")
        for domain in ["", "myreg", "a_b.c", "http://x.io", "x.io/p", "-x.io",
                       "x.io:port", "[::1"]:
            with self.subTest(domain=domain):
                error = self.assertRaises(
                    InvalidReference, reference.moved, domain
                )
                self.assertIn("cannot move to " + repr(domain), str(error))

    def test_invalid_prefix(self):
        """
        The prefix must be a valid repository path.
        """
        reference = parse("nginx")
        for prefix, fragment in [
            ("/proj", "empty path component"),
            ("proj/", "empty path component"),
            ("Proj", "must be lowercase"),
            ("-p", "invalid path component"),
            ("p:1", "invalid path component"),
        ]:
            with self.subTest(prefix=prefix):
                error = self.assertRaises(
                    InvalidReference, reference.moved, "x.io", prefix
                )
                self.assertIn(fragment, str(error))

    def test_too_long(self):
        """
        A move that makes the path longer than 255 characters fails.
        """
        reference = parse("quay.io/" + "a" * 250)
        error = self.assertRaises(
            InvalidReference, reference.moved, "x.io", "proxy"
        )
        self.assertIn("longer than 255 characters", str(error))


class IsImageIDTests(SynchronousTestCase):
    """
    Tests for :func:`is_image_id`.
    """

    def test_table(self):
        """
        Only ``sha256:<64 lowercase hex>`` and bare 64 lowercase hex are
        image IDs.
        """
        for text, expected in [
            (DIGEST, True),
            (HEX, True),
            ("sha256:" + HEX.upper(), False),
            (HEX.upper(), False),
            (HEX[:63], False),
            (HEX + "0", False),
            ("sha256:" + HEX[:63], False),
            (SHA512, False),
            ("sha512:" + HEX, False),
            ("nginx@" + DIGEST, False),
            ("nginx", False),
            ("", False),
            (DIGEST + "\n", False),
        ]:
            with self.subTest(text=text):
                self.assertIs(is_image_id(text), expected)


class ParseRegistryAddressTests(SynchronousTestCase):
    """
    Tests for :func:`parse_registry_address`.
    """

    def test_valid(self):
        """
        Addresses parse into scheme, image-name host, API endpoint and
        prefix; Docker Hub's names all give host ``docker.io`` and endpoint
        ``registry-1.docker.io``.
        """
        for text, scheme, host, endpoint, prefix in [
            ("http://sealos.hub:5000", "http", "sealos.hub:5000",
             "sealos.hub:5000", ""),
            ("sealos.hub:5000", "https", "sealos.hub:5000",
             "sealos.hub:5000", ""),
            ("https://harbor.local/proxy/", "https", "harbor.local",
             "harbor.local", "proxy"),
            ("HTTPS://Harbor.Local/a/b", "https", "harbor.local",
             "harbor.local", "a/b"),
            ("harbor.local/", "https", "harbor.local", "harbor.local", ""),
            ("localhost", "https", "localhost", "localhost", ""),
            ("http://[::1]:5000", "http", "[::1]:5000", "[::1]:5000", ""),
            ("127.0.0.1:65535", "https", "127.0.0.1:65535",
             "127.0.0.1:65535", ""),
            ("docker.io", "https", "docker.io", "registry-1.docker.io", ""),
            ("index.docker.io", "https", "docker.io",
             "registry-1.docker.io", ""),
            ("https://registry-1.docker.io", "https", "docker.io",
             "registry-1.docker.io", ""),
            ("docker.io/mirror", "https", "docker.io",
             "registry-1.docker.io", "mirror"),
        ]:
            with self.subTest(text=text):
                self.assertEqual(
                    parse_registry_address(text),
                    RegistryAddress(scheme=scheme, host=host,
                                    endpoint=endpoint, prefix=prefix),
                )

    def test_url(self):
        """
        ``url`` is the API root: scheme and endpoint, without the prefix.
        """
        for text, url in [
            ("http://sealos.hub:5000/p", "http://sealos.hub:5000"),
            ("docker.io", "https://registry-1.docker.io"),
        ]:
            with self.subTest(text=text):
                self.assertEqual(parse_registry_address(text).url, url)

    def test_usable_with_moved(self):
        """
        An address's host and prefix move images to a name that parses back
        to that host.
        """
        address = parse_registry_address("http://sealos.hub:5000/proj")
        moved = parse("nginx:1").moved(address.host, address.prefix)
        self.assertEqual(str(moved), "sealos.hub:5000/proj/library/nginx:1")

    def test_invalid(self):
        """
        Unusable addresses raise :class:`InvalidRegistryAddress`, a
        :class:`ValueError`, naming the problem.
        """
        for text, fragment in [
            ("", "empty host"),
            ("https://", "empty host"),
            ("https:///proxy", "empty host"),
            ("ftp://x.io", "unsupported scheme 'ftp'"),
            ("unix:///run/x.sock", "unsupported scheme 'unix'"),
            ("https://user:pw@x.io", "user information"),
            ("user@x.io", "user information"),
            ("x.io/p?q=1", "query or fragment"),
            ("x.io#frag", "query or fragment"),
            ("x.io:0", "invalid port '0'"),
            ("x.io:65536", "invalid port '65536'"),
            ("x.io:" + "9" * 5000, "invalid port"),
            ("x.io:", "invalid host"),
            ("x.io:http", "invalid host"),
            ("-x.io", "invalid host"),
            ("x_y.io", "invalid host"),
            (" x.io", "invalid host"),
            ("registry", "Docker Hub namespace"),
            ("x.io//p", "empty path component"),
            ("x.io/P", "must be lowercase"),
            ("x.io/-p", "invalid path component"),
        ]:
            with self.subTest(text=text):
                error = self.assertRaises(
                    InvalidRegistryAddress, parse_registry_address, text
                )
                self.assertIsInstance(error, ValueError)
                self.assertIn(fragment, str(error))


_PATH_COMPONENTS = st.from_regex(
    r"[a-z0-9]{1,5}(?:(?:[._]|__|-{1,3})[a-z0-9]{1,5}){0,3}", fullmatch=True
)
_PATHS = st.lists(_PATH_COMPONENTS, min_size=1, max_size=4).map("/".join)
_DOMAINS = st.one_of(
    st.from_regex(
        r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,6}[a-zA-Z0-9])?"
        r"(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,6}[a-zA-Z0-9])?){0,3}"
        r"(?::[0-9]{1,5})?",
        fullmatch=True,
    ),
    st.from_regex(r"\[[a-fA-F0-9:]{1,20}\](?::[0-9]{1,5})?", fullmatch=True),
    st.sampled_from(["localhost", "index.docker.io", "docker.io"]),
)
_TAGS = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", fullmatch=True)


@st.composite
def _digests(draw):
    """
    Build valid digests of every supported algorithm.
    """
    algorithm, length = draw(
        st.sampled_from([("sha256", 64), ("sha384", 96), ("sha512", 128)])
    )
    encoded = draw(st.text("0123456789abcdef", min_size=length,
                           max_size=length))
    return algorithm + ":" + encoded


@st.composite
def _references(draw):
    """
    Build reference strings from the grammar, with or without each part.

    :return: The string, its tag and its digest.
    """
    text = draw(_PATHS)
    domain = draw(st.none() | _DOMAINS)
    if domain is not None:
        text = domain + "/" + text
    tag = draw(st.none() | _TAGS)
    if tag is not None:
        text += ":" + tag
    digest = draw(st.none() | _digests())
    if digest is not None:
        text += "@" + digest
    return text, tag, digest


_reference_texts = _references().map(lambda generated: generated[0])


def _parse_or_none(text):
    try:
        return parse(text)
    except InvalidReference:
        return None


_REFERENCE_ALPHABET = st.sampled_from("aZ09._-/:@[]%é \x00")


@st.composite
def _mutated_references(draw):
    """
    Build valid reference strings with one character replaced by up to
    three others (or, past the end, with those appended).
    """
    text = draw(_reference_texts)
    where = draw(st.integers(0, len(text)))
    insert = draw(st.text(_REFERENCE_ALPHABET, max_size=3))
    return text[:where] + insert + text[where + 1:]


# Text close to references, so as to exercise every branch.
_NEAR_REFERENCES = st.one_of(
    st.text(),
    st.text(_REFERENCE_ALPHABET),
    _mutated_references(),
)


# An independent rendering of distribution's algorithm, for differential
# testing: ParseNormalizedNamed splits off the domain, checks the case of
# the remote name, then matches the whole string against one anchored
# grammar (whose optional domain group is tried first) and validates the
# digest as go-digest does.
_LABEL = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_GRAMMAR = re.compile(
    rf"(?:(?P<domain>(?:{_LABEL}(?:\.{_LABEL})*|\[[a-fA-F0-9:]+\])"
    rf"(?::[0-9]+)?)/)?"
    rf"(?P<path>{_COMPONENT}(?:/{_COMPONENT})*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*"
    r":[0-9a-fA-F]{32,}))?"
)
_HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}


def _distribution(text):
    """
    Parse ``text`` the way distribution's ``ParseNormalizedNamed`` does.

    :return: ``(domain, path, tag, digest)``, or ``None`` if it is rejected.
    """
    if re.fullmatch(r"[a-f0-9]{64}", text):
        return None
    first, slash, rest = text.partition("/")
    if not slash:
        domain, remainder = "docker.io", "library/" + text
    elif first == "localhost":
        domain, remainder = first, rest
    elif first == "index.docker.io":
        domain, remainder = "docker.io", rest
    elif "." in first or ":" in first or first.lower() != first:
        domain, remainder = first, rest
    else:
        domain, remainder = "docker.io", text
    if domain == "docker.io" and "/" not in remainder:
        remainder = "library/" + remainder
    remote = remainder.partition(":")[0]
    if remote.lower() != remote:
        return None
    match = _GRAMMAR.fullmatch(domain + "/" + remainder)
    if match is None or len(match["path"]) > 255:
        return None
    if match["digest"] is not None:
        algorithm, _, encoded = match["digest"].partition(":")
        length = _HEX_LENGTHS.get(algorithm)
        if length is None or not re.fullmatch(rf"[a-f0-9]{{{length}}}",
                                              encoded):
            return None
    return (match["domain"] or "", match["path"], match["tag"],
            match["digest"])


class DistributionTests(SynchronousTestCase):
    """
    :func:`parse` agrees with distribution's algorithm.
    """

    def test_oracle(self):
        """
        The rendering of distribution's algorithm used below agrees with the
        tables.
        """
        for text, domain, path, tag, digest in VALID:
            with self.subTest(text=text):
                self.assertEqual(_distribution(text),
                                 (domain, path, tag, digest))
        for text, fragment in INVALID:
            if text != "a_b.c/x":
                with self.subTest(text=text):
                    self.assertIsNone(_distribution(text))

    def test_empty_domain(self):
        """
        Where distribution gives a reference with an empty domain (a first
        component that looks like a domain but is only valid as a path
        component), :func:`parse` rejects it instead.
        """
        self.assertEqual(_distribution("a_b.c/x"), ("", "a_b.c/x", None, None))
        self.assertRaises(InvalidReference, parse, "a_b.c/x")

    @settings(deadline=None)
    @given(st.one_of(_reference_texts, _NEAR_REFERENCES))
    def test_agree(self, text):
        """
        :func:`parse` accepts what distribution accepts (save for an empty
        domain), with the same result, and rejects the rest.
        """
        expected = _distribution(text)
        if expected is not None and expected[0] == "":
            expected = None
        reference = _parse_or_none(text)
        if expected is None:
            self.assertIsNone(reference)
        else:
            self.assertEqual(
                (reference.domain, reference.path, reference.tag,
                 reference.digest),
                expected,
            )


class PropertyTests(SynchronousTestCase):
    """
    Properties of :func:`parse` and of :class:`Reference`'s methods.
    """

    @settings(deadline=None)
    @given(_NEAR_REFERENCES)
    def test_total(self, text):
        """
        Any text either parses or raises :class:`InvalidReference`.
        """
        result = _parse_or_none(text)
        if result is not None:
            self.assertIsInstance(result, Reference)

    @settings(deadline=None)
    @given(_references())
    def test_round_trip(self, generated):
        """
        A parsed reference's string parses back to it, and it has the tag and
        digest of the original text.
        """
        text, tag, digest = generated
        reference = _parse_or_none(text)
        assume(reference is not None)
        self.assertEqual(parse(str(reference)), reference)
        self.assertEqual((reference.tag, reference.digest), (tag, digest))

    @settings(deadline=None)
    @given(_reference_texts, _DOMAINS, st.none() | _PATHS)
    def test_moved_keeps_digest(self, text, domain, prefix):
        """
        Moving keeps tag and digest, gives a reference that round-trips, and
        is idempotent.
        """
        reference = _parse_or_none(text)
        assume(reference is not None)
        try:
            moved = reference.moved(domain, prefix or "")
        except InvalidReference:
            # Only for domains parse would not take as domains, and for
            # paths grown too long.
            return
        self.assertEqual((moved.tag, moved.digest),
                         (reference.tag, reference.digest))
        self.assertEqual(parse(str(moved)), moved)
        self.assertEqual(moved.moved(domain, prefix or ""), moved)

    @settings(deadline=None)
    @given(_reference_texts)
    def test_default_tag_keeps_digest(self, text):
        """
        ``with_default_tag`` never drops a digest or a tag, and always gives
        something to ask a registry for.
        """
        reference = _parse_or_none(text)
        assume(reference is not None)
        tagged = reference.with_default_tag()
        self.assertEqual(tagged.digest, reference.digest)
        self.assertEqual(tagged.tag, reference.tag or (
            None if reference.digest else "latest"))
        self.assertEqual(tagged.manifest_reference,
                         reference.manifest_reference)
