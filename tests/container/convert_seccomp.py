#!/usr/bin/python3
"""Converts moby's default seccomp profile into the OCI runtime-spec `linux.seccomp` object
that Docker hands to runc for a container with Docker's default capabilities on x86_64.

Input: moby-default-seccomp.json, a byte-for-byte copy of Docker's default profile, taken
from https://github.com/moby/moby at commit b985e2313a8676e18072b442911fc8f64f17d440, file
vendor/github.com/moby/profiles/seccomp/default.json (the module
github.com/moby/profiles/seccomp v0.2.3; until moby commit a600da91f4 it lived in moby/moby
as profiles/seccomp/default.json). sha256
536529b665dd0972c37bfb569f5d4ac8a53592e7b00752bc39ff063ca9864c74.

Output: docker-default-seccomp.json, used by oci.py. Regenerate it with

    python3 tests/container/convert_seccomp.py            # writes the output next to this file
    python3 tests/container/convert_seccomp.py --check    # exit 1 if the committed file differs

The conversion is setupSeccomp() of moby's seccomp_linux.go (same module):
  - `archMap`: the entry of the native architecture (SCMP_ARCH_X86_64 for GOARCH amd64)
    becomes `architectures` with its sub-architectures; the other entries are dropped;
  - each rule: a deprecated `name` becomes `names`; the rule is dropped when `excludes`
    names this architecture, names ANY capability in the bounding set, or has a minKernel the
    kernel reaches; and dropped unless `includes` names this architecture, names only
    capabilities in the bounding set, and has a minKernel the kernel reaches;
  - moby-only fields (`archMap`, `comment`, `includes`, `excludes`, `name`) are dropped.
Architecture names in includes/excludes are libseccomp's ("amd64", "x32", "x86", ...); moby
compares them with the daemon's own, which is "amd64" on x86_64. Kernel versions compare
"major.minor" only, as moby's kernelGreaterEqualThan does; the default is the running
kernel, as in dockerd (the profile's only minKernel today is 4.8).
"""

import argparse
import json
import os
import platform
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# Docker's default capability set (moby daemon/pkg/oci/caps/defaults.go).
DOCKER_DEFAULT_CAPS = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
]

# moby's nativeToSeccomp for the architectures this converter is asked about.
NATIVE_TO_SECCOMP = {
    "x86": "SCMP_ARCH_X86",
    "amd64": "SCMP_ARCH_X86_64",
    "arm": "SCMP_ARCH_ARM",
    "arm64": "SCMP_ARCH_AARCH64",
    "riscv64": "SCMP_ARCH_RISCV64",
    "s390x": "SCMP_ARCH_S390X",
}


def parse_kernel(text):
    """'6.18.44-fc' -> (6, 18), like moby's parseRelease (Sscanf "%d.%d")."""
    m = re.match(r"(\d+)\.(\d+)", text)
    if not m:
        raise ValueError(f"cannot parse kernel version {text!r} (expected 'major.minor...')")
    return int(m.group(1)), int(m.group(2))


def convert(profile, caps, arch, kernel):
    if not profile.get("defaultAction") and not profile.get("syscalls"):
        raise ValueError("the profile has no defaultAction and no syscalls (seccomp disabled)")
    if profile.get("architectures") and profile.get("archMap"):
        raise ValueError("both 'architectures' and 'archMap' are in the profile")

    out = {"defaultAction": profile["defaultAction"]}
    if "defaultErrnoRet" in profile:
        out["defaultErrnoRet"] = profile["defaultErrnoRet"]
    architectures = list(profile.get("architectures") or [])
    native = NATIVE_TO_SECCOMP.get(arch)
    for entry in profile.get("archMap") or []:
        if entry["architecture"] == native:
            architectures.append(entry["architecture"])
            architectures.extend(entry.get("subArchitectures") or [])
            break
    if architectures:
        out["architectures"] = architectures
    for key in ("flags", "listenerPath", "listenerMetadata"):
        if profile.get(key):
            out[key] = profile[key]

    def reached(min_kernel):
        return kernel >= parse_kernel(min_kernel)

    syscalls = []
    for rule in profile["syscalls"]:
        names = rule.get("names") or []
        if rule.get("name"):
            if names:
                raise ValueError(f"rule has both 'name' and 'names': {rule}")
            names = [rule["name"]]
        exc = rule.get("excludes") or {}
        if arch in (exc.get("arches") or []):
            continue
        if any(c in caps for c in exc.get("caps") or []):
            continue
        if exc.get("minKernel") and reached(exc["minKernel"]):
            continue
        inc = rule.get("includes") or {}
        if inc.get("arches") and arch not in inc["arches"]:
            continue
        if any(c not in caps for c in inc.get("caps") or []):
            continue
        if inc.get("minKernel") and not reached(inc["minKernel"]):
            continue
        # runtime-spec LinuxSyscall, in the field order Go marshals it.
        s = {"names": names, "action": rule["action"]}
        if rule.get("errnoRet") is not None:
            s["errnoRet"] = rule["errnoRet"]
        if rule.get("args"):
            s["args"] = []
            for a in rule["args"]:
                arg = {"index": a["index"], "value": a["value"]}
                if a.get("valueTwo"):
                    arg["valueTwo"] = a["valueTwo"]
                arg["op"] = a["op"]
                s["args"].append(arg)
        syscalls.append(s)
    out["syscalls"] = syscalls
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--input", default=os.path.join(HERE, "moby-default-seccomp.json"))
    ap.add_argument("--output", default=os.path.join(HERE, "docker-default-seccomp.json"))
    ap.add_argument("--arch", default="amd64", help="moby/libseccomp architecture name")
    ap.add_argument("--kernel", default=platform.release(),
                    help="kernel version the minKernel conditions compare with (default: running)")
    ap.add_argument("--caps", default=",".join(DOCKER_DEFAULT_CAPS),
                    help="comma-separated bounding set (default: Docker's)")
    ap.add_argument("--check", action="store_true",
                    help="do not write; exit 1 if --output differs from a fresh conversion")
    args = ap.parse_args()

    with open(args.input, encoding="utf-8") as f:
        profile = json.load(f)
    caps = [c.strip() for c in args.caps.split(",") if c.strip()]
    converted = convert(profile, caps, args.arch, parse_kernel(args.kernel))
    text = json.dumps(converted, indent=2) + "\n"
    if args.check:
        try:
            with open(args.output, encoding="utf-8") as f:
                current = f.read()
        except FileNotFoundError:
            current = None
        if current != text:
            print(f"{args.output} is not the conversion of {args.input}; "
                  f"regenerate it with: python3 {os.path.relpath(__file__)}", file=sys.stderr)
            return 1
        print(f"{args.output}: up to date")
        return 0
    with open(args.output, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {args.output}: {len(profile['syscalls'])} moby rules -> "
          f"{len(converted['syscalls'])} OCI rules")
    return 0


if __name__ == "__main__":
    sys.exit(main())
