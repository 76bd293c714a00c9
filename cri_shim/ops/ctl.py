# -*- test-case-name: tests.ops.test_ctl, tests.ops.test_admin -*-
"""
C{image-cri-shim-ctl}: ask a running shim, over its admin endpoint, why it
rewrites an image the way it does, how its registries are, or to flush its
cache or reload its config.  Standard library only (nothing else of the shim
either), so that it still answers when the shim's dependencies are broken.
"""

import argparse
import http.client
import json
import re
import socket
import sys
from urllib.parse import urlencode

# The config's defaults (cri_shim.model.config), kept equal by the tests.
DEFAULT_CONFIG_PATH = "/etc/image-cri-shim.yaml"
DEFAULT_ADMIN_SOCKET = "/run/image-cri-shim/admin.sock"

_ADMIN_LINE = re.compile(r"^admin:(?:[ \t]+(.*?))?[ \t]*$", re.MULTILINE)


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        http.client.HTTPConnection.__init__(self, "localhost", timeout=timeout)
        self._path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


class AdminError(Exception):
    """
    The shim could not be asked, or said no.
    """


def ask(address, method, path, timeout=30.0):
    """
    :param address: the admin endpoint: a socket path or C{host:port}.
    :return: the answer's body, decoded from JSON when it is JSON.
    :raise AdminError: when the shim cannot be reached or answers an error.
    """
    if address.startswith("/"):
        connection = _UnixConnection(address, timeout)
    else:
        host, _, port = address.rpartition(":")
        connection = http.client.HTTPConnection(host.strip("[]"), int(port), timeout=timeout)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        body = response.read()
    except OSError as e:
        raise AdminError("cannot reach the shim's admin endpoint {} ({})".format(
            address, e.strerror or e))
    finally:
        connection.close()
    text = body.decode("utf-8", "replace")
    if response.status != 200:
        raise AdminError("the shim answered {}: {}".format(response.status, text.strip()))
    if response.getheader("content-type", "").startswith("application/json"):
        return json.loads(text)
    return text


def admin_address(config_path):
    """
    The admin endpoint a config file names, read from its top-level
    C{admin:} line without a YAML parser: a plain or quoted scalar on that
    line, then a comment.  The shim's schema accepts an absolute socket path
    or C{host:port} there; anything else (none, C{false}, an unreadable file)
    means the default.

    :return: the socket path or C{host:port}.
    """
    try:
        with open(config_path, encoding="utf-8", errors="replace") as f:
            found = _ADMIN_LINE.findall(f.read())
    except OSError:
        return DEFAULT_ADMIN_SOCKET
    value = found[-1].strip() if found else ""  # YAML keeps a key's last value
    if value[:1] in ("'", '"'):
        end = value.find(value[0], 1)
        value = value[1:end].strip() if end > 0 else ""
    else:
        value = re.split(r"\s#", value, 1)[0].strip()
    if value.startswith("/"):
        return value
    host, _, port = value.rpartition(":")
    if host and port.isdigit() and 0 < int(port) < 65536:
        return value
    return DEFAULT_ADMIN_SOCKET


def _explain(answer):
    lines = ["image      {} ({})".format(answer["image"], answer["normalized"])]
    pod = answer.get("pod")
    lines.append("pod        " + ("namespace {} labels {}".format(
        pod["namespace"] or "(any)", ",".join("{}={}".format(*item) for item in sorted(
            pod["labels"].items())) or "(none)") if pod else "none (as crictl or a pre-pull)"))
    for rule in answer.get("rules", ()):
        lines.append("rule       {:<32} {} namespaces {} podSelector {}".format(
            rule["registry"], "matches " if rule["matches"] else "no match",
            ",".join(rule["namespaces"] or ["(any)"]), rule["podSelector"] or "(any)"))
    lines.append("candidates (in the order they are asked):")
    for candidate in answer["candidates"] or [{"registry": "none configured"}]:
        lines.append("  {:<32} priority {:<6} {:<8} {}".format(
            candidate["registry"], candidate.get("priority", ""), candidate.get("health", ""),
            candidate.get("name", "")))
    cached = answer["cached"]
    lines.append("cache      " + ("{} via {} ({})".format(cached["name"], cached["registry"],
                                                         cached["source"])
                                  if cached else "no entry"))
    decision = answer["decision"]
    lines.append("decision   {} {}".format(
        "pull " + decision["name"] if decision["moved"] else "keep " + decision["name"],
        "from {}".format(decision["registry"]) if decision["registry"] else ""))
    lines.append("           because: {}; asked: {}".format(
        decision["source"], ", ".join(decision["asked"]) or "none"))
    lines.append("credentials " + decision["credentials"])
    return "\n".join(lines)


def _explain_query(arguments):
    """
    :return: the query of C{/explain}: the image, and the pod's namespace and
        labels when given.
    """
    if arguments.command != "explain":
        return []
    query = [("image", arguments.image)]
    if arguments.namespace:
        query.append(("namespace", arguments.namespace))
    return query + [("label", label) for label in arguments.label]


def _registries(rows):
    lines = ["{:<32} {:<9} {:<8} {:<8} {}".format("REGISTRY", "PRIORITY", "STATE", "CHECK",
                                                  "LOGIN / REASON")]
    for row in rows:
        check = "" if row["check_seconds"] is None else "{:.0f}ms".format(
            row["check_seconds"] * 1000)
        lines.append("{:<32} {:<9} {:<8} {:<8} {} / {}".format(
            row["registry"] + (" *" if row["offline"] else ""), row["priority"], row["state"],
            check, row["login"], row["reason"]))
    lines.append("(* the offline registry)")
    return "\n".join(lines)


def main(argv=None):
    """
    The command line.

    :return: the exit status.
    """
    parser = argparse.ArgumentParser(
        prog="image-cri-shim-ctl", description="Ask a running image-cri-shim.")
    parser.add_argument("--admin", help="the admin endpoint (socket path or host:port); "
                        "default: from --config")
    parser.add_argument("--config", default=DEFAULT_CONFIG_PATH,
                        help="the shim's config file, to find the admin endpoint")
    parser.add_argument("--json", action="store_true", help="print the raw JSON answer")
    commands = parser.add_subparsers(dest="command", required=True)
    explain = commands.add_parser("explain", help="how an image would be pulled, and why")
    explain.add_argument("image")
    explain.add_argument("--namespace", default="", help="as for a pod in this namespace")
    explain.add_argument("--label", action="append", default=[], metavar="KEY=VALUE",
                         help="as for a pod with this label (repeat for more)")
    commands.add_parser("registries", help="the registries, their health and login")
    cache = commands.add_parser("cache", help="the rewrite cache")
    cache.add_argument("action", choices=["flush"])
    commands.add_parser("reload", help="re-read the config file now")
    arguments = parser.parse_args(argv)
    address = arguments.admin or admin_address(arguments.config)
    requests = {
        "explain": ("GET", "/explain?" + urlencode(_explain_query(arguments)), _explain),
        "registries": ("GET", "/registries", _registries),
        "cache": ("POST", "/cache/flush",
                  lambda answer: "flushed {} cached decisions".format(answer["flushed"])),
        "reload": ("POST", "/reload", lambda answer: "reloaded" if answer["reloaded"]
                   else "the config file is unchanged (or invalid: see the shim's log)"),
    }
    method, path, show = requests[arguments.command]
    try:
        answer = ask(address, method, path)
    except AdminError as e:
        print("image-cri-shim-ctl: {}".format(e), file=sys.stderr)
        return 1
    print(json.dumps(answer, indent=2) if arguments.json else show(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
