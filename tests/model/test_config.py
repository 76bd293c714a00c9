"""
Tests for L{cri_shim.model.config}: the sealos image-cri-shim YAML file in, a
frozen L{Config} (or a L{ConfigError} listing every problem) out.

Where a test reproduces a case of the Go shim's own tests, its docstring
names the case of go-shim.md section 2; where we deliberately differ from the
Go shim, it names the weakness of section 3 (W10, W12, W16).
"""

import textwrap

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from cri_shim.model import config, schema
from cri_shim.model.config import (
    CRI_SOCKETS,
    DEFAULT_SHIM_SOCKET,
    MAX_CONFIG_BYTES,
    TLS,
    Cache,
    Config,
    ConfigError,
    Credentials,
    Notice,
    Registry,
    Secret,
    detect_cri,
    redacted,
)
from cri_shim.model.reference import parse, parse_registry_address

DATA = FilePath(__file__).sibling("data")

# Distinctive, so finding it anywhere it should not be is meaningful.
PASSWORD = "Zq9:distinctive-S3cr3t"


def _load(text, source="config"):
    """
    Load a YAML document written as an indented triple-quoted string.

    :return: C{(Config, [Notice, ...])}.
    """
    if isinstance(text, str):
        text = textwrap.dedent(text)
    return schema.load(text, source=source)


def _config(text):
    """
    :return: only the L{Config} loaded from C{text}.
    """
    return _load(text)[0]


def _notices(text):
    """
    :return: the notices, as C{(level, message)} pairs, of loading C{text}.
    """
    return [(notice.level, notice.message) for notice in _load(text)[1]]


def _problems(text, source="config"):
    """
    :return: the problems of the L{ConfigError} that loading C{text}
        raises, or C{None} if it loads.
    """
    try:
        _load(text, source)
    except ConfigError as e:
        return e.problems
    return None


def _names(loaded):
    """
    :return: C{(name, priority)} of each candidate registry, in order.
    """
    return [(registry.name, registry.priority) for registry in loaded.registries]


def _by_name(loaded, name):
    """
    :return: the registry of C{loaded} named C{name}.
    """
    for registry in loaded.registries:
        if registry.name == name:
            return registry
    raise AssertionError("no registry {!r} in {!r}".format(name, _names(loaded)))


def _credentials(registry):
    """
    :return: C{(username, password)} in the clear, or C{None}.
    """
    if registry.credentials is None:
        return None
    return registry.credentials.username, registry.credentials.password.reveal()


class SampleFileTests(SynchronousTestCase):
    """
    The Go shim's own sample files load, with the same results.
    """

    def test_sealos_sample(self):
        """
        Case 1: the Go shim's testdata loads: the offline registry
        C{http://sealos.hub:5000} with admin/passw0rd, C{mirror.example.com}
        (scheme stripped from the name) with admin/passw0rd, and
        C{public.example.com} with no credentials.  The legacy C{image} key
        is ignored with an info notice.
        """
        loaded, notices = schema.load(DATA.child("sealos-sample.yaml").getContent(),
                                      source="sealos-sample.yaml")
        self.assertEqual(loaded.shim, "/var/run/image-cri-shim.sock")
        self.assertEqual(loaded.cri, "/run/containerd/containerd.sock")
        self.assertTrue(loaded.force)
        self.assertTrue(loaded.debug)
        self.assertEqual(loaded.timeout, 15 * 60.0)
        self.assertEqual(loaded.reload_interval, 15.0)
        self.assertEqual(_names(loaded), [
            ("sealos.hub:5000", 1000),
            ("mirror.example.com", 500),
            ("public.example.com", 500),
        ])
        offline = loaded.offline
        self.assertEqual(offline.address,
                         parse_registry_address("http://sealos.hub:5000"))
        self.assertEqual(_credentials(offline), ("admin", "passw0rd"))
        mirror = _by_name(loaded, "mirror.example.com")
        self.assertEqual(mirror.address.scheme, "https")
        self.assertEqual(_credentials(mirror), ("admin", "passw0rd"))
        self.assertIsNone(_by_name(loaded, "public.example.com").credentials)
        self.assertEqual(
            [(notice.level, notice.message) for notice in notices],
            [("info", "ignoring legacy key image (not used by this shim)")])

    def test_inline(self):
        """
        Case 2: an inline configuration gives C{mirror.internal}
        admin/syncpass, C{public.example.com} no credentials, and the
        offline registry offline/user.
        """
        loaded = _config("""
            address: https://registry.internal
            auth: offline:user
            force: true
            registries:
              - address: https://mirror.internal
                auth: admin:syncpass
              - address: https://public.example.com
            """)
        self.assertEqual(_credentials(_by_name(loaded, "registry.internal")),
                         ("offline", "user"))
        self.assertTrue(_by_name(loaded, "registry.internal").offline)
        self.assertEqual(_credentials(_by_name(loaded, "mirror.internal")),
                         ("admin", "syncpass"))
        self.assertIsNone(_by_name(loaded, "public.example.com").credentials)

    def test_shipped_example(self):
        """
        The example configuration shipped in C{conf/} loads without a
        notice, and the defaults it spells out are the real defaults.
        """
        example = FilePath(__file__).parent().parent().parent().descendant(
            ["conf", "image-cri-shim.yaml"])
        loaded, notices = schema.load(example.getContent(), source=example.path)
        self.assertEqual(notices, [])
        self.assertEqual(_names(loaded), [
            ("sealos.hub:5000", 1000), ("mirror.example.com", 600),
            ("public.example.com", 500)])
        self.assertEqual(
            (loaded.shim, loaded.timeout, loaded.reload_interval, loaded.probe_timeout,
             loaded.cache),
            (Config().shim, Config().timeout, Config().reload_interval,
             Config().probe_timeout, Config().cache))

    def test_all_keys(self):
        """
        A file setting every key gives exactly the configuration it says,
        with info notices for the legacy keys only.
        """
        loaded, notices = schema.load(DATA.child("all-keys.yaml").getContent())
        self.assertEqual(loaded, Config(
            shim="/run/image-cri-shim/image-cri-shim.sock",
            cri="/run/containerd/containerd.sock",
            force=True,
            debug=True,
            timeout=120.0,
            reload_interval=30.0,
            probe_timeout=0.5,
            registries=(
                Registry(
                    address=parse_registry_address("https://harbor.example.com"),
                    credentials=Credentials("robot", Secret("h4rb0r:S3cret")),
                    priority=950,
                    tls=TLS(ca_file="/etc/ssl/harbor-ca.pem",
                            cert_file="/etc/ssl/harbor-client.pem",
                            key_file="/etc/ssl/harbor-client.key"),
                    mirror_of=("ghcr.io", "quay.io"),
                    key="registries[0]",
                ),
                Registry(
                    address=parse_registry_address("sealos.hub:5000/proxy"),
                    credentials=Credentials("offline", Secret("0ff:l1ne:S3cret")),
                    priority=900,
                    offline=True,
                    tls=TLS(insecure_skip_verify=True),
                    mirror_of=("docker.io", "registry.k8s.io"),
                    key="address",
                ),
                Registry(
                    address=parse_registry_address("http://10.0.0.5:5000"),
                    credentials=None,
                    priority=600,
                    key="registries[1]",
                ),
                Registry(
                    address=parse_registry_address("docker.io"),
                    credentials=None,
                    priority=500,
                    key="registries[2]",
                ),
            ),
            cache=Cache(size=256, ttl=3600.0, negative_ttl=10.0, stats_interval=300.0,
                        disable_stats=False),
        ))
        self.assertEqual(sorted((notice.level, notice.message) for notice in notices), [
            ("info", "ignoring legacy key cache.domainCacheTTL (not used by this shim)"),
            ("info", "ignoring legacy key image (not used by this shim)"),
            ("info", "ignoring legacy key version (not used by this shim)"),
        ])


class DefaultsTests(SynchronousTestCase):
    """
    What a key means when it is absent.
    """

    def test_empty_documents(self):
        """
        An empty document, or one with only comments, a document marker or
        a null, is valid: every setting takes its default, and there is
        nothing to report.
        """
        for text in ["", b"", "\n", "# nothing here\n", "---\n", "~\n", "null\n"]:
            self.assertEqual(_load(text), (Config(), []), repr(text))

    def test_defaults(self):
        """
        The defaults are those of the Go shim, except C{probeTimeout} and
        C{negativeCacheTTL}, which it does not have.
        """
        loaded = _config("")
        self.assertEqual(
            (loaded.shim, loaded.cri, loaded.force, loaded.debug, loaded.timeout,
             loaded.reload_interval, loaded.probe_timeout, loaded.registries),
            ("/var/run/image-cri-shim.sock", "", False, False, 900.0, 15.0, 2.0, ()))
        self.assertEqual(DEFAULT_SHIM_SOCKET, "/var/run/image-cri-shim.sock")
        self.assertEqual(loaded.cache, Cache(size=1024, ttl=1800.0, negative_ttl=60.0,
                                             stats_interval=60.0, disable_stats=False))

    def test_no_offline_registry(self):
        """
        Without C{address} there is no offline registry.
        """
        loaded = _config("registries: [{address: a.example.com}]")
        self.assertIsNone(loaded.offline)
        self.assertEqual(_names(loaded), [("a.example.com", 500)])

    def test_frozen(self):
        """
        The loaded configuration cannot be changed.
        """
        loaded = _config("address: sealos.hub:5000")
        self.assertRaises(AttributeError, setattr, loaded, "force", True)
        self.assertRaises(AttributeError, setattr, loaded.offline, "priority", 1)
        self.assertIsInstance(loaded.registries, tuple)


class SocketTests(SynchronousTestCase):
    """
    The C{shim} and C{cri} socket paths.
    """

    def test_shim(self):
        """
        C{shim} is an absolute path, with or without C{unix://}; empty means
        the default.
        """
        table = [
            ("shim: /run/shim.sock", "/run/shim.sock"),
            ("shim: unix:///run/shim.sock", "/run/shim.sock"),
            ("shim: ''", DEFAULT_SHIM_SOCKET),
            ("shim: ~", DEFAULT_SHIM_SOCKET),
            ("", DEFAULT_SHIM_SOCKET),
        ]
        self.assertEqual([(text, _config(text).shim) for text, _ in table], table)

    def test_cri(self):
        """
        C{cri} is an absolute path, with or without C{unix://}; empty means
        "detect it" (see L{detect_cri}).
        """
        table = [
            ("cri: /run/containerd/containerd.sock", "/run/containerd/containerd.sock"),
            ("cri: unix:///var/run/crio/crio.sock", "/var/run/crio/crio.sock"),
            ("cri: ''", ""),
            ("", ""),
        ]
        self.assertEqual([(text, _config(text).cri) for text, _ in table], table)

    def test_relative(self):
        """
        A relative socket path is an error naming the key.
        """
        self.assertEqual(_problems("shim: image-cri-shim.sock\ncri: unix://containerd.sock"), [
            "shim: must be an absolute path, got 'image-cri-shim.sock'",
            "cri: must be an absolute path, got 'containerd.sock'",
        ])


class AddressTests(SynchronousTestCase):
    """
    The offline registry's C{address}.
    """

    def test_forms(self):
        """
        No scheme means https; http and https are kept; a path is a prefix;
        a trailing slash is dropped; the host is lowercased.
        """
        table = [
            ("sealos.hub:5000", ("https", "sealos.hub:5000", "")),
            ("http://sealos.hub:5000", ("http", "sealos.hub:5000", "")),
            ("https://sealos.hub", ("https", "sealos.hub", "")),
            ("HTTP://Sealos.Hub:5000", ("http", "sealos.hub:5000", "")),
            ("https://harbor.local/proxy/", ("https", "harbor.local", "proxy")),
            ("harbor.local/mirrors/hub", ("https", "harbor.local", "mirrors/hub")),
            ("127.0.0.1:5000", ("https", "127.0.0.1:5000", "")),
            ("localhost", ("https", "localhost", "")),
        ]
        result = []
        for text, _ in table:
            address = _config("address: '{}'".format(text)).offline.address
            result.append((text, (address.scheme, address.host, address.prefix)))
        self.assertEqual(result, table)

    def test_no_scheme(self):
        """
        W10: an C{address} without a scheme works, as https (the Go shim
        silently breaks every offline rewrite).
        """
        offline = _config("address: sealos.hub:5000").offline
        self.assertEqual(offline.address.url, "https://sealos.hub:5000")
        self.assertEqual(offline.name, "sealos.hub:5000")

    def test_prefix_in_rewritten_names(self):
        """
        A path prefix of the address is part of the names images are
        rewritten to.
        """
        offline = _config("address: http://sealos.hub:5000/proxy").offline
        self.assertEqual(offline.name, "sealos.hub:5000/proxy")
        self.assertEqual(offline.address.url, "http://sealos.hub:5000")
        moved = parse("nginx:1.25").moved(offline.address.host, offline.address.prefix)
        self.assertEqual(str(moved), "sealos.hub:5000/proxy/library/nginx:1.25")

    def test_empty(self):
        """
        An empty C{address} means no offline registry.
        """
        for text in ["address: ''", "address: ~", "address: '  '"]:
            self.assertEqual(_config(text).registries, (), text)

    def test_invalid(self):
        """
        Unusable addresses are errors naming the key, for the offline
        registry and for C{registries[]} entries alike.
        """
        table = [
            ("ftp://sealos.hub", "unsupported scheme 'ftp'"),
            ("http://admin@sealos.hub", "user information is not allowed"),
            ("http://", "empty host"),
            ("http:///proxy", "empty host"),
            ("sealos.hub:99999", "invalid port '99999'"),
            ("sealos.hub:0", "invalid port '0'"),
            ("sealos.hub:http", "invalid host"),
            ("sealos_hub.local", "invalid host"),
            ("sealos.hub?x=1", "a query or fragment is not allowed"),
            ("sealoshub", "would read as a Docker Hub namespace"),
            ("sealos.hub/Proxy", "invalid prefix"),
        ]
        wrong = []
        for text, fragment in table:
            for document, key in [
                    ("address: '{}'", "address: "),
                    ("registries: [{{address: '{}'}}]", "registries[0].address: ")]:
                problems = _problems(document.format(text))
                if not (problems and len(problems) == 1 and problems[0].startswith(key)
                        and fragment in problems[0]):
                    wrong.append((document.format(text), problems))
        self.assertEqual(wrong, [])


class CredentialsTests(SynchronousTestCase):
    """
    C{auth}, of the offline registry and of C{registries[]} entries.
    """

    def test_string(self):
        """
        C{user:password} is split on the first colon.
        """
        table = [
            ("admin:passw0rd", ("admin", "passw0rd")),
            ("admin:", ("admin", "")),
            (":token", ("", "token")),
            ("admin:pa:ss:w0rd", ("admin", "pa:ss:w0rd")),
            ("admin: spaced pass ", ("admin", " spaced pass ")),
        ]
        result = []
        for text, _ in table:
            loaded = _config("""
                address: sealos.hub
                auth: '{0}'
                registries: [{{address: a.example.com, auth: '{0}'}}]
                """.format(text))
            self.assertEqual(_credentials(loaded.offline),
                             _credentials(_by_name(loaded, "a.example.com")))
            result.append((text, _credentials(loaded.offline)))
        self.assertEqual(result, table)

    def test_colons_kept(self):
        """
        W12: a password containing colons is kept whole (the Go shim
        mangles it).
        """
        loaded = _config("address: sealos.hub\nauth: 'admin:{}'".format(PASSWORD))
        self.assertEqual(_credentials(loaded.offline), ("admin", PASSWORD))

    def test_mapping(self):
        """
        C{auth} may be a mapping with C{username} and C{password}.
        """
        loaded = _config("""
            address: sealos.hub
            auth: {{username: admin, password: '{}'}}
            registries:
              - address: a.example.com
                auth:
                  username: robot
              - address: b.example.com
                auth:
                  password: token
              - address: c.example.com
                auth: {{}}
            """.format(PASSWORD))
        self.assertEqual(_credentials(loaded.offline), ("admin", PASSWORD))
        self.assertEqual(_credentials(_by_name(loaded, "a.example.com")), ("robot", ""))
        self.assertEqual(_credentials(_by_name(loaded, "b.example.com")), ("", "token"))
        self.assertIsNone(_by_name(loaded, "c.example.com").credentials)

    def test_anonymous(self):
        """
        No C{auth}, or an empty one, means anonymous access.
        """
        for text in ["", "auth: ''", "auth: ~", "auth: '  '"]:
            loaded = _config("address: sealos.hub\n" + text)
            self.assertIsNone(loaded.offline.credentials, text)

    def test_no_colon(self):
        """
        An C{auth} without a colon is a user name with an empty password,
        with a warning.
        """
        loaded, notices = _load("address: sealos.hub\nauth: admin")
        self.assertEqual(_credentials(loaded.offline), ("admin", ""))
        self.assertEqual([(n.level, n.message) for n in notices], [
            ("warn", "auth: no ':' in the value; using it as a user name with an "
                     "empty password")])

    def test_without_address(self):
        """
        C{auth} without an C{address} has nothing to apply to: a warning.
        """
        self.assertEqual(_notices("auth: admin:passw0rd"),
                         [("warn", "auth: set without an address; ignored")])

    def test_without_address_still_checked(self):
        """
        Settings that need an C{address} are still checked without one, so a
        mistake is told before the address is added.
        """
        error = self.assertRaises(config.ConfigError, schema.load,
                                  b"auth: 5\ncertFile: /x.pem\n")
        self.assertEqual(sorted(problem.split(":")[0] for problem in error.problems),
                         ["auth", "certFile"])

    def test_wrong_types(self):
        """
        An C{auth} that is neither a string nor a mapping of strings is an
        error naming the key.
        """
        self.assertEqual(_problems("""
            address: sealos.hub
            auth: [admin, passw0rd]
            registries:
              - address: a.example.com
                auth: {username: admin, password: 12345}
              - address: b.example.com
                auth: {username: [admin]}
            """), [
            "auth: expected 'user:password', got a list",
            "registries[0].auth.password: expected a string, got a number",
            "registries[1].auth.username: expected a string, got a list",
        ])


class DurationKeyTests(SynchronousTestCase):
    """
    The duration keys: C{timeout}, C{reloadInterval}, C{probeTimeout} and
    the cache's TTLs and stats interval.
    """

    # (where, document template, attribute path, default in seconds)
    KEYS = [
        ("timeout", "timeout: {}", ("timeout",), 900.0),
        ("reloadInterval", "reloadInterval: {}", ("reload_interval",), 15.0),
        ("probeTimeout", "probeTimeout: {}", ("probe_timeout",), 2.0),
        ("cache.imageCacheTTL", "cache: {{imageCacheTTL: {}}}", ("cache", "ttl"), 1800.0),
        ("cache.negativeCacheTTL", "cache: {{negativeCacheTTL: {}}}",
         ("cache", "negative_ttl"), 60.0),
        ("cache.statsLogInterval", "cache: {{statsLogInterval: {}}}",
         ("cache", "stats_interval"), 60.0),
    ]

    def _value(self, template, path, value):
        loaded = _config(template.format(value))
        for name in path:
            loaded = getattr(loaded, name)
        return loaded

    def test_values(self):
        """
        Go duration strings are read as seconds; zero, negative and absent
        values mean the default.
        """
        wrong = []
        for key, template, path, default in self.KEYS:
            for value, expected in [("90s", 90.0), ("1m30s", 90.0), ("'2h'", 7200.0),
                                    ("250ms", 0.25), ("0", default), ("0s", default),
                                    ("'0'", default), ("-5s", default), ("~", default)]:
                if key == "reloadInterval" and expected < schema.MIN_RELOAD_INTERVAL:
                    # Raised to its floor, with a warning (issue 12, #5).
                    expected = schema.MIN_RELOAD_INTERVAL
                got = self._value(template, path, value)
                if got != expected:
                    wrong.append((key, value, got, expected))
        self.assertEqual(wrong, [])

    def test_invalid(self):
        """
        A bare number (C{timeout: 15}), an unknown unit, a lone sign, a value
        beyond Go's int64 nanoseconds, and non-strings are errors naming the
        key.
        """
        wrong = []
        for key, template, path, default in self.KEYS:
            for value, fragment in [
                    ("15", "expected a duration such as '15s' or '5m', got 15"),
                    ("'15'", "invalid duration '15': missing unit"),
                    ("1.5", "expected a duration such as '15s' or '5m', got 1.5"),
                    ("1x", "invalid duration '1x'"),
                    ("'-'", "invalid duration '-'"),
                    ("3000000h", "too large"),
                    ("true", "got a boolean"),
                    ("[1s]", "got a list"),
                    ("{a: 1s}", "got a mapping")]:
                problems = _problems(template.format(value))
                if not (problems and len(problems) == 1
                        and problems[0].startswith(key + ": ")
                        and fragment in problems[0]):
                    wrong.append((key, value, problems))
        self.assertEqual(wrong, [])

    def test_reload_interval_minimum(self):
        """
        A C{reloadInterval} below a millisecond would spin: an error; one
        below the floor (1 s) is raised to it.
        """
        self.assertEqual(_problems("reloadInterval: 1us"),
                         ["reloadInterval: must be at least 1ms, got '1us'"])
        self.assertEqual(_config("reloadInterval: 1ms").reload_interval,
                         schema.MIN_RELOAD_INTERVAL)


class PriorityTests(SynchronousTestCase):
    """
    C{offlinePriority} and C{registries[].priority}.
    """

    def test_offline(self):
        """
        Case 24: C{offlinePriority} absent gives 1000, 800 gives 800, -100
        is clamped to 0, 15000 to 10000, and 0 means the default 1000.
        """
        table = [
            ("", 1000),
            ("offlinePriority: 800", 800),
            ("offlinePriority: -100", 0),
            ("offlinePriority: 15000", 10000),
            ("offlinePriority: 0", 1000),
            ("offlinePriority: 1", 1),
            ("offlinePriority: 10000", 10000),
            ("offlinePriority: ~", 1000),
        ]
        result = [(text, _config("address: https://sealos.hub\n" + text).offline.priority)
                  for text, _ in table]
        self.assertEqual(result, table)

    def test_registry(self):
        """
        Case 23: a C{registries[]} priority is kept, missing or 0 means 500,
        -100 is clamped to 0 and 15000 to 10000.
        """
        table = [
            ("", 500),
            ("priority: 0", 500),
            ("priority: 600", 600),
            ("priority: 800", 800),
            ("priority: -100", 0),
            ("priority: 15000", 10000),
            ("priority: 10000", 10000),
        ]
        result = []
        for text, _ in table:
            loaded = _config("registries:\n- address: docker.io\n  " + text)
            result.append((text, loaded.registries[0].priority))
        self.assertEqual(result, table)

    def test_clamp_warnings(self):
        """
        A clamped priority is reported with a warning naming the key.
        """
        self.assertEqual(_notices("""
            address: sealos.hub
            offlinePriority: 15000
            registries:
              - {address: a.example.com, priority: -100}
              - {address: b.example.com, priority: 10001}
            """), [
            ("warn", "offlinePriority: 15000 is above 10000; using 10000"),
            ("warn", "registries[0].priority: -100 is below 0; using 0"),
            ("warn", "registries[1].priority: 10001 is above 10000; using 10000"),
        ])

    def test_wrong_types(self):
        """
        A priority that is not a whole number is an error naming the key.
        """
        self.assertEqual(_problems("""
            address: sealos.hub
            offlinePriority: high
            registries:
              - {address: a.example.com, priority: true}
              - {address: b.example.com, priority: 1.5}
              - {address: c.example.com, priority: '800'}
              - {address: d.example.com, priority: [800]}
            """), [
            "offlinePriority: expected a whole number, got 'high'",
            "registries[0].priority: expected a whole number, got a boolean",
            "registries[1].priority: expected a whole number, got 1.5",
            "registries[2].priority: expected a whole number, got '800'",
            "registries[3].priority: expected a whole number, got a list",
        ])

    def test_offline_priority_without_address(self):
        """
        A wrong C{offlinePriority} is reported even without an C{address}:
        every problem in the file is reported at once.
        """
        self.assertEqual(_problems("offlinePriority: high"),
                         ["offlinePriority: expected a whole number, got 'high'"])


class OrderTests(SynchronousTestCase):
    """
    The order of the candidates in L{Config.registries}: priority
    descending; on a tie the offline registry first, then by name.
    """

    def test_priorities(self):
        """
        Case 22 (a): offline 1000, C{registry.example.com} 800 and
        C{docker.io} 500 come in that order.
        """
        loaded = _config("""
            address: http://sealos.hub:5000
            registries:
              - address: docker.io
              - address: registry.example.com
                priority: 800
            """)
        self.assertEqual(_names(loaded), [
            ("sealos.hub:5000", 1000), ("registry.example.com", 800), ("docker.io", 500)])

    def test_tie_offline_first(self):
        """
        Case 22 (c): on a tie the offline registry comes first, even when
        another registry's name sorts before it.
        """
        loaded = _config("""
            address: sealos.hub
            registries:
              - {address: a.example.com, priority: 1000}
              - {address: z.example.com, priority: 1000}
            """)
        self.assertEqual(_names(loaded), [
            ("sealos.hub", 1000), ("a.example.com", 1000), ("z.example.com", 1000)])

    def test_tie_by_name(self):
        """
        Registries of equal priority are sorted by name, whatever the order
        of the file.
        """
        loaded = _config("""
            registries:
              - address: c.example.com
              - address: a.example.com/proxy
              - address: b.example.com
              - address: a.example.com
            """)
        self.assertEqual([name for name, _ in _names(loaded)], [
            "a.example.com", "a.example.com/proxy", "b.example.com", "c.example.com"])

    def test_go_priorities(self):
        """
        Case 23: with C{address: https://sealos.hub}, C{index.docker.io} 600
        and C{registry.example.com} 800, the order is sealos.hub 1000,
        registry.example.com 800, docker.io 600.
        """
        loaded = _config("""
            address: https://sealos.hub
            force: true
            registries:
              - address: index.docker.io
                priority: 600
              - address: registry.example.com
                priority: 800
            """)
        self.assertEqual(_names(loaded), [
            ("sealos.hub", 1000), ("registry.example.com", 800), ("docker.io", 600)])

    def test_offline_below(self):
        """
        Case 25: offline 900 with C{docker.io} 600 and
        C{registry.example.com} 950 gives registry.example.com (950),
        sealos.hub (900, the host of C{https://sealos.hub}), docker.io (600).
        """
        loaded = _config("""
            address: https://sealos.hub
            offlinePriority: 900
            registries:
              - {address: docker.io, priority: 600}
              - {address: registry.example.com, priority: 950}
            """)
        self.assertEqual(_names(loaded), [
            ("registry.example.com", 950), ("sealos.hub", 900), ("docker.io", 600)])
        self.assertEqual([r.offline for r in loaded.registries], [False, True, False])


class RegistryEntryTests(SynchronousTestCase):
    """
    C{registries[]} entries: addresses, duplicates, TLS, C{mirrorOf}.
    """

    def test_docker_hub(self):
        """
        Every name of Docker Hub gives host C{docker.io} (as image names
        carry it) and endpoint C{registry-1.docker.io} (where its API is).
        """
        for text in ["docker.io", "index.docker.io", "registry-1.docker.io",
                     "https://docker.io", "https://index.docker.io/"]:
            address = _config("registries: [{{address: '{}'}}]".format(text)) \
                .registries[0].address
            self.assertEqual((address.host, address.endpoint, address.url),
                             ("docker.io", "registry-1.docker.io",
                              "https://registry-1.docker.io"), text)

    def test_key(self):
        """
        Each registry knows where it was configured.
        """
        loaded = _config("""
            address: sealos.hub
            registries:
              - address: a.example.com
              - address: b.example.com
            """)
        self.assertEqual([r.key for r in loaded.registries],
                         ["address", "registries[0]", "registries[1]"])

    def test_no_address(self):
        """
        An entry without an address is skipped with a warning.
        """
        loaded, notices = _load("""
            registries:
              - priority: 800
              - ~
              - address: ''
              - address: a.example.com
            """)
        self.assertEqual(_names(loaded), [("a.example.com", 500)])
        self.assertEqual([(n.level, n.message) for n in notices], [
            ("warn", "registries[0]: no address; entry skipped"),
            ("warn", "registries[1]: no address; entry skipped"),
            ("warn", "registries[2]: no address; entry skipped"),
        ])

    def test_empty_list(self):
        """
        An empty or null C{registries} configures none.
        """
        for text in ["registries: []", "registries: ~", "registries:"]:
            self.assertEqual(_load(text), (Config(), []), text)

    def test_duplicates(self):
        """
        A registry configured twice (same host and prefix, whatever the
        scheme, case or Docker Hub alias) is ignored after its first
        occurrence, with a warning naming both keys.  The Go shim keeps the
        last one instead.
        """
        loaded, notices = _load("""
            address: http://sealos.hub:5000
            registries:
              - address: docker.io
                priority: 700
              - address: index.docker.io
                priority: 900
              - address: https://Sealos.Hub:5000
              - address: a.example.com
                auth: first:one
              - address: http://a.example.com
                auth: second:two
              - address: registry-1.docker.io
            """)
        self.assertEqual(_names(loaded), [
            ("sealos.hub:5000", 1000), ("docker.io", 700), ("a.example.com", 500)])
        self.assertEqual(_credentials(_by_name(loaded, "a.example.com")), ("first", "one"))
        self.assertEqual([(n.level, n.message) for n in notices], [
            ("warn", "registries[1]: docker.io is already configured by registries[0]; "
                     "entry ignored"),
            ("warn", "registries[2]: sealos.hub:5000 is already configured by address; "
                     "entry ignored"),
            ("warn", "registries[4]: a.example.com is already configured by "
                     "registries[3]; entry ignored"),
            ("warn", "registries[5]: docker.io is already configured by registries[0]; "
                     "entry ignored"),
        ])

    def test_duplicates_default_port(self):
        """
        An address with its scheme's default port, or a trailing slash, is
        the registry written without them (issue 17, #7b).
        """
        loaded, notices = _load("""
            registries:
              - address: team-a.example
                namespaces: [team-a]
              - address: https://TEAM-A.example:443/
              - address: http://team-a.example:80
              - address: http://team-a.example:443
            """)
        self.assertEqual(_names(loaded), [("team-a.example", 500), ("team-a.example:443", 500)])
        self.assertEqual([n.message for n in notices], [
            "registries[1]: team-a.example:443 is already configured by registries[0]; "
            "entry ignored",
            "registries[2]: team-a.example:80 is already configured by registries[0]; "
            "entry ignored"])

    def test_different_prefixes(self):
        """
        The same host under different prefixes is two registries.
        """
        loaded = _config("""
            address: harbor.example.com/offline
            registries:
              - address: harbor.example.com/proxy
              - address: harbor.example.com
            """)
        self.assertEqual(_names(loaded), [
            ("harbor.example.com/offline", 1000), ("harbor.example.com", 500),
            ("harbor.example.com/proxy", 500)])

    def test_tls(self):
        """
        TLS options: verification is on by default; C{insecureSkipVerify},
        C{caFile}, and C{certFile} with C{keyFile} are read for the offline
        registry (top-level keys) and each entry.
        """
        loaded = _config("""
            address: sealos.hub:5000
            caFile: /etc/ssl/sealos-ca.pem
            registries:
              - address: a.example.com
                insecureSkipVerify: true
              - address: b.example.com
                certFile: /etc/ssl/client.pem
                keyFile: unix:///etc/ssl/client.key
              - address: c.example.com
            """)
        self.assertEqual([(r.name, r.tls) for r in loaded.registries], [
            ("sealos.hub:5000", TLS(ca_file="/etc/ssl/sealos-ca.pem")),
            ("a.example.com", TLS(insecure_skip_verify=True)),
            ("b.example.com", TLS(cert_file="/etc/ssl/client.pem",
                                  key_file="/etc/ssl/client.key")),
            ("c.example.com", TLS()),
        ])

    def test_tls_errors(self):
        """
        C{certFile} and C{keyFile} must be set together; files must be
        absolute paths; C{insecureSkipVerify} must be a boolean.
        """
        self.assertEqual(_problems("""
            address: sealos.hub
            keyFile: /etc/ssl/client.key
            registries:
              - address: a.example.com
                certFile: /etc/ssl/client.pem
              - address: b.example.com
                caFile: ca.pem
                insecureSkipVerify: 'true'
            """), [
            "certFile: certFile and keyFile must be set together",
            "registries[0].certFile: certFile and keyFile must be set together",
            "registries[1].insecureSkipVerify: expected true or false, got 'true'",
            "registries[1].caFile: must be an absolute path, got 'ca.pem'",
        ])

    def test_tls_over_http(self):
        """
        TLS options on an http:// registry are pointless: a warning.
        """
        self.assertEqual(_notices("""
            registries:
              - address: http://a.example.com
                insecureSkipVerify: true
            """), [("warn", "registries[0].address: TLS options have no effect on an "
                            "http:// registry")])

    def test_mirror_of(self):
        """
        C{mirrorOf} lists the source domains a registry serves, normalised
        as image names carry them; a single string is a list of one;
        absent means every domain.
        """
        loaded = _config("""
            address: sealos.hub
            mirrorOf: Index.Docker.io
            registries:
              - address: a.example.com
                mirrorOf: [registry.k8s.io, GHCR.io, 'localhost:5000']
              - address: b.example.com
            """)
        self.assertEqual([(r.name, r.mirror_of) for r in loaded.registries], [
            ("sealos.hub", ("docker.io",)),
            ("a.example.com", ("registry.k8s.io", "ghcr.io", "localhost:5000")),
            ("b.example.com", ()),
        ])
        self.assertTrue(loaded.offline.serves(parse("nginx")))
        self.assertFalse(loaded.offline.serves(parse("quay.io/a/b")))
        self.assertTrue(_by_name(loaded, "b.example.com").serves(parse("quay.io/a/b")))

    def test_mirror_of_errors(self):
        """
        C{mirrorOf} entries must be registry domains; errors name the index.
        """
        self.assertEqual(_problems("""
            address: sealos.hub
            mirrorOf: {docker.io: true}
            registries:
              - address: a.example.com
                mirrorOf: [docker.io, 5, 'not a domain', nginx]
            """), [
            "mirrorOf: expected a list of registry domains, got a mapping",
            "registries[0].mirrorOf[1]: expected a registry domain, got a number",
            "registries[0].mirrorOf[2]: invalid registry domain 'not a domain'",
            "registries[0].mirrorOf[3]: invalid registry domain 'nginx'",
        ])

    def test_registry_for(self):
        """
        L{Config.registry_for} finds the registry an image already names,
        by host whatever the path; L{Config.offline} is the top-level one.
        """
        loaded = _config("""
            address: sealos.hub:5000/proxy
            registries:
              - address: index.docker.io
            """)
        self.assertIs(loaded.registry_for(parse("sealos.hub:5000/library/nginx")),
                      loaded.offline)
        self.assertIs(loaded.registry_for(parse("nginx")), _by_name(loaded, "docker.io"))
        self.assertIsNone(loaded.registry_for(parse("quay.io/a/b")))
        self.assertIsNone(loaded.registry_for(parse("sealos.hub/a/b")))

    def test_registry_for_default_port(self):
        """
        An image names a registry in any case and with or without its
        scheme's default port (issue 17, #7b): C{team-a.example:443/app} is
        not sent elsewhere as if no registry held it.
        """
        loaded = _config("""
            address: http://sealos.hub
            registries:
              - address: https://team-a.example
              - address: https://b.example:443
            """)
        team_a, b = _by_name(loaded, "team-a.example"), _by_name(loaded, "b.example:443")
        for image, registry in [("team-a.example:443/app", team_a),
                                ("Team-A.example/app", team_a),
                                ("b.example/app", b),
                                ("b.example:443/app", b),
                                ("sealos.hub:80/app", loaded.offline),
                                ("sealos.hub:443/app", None),
                                ("team-a.example:80/app", None)]:
            self.assertIs(loaded.registry_for(parse(image)), registry, image)

    def test_registry_for_longest_prefix(self):
        """
        Of two registries on one host, a name goes to the one with the
        longest prefix its path lies under, whatever their priorities;
        a path under no prefix goes to the first on the host.
        """
        loaded = _config("""
            address: http://harbor.example
            auth: admin:admin-pw
            registries:
              - address: http://harbor.example/b
                auth: bob:bob-pw
              - address: http://harbor.example/b/deep
                auth: deep:deep-pw
              - address: http://other.example/c
            """)
        for name, expected in [
                ("harbor.example/b/app:1", "harbor.example/b"),
                ("harbor.example/b:1", "harbor.example/b"),
                ("harbor.example/b/deep/app:1", "harbor.example/b/deep"),
                ("harbor.example/b/deeper/app:1", "harbor.example/b"),
                ("harbor.example/c/x:1", "harbor.example"),
                ("harbor.example/bb/x:1", "harbor.example"),
                ("other.example/d/x:1", "other.example/c")]:
            self.assertEqual(loaded.registry_for(parse(name)).name, expected, name)


class CacheTests(SynchronousTestCase):
    """
    The C{cache} block.
    """

    def test_go_normalisation(self):
        """
        Case 3: an empty cache block gives size 1024, TTL 30m, stats every
        1m; C{imageCacheSize: 512, disableStats: true} gives size 512,
        default TTLs and stats interval 0; size -10 disables the cache with
        a warning and keeps the stats at 1m.
        """
        table = [
            ("cache: {}", Cache(1024, 1800.0, 60.0, 60.0, False), []),
            ("cache:", Cache(1024, 1800.0, 60.0, 60.0, False), []),
            ("cache: {imageCacheSize: 512, disableStats: true}",
             Cache(512, 1800.0, 60.0, 0.0, True), []),
            ("cache: {imageCacheSize: -10}", Cache(0, 1800.0, 60.0, 60.0, False),
             [("warn", "cache.imageCacheSize: -10 is negative; the cache is disabled")]),
        ]
        result = []
        for text, _, _ in table:
            loaded, notices = _load(text)
            result.append((text, loaded.cache, [(n.level, n.message) for n in notices]))
        self.assertEqual(result, table)

    def test_size_zero_disables(self):
        """
        W16: C{imageCacheSize: 0} disables the cache, without a warning
        (the Go shim uses 1024 instead).
        """
        loaded, notices = _load("cache: {imageCacheSize: 0}")
        self.assertEqual((loaded.cache.size, notices), (0, []))

    def test_disable_stats(self):
        """
        C{disableStats: true} sets the stats interval to 0, whatever
        C{statsLogInterval} says; C{false} keeps it.
        """
        self.assertEqual(
            _config("cache: {statsLogInterval: 5m, disableStats: true}").cache,
            Cache(stats_interval=0.0, disable_stats=True))
        self.assertEqual(
            _config("cache: {statsLogInterval: 5m, disableStats: false}").cache,
            Cache(stats_interval=300.0))

    def test_values(self):
        """
        Every cache key is read.
        """
        self.assertEqual(_config("""
            cache:
              imageCacheSize: 10
              imageCacheTTL: 1h
              negativeCacheTTL: 5s
              statsLogInterval: 10m
            """).cache, Cache(10, 3600.0, 5.0, 600.0, False))

    def test_wrong_types(self):
        """
        Wrong types in the cache block are errors naming the key.
        """
        self.assertEqual(_problems("""
            cache:
              imageCacheSize: '1024'
              disableStats: 'yes'
            """), [
            "cache.imageCacheSize: expected a whole number, got '1024'",
            "cache.disableStats: expected true or false, got 'yes'",
        ])
        self.assertEqual(_problems("cache: [imageCacheSize]"),
                         ["cache: expected a mapping, got a list"])
        self.assertEqual(_problems("cache: 1024"),
                         ["cache: expected a mapping, got a number"])


class KeyTests(SynchronousTestCase):
    """
    How keys are matched: case-insensitively; unknown keys warn, legacy keys
    are noted.
    """

    def test_case_insensitive(self):
        """
        Keys match whatever their case, as in the Go shim (which decodes
        through JSON).
        """
        upper = _config("""
            SHIM: /run/shim.sock
            Cri: /run/cri.sock
            ADDRESS: sealos.hub
            Auth: {USERNAME: admin, Password: secret}
            FORCE: true
            Debug: true
            TIMEOUT: 1m
            reloadinterval: 5s
            OFFLINEPRIORITY: 700
            ProbeTimeout: 1s
            INSECURESKIPVERIFY: true
            MirrorOf: [docker.io]
            Registries:
              - ADDRESS: a.example.com
                AUTH: robot:token
                PRIORITY: 800
                CAFILE: /ca.pem
                CertFile: /c.pem
                KEYFILE: /k.pem
                MIRROROF: [ghcr.io]
            CACHE:
              IMAGECACHESIZE: 7
              ImageCacheTtl: 2m
              NEGATIVECACHETTL: 3s
              statsloginterval: 4m
              DisableStats: false
            """)
        lower = _config("""
            shim: /run/shim.sock
            cri: /run/cri.sock
            address: sealos.hub
            auth: {username: admin, password: secret}
            force: true
            debug: true
            timeout: 1m
            reloadInterval: 5s
            offlinePriority: 700
            probeTimeout: 1s
            insecureSkipVerify: true
            mirrorOf: [docker.io]
            registries:
              - address: a.example.com
                auth: robot:token
                priority: 800
                caFile: /ca.pem
                certFile: /c.pem
                keyFile: /k.pem
                mirrorOf: [ghcr.io]
            cache:
              imageCacheSize: 7
              imageCacheTTL: 2m
              negativeCacheTTL: 3s
              statsLogInterval: 4m
              disableStats: false
            """)
        self.assertEqual(upper, lower)
        self.assertNotEqual(lower, Config())
        self.assertEqual(lower.cache, Cache(7, 120.0, 3.0, 240.0, False))

    def test_unknown(self):
        """
        Unknown keys are ignored with a warning naming their full path.
        """
        loaded, notices = _load("""
            sync: 5m
            address: sealos.hub
            auth: {username: a, password: b, token: c}
            registries:
              - address: a.example.com
              - address: b.example.com
              - address: c.example.com
                foo: bar
            cache: {bar: 1}
            123: numeric key
            """)
        self.assertEqual(len(loaded.registries), 4)
        self.assertEqual(sorted((n.level, n.message) for n in notices), [
            ("warn", "ignoring unknown key 123"),
            ("warn", "ignoring unknown key auth.token"),
            ("warn", "ignoring unknown key cache.bar"),
            ("warn", "ignoring unknown key registries[2].foo"),
            ("warn", "ignoring unknown key sync"),
        ])

    def test_per_registry_keys_only(self):
        """
        Keys of the top level that are not registry options (here
        C{probeTimeout}) are unknown inside a C{registries[]} entry.
        """
        self.assertEqual(_notices("registries: [{address: a.example.com, probeTimeout: 1s}]"),
                         [("warn", "ignoring unknown key registries[0].probeTimeout")])

    def test_legacy(self):
        """
        The legacy keys C{image}, C{version} and C{cache.domainCacheTTL} are
        ignored with an info notice, whatever their value or case.
        """
        loaded, notices = _load("""
            image: /var/lib/image-cri-shim
            VERSION: [not, a, string]
            cache: {domainCacheTTL: not a duration}
            """)
        self.assertEqual(loaded, Config())
        self.assertEqual([(n.level, n.message) for n in notices], [
            ("info", "ignoring legacy key image (not used by this shim)"),
            ("info", "ignoring legacy key VERSION (not used by this shim)"),
            ("info", "ignoring legacy key cache.domainCacheTTL (not used by this shim)"),
        ])

    def test_notice(self):
        """
        Notices are plain values.
        """
        self.assertEqual(Notice("warn", "x"), Notice("warn", "x"))


class ErrorTests(SynchronousTestCase):
    """
    Invalid documents: L{ConfigError} lists every problem, each starting
    with its key.
    """

    def test_wrong_types(self):
        """
        A value of the wrong type is an error starting with its key.
        """
        table = [
            ("force: 'true'", "force: expected true or false, got 'true'"),
            ("debug: 1", "debug: expected true or false, got 1"),
            ("force: [true]", "force: expected true or false, got a list"),
            ("shim: [a]", "shim: expected a string, got a list"),
            ("cri: {a: b}", "cri: expected a string, got a mapping"),
            ("address: true", "address: expected a string, got a boolean"),
            ("registries: {address: a.example.com}",
             "registries: expected a list, got a mapping"),
            ("registries: a.example.com", "registries: expected a list, got a string"),
            ("registries: [a.example.com]", "registries[0]: expected a mapping, got a string"),
            ("registries: [[a.example.com]]", "registries[0]: expected a mapping, got a list"),
            ("registries: [{address: [a]}]",
             "registries[0].address: expected a string, got a list"),
            ("cache: [1]", "cache: expected a mapping, got a list"),
            ("cache: {imageCacheSize: 1.5}",
             "cache.imageCacheSize: expected a whole number, got 1.5"),
            ("cache: {imageCacheSize: true}",
             "cache.imageCacheSize: expected a whole number, got a boolean"),
            ("address: sealos.hub\nauth: 5", "auth: expected 'user:password', got a number"),
            ("address: sealos.hub\nauth: {username: [a]}",
             "auth.username: expected a string, got a list"),
        ]
        result = [(text, _problems(text)) for text, _ in table]
        self.assertEqual(result, [(text, [problem]) for text, problem in table])

    def test_all_at_once(self):
        """
        Every problem of a document is reported at once, in document order
        within each section.
        """
        problems = _problems("""
            address: ftp://sealos.hub
            force: 'yes'
            timeout: 15
            registries:
              - address: a.example.com
                priority: high
              - address: b.example.com:99999
            cache:
              imageCacheTTL: 1x
            """)
        self.assertEqual(sorted(problem.partition(": ")[0] for problem in problems), [
            "address", "cache.imageCacheTTL", "force", "registries[0].priority",
            "registries[1].address", "timeout"])

    def test_error_type(self):
        """
        L{ConfigError} is a L{ValueError} whose message joins the problems.
        """
        error = ConfigError(["a: one", "b: two"])
        self.assertIsInstance(error, ValueError)
        self.assertEqual(error.problems, ["a: one", "b: two"])
        self.assertEqual(str(error), "a: one; b: two")

    def test_not_utf8(self):
        """
        A document that is not UTF-8 is an error naming the source.
        """
        problems = _problems(b"shim: /run/\xff.sock\n", source="/etc/image-cri-shim.yaml")
        self.assertEqual(len(problems), 1)
        self.assertTrue(problems[0].startswith("/etc/image-cri-shim.yaml: not UTF-8 text"),
                        problems)

    def test_utf8_bytes(self):
        """
        UTF-8 bytes are read as text.
        """
        self.assertEqual(_config("cri: /run/caf\u00e9.sock".encode("utf-8")).cri,
                         "/run/caf\u00e9.sock")

    def test_broken_yaml(self):
        """
        YAML that does not parse is an error naming the source.
        """
        for text in ["shim: [", "a: b: c", "- a\nb: c", "a:\n\t- x", "shim: '", "{a: 1}}",
                     "a: *nowhere", "x: !!python/object/apply:os.system ['true']"]:
            problems = _problems(text, source="/etc/image-cri-shim.yaml")
            self.assertEqual(len(problems or ()), 1, text)
            self.assertTrue(
                problems[0].startswith("/etc/image-cri-shim.yaml: invalid YAML: "), problems)

    def test_not_a_mapping(self):
        """
        A document that is a list or a scalar rather than a mapping is an
        error naming the source.
        """
        for text in ["[1, 2]", "- shim: /run/shim.sock", "hello", "5", "true", "'~'"]:
            problems = _problems(text, source="/etc/image-cri-shim.yaml")
            self.assertEqual(len(problems or ()), 1, text)
            self.assertTrue(problems[0].startswith("/etc/image-cri-shim.yaml: "), problems)
            self.assertIn("mapping", problems[0])

    def test_too_large(self):
        """
        A document over 1 MiB is refused before parsing; one of exactly
        1 MiB is read.
        """
        self.assertEqual(MAX_CONFIG_BYTES, 1024 * 1024)
        comment = b"#" * (MAX_CONFIG_BYTES - 1) + b"\n"
        self.assertEqual(_load(comment), (Config(), []))
        self.assertEqual(_problems(comment + b"\n", source="big.yaml"),
                         ["big.yaml: larger than 1048576 bytes"])

    def test_deep_nesting(self):
        """
        Deeply nested YAML is an error, not an escaping L{RecursionError}.
        """
        depth = 50000
        for text in ["[" * depth + "]" * depth,
                     "a: " + "{a: " * depth + "}" * depth,
                     "- " * depth + "x",
                     "cache: " + "[" * depth + "]" * depth]:
            problems = _problems(text, source="deep.yaml")
            self.assertEqual(problems, ["deep.yaml: invalid YAML: nested too deeply"],
                             text[:20])


class SecretTests(SynchronousTestCase):
    """
    Passwords never show: not in reprs, not in the redacted view, not in
    notices or problems.
    """

    DOCUMENT = """
        address: sealos.hub:5000
        auth: 'admin:{0}'
        registries:
          - address: a.example.com
            auth: 'robot:{0}'
          - address: b.example.com
            auth: {{username: robot, password: '{0}'}}
          - address: c.example.com
            auth: ':{0}'
          - address: c.example.com
            auth: 'again:{0}'
        """.format(PASSWORD)

    def test_secret(self):
        """
        L{Secret} shows C{<redacted>} in every text form, and gives its value
        only through L{Secret.reveal}.
        """
        secret = Secret(PASSWORD)
        for text in [repr(secret), str(secret), "{}".format(secret), "%s" % (secret,),
                     "%r" % (secret,), repr([secret]), repr({"p": secret})]:
            self.assertNotIn(PASSWORD, text)
            self.assertNotIn("distinctive", text)
        self.assertEqual(str(secret), "<redacted>")
        self.assertEqual(secret.reveal(), PASSWORD)

    def test_secret_value(self):
        """
        Secrets compare and hash by value; an empty one is false.
        """
        self.assertEqual(Secret("a"), Secret("a"))
        self.assertNotEqual(Secret("a"), Secret("b"))
        self.assertNotEqual(Secret("a"), "a")
        self.assertEqual(hash(Secret("a")), hash(Secret("a")))
        self.assertTrue(Secret("a"))
        self.assertFalse(Secret(""))

    def test_config(self):
        """
        The repr and str of a configuration holding passwords show none.
        """
        loaded, notices = _load(self.DOCUMENT)
        self.assertEqual(
            [_credentials(r)[1] for r in loaded.registries], [PASSWORD] * 4)
        for text in [repr(loaded), str(loaded), repr(loaded.registries),
                     repr(loaded.offline.credentials), repr(notices)]:
            self.assertNotIn("distinctive", text)
        self.assertIn("<redacted>", repr(loaded))

    def test_redacted(self):
        """
        L{redacted} is plain data, with every password replaced by
        C{<redacted>} and addresses as URLs.
        """
        loaded = _config(self.DOCUMENT)
        view = redacted(loaded)
        self.assertNotIn("distinctive", repr(view))
        self.assertEqual(view["registries"][0]["credentials"],
                         {"username": "admin", "password": "<redacted>"})
        self.assertEqual(view["registries"][0]["address"], "https://sealos.hub:5000")
        self.assertEqual(view["cache"], {"size": 1024, "ttl": 1800.0, "negative_ttl": 60.0,
                                         "stats_interval": 60.0, "disable_stats": False})
        self.assertEqual(view["shim"], DEFAULT_SHIM_SOCKET)

    def test_not_in_problems(self):
        """
        Problems found elsewhere in a file with passwords do not quote them.
        """
        problems = _problems(textwrap.dedent(self.DOCUMENT) + "force: 'yes'\n")
        self.assertEqual(problems, ["force: expected true or false, got 'yes'"])

    def test_not_in_yaml_errors(self):
        """
        A YAML syntax error on the line of a password does not quote the
        line (the YAML parser's message shows it, with a caret under the
        error).
        """
        problems = _problems("address: sealos.hub\nauth: admin:{}: x\n".format(PASSWORD))
        self.assertEqual(len(problems), 1)
        self.assertTrue(problems[0].startswith("config: invalid YAML: "), problems)
        self.assertNotIn("distinctive", problems[0])

    def test_not_in_address_errors(self):
        """
        A password put in an address's user information (refused) is not
        quoted in the problem.
        """
        problems = _problems("address: 'https://admin:{}@sealos.hub'".format(PASSWORD))
        self.assertEqual(len(problems), 1)
        self.assertTrue(problems[0].startswith("address: "), problems)
        self.assertIn("user information is not allowed", problems[0])
        self.assertNotIn("distinctive", problems[0])


class AdminTests(SynchronousTestCase):
    """
    The C{admin} and C{adminTokenFile} keys.
    """

    def test_token_file(self):
        """
        C{adminTokenFile} is an absolute path, C{""} when not given; with a
        TCP address it gives no notice.
        """
        self.assertEqual(_config("force: true").admin_token_file, "")
        loaded, notices = _load("admin: 127.0.0.1:9100\nadminTokenFile: /etc/ics/token\n")
        self.assertEqual((loaded.admin, loaded.admin_token_file),
                         ("127.0.0.1:9100", "/etc/ics/token"))
        self.assertEqual(notices, [])

    def test_token_file_relative(self):
        """
        A relative path is a problem naming the key.
        """
        self.assertEqual(_problems("admin: 127.0.0.1:9100\nadminTokenFile: token\n"),
                         ["adminTokenFile: expected an absolute path, got 'token'"])

    def test_token_file_without_tcp(self):
        """
        With the admin endpoint on a UNIX socket, or off, the token file is
        of no use: a warning says so.
        """
        for admin in ("/run/x/admin.sock", "false"):
            self.assertEqual(
                _notices("admin: {}\nadminTokenFile: /etc/ics/token\n".format(admin)),
                [("warn", "adminTokenFile: the admin endpoint is not on TCP; ignored")],
                admin)
        self.assertEqual(_notices("adminTokenFile: /etc/ics/token\n"),
                         [("warn", "adminTokenFile: the admin endpoint is not on TCP; "
                           "ignored")])


class NamesTests(SynchronousTestCase):
    """
    The C{names} and C{stateDir} keys.
    """

    def test_defaults(self):
        """
        Images show under their requested names, remembered under
        C{/var/lib/image-cri-shim}.
        """
        loaded = _config("force: true")
        self.assertEqual((loaded.names, loaded.state_dir),
                         ("requested", "/var/lib/image-cri-shim"))

    def test_values(self):
        """
        C{names} is C{requested} or C{registry}, in any case; C{stateDir} an
        absolute path.
        """
        loaded = _config("names: Registry\nstateDir: /srv/ics\n")
        self.assertEqual((loaded.names, loaded.state_dir), ("registry", "/srv/ics"))
        self.assertEqual(_config("names: requested").names, "requested")

    def test_problems(self):
        """
        Anything else is a problem naming the key.
        """
        self.assertEqual(_problems("names: mirror\nstateDir: state\n"), [
            "names: expected requested or registry, got 'mirror'",
            "stateDir: must be an absolute path, got 'state'"])


class DetectCriTests(SynchronousTestCase):
    """
    Tests for L{detect_cri}, which finds the runtime socket when C{cri} is
    empty.
    """

    def test_candidates(self):
        """
        The known runtime sockets are containerd's, cri-dockerd's and
        CRI-O's.
        """
        self.assertEqual(CRI_SOCKETS, ("/run/containerd/containerd.sock",
                                       "/var/run/cri-dockerd.sock",
                                       "/var/run/crio/crio.sock"))

    def test_one(self):
        """
        When exactly one socket exists, that is the one.
        """
        for path in CRI_SOCKETS:
            self.assertEqual(detect_cri({path, "/run/other.sock"}.__contains__), path)

    def test_none(self):
        """
        When none exists, the result is C{None}.
        """
        self.assertIsNone(detect_cri(set().__contains__))

    def test_several(self):
        """
        When several exist, that is a L{ConfigError} naming them.
        """
        exists = {"/run/containerd/containerd.sock", "/var/run/crio/crio.sock"}.__contains__
        error = self.assertRaises(ConfigError, detect_cri, exists)
        self.assertEqual(len(error.problems), 1)
        self.assertTrue(error.problems[0].startswith("cri: "), error.problems)
        self.assertIn("/run/containerd/containerd.sock", error.problems[0])
        self.assertIn("/var/run/crio/crio.sock", error.problems[0])
        self.assertNotIn("cri-dockerd", error.problems[0])

    def test_given_candidates(self):
        """
        The candidates may be given.
        """
        self.assertEqual(detect_cri({"/b"}.__contains__, candidates=("/a", "/b")), "/b")
        self.assertIsNone(detect_cri({"/run/containerd/containerd.sock"}.__contains__,
                                     candidates=("/a", "/b")))
