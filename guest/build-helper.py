#!/usr/bin/env python3
"""Helpers for scripts/build-guests that are awkward in bash.

Subcommands:
  modules MODDIR NAME...   print "name relative/path.ko" lines for NAME and its dependencies, in load order
  json ARGS...             write guests.json (see build-guests for the arguments)
"""

import json
import os
import sys


def modinfo(path):
    """Returns (name, [dependencies]) read from the .modinfo strings of a .ko file."""
    with open(path, "rb") as f:
        data = f.read()
    name, deps = None, []
    for item in data.split(b"\0"):
        if item.startswith(b"name=") and name is None:
            name = item[5:].decode()
        elif item.startswith(b"depends="):
            deps = [d for d in item[8:].decode().split(",") if d]
    if name is None:
        name = os.path.basename(path)[:-3].replace("-", "_")
    return name, deps


def modules(moddir, wanted):
    """Resolves module dependencies and prints them in a valid load order."""
    index = {}
    for root, _dirs, files in os.walk(moddir):
        for fn in files:
            if fn.endswith(".ko"):
                index[fn[:-3].replace("-", "_")] = os.path.join(root, fn)
    order, seen = [], set()

    def visit(name, chain):
        key = name.replace("-", "_")
        if key in seen:
            return
        if key in chain:
            sys.exit(f"build-helper: module dependency cycle at {key}")
        if key not in index:
            sys.exit(f"build-helper: kernel module {key} not found under {moddir}")
        real, deps = modinfo(index[key])
        for d in deps:
            visit(d, chain + [key])
        seen.add(key)
        order.append((real, os.path.relpath(index[key], moddir)))

    for w in wanted:
        visit(w, [])
    for real, rel in order:
        print(real, rel)


def write_json(out, kernel_pkg, kernel_release, cmdline, build_id, pkgfile, rolesfile, toolsfile):
    """Writes guests.json from the resolved packages, the role table and the tool table."""
    packages = {}
    with open(pkgfile) as f:
        for line in f:
            if line.strip():
                name, version = line.split()
                packages[name] = version
    meta = {"gateway": None, "dns": None, "domain": None, "prefix": None}
    roles = {}
    with open(rolesfile) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            fields = line.split()
            if fields[0] == "network":
                _, meta["gateway"], meta["dns"], meta["domain"], meta["prefix"] = fields
                continue
            role, hostname, ip, mac = fields
            roles[role] = {
                "hostname": hostname,
                "fqdn": f"{hostname}.{meta['domain']}",
                "ip": ip,
                "prefix": int(meta["prefix"]),
                "mac": mac,
                "disk": f"{role}.qcow2",
            }
    roles["db"]["database"] = "/var/lib/erp/erp.db"
    roles["db"]["access_log"] = "/var/log/erp-db/access.log"
    roles["app"]["access_log"] = "/var/log/erp-web/access.log"
    roles["app"]["version_file"] = "/etc/erp-web/version"
    tools = {}
    with open(toolsfile) as f:
        for line in f:
            if line.strip():
                name, path = line.split()
                tools[name] = path
    doc = {
        "build_id": build_id,
        "kernel": kernel_pkg,
        "kernel_release": kernel_release,
        "vmlinuz": "vmlinuz",
        "initrd": "initrd.img",
        "cmdline": cmdline,
        "root_label": "rootfs",
        "disk_format": "qcow2",
        "disk_virtual_size": 256 * 1024 * 1024,
        "packages": packages,
        "roles": roles,
        "gateway": meta["gateway"],
        "dns": meta["dns"],
        "domain": meta["domain"],
        "agent_channel": "org.qemu.guest_agent.0",
        "tools": tools,
    }
    with open(out, "w") as f:
        json.dump(doc, f, indent=2, sort_keys=False)
        f.write("\n")


def main(argv):
    if len(argv) >= 3 and argv[1] == "modules":
        modules(argv[2], argv[3:])
    elif len(argv) == 10 and argv[1] == "json":
        write_json(*argv[2:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
