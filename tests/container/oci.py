#!/usr/bin/python3
"""Runs one command in a cell: a real OCI container made like `docker run`'s default, or an
unprivileged uid on the host. Python 3 standard library only.

Cells:
  root       uid 0 in a runc container with Docker's defaults (see README.md here)
  user       uid/gid 1000 ("app") in the same container
  host-user  not a container: uid/gid 1000 on the host through setpriv, no groups, a
             cleared environment

    result = oci.run("root", ["/usr/bin/id"], ro_binds=[src, build])
    result.returncode, result.stdout, result.stderr

A container gets a fresh bundle in a temporary folder, its own network namespace (made with
`ip netns add` so that `lo` can be brought up from the host, as dockerd does), a unique
container id, a private runc state folder (`runc --root`) and a relative cgroup path; all of
them are removed afterwards, whatever happened. By hand:

    python3 tests/container/oci.py --cell user --bind "$PWD" -- /usr/bin/id
"""

import argparse
import errno
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
SECCOMP_PROFILE = os.path.join(HERE, "docker-default-seccomp.json")
CELLS = ("root", "user", "host-user")
CONTAINER_CELLS = ("root", "user")

APP_UID = 1000
APP_GID = 1000
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Docker's default capability set (moby daemon/pkg/oci/caps/defaults.go).
DOCKER_CAPS = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
]

# moby daemon/pkg/oci/defaults.go: defaultLinuxMaskedPaths and ReadonlyPaths.
DOCKER_MASKED_PATHS = [
    "/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore", "/proc/keys",
    "/proc/latency_stats", "/proc/sched_debug", "/proc/scsi", "/proc/timer_list",
    "/proc/timer_stats", "/sys/devices/virtual/powercap", "/sys/firmware",
]
DOCKER_READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]


def _dev(major, minor, allow=True):
    return {"allow": allow, "type": "c", "major": major, "minor": minor, "access": "rwm"}


# moby's default device cgroup rules (runc appends its own default devices after them).
DOCKER_DEVICE_RULES = [
    {"allow": False, "access": "rwm"},
    _dev(1, 5), _dev(1, 3), _dev(1, 9), _dev(1, 8), _dev(5, 0), _dev(5, 1),
    _dev(10, 229, allow=False),
]

# The outer guard around everything a cell runs (the sandbox has its own, smaller limits).
DEFAULT_PIDS_LIMIT = 512
DEFAULT_MEMORY_LIMIT = 2 << 30
# Docker's containers get RLIMIT_NOFILE 1048576, as the spec's rlimit and the limit the
# containerd shim already runs with (LimitNOFILE in containerd's unit file). runc sets the
# spec's rlimits after the container lost CAP_SYS_RESOURCE, so it cannot raise the hard
# limit above the one it inherits, and a host without CAP_SYS_RESOURCE (like the machine
# this was written on: hard limit 20000) cannot raise it for runc either. So the container
# asks for Docker's value or the hard limit runc inherits, whichever is lower.
NOFILE = 1048576


def nofile_limit():
    """The RLIMIT_NOFILE (soft = hard) the container gets; see NOFILE."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return NOFILE if hard == resource.RLIM_INFINITY else min(NOFILE, hard)


def _raise_nofile():
    # In the child, before it execs runc: soft = hard, like containerd's shim.
    resource.setrlimit(resource.RLIMIT_NOFILE, (nofile_limit(), nofile_limit()))


class Skip(Exception):
    """The cell cannot run on this host; the message says why."""


class CellError(Exception):
    """Setting the cell up or tearing it down failed (not the command's own failure)."""


class Result:
    def __init__(self, returncode, stdout, stderr, timed_out=False, guard=None):
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.timed_out = timed_out
        self.guard = guard  # host-user: how the outer limits were applied

    def __repr__(self):
        return f"Result(returncode={self.returncode}, timed_out={self.timed_out})"


def _which(name, extra=("/usr/sbin", "/sbin", "/usr/bin")):
    found = shutil.which(name)
    if found:
        return found
    for d in extra:
        p = os.path.join(d, name)
        if os.access(p, os.X_OK):
            return p
    return None


def _run_quiet(argv, what):
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if r.returncode != 0:
        raise CellError(f"{what}: `{' '.join(argv)}` exited {r.returncode}: {r.stderr.strip()}")
    return r


# ---------------------------------------------------------------------------------------------
# Pre-flight


def preflight(cell):
    """Raises Skip with the reason when the cell cannot run here."""
    if cell not in CELLS:
        raise ValueError(f"unknown cell {cell!r} (one of {', '.join(CELLS)})")
    if os.geteuid() != 0:
        raise Skip(f"cell {cell} needs root (to run runc, or to switch to uid {APP_UID}); "
                   f"running as uid {os.geteuid()}")
    if cell == "host-user":
        if not _which("setpriv"):
            raise Skip("setpriv (util-linux) is missing")
        return
    if not _which("runc"):
        raise Skip("runc is missing (apt-get install runc, or `make deps`)")
    if not _which("ip"):
        raise Skip("ip (iproute2) is missing; it brings the container's loopback up")
    for ns in ("pid", "ipc", "uts", "mnt", "net"):
        if not os.path.exists(f"/proc/self/ns/{ns}"):
            raise Skip(f"the kernel has no {ns} namespaces (/proc/self/ns/{ns} is missing)")
    if not os.path.exists("/proc/self/status") or "Seccomp:" not in open("/proc/self/status").read():
        raise Skip("the kernel has no seccomp")
    if not _cgroup_mounts():
        raise Skip("no cgroup file system is mounted (runc needs one)")
    if not os.path.exists(SECCOMP_PROFILE):
        raise CellError(f"{SECCOMP_PROFILE} is missing; run convert_seccomp.py")


def unreadable_for(uid, gid, paths):
    """The paths uid:gid (no supplementary groups) cannot read and traverse, as [(path, why)]."""
    setpriv = _which("setpriv")
    bad = []
    for p in paths:
        r = subprocess.run(
            [setpriv, f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--",
             "/usr/bin/test", "-r", p, "-a", "(", "!", "-d", p, "-o", "-x", p, ")"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, env={"PATH": PATH})
        if r.returncode != 0:
            bad.append((p, f"uid {uid} cannot read{' or enter' if os.path.isdir(p) else ''} it "
                           f"(every folder above it needs o+x) {r.stderr.strip()}".rstrip()))
    return bad


# ---------------------------------------------------------------------------------------------
# cgroups


def _cgroup_mounts():
    """[(mount point, fs type, super options)] of the cgroup file systems."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, right = line.split(" - ", 1)
            fstype, _source, sopts = right.split()[:3]
            if fstype in ("cgroup", "cgroup2"):
                out.append((left.split()[4], fstype, sopts.split(",")))
    return out


def _own_cgroups():
    """{controller or '' for v2: path} of this process."""
    own = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _id, ctrls, path = line.rstrip("\n").split(":", 2)
            if ctrls == "":
                own[""] = path
            for c in ctrls.split(","):
                own[c] = path
    return own


def _cgroup_dirs(name):
    """Every folder a relative cgroup `name` has (or would have) in the mounted hierarchies."""
    own = _own_cgroups()
    dirs = []
    for mnt, fstype, sopts in _cgroup_mounts():
        if fstype == "cgroup2":
            base = own.get("")
        else:
            keys = [o for o in sopts if o in own]
            base = own.get(keys[0]) if keys else None
        if base is None:
            continue
        dirs.append(os.path.join(mnt, base.lstrip("/"), name))
    return dirs


def _kill_and_remove_cgroup(path):
    """Kills what is left in a cgroup this module made (only processes it started) and removes it."""
    if not os.path.isdir(path):
        return None
    procs = os.path.join(path, "cgroup.procs")
    for _ in range(100):
        try:
            pids = [int(x) for x in open(procs).read().split()]
        except OSError:
            pids = []
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
    for _ in range(50):
        try:
            os.rmdir(path)
            return None
        except FileNotFoundError:
            return None
        except OSError as e:
            if e.errno != errno.EBUSY:
                return f"cannot remove cgroup {path}: {e}"
            time.sleep(0.1)
    return f"cannot remove cgroup {path}: still busy"


class HostLimits:
    """A cgroup v1 pids + memory group around a host command, or prlimit --nproc without one."""

    def __init__(self, pids, memory):
        self.name = f"sandflow-matrix-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.dirs = []
        self.how = None
        self.pids, self.memory = pids, memory

    def __enter__(self):
        hier = {}
        for mnt, fstype, sopts in _cgroup_mounts():
            if fstype == "cgroup":
                for c in ("pids", "memory"):
                    if c in sopts:
                        hier[c] = mnt
        own = _own_cgroups()
        if "pids" in hier and "memory" in hier and os.access(hier["pids"], os.W_OK):
            try:
                for c, limit_file, value in (("pids", "pids.max", self.pids),
                                             ("memory", "memory.limit_in_bytes", self.memory)):
                    d = os.path.join(hier[c], own.get(c, "/").lstrip("/"), self.name)
                    os.mkdir(d)
                    self.dirs.append(d)
                    with open(os.path.join(d, limit_file), "w") as f:
                        f.write(str(value))
                self.how = f"cgroup v1 {', '.join(self.dirs)} (pids.max {self.pids}, memory {self.memory})"
                return self
            except OSError:
                self.__exit__(None, None, None)
                self.dirs = []
        self.how = f"prlimit --nproc={self.pids} (no writable cgroup v1 pids+memory)"
        return self

    def preexec(self):
        # Runs in the child, as root, before it drops to the unprivileged uid and execs.
        for d in self.dirs:
            with open(os.path.join(d, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))

    def wrap(self, argv):
        if self.dirs:
            return argv
        return [_which("prlimit"), f"--nproc={self.pids}", "--"] + argv

    def kill_all(self):
        for d in self.dirs:
            try:
                for pid in open(os.path.join(d, "cgroup.procs")).read().split():
                    os.kill(int(pid), signal.SIGKILL)
            except (OSError, ValueError):
                pass

    def __exit__(self, *exc):
        errors = [e for e in (_kill_and_remove_cgroup(d) for d in self.dirs) if e]
        if errors and exc[0] is None:
            raise CellError("; ".join(errors))


# ---------------------------------------------------------------------------------------------
# The bundle


def _possible_cpus():
    try:
        text = open("/sys/devices/system/cpu/possible").read().strip()
    except OSError:
        return []
    cpus = []
    for part in text.split(","):
        if "-" in part:
            a, b = part.split("-")
            cpus.extend(range(int(a), int(b) + 1))
        elif part:
            cpus.append(int(part))
    return cpus


def masked_paths():
    paths = list(DOCKER_MASKED_PATHS)
    for cpu in _possible_cpus():
        p = f"/sys/devices/system/cpu/cpu{cpu}/thermal_throttle"
        if os.path.exists(p):
            paths.append(p)
    return paths


def _write(path, text, mode=0o644):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def make_rootfs(rootfs, hostname):
    """A fresh root: the host's /usr (bound read-only by the config), merged-usr links, a
    minimal /etc, empty mount points."""
    os.mkdir(rootfs, 0o755)
    os.chmod(rootfs, 0o755)
    for d in ("usr", "etc", "tmp", "proc", "dev", "sys", "run", "var", "var/tmp", "root",
              "home", "home/app"):
        os.mkdir(os.path.join(rootfs, d), 0o755)
    os.chmod(os.path.join(rootfs, "root"), 0o700)
    os.chmod(os.path.join(rootfs, "var/tmp"), 0o1777)
    os.chmod(os.path.join(rootfs, "tmp"), 0o1777)  # runc gives the tmpfs the mode of its mount point
    os.chown(os.path.join(rootfs, "home/app"), APP_UID, APP_GID)
    for link, target in (("bin", "usr/bin"), ("sbin", "usr/sbin"), ("lib", "usr/lib"),
                         ("lib64", "usr/lib64"), ("lib32", "usr/lib32"), ("libx32", "usr/libx32")):
        if os.path.exists(os.path.join("/", target)):
            os.symlink(target, os.path.join(rootfs, link))
    etc = os.path.join(rootfs, "etc")
    _write(os.path.join(etc, "passwd"),
           "root:x:0:0:root:/root:/bin/sh\n"
           f"app:x:{APP_UID}:{APP_GID}:app:/home/app:/bin/sh\n"
           "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n")
    _write(os.path.join(etc, "group"),
           f"root:x:0:\napp:x:{APP_GID}:\nnogroup:x:65534:\n")
    _write(os.path.join(etc, "hosts"),
           "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
           f"127.0.1.1\t{hostname}\n")
    _write(os.path.join(etc, "hostname"), hostname + "\n")
    _write(os.path.join(etc, "nsswitch.conf"),
           "passwd: files\ngroup: files\nshadow: files\nhosts: files\n")
    _write(os.path.join(etc, "resolv.conf"), "")  # no DNS: the container has loopback only
    # The host's zone, as a link into the bound /usr (Docker images ship their own).
    zone = "/usr/share/zoneinfo/Etc/UTC"
    if os.path.islink("/etc/localtime") and os.readlink("/etc/localtime").startswith("/usr/"):
        zone = os.readlink("/etc/localtime")
    os.symlink(zone, os.path.join(etc, "localtime"))
    # Mount point of /etc/ld.so.cache (bound read-only from the host).
    _write(os.path.join(etc, "ld.so.cache"), "")


def make_config(cell, argv, env, cwd, hostname, netns_path, cgroups_path, ro_binds,
                pids_limit, memory_limit, tmp_bytes):
    with open(SECCOMP_PROFILE) as f:
        seccomp = json.load(f)
    if cell == "root":
        user = {"uid": 0, "gid": 0}
        caps = {"bounding": DOCKER_CAPS, "effective": DOCKER_CAPS, "permitted": DOCKER_CAPS}
        home = "/root"
    else:
        user = {"uid": APP_UID, "gid": APP_GID}
        # What a non-root process of a Docker container ends up with after execve: the
        # bounding set only.
        caps = {"bounding": DOCKER_CAPS, "effective": [], "permitted": [], "inheritable": [],
                "ambient": []}
        home = "/home/app"
    full_env = {"PATH": PATH, "HOSTNAME": hostname, "HOME": home}
    full_env.update(env or {})
    mounts = [
        {"destination": "/proc", "type": "proc", "source": "proc",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["ro", "nosuid", "noexec", "nodev"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        # Docker's /dev/shm is a 64 MiB tmpfs of its own.
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/usr", "type": "bind", "source": "/usr", "options": ["rbind", "ro"]},
        {"destination": "/etc/ld.so.cache", "type": "bind", "source": "/etc/ld.so.cache",
         "options": ["bind", "ro"]},
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "nodev", "mode=1777", f"size={tmp_bytes}"]},
    ]
    # Parents before children (the build folder is often inside the source folder).
    for path in sorted({os.path.realpath(p) for p in ro_binds}, key=lambda p: (p.count("/"), p)):
        mounts.append({"destination": path, "type": "bind", "source": path,
                       "options": ["rbind", "ro"]})
    return {
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": False,
            "user": user,
            "args": list(argv),
            "env": [f"{k}={v}" for k, v in full_env.items()],
            "cwd": cwd or "/",
            "capabilities": caps,
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": nofile_limit(), "soft": nofile_limit()}],
            "noNewPrivileges": False,
        },
        "root": {"path": "rootfs", "readonly": False},
        "hostname": hostname,
        "mounts": mounts,
        "linux": {
            "namespaces": [
                {"type": "pid"},
                {"type": "ipc"},
                {"type": "uts"},
                {"type": "mount"},
                {"type": "network", "path": netns_path},
            ],
            # Docker sets these for a container with a network namespace of its own.
            "sysctl": {"net.ipv4.ip_unprivileged_port_start": "0",
                       "net.ipv4.ping_group_range": "0 2147483647"},
            "cgroupsPath": cgroups_path,
            "resources": {
                "devices": DOCKER_DEVICE_RULES,
                "pids": {"limit": pids_limit},
                "memory": {"limit": memory_limit},
            },
            "maskedPaths": masked_paths(),
            "readonlyPaths": DOCKER_READONLY_PATHS,
            "seccomp": seccomp,
        },
    }


def _mounts_under(path):
    path = os.path.realpath(path).rstrip("/") + "/"
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].replace("\\040", " ")
            if (mp + "/").startswith(path):
                found.append(mp)
    return found


def _remove_tree(path):
    """Removes a bundle, but never through a mount point left under it."""
    if not os.path.exists(path):
        return None
    left = _mounts_under(path)
    if left:
        return f"left {path} in place: mounts remain under it: {', '.join(left)}"
    shutil.rmtree(path, ignore_errors=True)
    return None if not os.path.exists(path) else f"could not remove {path}"


# ---------------------------------------------------------------------------------------------
# Running


def _communicate(proc, input, timeout, on_timeout, after_exit=None):
    """Like Popen.communicate, but the command ends when its first process does: after_exit
    then stops what it left running (which may hold the pipes open)."""
    chunks = {"out": [], "err": []}

    def pump(stream, key):
        for block in iter(lambda: stream.read(65536), b""):
            chunks[key].append(block)

    def feed():
        try:
            if input:
                proc.stdin.write(input)
            proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass

    threads = [threading.Thread(target=pump, args=(proc.stdout, "out"), daemon=True),
               threading.Thread(target=pump, args=(proc.stderr, "err"), daemon=True),
               threading.Thread(target=feed, daemon=True)]
    for t in threads:
        t.start()
    timed_out = False
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        on_timeout()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if after_exit:
        after_exit()
    for t in threads:
        t.join(timeout=30)
    return b"".join(chunks["out"]), b"".join(chunks["err"]), timed_out


def run(cell, argv, env=None, timeout=600, input=None, ro_binds=(), cwd=None,
        pids_limit=DEFAULT_PIDS_LIMIT, memory_limit=DEFAULT_MEMORY_LIMIT, tmp_bytes=1 << 30):
    """Runs argv in the cell and returns Result(returncode, stdout, stderr, timed_out).

    env adds to the cell's base environment (PATH, HOME, HOSTNAME). ro_binds: host folders
    to bind read-only at the same absolute path (containers; on the host they are simply
    there). input: text for stdin. Raises Skip when the cell cannot run here, CellError
    when setting it up or tearing it down fails. A timeout kills everything the command
    started and returns timed_out=True with returncode -9.
    """
    preflight(cell)
    if isinstance(input, str):
        input = input.encode()
    if cell == "host-user":
        return _run_host_user(argv, env, timeout, input, cwd, pids_limit, memory_limit)
    return _run_container(cell, argv, env, timeout, input, ro_binds, cwd, pids_limit,
                          memory_limit, tmp_bytes)


def _decode(b):
    return (b or b"").decode("utf-8", errors="replace")


def _run_host_user(argv, env, timeout, input, cwd, pids_limit, memory_limit):
    home = tempfile.mkdtemp(prefix="sandflow-matrix-home-")
    os.chown(home, APP_UID, APP_GID)
    full_env = {"PATH": PATH, "HOME": home}
    full_env.update(env or {})
    cmd = [_which("setpriv"), f"--reuid={APP_UID}", f"--regid={APP_GID}", "--clear-groups",
           "--inh-caps=-all", "--"] + list(argv)
    try:
        with HostLimits(pids_limit, memory_limit) as limits:
            proc = subprocess.Popen(limits.wrap(cmd), stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    env=full_env, cwd=cwd or home, preexec_fn=limits.preexec,
                                    start_new_session=True)

            def kill():
                limits.kill_all()
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

            # Anything the command left running in the background goes when it ends.
            out, err, timed_out = _communicate(proc, input, timeout, kill, after_exit=kill)
            return Result(-9 if timed_out else proc.returncode, _decode(out), _decode(err),
                          timed_out, guard=limits.how)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _run_container(cell, argv, env, timeout, input, ro_binds, cwd, pids_limit, memory_limit,
                   tmp_bytes):
    runc = _which("runc")
    ip = _which("ip")
    cid = f"sandflow-matrix-{cell}-{os.getpid()}-{uuid.uuid4().hex[:12]}"
    hostname = "sf" + uuid.uuid4().hex[:10]
    netns = cid
    cgroups_path = cid  # relative: under runc's own cgroup in each hierarchy
    bundle = tempfile.mkdtemp(prefix="sandflow-oci-")
    state = tempfile.mkdtemp(prefix="sandflow-runc-state-")
    problems = []
    netns_made = False
    try:
        _run_quiet([ip, "netns", "add", netns], "creating the container's network namespace")
        netns_made = True
        _run_quiet([ip, "-n", netns, "link", "set", "lo", "up"], "bringing its loopback up")
        make_rootfs(os.path.join(bundle, "rootfs"), hostname)
        config = make_config(cell, argv, env, cwd, hostname, f"/run/netns/{netns}", cgroups_path,
                             ro_binds, pids_limit, memory_limit, tmp_bytes)
        with open(os.path.join(bundle, "config.json"), "w") as f:
            json.dump(config, f, indent=2)
        proc = subprocess.Popen([runc, "--root", state, "run", "--bundle", bundle, cid],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True,
                                preexec_fn=_raise_nofile)

        def kill():
            subprocess.run([runc, "--root", state, "kill", "--all", cid, "KILL"],
                           stdin=subprocess.DEVNULL, capture_output=True)

        out, err, timed_out = _communicate(proc, input, timeout, kill)
        return Result(-9 if timed_out else proc.returncode, _decode(out), _decode(err), timed_out)
    finally:
        # `runc run` deletes the container when it ends; this is for the paths where it did not.
        if os.path.isdir(state):
            r = subprocess.run([runc, "--root", state, "delete", "--force", cid],
                               stdin=subprocess.DEVNULL, capture_output=True, text=True)
            if r.returncode != 0 and "does not exist" not in r.stderr:
                problems.append(f"runc delete --force {cid}: {r.stderr.strip()}")
        for d in _cgroup_dirs(cgroups_path):
            e = _kill_and_remove_cgroup(d)
            if e:
                problems.append(e)
        if netns_made:
            r = subprocess.run([ip, "netns", "delete", netns], stdin=subprocess.DEVNULL,
                               capture_output=True, text=True)
            if r.returncode != 0:
                problems.append(f"ip netns delete {netns}: {r.stderr.strip()}")
        for p in (bundle, state):
            e = _remove_tree(p)
            if e:
                problems.append(e)
        if problems and sys.exc_info()[0] is None:
            raise CellError("tearing the container down: " + "; ".join(problems))


def main():
    ap = argparse.ArgumentParser(description="Run one command in a cell (see README.md here).")
    ap.add_argument("--cell", required=True, choices=CELLS)
    ap.add_argument("--bind", action="append", default=[],
                    help="host folder bound read-only at the same path (repeatable)")
    ap.add_argument("--env", action="append", default=[], help="NAME=VALUE (repeatable)")
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("argv", nargs="+")
    a = ap.parse_args()
    env = dict(e.split("=", 1) for e in a.env)
    try:
        r = run(a.cell, a.argv, env=env, timeout=a.timeout, ro_binds=a.bind)
    except Skip as e:
        print(f"skipped: {e}", file=sys.stderr)
        return 77
    sys.stdout.write(r.stdout)
    sys.stderr.write(r.stderr)
    if r.timed_out:
        print(f"timed out after {a.timeout}s", file=sys.stderr)
    return r.returncode if r.returncode >= 0 else 128 - r.returncode


if __name__ == "__main__":
    sys.exit(main())
