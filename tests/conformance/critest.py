# -*- test-case-name: tests.conformance.test_node,tests.conformance.test_critest -*-
"""
critest, the CRI validation suite of cri-tools (built by ``make tools``), run
on a sandbox node (:mod:`dev.node`) in three modes:

- ``direct``: against containerd's own socket;
- ``relay``: through the shim, whose registry (with a login) holds none of
  the test images, so every pull is relayed unchanged;
- ``rewrite``: through the shim, whose registry holds every test image, so
  every pull is rewritten to it.

In every mode containerd's registry hosts config sends the public registries
the test images are named on to a sandbox registry that holds the stand-ins
(:mod:`dev.critest_images`), as a node with mirrors would; containerd also
pulls its pause image from there itself.

Blocking and standard library only, plus the shim's test support; each run
gets a fresh node and is cleaned up whatever happens.
"""

import collections
import dataclasses
import json
import os
import subprocess
import time

from dev import critest_images, node
from tests import e2e_support

CRITEST = os.path.join(node.TOOLS_BIN, "critest")
MODES = ("direct", "relay", "rewrite")
#: The runtimes, by label: (binary, what make tools / apt installs it).
RUNTIMES = collections.OrderedDict([
    ("containerd 1.6", node.DEBIAN_CONTAINERD),
    ("containerd 2.4", node.CONTAINERD2),
])
#: The shim's registry login in the relay and rewrite modes.
SHIM_LOGIN = ("conformance", "conformance-pw")

#: Specs left out of every run, as ginkgo --skip regular expressions, each
#: with its reason.  (critest itself leaves out its benchmarks; the NRI
#: specs skip themselves without --nri-socket.)
SKIPPED = {}
#: ginkgo's seed: the same spec order in every run, so that runs compare
#: spec for spec without order effects.
SEED = 1
#: Attempts per spec, in every mode alike.  Some specs race the machine, not
#: the runtime: "Container OOM ... OOMKilled" gives a container 60 s to fill
#: its memory and timed out once on a loaded machine, in one mode and not in
#: another.  A second attempt absorbs that; a defect in the shim fails both.
FLAKE_ATTEMPTS = 2
#: How long one critest run may take before it is killed.
RUN_TIMEOUT = 30 * 60


@dataclasses.dataclass
class Result:
    """
    One critest run.

    :ivar runtime: e.g. ``containerd 1.6``.
    :ivar version: the runtime's version string.
    :ivar mode: one of L{MODES}.
    :ivar states: ``{spec name: "passed" | "failed" | "skipped" | ...}``.
    :ivar failures: ``{spec name: first line of its failure}``.
    :ivar duration: seconds critest ran.
    :ivar status: critest's exit status.
    :ivar log: the path of critest's output.
    """

    runtime: str
    version: str
    mode: str
    states: dict
    failures: dict
    duration: float
    status: int
    log: str

    def count(self, state):
        return sum(1 for s in self.states.values() if s == state)

    @property
    def passed(self):
        return self.count("passed")

    @property
    def skipped(self):
        return self.count("skipped") + self.count("pending")

    @property
    def failed(self):
        return len(self.states) - self.passed - self.skipped

    def summary(self):
        return f"{self.passed} / {self.failed} / {self.skipped}"


def skip_reason(binary=node.DEBIAN_CONTAINERD):
    """
    :return: why critest cannot run on a node with the containerd
        ``binary`` here, or ``None``.
    """
    reason = e2e_support.skip_reason() or node.skip_reason(binary)
    if reason is None and not os.path.exists(CRITEST):
        reason = f"no {CRITEST} (make tools)"
    return reason or critest_images.skip_reason()


_images = None


def _stand_ins():
    global _images
    if _images is None:
        _images = critest_images.stand_ins()
    return _images


def parse_report(path):
    """
    :return: ``(states, failures)`` from a ginkgo JSON report: every ``It``,
        named by its containers' and its own text.
    """
    with open(path, encoding="utf-8") as f:
        reports = json.load(f)
    states, failures = {}, {}
    for report in reports:
        for spec in report.get("SpecReports") or ():
            if spec.get("LeafNodeType") != "It":
                continue
            name = " ".join(list(spec.get("ContainerHierarchyTexts") or ())
                            + [spec["LeafNodeText"]])
            states[name] = spec["State"]
            if spec["State"] not in ("passed", "skipped", "pending"):
                failures[name] = _reason((spec.get("Failure") or {}).get("Message", ""),
                                         spec["State"])
    return states, failures


def _reason(message, state):
    """
    :return: one line saying why a spec failed: the runtime's error when
        the message quotes one, else the message's first two lines.
    """
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    for line in lines:
        if line.startswith("rpc error:"):
            return f"{lines[0]}: {line}"
    return " ".join(lines[:2]) or state


def run_critest(endpoint, report_dir, name, focus=(), skip=()):
    """
    Run critest against ``endpoint`` (``unix://...``), serially.

    :return: ``(status, seconds, log path, report path)``.
    """
    os.makedirs(report_dir, exist_ok=True)
    log_path = os.path.join(report_dir, name + ".log")
    report_path = os.path.join(report_dir, name + ".json")
    command = [CRITEST, "--runtime-endpoint", endpoint, "--image-endpoint", endpoint,
               "--ginkgo.no-color", "--ginkgo.json-report", report_path,
               f"--ginkgo.seed={SEED}", f"--ginkgo.flake-attempts={FLAKE_ATTEMPTS}"]
    for pattern in focus:
        command += ["--ginkgo.focus", pattern]
    for pattern in list(SKIPPED) + list(skip):
        command += ["--ginkgo.skip", pattern]
    # No proxy for the pods' addresses, and a scratch HOME.
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["HOME"] = report_dir
    started = time.monotonic()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            node.sandbox.dying_with_parent(command), stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT, cwd=report_dir, env=env,
            start_new_session=True)
        try:
            status = process.wait(RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            node.sandbox.terminate(process)
            status = process.returncode
    return status, time.monotonic() - started, log_path, report_path


def run(runtime, mode, report_dir, focus=(), skip=()):
    """
    One critest run on a fresh node.

    :param runtime: a key of L{RUNTIMES}.
    :param mode: one of L{MODES}.
    :param report_dir: where critest's log and report go (kept).
    :return: the L{Result}.
    """
    binary = RUNTIMES[runtime]
    shim_node = e2e_support.ShimNode(registries=(None, SHIM_LOGIN))
    try:
        containerd = node.NodeContainerd(
            os.path.join(shim_node.sandbox.directory, "c"), binary=binary)
        shim_node.sandbox.containerd = containerd
        shim_node.start_sandbox()
        mirror, private = shim_node.sandbox.registries
        critest_images.push(mirror, _stand_ins())
        for host in critest_images.REGISTRY_HOSTS:
            containerd.mirror(host, mirror.url)
        endpoint = containerd.address
        if mode != "direct":
            if mode == "rewrite":
                critest_images.push(private, _stand_ins())
            shim_node.write_config("\n".join([
                f"shim: {shim_node.socket}",
                f"cri: {containerd.socket}",
                f"address: {private.url}",
                "auth: {}:{}".format(*SHIM_LOGIN),
                f"admin: {shim_node.admin}",
                "",
            ]))
            shim_node.start_shim()
            endpoint = "unix://" + shim_node.socket
        name = f"{runtime.replace(' ', '-')}-{mode}"
        status, duration, log, report = run_critest(endpoint, report_dir, name, focus, skip)
        if mode != "direct":
            with open(os.path.join(report_dir, name + ".shim.log"), "w") as f:
                f.write(shim_node.shim_log())
        states, failures = parse_report(report) if os.path.exists(report) else ({}, {})
        return Result(runtime, containerd.version, mode, states, failures, duration,
                      status, log)
    finally:
        shim_node.cleanup()


def table(results):
    """
    :return: the Markdown table of ``results``: passed / failed / skipped and
        the duration of each run.
    """
    lines = ["| runtime | mode | passed / failed / skipped | duration |",
             "|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r.runtime} ({r.version}) | {r.mode} | {r.summary()} "
                     f"| {r.duration:.0f} s |")
    return "\n".join(lines)


def failure_reasons(result, limit=200):
    """
    :return: lines ``spec: reason``, one per failed spec.
    """
    return [f"- {name}: {reason[:limit]}" for name, reason in sorted(result.failures.items())]
