# -*- test-case-name: tests.serve.test_proto_wire -*-
"""
Wire-contract checks for the hand-written CRI protocol definitions.

C{proto/runtime/v1/api.proto} and C{proto/runtime/v1alpha2/api.proto} are
written by hand rather than copied from k8s.io/cri-api, so a slip in a field
number would silently corrupt traffic between the kubelet and the runtime.
These tests hold them against an independent copy of the upstream contract:
the CRI file descriptors linked into the containerd binary.  containerd 1.6
is built with gogo/golang protobuf, which registers every .proto file it
links as a gzip-compressed serialized C{FileDescriptorProto}; those blobs are
found by scanning the binary for gzip streams.

The upstream copy may be older than ours (containerd 1.6.20 vendors
k8s.io/cri-api v0.25), so our definitions may carry newer fields, but never
fewer, and nothing that both sides define may differ.  So they are also held
against the C{api.proto} of the newest k8s.io/cri-api release (and, for
v1alpha2, of its last release), which C{make tools} leaves in the Go module
cache (L{dev.cri_api}): there, everything we define must be upstream too.

The module also checks that code generated from our definitions keeps
unknown fields across a parse, modify, serialize cycle (the shim relies on
that to pass fields it does not know through untouched), and that Debian's
protoc 3.21 accepts the files.
"""

import importlib.util
import os
import shutil
import subprocess
import zlib

from google.protobuf import descriptor_pb2
from twisted.trial import unittest

from dev import cri_api

_FDP = descriptor_pb2.FieldDescriptorProto

PROTO_ROOT = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "proto"
)

# Package name -> path of our file below PROTO_ROOT.
PROTO_FILES = {
    "runtime.v1": "runtime/v1/api.proto",
    "runtime.v1alpha2": "runtime/v1alpha2/api.proto",
}

IMAGE_METHODS = {"ListImages", "ImageStatus", "PullImage", "RemoveImage", "ImageFsInfo"}

GZIP_MAGIC = b"\x1f\x8b\x08"
# Compressed bytes offered to the inflater per candidate, and the most it
# may produce; a CRI descriptor is about 20 KiB compressed, 100 KiB inflated.
SCAN_WINDOW = 4 << 20
MAX_INFLATED = 16 << 20

# What we define beyond k8s.io/cri-api v0.25 (the version containerd 1.6
# vendors).  Anything else of ours that upstream lacks is treated as a typo.
# v1alpha2 was frozen at v0.25, so it must match exactly.  These names are
# checked against the newest cri-api by NewestCriApiTests.
NEWER_THAN_CRI_API_0_25 = {
    "runtime.v1": {
        "RuntimeHandler",
        "RuntimeHandlerFeatures",
        "RuntimeFeatures",
        "SupplementalGroupsPolicy",
        "WindowsNamespaceOption",
        "ImageSpec.user_specified_image",
        "ImageSpec.runtime_handler",
        "ImageSpec.image_ref",
        "ImageFsInfoResponse.container_filesystems",
        "LinuxSandboxSecurityContext.supplemental_groups_policy",
        "StatusResponse.runtime_handlers",
        "StatusResponse.features",
        "WindowsSandboxSecurityContext.namespace_options",
    },
    "runtime.v1alpha2": set(),
}

# Upstream messages and fields that must be compared for a run to count.
MUST_COMPARE = (
    "PullImageRequest",
    "ImageSpec",
    "PodSandboxConfig",
    "LinuxContainerResources",
    "StatusResponse",
)


def _protoc_argv():
    """
    Return the argv prefix of the protoc to use: grpc_tools' if importable,
    else the one on C{PATH}.

    @raise unittest.SkipTest: if there is neither.
    """
    argv = cri_api.protoc_argv()
    if argv is None:
        raise unittest.SkipTest("neither grpc_tools nor protoc is available")
    return argv


def _run_protoc(argv, out_flags):
    """
    Compile both of our .proto files with C{argv} plus C{out_flags}.

    @return: C{None} on success, else protoc's complaint.
    """
    sources = [os.path.join(PROTO_ROOT, p) for p in PROTO_FILES.values()]
    proc = subprocess.run(
        argv + ["-I" + PROTO_ROOT] + out_flags + sources,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    if proc.returncode != 0:
        return "%s failed (%d):\n%s" % (
            " ".join(argv),
            proc.returncode,
            (proc.stdout + proc.stderr).decode("utf-8", "replace"),
        )
    return None


_SCANS = {}


def _scan_for_cri_descriptors(path):
    """
    Find the CRI file descriptors embedded, gzip-compressed, in a binary.

    @return: C{dict} mapping package name to a C{list} of distinct
        C{FileDescriptorProto}s for that package that define an
        C{ImageService}.
    """
    if path in _SCANS:
        return _SCANS[path]
    with open(path, "rb") as f:
        data = f.read()
    view = memoryview(data)
    found = {}
    seen = set()
    start = data.find(GZIP_MAGIC)
    while start >= 0:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            raw = inflater.decompress(view[start:start + SCAN_WINDOW], MAX_INFLATED)
        except zlib.error:
            raw = None
        if raw and inflater.eof and raw not in seen:
            seen.add(raw)
            fdp = descriptor_pb2.FileDescriptorProto()
            try:
                fdp.ParseFromString(raw)
            except Exception:
                fdp = None
            if (
                fdp is not None
                and fdp.package in PROTO_FILES
                and any(s.name == "ImageService" for s in fdp.service)
            ):
                found.setdefault(fdp.package, []).append(fdp)
        start = data.find(GZIP_MAGIC, start + 1)
    _SCANS[path] = found
    return found


def _index(fdp):
    """
    Flatten a file descriptor.

    @return: C{(messages, enums, services)}, each a C{dict} keyed by name
        relative to the package (C{"Outer.Inner"} for nested types).
    """
    messages, enums = {}, {}

    def visit(message_types, enum_types, prefix):
        for e in enum_types:
            enums[prefix + e.name] = e
        for m in message_types:
            messages[prefix + m.name] = m
            visit(m.nested_type, m.enum_type, prefix + m.name + ".")

    visit(fdp.message_type, fdp.enum_type, "")
    return messages, enums, {s.name: s for s in fdp.service}


def _local(type_name, package):
    """
    Strip the package from a fully qualified type name.
    """
    prefix = "." + package + "."
    if type_name.startswith(prefix):
        return type_name[len(prefix):]
    return type_name


def _field_facts(field, package, messages):
    """
    Describe everything about a field that matters on the wire.
    """
    type_name = _local(field.type_name, package)
    entry = messages.get(type_name)
    return (
        ("number", field.number),
        ("type", _FDP.Type.Name(field.type)),
        ("label", _FDP.Label.Name(field.label)),
        ("type_name", type_name),
        ("map", bool(field.type == _FDP.TYPE_MESSAGE
                     and entry is not None and entry.options.map_entry)),
        ("proto3_optional", field.proto3_optional),
        ("oneof_index",
         field.oneof_index if field.HasField("oneof_index") else None),
    )


def _compare(ours, theirs):
    """
    Compare our file descriptor with the upstream one.

    @return: C{(problems, extras, compared)}: human-readable mismatches;
        names we define that upstream lacks (C{"Message"} or
        C{"Message.field"}); names of upstream messages, enums and services
        that were compared.
    """
    pkg, tpkg = ours.package, theirs.package
    problems, extras, compared = [], [], set()
    if ours.syntax != theirs.syntax:
        problems.append("%s: syntax %r, upstream %r" % (pkg, ours.syntax, theirs.syntax))
    o_msgs, o_enums, o_svcs = _index(ours)
    t_msgs, t_enums, t_svcs = _index(theirs)

    for name, om in sorted(o_msgs.items()):
        tm = t_msgs.get(name)
        if tm is None:
            if not om.options.map_entry:
                extras.append(name)
            continue
        compared.add(name)
        where = "%s.%s" % (pkg, name)
        if om.options.map_entry != tm.options.map_entry:
            problems.append("%s: map_entry %s, upstream %s"
                            % (where, om.options.map_entry, tm.options.map_entry))
        o_by_name = {f.name: f for f in om.field}
        t_by_name = {f.name: f for f in tm.field}
        t_by_number = {f.number: f for f in tm.field}
        for tf in tm.field:
            of = o_by_name.get(tf.name)
            if of is None:
                problems.append("%s.%s: upstream field (number %d) is missing from ours"
                                % (where, tf.name, tf.number))
                continue
            mine = _field_facts(of, pkg, o_msgs)
            theirs_ = _field_facts(tf, tpkg, t_msgs)
            for (what, a), (_, b) in zip(mine, theirs_):
                if a != b:
                    problems.append("%s.%s: %s is %r, upstream %r"
                                    % (where, tf.name, what, a, b))
        for of in om.field:
            if of.name in t_by_name:
                continue
            clash = t_by_number.get(of.number)
            if clash is not None:
                problems.append("%s.%s: number %d belongs to upstream field %r"
                                % (where, of.name, of.number, clash.name))
            else:
                extras.append("%s.%s" % (name, of.name))

    for name, oe in sorted(o_enums.items()):
        te = t_enums.get(name)
        if te is None:
            extras.append(name)
            continue
        compared.add(name)
        where = "%s.%s" % (pkg, name)
        o_vals = {v.name: v.number for v in oe.value}
        t_vals = {v.name: v.number for v in te.value}
        for vname, number in t_vals.items():
            if vname not in o_vals:
                problems.append("%s.%s: upstream enum value (%d) is missing from ours"
                                % (where, vname, number))
            elif o_vals[vname] != number:
                problems.append("%s.%s: enum value is %d, upstream %d"
                                % (where, vname, o_vals[vname], number))
        for vname, number in o_vals.items():
            if vname in t_vals:
                continue
            if number in t_vals.values():
                problems.append("%s.%s: enum number %d belongs to an upstream value"
                                % (where, vname, number))
            else:
                extras.append("%s.%s" % (name, vname))

    for sname, osvc in sorted(o_svcs.items()):
        tsvc = t_svcs.get(sname)
        if tsvc is None:
            problems.append("%s.%s: service is not upstream" % (pkg, sname))
            continue
        compared.add(sname)
        t_methods = {m.name: m for m in tsvc.method}
        for om in osvc.method:
            where = "/%s.%s/%s" % (pkg, sname, om.name)
            tm = t_methods.get(om.name)
            if tm is None:
                problems.append("%s: method is not upstream" % (where,))
                continue
            for what, a, b in (
                ("input_type", _local(om.input_type, pkg), _local(tm.input_type, tpkg)),
                ("output_type", _local(om.output_type, pkg), _local(tm.output_type, tpkg)),
                ("client_streaming", om.client_streaming, tm.client_streaming),
                ("server_streaming", om.server_streaming, tm.server_streaming),
            ):
                if a != b:
                    problems.append("%s: %s is %r, upstream %r" % (where, what, a, b))
    return problems, extras, compared


class _ContractMixin:
    """
    Compiles ours and compares it with an upstream descriptor.
    """

    def ours(self):
        """
        Compile our .proto files to a descriptor set.

        @return: C{dict} mapping package name to our C{FileDescriptorProto}.
        """
        out = self.mktemp() + ".pb"
        error = _run_protoc(_protoc_argv(), ["--descriptor_set_out=" + out])
        if error is not None:
            self.fail(error)
        fds = descriptor_pb2.FileDescriptorSet()
        with open(out, "rb") as f:
            fds.ParseFromString(f.read())
        return {fdp.package: fdp for fdp in fds.file}

    def assertAgrees(self, package, theirs, source):
        """
        Assert that our C{package} agrees with the upstream descriptor
        C{theirs} (from C{source}) on everything both define, lacks none of
        its fields, and that the messages and services everything hinges on
        were compared.

        @return: the names we define that C{theirs} lacks.
        """
        problems, extras, compared = _compare(self.ours()[package], theirs)
        if problems:
            self.fail("%s differs from %s:\n  %s"
                      % (PROTO_FILES[package], source, "\n  ".join(problems)))
        missed = [n for n in MUST_COMPARE + ("ImageService", "RuntimeService")
                  if n not in compared]
        self.assertEqual(
            missed, [],
            "%s: these were not found on both sides, so nothing was "
            "checked for them" % (package,))
        return extras


class WireContractTests(_ContractMixin, unittest.TestCase):
    """
    Our CRI definitions agree with the descriptors linked into containerd.
    """

    def upstream(self, package):
        """
        Return the upstream descriptors for C{package} found in containerd.

        @raise unittest.SkipTest: if containerd or its descriptors for
            C{package} cannot be found.
        """
        path = shutil.which("containerd")
        if path is None:
            raise unittest.SkipTest(
                "containerd is not on PATH: it is the source of the upstream "
                "CRI descriptors (apt-get install containerd)")
        found = _scan_for_cri_descriptors(path).get(package)
        if not found:
            raise unittest.SkipTest(
                "%s holds no gzip-compressed %s descriptor defining "
                "ImageService (containerd 1.6 has both CRI versions; 2.x "
                "dropped v1alpha2 and no longer stores descriptors gzipped)"
                % (path, package))
        return found

    def assertMatchesUpstream(self, package):
        """
        Assert that our C{package} agrees with every upstream copy found.
        """
        for theirs in self.upstream(package):
            self.assertAgrees(package, theirs, "containerd's copy")

    def test_v1MatchesUpstream(self):
        """
        Every message, enum and method of runtime.v1 that containerd also
        defines has the same field names, numbers, types, labels, map-ness,
        enum values and method signatures; no upstream field is missing.
        """
        self.assertMatchesUpstream("runtime.v1")

    def test_v1alpha2MatchesUpstream(self):
        """
        Every message, enum and method of runtime.v1alpha2 that containerd
        also defines matches it, and no upstream field is missing.
        """
        self.assertMatchesUpstream("runtime.v1alpha2")

    def test_imageServiceMethodSet(self):
        """
        Our ImageService declares exactly the upstream methods, in both
        packages, so every image call the kubelet makes reaches the shim.
        """
        ours = self.ours()
        checked = 0
        for package in sorted(PROTO_FILES):
            try:
                upstream = self.upstream(package)
            except unittest.SkipTest:
                continue
            mine = {m.name for m in _index(ours[package])[2]["ImageService"].method}
            self.assertEqual(mine, IMAGE_METHODS, "%s.ImageService" % (package,))
            for theirs in upstream:
                want = {m.name for m in _index(theirs)[2]["ImageService"].method}
                self.assertEqual(
                    mine, want,
                    "%s.ImageService methods differ from containerd's" % (package,))
            checked += 1
        if not checked:
            raise unittest.SkipTest("no upstream CRI descriptors found")

    def test_additionsAreKnown(self):
        """
        Whatever we define that containerd's copy lacks is a known addition
        newer than k8s.io/cri-api v0.25, not a misspelt name; v1alpha2 has
        no additions at all.
        """
        ours = self.ours()
        checked = 0
        for package in sorted(PROTO_FILES):
            try:
                upstream = self.upstream(package)
            except unittest.SkipTest:
                continue
            for theirs in upstream:
                t_msgs = _index(theirs)[0]
                baseline = t_msgs.get("NamespaceOption")
                if baseline is None or "userns_options" not in {
                        f.name for f in baseline.field}:
                    # Older than cri-api v0.25: new fields and typos look
                    # alike, so there is nothing to say.
                    continue
                _, extras, _ = _compare(ours[package], theirs)
                unknown = sorted(set(extras) - NEWER_THAN_CRI_API_0_25[package])
                self.assertEqual(
                    unknown, [],
                    "%s defines names containerd's copy lacks; fix the "
                    "spelling or list them in NEWER_THAN_CRI_API_0_25"
                    % (PROTO_FILES[package],))
                checked += 1
        if not checked:
            raise unittest.SkipTest(
                "no upstream CRI descriptors of cri-api v0.25 or later found")


class NewestCriApiTests(_ContractMixin, unittest.TestCase):
    """
    Our CRI definitions agree with the newest k8s.io/cri-api release that
    ships each package, as C{make tools} pins it, and define nothing it
    lacks.
    """

    def upstream(self, package):
        """
        Return the upstream descriptor of C{package} and the release it
        comes from.

        @raise unittest.SkipTest: if no pinned k8s.io/cri-api in the module
            cache ships C{package}.
        """
        found = cri_api.newest(package)
        if found is None:
            raise unittest.SkipTest(
                "no k8s.io/cri-api module shipping %s linked from %s (make tools)"
                % (package, cri_api.LINKS))
        version, path = found
        return cri_api.descriptor(path, _protoc_argv()), "k8s.io/cri-api " + version

    def assertMatchesUpstream(self, package):
        """
        Assert that our C{package} agrees with the newest upstream release
        that ships it, and defines nothing that release lacks.
        """
        theirs, source = self.upstream(package)
        extras = self.assertAgrees(package, theirs, source)
        self.assertEqual(extras, [], "%s defines names %s lacks: a typo, or upstream "
                         "removed them" % (PROTO_FILES[package], source))

    def test_v1MatchesUpstream(self):
        """
        Every message, enum and method of runtime.v1 is in the newest
        k8s.io/cri-api with the same field names, numbers, types, labels,
        map-ness, enum values and method signatures; no upstream field of a
        message we define is missing.
        """
        self.assertMatchesUpstream("runtime.v1")

    def test_v1alpha2MatchesUpstream(self):
        """
        runtime.v1alpha2 matches k8s.io/cri-api v0.25.16, the last release
        that ships it, in the same way.
        """
        self.assertMatchesUpstream("runtime.v1alpha2")


def _varint(n):
    """
    Encode a non-negative integer as a protobuf varint.
    """
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        if n:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _tag(number, wire_type):
    """
    Encode a field key.
    """
    return _varint(number << 3 | wire_type)


def _length_delimited(number, payload):
    """
    Encode a length-delimited field.
    """
    return _tag(number, 2) + _varint(len(payload)) + payload


class GeneratedCodeTests(unittest.TestCase):
    """
    Python code generated from our definitions behaves as the shim needs.
    """

    def generated(self, package):
        """
        Generate Python code for our files into a fresh directory and
        import the module for C{package}.

        The descriptor keeps its canonical name (e.g.
        C{runtime/v1/api.proto}), so loading it next to other code
        generated from the same file with C{-Iproto} is harmless.
        """
        out = self.mktemp()
        os.makedirs(out)
        error = _run_protoc(_protoc_argv(), ["--python_out=" + out])
        if error is not None:
            self.fail(error)
        path = os.path.join(out, PROTO_FILES[package][:-len(".proto")] + "_pb2.py")
        name = "_wiretest_%s_pb2" % (package.replace(".", "_"),)
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    def assertUnknownFieldsSurvive(self, package):
        """
        Parse a PullImageRequest carrying unknown fields at two levels,
        change the image, re-serialize, and check both unknown fields are
        still there.
        """
        api = self.generated(package)
        in_spec = _length_delimited(9999, b"from a newer kubelet")
        in_request = _tag(9998, 0) + _varint(1234567)
        spec = api.ImageSpec(
            image="docker.io/library/busybox:1.36",
            annotations={"io.example/key": "value"},
        ).SerializeToString() + in_spec
        wire = _length_delimited(1, spec) + in_request

        request = api.PullImageRequest.FromString(wire)
        self.assertEqual(request.image.image, "docker.io/library/busybox:1.36")
        request.image.image = "mirror.example/library/busybox:1.36"
        rewritten = request.SerializeToString()

        self.assertIn(in_spec, rewritten)
        self.assertIn(in_request, rewritten)
        again = api.PullImageRequest.FromString(rewritten)
        self.assertEqual(again.image.image, "mirror.example/library/busybox:1.36")
        self.assertEqual(dict(again.image.annotations), {"io.example/key": "value"})
        self.assertIn(in_spec, again.image.SerializeToString())

    def test_v1UnknownFieldsSurvive(self):
        """
        runtime.v1 generated code keeps unknown fields, nested and top-level,
        through parse, modify and serialize.
        """
        self.assertUnknownFieldsSurvive("runtime.v1")

    def test_v1alpha2UnknownFieldsSurvive(self):
        """
        runtime.v1alpha2 generated code keeps unknown fields, nested and
        top-level, through parse, modify and serialize.
        """
        self.assertUnknownFieldsSurvive("runtime.v1alpha2")


class DebianToolchainTests(unittest.TestCase):
    """
    Debian 12's protoc and python3-protobuf (3.21 era) accept our files.
    """

    def test_debianProtocOutputImports(self):
        """
        /usr/bin/protoc compiles both files and /usr/bin/python3 imports
        the result, so the distribution package can be built with Debian's
        own toolchain.
        """
        protoc, python = "/usr/bin/protoc", "/usr/bin/python3"
        for tool in (protoc, python):
            if not os.access(tool, os.X_OK):
                raise unittest.SkipTest("%s is not installed" % (tool,))
        probe = subprocess.run([python, "-c", "import google.protobuf"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if probe.returncode != 0:
            raise unittest.SkipTest("%s lacks google.protobuf "
                                    "(apt-get install python3-protobuf)" % (python,))
        out = self.mktemp()
        os.makedirs(out)
        error = _run_protoc([protoc], ["--python_out=" + out])
        if error is not None:
            self.fail(error)
        script = (
            "from runtime.v1 import api_pb2 as v1\n"
            "from runtime.v1alpha2 import api_pb2 as v1alpha2\n"
            "for api in (v1, v1alpha2):\n"
            "    svc = api.DESCRIPTOR.services_by_name['ImageService']\n"
            "    print(svc.full_name, len(svc.methods))\n"
            "    api.PullImageRequest.FromString(\n"
            "        api.PullImageRequest(image=api.ImageSpec(image='x'))\n"
            "        .SerializeToString())\n"
        )
        proc = subprocess.run([python, "-c", script], cwd=out,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.assertEqual(
            proc.returncode, 0,
            "%s could not import protoc 3.21 output:\n%s"
            % (python, proc.stderr.decode("utf-8", "replace")))
        self.assertEqual(
            proc.stdout.decode().split(),
            ["runtime.v1.ImageService", "5", "runtime.v1alpha2.ImageService", "5"])
