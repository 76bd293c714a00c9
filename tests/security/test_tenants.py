"""
Issue 17, finding 1: one tenant never gets, sees or runs an image resolved
for another tenant's rules.  Registry C{team-a.example} serves only the
namespace C{team-a} and holds team-a's private build of C{library/nginx:1.25};
the unrestricted offline registry holds the public one.  Over real gRPC in
front of a runtime that names its images as containerd does, in both
C{names} modes and both CRI versions.
"""

import attr
import grpc
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from cri_shim.model import config, selector, wire
from cri_shim.testing.registries import registry_config
from tests.serve.test_image_service import OFFLINE
from tests.serve.test_views import ViewHarness, _field

TEAM_A = attr.evolve(registry_config("https://team-a.example", "team-a", "team-a-pw",
                                     priority=2000), namespaces=("team-a",))
NGINX = "docker.io/library/nginx:1.25"
PRIVATE = "team-a.example/library/nginx:1.25"
PUBLIC = "sealos.hub:5000/library/nginx:1.25"
DIGEST = "sha256:" + "c" * 64


class TenantTestsMixin(ViewHarness):
    """
    The offline registry and team-a's registry both hold C{nginx:1.25}.
    """

    names = config.NAMES_REQUESTED

    def make_config(self):
        return config.Config(registries=(TEAM_A, OFFLINE), names=self.names)

    def setUp(self):
        ViewHarness.setUp(self)
        self.holders[NGINX] = [TEAM_A.name, OFFLINE.name]

    def sandbox(self, namespace, name="web"):
        request = self.api.PullImageRequest()
        metadata = request.sandbox_config.metadata
        metadata.name, metadata.namespace, metadata.uid = name, namespace, namespace + "-uid"
        return request.sandbox_config

    def pull_for(self, namespace, image="nginx:1.25"):
        request = self.api.PullImageRequest(image=self.api.ImageSpec(image=image))
        request.sandbox_config.CopyFrom(self.sandbox(namespace))
        return self.client.PullImage(request, timeout=10).image_ref

    def create_for(self, namespace, image="nginx:1.25"):
        """
        :return: the image name the runtime's CreateContainer got, for a
            container of a pod in C{namespace}.
        """
        sandbox = self.sandbox(namespace).SerializeToString(deterministic=True)
        self.raw("RuntimeService", "CreateContainer")(
            self.create_body(image) + _field(3, sandbox), timeout=10)
        raw = self.runtime_calls("CreateContainer")[-1][1]
        return wire.strings_at(raw, wire.CONTAINER_IMAGE)[-1]

    def test_status_never_tells_a_restricted_name(self):
        """
        After team-a pulls its private build, ImageStatus (which carries no
        pod) does not answer with it: kubelet pulls for the pod instead.
        After team-b pulls the public one, team-a is not answered with that
        either.
        """
        private = self.pull_for("team-a")
        self.assertEqual(self.runtime.images, {PRIVATE: private})
        for name in ("nginx:1.25", NGINX):
            self.assertFalse(self.status(name).HasField("image"), name)
        public = self.pull_for("team-b")
        self.assertEqual(self.runtime.images, {PRIVATE: private, PUBLIC: public})
        self.assertFalse(self.status("nginx:1.25").HasField("image"))
        # Asked by ID, or by digest, the image is the image.
        self.assertEqual(self.status(private).image.id, private)
        self.assertEqual(self.runtime_calls("ImageStatus")[-1][1],
                         self.api.ImageStatusRequest(
                             image=self.api.ImageSpec(image=private)).SerializeToString())

    def test_each_pod_pulls_its_own(self):
        """
        Pulls for team-a go to its registry with its login, pulls for others
        to the offline registry, whatever was pulled before.
        """
        pulled = [self.pull_for(namespace) for namespace in ("team-b", "team-a", "team-b")]
        images = self.runtime.images
        self.assertEqual(pulled[1:], [images[PRIVATE], images[PUBLIC]])
        sent = [self.api.PullImageRequest.FromString(raw)
                for _, raw, _, _ in self.runtime_calls("PullImage")]
        self.assertEqual([(r.image.image, r.auth.username) for r in sent],
                         [(PUBLIC, "admin"), (PRIVATE, "team-a"), (PUBLIC, "admin")])

    def test_create_container_uses_its_sandbox(self):
        """
        CreateContainer by name runs the image pulled for its own pod's
        rules: team-b never gets team-a's registry name, team-a never the
        public one.
        """
        self.pull_for("team-a")
        self.pull_for("team-b")
        self.assertEqual(self.create_for("team-b"), PUBLIC)
        self.assertEqual(self.create_for("team-a"), PRIVATE)
        self.assertEqual(self.create_for("team-b"), PUBLIC)

    def test_create_container_from_the_store(self):
        """
        With the decision cache emptied (a config change), CreateContainer
        still finds each pod's own image by the names pulled for its scope
        (in C{names: registry} nothing is remembered: it is refused).
        """
        self.pull_for("team-a")
        self.pull_for("team-b")
        self.holder.publish(attr.evolve(self.holder.current.config, debug=True))
        if self.names == config.NAMES_REGISTRY:
            self.assertRaises(grpc.RpcError, self.create_for, "team-a")
            return
        self.assertEqual(self.create_for("team-a"), PRIVATE)
        self.assertEqual(self.create_for("team-b"), PUBLIC)

    def test_status_logged(self):
        """
        ImageStatus logs (with C{debug: true}) that it did not answer for a
        contested name; for others, whether the decision cache answered.
        """
        self.holder.publish(attr.evolve(self.holder.current.config, debug=True, registries=(
            attr.evolve(TEAM_A, mirror_of=("quay.io",)), OFFLINE)))
        self.pull_for("team-b")
        with capturedLogs() as events:
            self.status("nginx:1.25")
            self.status("quay.io/a/b:1")
            held = self.runtime.images.pop(PUBLIC)
            self.status("nginx:1.25")
            self.runtime.images[PUBLIC] = held
        self.holder.publish(attr.evolve(self.holder.current.config))
        with capturedLogs() as cold:
            self.status("nginx:1.25")
        self.assertEqual([formatEvent(event) for event in events + cold if "action" in event], [
            "ImageStatus nginx:1.25 -> {} (registry=-, cache_hit=True, source=local)".format(
                PUBLIC),
            "ImageStatus quay.io/a/b:1 -> (not told: registries restricted to some workloads "
            "serve it) (registry=-, cache_hit=False, source=restricted)",
            "ImageStatus nginx:1.25 -> (not present) (registry=-, cache_hit=True, "
            "source=local)",
            "ImageStatus nginx:1.25 -> {} (registry=-, cache_hit=False, source=local)".format(
                PUBLIC)])

    def test_sandbox_without_namespace(self):
        """
        A sandbox config that names no namespace is no pod: a registry
        restricted by labels alone does not serve it.
        """
        by_label = attr.evolve(TEAM_A, namespaces=(), pod_selector=selector.Selector(
            match_labels=(("app", "web"),)))
        self.holder.publish(attr.evolve(self.holder.current.config, registries=(
            by_label, OFFLINE)))
        request = self.api.PullImageRequest(image=self.api.ImageSpec(image="nginx:1.25"))
        request.sandbox_config.metadata.name = "web"
        request.sandbox_config.labels["app"] = "web"
        self.client.PullImage(request, timeout=10)
        request.sandbox_config.metadata.namespace = "default"
        self.client.PullImage(request, timeout=10)
        self.assertEqual([self.api.PullImageRequest.FromString(raw).image.image
                          for _, raw, _, _ in self.runtime_calls("PullImage")], [PUBLIC, PRIVATE])

    def test_create_container_never_pulled_for_its_scope(self):
        """
        A name whose image depends on the pod, never pulled for this pod's
        rules, is refused rather than resolved node-wide.
        """
        self.pull_for("team-a")
        with self.assertRaises(grpc.RpcError) as caught:
            self.create_for("team-b")
        self.assertEqual(caught.exception.code(), grpc.StatusCode.NOT_FOUND)
        self.assertIn("nginx:1.25 was not pulled for this pod", caught.exception.details())
        self.assertEqual(self.runtime_calls("CreateContainer"), [])

    def test_unrestricted_images_unchanged(self):
        """
        An image no restricted registry serves is found by ImageStatus as
        before.
        """
        config_ = attr.evolve(self.holder.current.config, registries=(
            attr.evolve(TEAM_A, mirror_of=("quay.io",)), OFFLINE))
        self.holder.publish(config_)
        self.pull_for("team-a")
        self.assertEqual(self.status("nginx:1.25").image.id, self.runtime.images[PUBLIC])
        self.assertEqual(self.create_for("team-b"), PUBLIC)

    def test_digest_pinned_found(self):
        """
        A name pinned by digest is the same image for every pod: ImageStatus
        finds it.
        """
        self.holders["docker.io/library/nginx@" + DIGEST] = [OFFLINE.name]
        self.runtime.images["sealos.hub:5000/library/nginx@" + DIGEST] = "sha256:" + "d" * 64
        self.assertEqual(self.status("nginx@" + DIGEST).image.id, "sha256:" + "d" * 64)

    def test_list_shows_restricted_pulls_under_registry_names(self):
        """
        ListImages, node-wide, shows the requested name only for images
        pulled by the unrestricted rules; team-a's image keeps its registry
        name.
        """
        private = self.pull_for("team-a")
        public = self.pull_for("team-b")
        listed = self.list_images()
        if self.names == config.NAMES_REQUESTED:
            self.assertEqual(listed[public][0], [NGINX])
        self.assertEqual(listed[private][0], [PRIVATE])

    def test_config_change_restricts_a_recorded_name(self):
        """
        A name recorded while team-a's registry served everyone is not used
        for team-b once the registry is restricted.
        """
        self.holder.publish(attr.evolve(self.holder.current.config, registries=(
            attr.evolve(TEAM_A, namespaces=()), OFFLINE)))
        self.pull_for("team-b")
        self.holder.publish(attr.evolve(self.holder.current.config, registries=(
            TEAM_A, OFFLINE)))
        with self.assertRaises(grpc.RpcError) as caught:
            self.create_for("team-b")
        self.assertEqual(caught.exception.code(), grpc.StatusCode.NOT_FOUND)


class V1TenantTests(TenantTestsMixin, SynchronousTestCase):
    package = "runtime.v1"


class V1Alpha2TenantTests(TenantTestsMixin, SynchronousTestCase):
    package = "runtime.v1alpha2"


class RegistryNamesTenantTests(TenantTestsMixin, SynchronousTestCase):
    package = "runtime.v1"
    names = config.NAMES_REGISTRY
