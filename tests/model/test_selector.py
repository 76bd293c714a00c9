"""
Tests for L{cri_shim.model.selector}: registries restricted by C{namespaces}
and C{podSelector}, read from the config file and the ConfigMap, matched
against the pod a pull is for, and what that does to the rewrite decision's
candidates and cache key (L{cri_shim.model.rewrite}).
"""

import textwrap

import yaml
from twisted.trial.unittest import SynchronousTestCase

from cri_shim.model import config, rewrite, schema
from cri_shim.model.merge import dump, merge, read_cluster_settings
from cri_shim.model.reference import parse
from cri_shim.model.selector import Pod, Requirement, Selector

ROUTED = """
address: http://sealos.hub:5000
registries:
  - address: https://team-a.example
    auth: a:a-pw
    namespaces: [team-a, team-a-ci]
  - address: https://gpu.example
    podSelector:
      matchLabels: {tier: gpu}
      matchExpressions:
        - {key: spot, operator: DoesNotExist}
  - address: https://both.example
    namespaces: team-b
    podSelector: {matchExpressions: [{key: app, operator: In, values: [web, api]}]}
  - address: https://open.example
"""


def _config(text):
    return schema.load(textwrap.dedent(text))[0]


def _problems(text):
    try:
        schema.load(textwrap.dedent(text))
    except config.ConfigError as e:
        return e.problems
    return []


def _names(cfg, pod, image="nginx"):
    return [c.registry.name for c in rewrite.candidates(cfg, parse(image), pod=pod)]


class ReadTests(SynchronousTestCase):
    def test_read(self):
        """
        C{namespaces} (a list, or one name) and C{podSelector}
        (C{matchLabels}, C{matchExpressions}) are read per registry.
        """
        cfg = _config(ROUTED)
        by_name = {registry.name: registry for registry in cfg.registries}
        self.assertEqual(by_name["team-a.example"].namespaces, ("team-a", "team-a-ci"))
        self.assertIsNone(by_name["team-a.example"].pod_selector)
        self.assertEqual(by_name["gpu.example"].pod_selector, Selector(
            (("tier", "gpu"),), (Requirement("spot", "DoesNotExist"),)))
        self.assertEqual(by_name["both.example"].namespaces, ("team-b",))
        self.assertEqual(by_name["both.example"].pod_selector.describe(), "app in (api,web)")
        self.assertEqual(by_name["gpu.example"].pod_selector.describe(), "tier=gpu,!spot")
        self.assertFalse(by_name["open.example"].restricted)
        self.assertFalse(cfg.offline.restricted)

    def test_errors_name_the_key(self):
        """
        Every mistake is reported at once, naming its key.
        """
        self.assertEqual(_problems("""
            registries:
              - address: a.example
                namespaces: []
              - address: b.example
                namespaces: [Team_A, 5]
              - address: c.example
                podSelector: {matchLabels: {tier: true, "bad key!": x, ok: "in valid"}}
              - address: d.example
                podSelector:
                  matchExpressions:
                    - {key: a, operator: Has}
                    - {key: b, operator: In}
                    - {key: c, operator: Exists, values: [x]}
                    - {operator: In, values: [x]}
              - address: e.example
                podSelector: [tier]
            """), [
            "registries[0].namespaces: empty list: no pod could use this registry; leave the "
            "key out to serve every namespace",
            "registries[1].namespaces[0]: expected a namespace name (a DNS label such as "
            "team-a), got 'Team_A'",
            "registries[1].namespaces[1]: expected a namespace name (a DNS label such as "
            "team-a), got a number",
            "registries[2].podSelector.matchLabels.tier: expected a string (quote it), got a "
            "boolean",
            "registries[2].podSelector.matchLabels.bad key!: 'bad key!' is not a valid label key",
            "registries[2].podSelector.matchLabels.ok: 'in valid' is not a valid label value",
            "registries[3].podSelector.matchExpressions[0].operator: expected one of In, NotIn, "
            "Exists, DoesNotExist, got 'Has'",
            "registries[3].podSelector.matchExpressions[1].values: In needs a non-empty list of "
            "label values (strings)",
            "registries[3].podSelector.matchExpressions[2].values: must be empty for Exists",
            "registries[3].podSelector.matchExpressions[3].key: missing",
            "registries[4].podSelector: expected a mapping, got a list",
        ])

    def test_restriction_with_no_value_refused(self):
        """
        A restriction written with no value (every item commented out: YAML
        null) is refused, naming its key, never read as "serve every pod"
        (issue 17, #7a): C{namespaces}, C{podSelector}, and either key of a
        selector.
        """
        self.assertEqual(_problems("""
            registries:
              - address: a.example
                auth: a:a-pw
                namespaces:
                #  - team-a
              - address: b.example
                podSelector:
                #  matchLabels: {team: b}
              - address: c.example
                podSelector:
                  matchLabels:
                  #  team: c
              - address: d.example
                podSelector:
                  matchExpressions:
                  #  - {key: team, operator: In, values: [d]}
                  matchLabels: {tier: gpu}
            """), [
            "registries[0].namespaces: empty (no namespace is listed): no pod could use this "
            "registry; leave the key out to serve every namespace",
            "registries[1].podSelector: no value: give matchLabels or matchExpressions ({} "
            "selects every pod), or leave the key out to serve every pod",
            "registries[2].podSelector.matchLabels: no value: give it one, or leave the key "
            "out",
            "registries[3].podSelector.matchExpressions: no value: give it one, or leave the "
            "key out",
        ])

    def test_empty_selector_selects_every_pod(self):
        """
        An empty C{podSelector} (C{{}}, or empty C{matchLabels} and
        C{matchExpressions}) selects every pod, as in Kubernetes, but never
        a pull for no pod; the key left out restricts nothing.
        """
        cfg = _config("""
            registries:
              - address: https://a.example
                podSelector: {}
              - address: https://b.example
                podSelector: {matchLabels: {}, matchExpressions: []}
              - address: https://c.example
            """)
        restricted = {registry.name: registry.restricted for registry in cfg.registries}
        self.assertEqual(restricted, {"a.example": True, "b.example": True,
                                      "c.example": False})
        self.assertEqual(_names(cfg, Pod("p", "any")), ["a.example", "b.example", "c.example"])
        self.assertEqual(_names(cfg, None), ["c.example"])

    def test_from_configmap_with_no_value_refused(self):
        """
        From the ConfigMap too, a restriction written with no value refuses
        the ConfigMap, naming its key, rather than being dropped (which left
        a registry the node's file did not restrict open to every pod).
        """
        error = self.assertRaises(config.ConfigError, read_cluster_settings, textwrap.dedent("""
            registries:
              - address: https://team-a.example
                namespaces:
                #  - team-a
              - address: https://gpu.example
                podSelector:
                #  matchLabels: {tier: gpu}
              - address: https://web.example
                podSelector:
                  matchLabels:
            """).encode())
        self.assertEqual(error.problems, [
            "registries.yaml: registries[0].namespaces: empty (no namespace is listed): no pod "
            "could use this registry; leave the key out to serve every namespace",
            "registries.yaml: registries[1].podSelector: no value: give matchLabels or "
            "matchExpressions ({} selects every pod), or leave the key out to serve every pod",
            "registries.yaml: registries[2].podSelector.matchLabels: no value: give it one, or "
            "leave the key out",
        ])

    def test_from_configmap_warned_once(self):
        """
        The ConfigMap's restrictions are checked when it is read, but what
        is only warned about is told once, when the merged file is read.
        """
        settings, notices = read_cluster_settings(
            b"registries: [{address: a.example, podSelector: {matchLabel: {a: b}}}]\n")
        self.assertEqual(notices, [])
        _, notices = schema.load(dump(merge({}, settings)[0]))
        self.assertEqual([notice.message for notice in notices], [
            "ignoring unknown key registries[0].podSelector.matchLabel"])

    def test_from_configmap(self):
        """
        From the ConfigMap, the keys are merged like C{mirrorOf}: an entry
        that says them sets them, one that does not keeps the local file's.
        """
        local = yaml.safe_load(textwrap.dedent("""
            registries:
              - address: https://team-a.example
                namespaces: [team-a]
            """))
        settings, _ = read_cluster_settings(textwrap.dedent("""
            registries:
              - address: https://team-a.example
              - address: https://gpu.example
                podSelector: {matchLabels: {tier: gpu}}
            """).encode())
        document, _ = merge(local, settings)
        cfg = schema.load(dump(document))[0]
        by_name = {registry.name: registry for registry in cfg.registries}
        self.assertEqual(by_name["team-a.example"].namespaces, ("team-a",))
        self.assertEqual(by_name["gpu.example"].pod_selector, Selector((("tier", "gpu"),)))

    def test_events_key(self):
        """
        C{events} is on unless set to false, and must be a boolean.
        """
        self.assertTrue(_config("{}").events)
        self.assertFalse(_config("events: false").events)
        self.assertEqual(_problems("events: sometimes"),
                         ["events: expected true or false, got 'sometimes'"])


class MatchTests(SynchronousTestCase):
    def test_candidates_by_pod(self):
        """
        A restricted registry is a candidate only for the pods it serves: in
        its namespaces and matching its selector; a pull for no pod has only
        the unrestricted ones.
        """
        cfg = _config(ROUTED)
        table = [
            (None, ["sealos.hub:5000", "open.example"]),
            (Pod("p", "default"), ["sealos.hub:5000", "open.example"]),
            (Pod("p", "team-a"), ["sealos.hub:5000", "open.example", "team-a.example"]),
            (Pod("p", "team-a-ci", labels={"tier": "gpu"}),
             ["sealos.hub:5000", "gpu.example", "open.example", "team-a.example"]),
            (Pod("p", "x", labels={"tier": "gpu", "spot": "1"}),
             ["sealos.hub:5000", "open.example"]),
            (Pod("p", "team-b", labels={"app": "web"}),
             ["sealos.hub:5000", "both.example", "open.example"]),
            (Pod("p", "team-b", labels={"app": "db"}), ["sealos.hub:5000", "open.example"]),
            (Pod("p", "team-c", labels={"app": "web"}), ["sealos.hub:5000", "open.example"]),
        ]
        for pod, expected in table:
            self.assertEqual(_names(cfg, pod), expected, pod)

    def test_operators(self):
        """
        In, NotIn, Exists and DoesNotExist as Kubernetes defines them (NotIn
        holds for a pod without the label).
        """
        labels = {"a": "1"}
        self.assertTrue(Requirement("a", "In", frozenset(["1", "2"])).matches(labels))
        self.assertFalse(Requirement("a", "NotIn", frozenset(["1"])).matches(labels))
        self.assertTrue(Requirement("b", "NotIn", frozenset(["1"])).matches(labels))
        self.assertTrue(Requirement("a", "Exists").matches(labels))
        self.assertFalse(Requirement("a", "DoesNotExist").matches(labels))
        self.assertTrue(Selector().matches({}))

    def test_scope_keys_the_cache(self):
        """
        Pulls whose pods the rules see alike share a cache key; pods served
        by other restricted registries never do; a pull for no pod keeps the
        plain name (ImageStatus reads it).
        """
        cfg = _config(ROUTED)
        ref = parse("nginx:latest")

        def key(pod):
            return rewrite.cache_key(ref, rewrite.scope(cfg, ref, pod))
        self.assertEqual(key(None), "docker.io/library/nginx:latest")
        self.assertEqual(key(Pod("p", "default")), key(None))
        self.assertEqual(key(Pod("p", "team-a")), key(Pod("q", "team-a-ci")))
        self.assertEqual(key(Pod("p", "team-a")),
                         "docker.io/library/nginx:latest for team-a.example")
        self.assertNotEqual(key(Pod("p", "team-a")), key(Pod("p", "team-b",
                                                             labels={"app": "web"})))
        self.assertNotEqual(key(Pod("p", "team-a")), key(None))

    def test_named_restricted_registry(self):
        """
        An image naming a restricted registry gets its login only for the
        pods it serves; for others it stays as asked, with kubelet's.
        """
        cfg = _config(ROUTED)
        ref = parse("team-a.example/app:1")
        mine = rewrite.decide_without_lookup(cfg, ref, Pod("p", "team-a"))
        self.assertEqual(mine.registry.name, "team-a.example")
        theirs = rewrite.decide_without_lookup(cfg, ref, Pod("p", "team-b"))
        self.assertEqual((theirs.registry, theirs.moved, theirs.source),
                         (None, False, rewrite.CONFIGURED))
        self.assertIsNone(rewrite.decide_without_lookup(cfg, ref, None).registry)

    def test_no_candidate_for_pod(self):
        """
        When only restricted registries could hold an image, a pull for
        another pod has no candidates: no lookup is needed.
        """
        cfg = _config("""
            registries:
              - address: https://team-a.example
                namespaces: [team-a]
            """)
        self.assertEqual(rewrite.decide_without_lookup(cfg, parse("nginx"), None).source,
                         rewrite.NO_REGISTRIES)
        self.assertIsNone(rewrite.decide_without_lookup(cfg, parse("nginx"),
                                                        Pod("p", "team-a")))
