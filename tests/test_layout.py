"""
The house rules, read from the source with C{ast}: which wing may import
which, that the shipped package never reaches the dev tooling, that every
module says its job and names its tests, and that the wheel carries no dev
tooling.
"""

import ast
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.e2e_support import REPO_ROOT

PACKAGE = os.path.join(REPO_ROOT, "cri_shim")
#: What the pure model may import besides the standard library and itself.
MODEL_THIRD_PARTY = ("attr", "yaml")
#: Third-party roots that mean I/O or threads.
FRAMEWORKS = ("twisted", "grpc", "google", "treq", "zope", "OpenSSL", "service_identity")
#: Longest a shipped module may grow, as a guide to one job per module.
MAX_LINES = 400


def modules(root):
    """
    :return: C{{dotted name: path}} of every Python module below C{root}
        (generated C{_proto} code left out).
    """
    found = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in ("__pycache__", "_proto"))
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, os.path.dirname(root))[:-3].split(os.sep)
                if rel[-1] == "__init__":
                    rel = rel[:-1]
                found[".".join(rel)] = path
    return found


def imported(path, name):
    """
    :return: the set of absolute module names C{path} (module C{name})
        imports, relative imports resolved.
    """
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    is_package = path.endswith("__init__.py")
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = name.split(".")
                parts = parts if is_package else parts[:-1]
                parts = parts[:len(parts) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            names.add(base)
            names.update("{}.{}".format(base, alias.name) for alias in node.names)
    return names


def within(name, package):
    return name == package or name.startswith(package + ".")


class ImportRuleTests(SynchronousTestCase):
    """
    Who may import whom, by folder.
    """

    def setUp(self):
        self.modules = modules(PACKAGE)
        self.imports = {name: imported(path, name) for name, path in self.modules.items()}

    def offenders(self, wing, forbidden):
        found = []
        for name, targets in sorted(self.imports.items()):
            if within(name, wing):
                found.extend("{} imports {}".format(name, target)
                             for target in sorted(targets) if forbidden(target))
        return found

    def test_wings_exist(self):
        """
        The rules below are about real folders: each wing has modules.
        """
        for wing in ("model", "serve", "registries", "sync", "ops"):
            self.assertTrue([name for name in self.modules
                             if within(name, "cri_shim." + wing) and name != "cri_shim." + wing],
                            wing)

    def test_serve_never_reaches_the_reactor_side(self):
        """
        Worker-thread code reaches the reactor only through the bridge: it
        imports nothing from the registry clients, the sync or the ops wing.
        """
        self.assertEqual(self.offenders("cri_shim.serve", lambda target: any(
            within(target, "cri_shim." + wing) for wing in ("registries", "sync", "ops"))), [])

    def test_reactor_side_never_imports_serve(self):
        """
        The registry clients and the sync never import worker-thread code.
        """
        for wing in ("cri_shim.registries", "cri_shim.sync"):
            self.assertEqual(self.offenders(wing, lambda t: within(t, "cri_shim.serve")), [])

    def test_model_is_pure(self):
        """
        The model imports nothing from Twisted, grpc or the rest of the shim,
        and no third-party package but attrs and PyYAML.
        """
        def forbidden(target):
            root = target.split(".")[0]
            if root == "cri_shim":
                return not within(target, "cri_shim.model")
            return root in FRAMEWORKS or (root not in sys.stdlib_module_names
                                          and root not in MODEL_THIRD_PARTY)
        self.assertEqual(self.offenders("cri_shim.model", forbidden), [])

    def test_shipped_package_never_imports_dev_tooling(self):
        """
        Nothing shipped imports C{dev} or C{tests}.
        """
        self.assertEqual(self.offenders("cri_shim", lambda t: t.split(".")[0] in ("dev", "tests")),
                         [])

    def test_rules_catch_a_violation(self):
        """
        The checks see through relative imports: a serve module importing the
        resolver relatively is found.
        """
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "bad.py")
            with open(path, "w") as f:
                f.write("from ..registries import resolver\nfrom . import upstream\n")
            self.assertEqual(imported(path, "cri_shim.serve.bad"), {
                "cri_shim.registries", "cri_shim.registries.resolver", "cri_shim.serve",
                "cri_shim.serve.upstream"})


class ModuleTests(SynchronousTestCase):
    """
    One job per module, said in its docstring, with its tests named.
    """

    def test_docstring_and_tests_named(self):
        """
        Every module of the package and of dev/ has a docstring; every one but
        a package's C{__init__} names existing tests in its first line.
        """
        problems = []
        found = dict(modules(PACKAGE))
        found.update(modules(os.path.join(REPO_ROOT, "dev")))
        for name, path in sorted(found.items()):
            with open(path) as f:
                text = f.read()
            if not ast.get_docstring(ast.parse(text)):
                problems.append("{}: no docstring".format(name))
            if path.endswith("__init__.py"):
                continue
            first = text.splitlines()[0] if text else ""
            marker = "# -*- test-case-name: "
            if not first.startswith(marker):
                problems.append("{}: no test-case-name line".format(name))
                continue
            for test in first[len(marker):].rstrip(" -*").split(","):
                test_path = os.path.join(REPO_ROOT, *test.strip().split(".")) + ".py"
                if not os.path.exists(test_path):
                    problems.append("{}: names {}, which does not exist".format(name, test))
        self.assertEqual(problems, [])

    def test_modules_are_short(self):
        """
        Shipped modules stay under L{MAX_LINES} lines.
        """
        long = []
        for name, path in sorted(modules(PACKAGE).items()):
            with open(path) as f:
                count = sum(1 for _ in f)
            if count > MAX_LINES:
                long.append("{}: {} lines".format(name, count))
        self.assertEqual(long, [])


class WheelTests(SynchronousTestCase):
    """
    The wheel carries the shim and nothing of the dev tooling or the tests.
    """

    def test_wheel_contents(self):
        """
        A wheel built from this tree holds every wing and no C{dev/} or
        C{tests/} module.
        """
        try:
            import wheel  # noqa: F401
        except ImportError:
            raise SkipTest("the wheel package is not installed")
        with tempfile.TemporaryDirectory() as out:
            # From a copy: setuptools never empties build/, so a wheel built
            # in the tree could carry modules that no longer exist.
            tree = os.path.join(out, "tree")
            shutil.copytree(REPO_ROOT, tree, ignore=shutil.ignore_patterns(
                ".git", ".venv", ".tools", "build", "dist", "*.egg-info", "__pycache__",
                "_trial_temp*"))
            subprocess.run(
                [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                 "-w", out, tree], check=True, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, timeout=300)
            [built] = [name for name in os.listdir(out) if name.endswith(".whl")]
            with zipfile.ZipFile(os.path.join(out, built)) as archive:
                names = archive.namelist()
        tops = {name.split("/")[0] for name in names}
        self.assertNotIn("dev", tops)
        self.assertNotIn("tests", tops)
        self.assertFalse([name for name in names if "sandbox" in name or "demo" in name])
        for wing in ("model", "serve", "registries", "sync", "ops"):
            self.assertIn("cri_shim/{}/__init__.py".format(wing), names)
        self.assertIn("cri_shim/_proto/runtime/v1/api_pb2.py", names)
