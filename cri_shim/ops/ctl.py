# -*- test-case-name: tests.ops.test_admin -*-
"""
C{image-cri-shim-ctl}: ask a running shim, over its admin endpoint, why it
rewrites an image the way it does, how its registries are, or to flush its
cache or reload its config.  Standard library only.
"""

import argparse
import http.client
import json
import socket
import sys
from urllib.parse import quote

from cri_shim.model import config as configuration, schema


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
    :return: the admin endpoint a config file names (the default one when
        the file cannot be read or names none).
    """
    try:
        with open(config_path, "rb") as f:
            loaded, _ = schema.load(f.read(configuration.MAX_CONFIG_BYTES + 1))
    except (OSError, configuration.ConfigError):
        return configuration.DEFAULT_ADMIN_SOCKET
    return loaded.admin or configuration.DEFAULT_ADMIN_SOCKET


def _explain(answer):
    lines = ["image      {} ({})".format(answer["image"], answer["normalized"]),
             "candidates (in the order they are asked):"]
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
    parser.add_argument("--config", default=configuration.DEFAULT_CONFIG_PATH,
                        help="the shim's config file, to find the admin endpoint")
    parser.add_argument("--json", action="store_true", help="print the raw JSON answer")
    commands = parser.add_subparsers(dest="command", required=True)
    explain = commands.add_parser("explain", help="how an image would be pulled, and why")
    explain.add_argument("image")
    commands.add_parser("registries", help="the registries, their health and login")
    cache = commands.add_parser("cache", help="the rewrite cache")
    cache.add_argument("action", choices=["flush"])
    commands.add_parser("reload", help="re-read the config file now")
    arguments = parser.parse_args(argv)
    address = arguments.admin or admin_address(arguments.config)
    requests = {
        "explain": ("GET", "/explain?image=" + quote(getattr(arguments, "image", ""), safe=""),
                    _explain),
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
