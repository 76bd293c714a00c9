# -*- test-case-name: tests.ops.test_dryrun -*-
"""
C{--dry-run}: check a config without serving: every config problem at once,
whether the runtime's socket answers, and for each registry whether it is
reachable, its TLS verifies and its login is accepted; then the effective
config with secrets redacted.  Exit status 0 when all is well, else 1.
"""

import grpc
import yaml
from treq.client import HTTPClient
from twisted.internet.defer import DeferredList, inlineCallbacks, returnValue
from twisted.internet.threads import deferToThreadPool

from cri_shim.model import config as configuration, schema
from cri_shim.serve.methods import API
from cri_shim.registries.probe import ProbeError, Prober
from cri_shim.registries.httputil import pool
from cri_shim.registries.tls import agent, registry_policy
from cri_shim.snapshot import SnapshotHolder
from cri_shim.serve.upstream import Upstream

#: How long each check may take.
CHECK_TIMEOUT = 5.0


@inlineCallbacks
def dry_run(reactor, path, text, out, runtime_socket):
    """
    Check the config C{text} read from C{path}, writing a report to C{out}.

    :param runtime_socket: C{runtime_socket(config)} as in L{cri_shim.tap}:
        the runtime's socket or an exception saying why there is none.
    :return: a Deferred firing with the exit status.
    """
    try:
        config, notices = schema.load(text, source=path)
    except configuration.ConfigError as e:
        out.write("config {}: INVALID\n".format(path))
        for problem in e.problems:
            out.write("  {}\n".format(problem))
        returnValue(1)
    good = True
    out.write("config {}: valid\n".format(path))
    for notice in notices:
        out.write("  {}: {}\n".format(notice.level, notice.message))
    try:
        socket_path = runtime_socket(config)
        answer = yield _runtime(reactor, socket_path)
    except Exception as e:
        answer, good = "FAILED: {}".format(e), False
    out.write("runtime: {}\n".format(answer))
    good = "FAILED" not in answer and good
    holder = SnapshotHolder(config, reactor.seconds)
    http = HTTPClient(agent(reactor, registry_policy(holder, reactor), pool(reactor, False)))
    prober = Prober(http, reactor)
    checks = [prober.check_login(registry, CHECK_TIMEOUT) for registry in config.registries]
    results = yield DeferredList(checks, consumeErrors=True)
    if not config.registries:
        out.write("registries: none configured (every image is pulled as named)\n")
    for registry, (ok, result) in zip(config.registries, results):
        if not ok:
            good = False
            reason = (result.value.reason if result.check(ProbeError)
                      else result.getErrorMessage())
            result = "FAILED: " + reason
        out.write("registry {} ({}, priority {}): {}\n".format(
            registry.name, registry.address.url, registry.priority, result))
    out.write("effective configuration (secrets redacted):\n")
    out.write(yaml.safe_dump(configuration.redacted(config), sort_keys=False,
                             default_flow_style=False))
    out.write("dry run: {}\n".format("OK" if good else "PROBLEMS FOUND"))
    returnValue(0 if good else 1)


def _runtime(reactor, socket_path):
    """
    :return: a Deferred firing with a description of the runtime answering
        on C{socket_path} (its C{Version}).
    """

    def ask():
        upstream = Upstream(socket_path)
        try:
            raw = upstream.unary("/runtime.v1.RuntimeService/Version")(
                b"", timeout=CHECK_TIMEOUT)
        except grpc.RpcError as error:
            return "FAILED: {} answered {}: {}".format(socket_path, error.code().name,
                                                        error.details())
        finally:
            upstream.close()
        version = API["runtime.v1"].VersionResponse.FromString(raw)
        return "{} {} on {} (CRI {})".format(version.runtime_name, version.runtime_version,
                                              socket_path, version.runtime_api_version)

    return deferToThreadPool(reactor, reactor.getThreadPool(), ask)
