"""
Tests for the conformance tooling that need neither root nor C{make tools}:
L{dev.node}'s containerd configs, L{dev.critest_images}' layers and
L{tests.conformance.critest}'s report reading.
"""

import io
import json
import os
import shutil
import tarfile
import tempfile
import tomllib

from twisted.trial import unittest

from dev import critest_images, node
from tests.conformance import critest


class ConfigTests(unittest.SynchronousTestCase):
    """
    L{node.NodeContainerd} writes a config its containerd version reads.
    """

    def config(self, version):
        directory = tempfile.mkdtemp(prefix="ics-node-", dir="/tmp")
        self.addCleanup(shutil.rmtree, directory)
        containerd = node.NodeContainerd(directory, binary="/nonexistent/containerd",
                                         version=version)
        containerd._prepare()
        with open(containerd.config_path, "rb") as f:
            return containerd, tomllib.load(f)

    def test_version_2_for_containerd_1(self):
        """
        containerd 1.x gets a version 2 config: one CRI plugin with the
        runc, CNI, registry and pause settings.
        """
        containerd, config = self.config("1.6.20~ds1")
        self.assertEqual(config["version"], 2)
        cri = config["plugins"]["io.containerd.grpc.v1.cri"]
        self.assertIs(cri["restrict_oom_score_adj"], True)
        self.assertEqual(cri["sandbox_image"], node.SANDBOX_IMAGE)
        self.assertEqual(cri["containerd"]["snapshotter"], "native")
        self.assertEqual(cri["cni"]["bin_dir"], node.CNI_BIN_DIR)
        self.assertEqual(cri["registry"]["config_path"], containerd.hosts_dir)
        self.assertEqual(cri["stream_server_address"], "127.0.0.1")

    def test_version_3_for_containerd_2(self):
        """
        containerd 2.x gets a version 3 config: the split CRI plugins, the
        transfer service unpacking with the native snapshotter, and the runc
        shim of the same build.
        """
        containerd, config = self.config("2.4.2")
        self.assertEqual(config["version"], 3)
        plugins = config["plugins"]
        self.assertIs(plugins["io.containerd.cri.v1.runtime"]["restrict_oom_score_adj"], True)
        self.assertEqual(plugins["io.containerd.cri.v1.runtime"]["cni"]["bin_dirs"],
                         [node.CNI_BIN_DIR])
        self.assertEqual(
            plugins["io.containerd.cri.v1.runtime"]["containerd"]["runtimes"]["runc"]
            ["runtime_path"], "/nonexistent/containerd-shim-runc-v2")
        images = plugins["io.containerd.cri.v1.images"]
        self.assertEqual(images["pinned_images"]["sandbox"], node.SANDBOX_IMAGE)
        self.assertEqual(images["registry"]["config_path"], containerd.hosts_dir)
        [unpack] = plugins["io.containerd.transfer.v1.local"]["unpack_config"]
        self.assertEqual(unpack["snapshotter"], "native")
        self.assertEqual(plugins["io.containerd.grpc.v1.cri"]["stream_server_address"],
                         "127.0.0.1")
        self.assertIn("io.containerd.nri.v1.nri", config["disabled_plugins"])

    def test_cni_config(self):
        """
        The CNI network is the node's own bridge with no masquerade and no
        routes, its addresses kept in the node's directory.
        """
        containerd, _ = self.config("2.4.2")
        with open(os.path.join(containerd.cni_conf_dir, "10-ics.conflist")) as f:
            bridge, portmap = json.load(f)["plugins"]
        self.assertEqual(bridge["bridge"], containerd.bridge)
        self.assertLessEqual(len(containerd.bridge), 15)
        self.assertIs(bridge["ipMasq"], False)
        self.assertNotIn("routes", bridge["ipam"])
        self.assertTrue(bridge["ipam"]["dataDir"].startswith(containerd.directory))
        self.assertEqual(portmap["type"], "portmap")

    def test_mirror(self):
        """
        L{node.NodeContainerd.mirror} names the sandbox registry as the
        registry's only server.
        """
        containerd, _ = self.config("1.6.20")
        containerd.mirror("registry.k8s.io", "http://127.0.0.1:5000")
        with open(os.path.join(containerd.hosts_dir, "registry.k8s.io", "hosts.toml"),
                  "rb") as f:
            hosts = tomllib.load(f)
        self.assertEqual(hosts["server"], "http://127.0.0.1:5000")
        self.assertEqual(hosts["host"]["http://127.0.0.1:5000"]["capabilities"],
                         ["pull", "resolve"])

    def test_unknown_major_version(self):
        """
        Only containerd 1.x and 2.x are known.
        """
        self.assertRaises(ValueError, node.NodeContainerd, "/tmp/x", binary="/x",
                          version="3.0.0")


class LayerTests(unittest.SynchronousTestCase):
    """
    L{critest_images.Layer} builds reproducible tars that unpack.
    """

    def entries(self, layer):
        with tarfile.open(fileobj=io.BytesIO(layer.tar())) as tar:
            return [(m.name, m.type, m.mode, m.linkname) for m in tar.getmembers()]

    def test_hard_links_after_their_targets(self):
        """
        A hard link comes after the file it names, even when its name sorts
        first (C{/bin/[} before C{/bin/busybox}).
        """
        layer = critest_images.Layer().file("/bin/busybox", b"x", 0o755)
        layer.hardlink("/bin/[", "/bin/busybox")
        names = [name for name, _, _, _ in self.entries(layer)]
        self.assertEqual(names, ["bin", "bin/busybox", "bin/["])
        self.assertEqual(self.entries(layer)[2][1:], (tarfile.LNKTYPE, 0o755, "bin/busybox"))

    def test_modes_kept(self):
        """
        A setuid file keeps its mode; parents are created as directories.
        """
        layer = critest_images.Layer().file("/usr/local/bin/nnp", b"x", 0o4755)
        self.assertEqual(self.entries(layer), [
            ("usr", tarfile.DIRTYPE, 0o755, ""),
            ("usr/local", tarfile.DIRTYPE, 0o755, ""),
            ("usr/local/bin", tarfile.DIRTYPE, 0o755, ""),
            ("usr/local/bin/nnp", tarfile.REGTYPE, 0o4755, "")])

    def test_reproducible(self):
        """
        The same entries give the same bytes, compressed too.
        """
        def build():
            return critest_images.Layer().file("/a", b"1").symlink("/b", "a").blobs()
        self.assertEqual(build(), build())

    def test_split_name(self):
        """
        A fully qualified name splits into host, repository and tag.
        """
        self.assertEqual(critest_images.split_name("registry.k8s.io/e2e-test-images/busybox:1.29-2"),
                         ("registry.k8s.io", "e2e-test-images/busybox", "1.29-2"))


class ReportTests(unittest.SynchronousTestCase):
    """
    L{critest.parse_report} reads ginkgo's JSON report.
    """

    def test_parse(self):
        """
        Every C{It} is named by its containers and its text; a failure's
        reason is the runtime's error when the message quotes one.
        """
        report = [{"SpecReports": [
            {"LeafNodeType": "BeforeSuite", "LeafNodeText": "", "State": "passed"},
            {"LeafNodeType": "It", "ContainerHierarchyTexts": ["[k8s.io] Image", "when"],
             "LeafNodeText": "pulls", "State": "passed"},
            {"LeafNodeType": "It", "ContainerHierarchyTexts": ["[k8s.io] Container"],
             "LeafNodeText": "creates", "State": "failed",
             "Failure": {"Message": "failed to create container\nUnexpected error:\n"
                                    "    rpc error: code = NotFound desc = no image\n{"}},
            {"LeafNodeType": "It", "ContainerHierarchyTexts": None,
             "LeafNodeText": "skips", "State": "skipped"},
        ]}]
        path = self.mktemp()
        with open(path, "w") as f:
            json.dump(report, f)
        states, failures = critest.parse_report(path)
        self.assertEqual(states, {"[k8s.io] Image when pulls": "passed",
                                  "[k8s.io] Container creates": "failed",
                                  "skips": "skipped"})
        self.assertEqual(failures, {"[k8s.io] Container creates":
                                    "failed to create container: rpc error: code = NotFound "
                                    "desc = no image"})
