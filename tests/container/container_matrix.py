#!/usr/bin/python3
"""The container matrix: Sandflow in one cell (README.md here), checked end to end.

    container_matrix.py --cell root|user|host-user --build BUILD_DIR --source SOURCE_DIR [-v]

Prints one line per check (`ok`, `FAIL` or `skip`, its name, what it found) and closes
with `N passed, N failed, N skipped`. Exit status: 0 every check passed (or was skipped
for a reason it printed), 1 a check failed, 77 the whole cell was skipped (the reason is
printed: runc missing, not root, a kernel feature missing, unreadable folders).

Every check runs DIR/sandflow (the built binary) or DIR/tests/security_test in the cell,
with Sandflow's default backend (`auto`) and never --insecure-no-sandbox.
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import oci  # noqa: E402

# Docker's default capability set as a mask (cap numbers from linux/capability.h).
CAP_NUMBERS = {
    "CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_FOWNER": 3, "CAP_FSETID": 4, "CAP_KILL": 5,
    "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8, "CAP_NET_BIND_SERVICE": 10,
    "CAP_NET_RAW": 13, "CAP_SYS_CHROOT": 18, "CAP_MKNOD": 27, "CAP_AUDIT_WRITE": 29,
    "CAP_SETFCAP": 31,
}
DOCKER_CAP_MASK = sum(1 << CAP_NUMBERS[c] for c in oci.DOCKER_CAPS)
ISOLATING_BACKENDS = ("namespace", "landlock", "gvisor")

# What the cell is, seen from inside: identity, capabilities, seccomp, and what the kernel
# answers to new namespaces (x86_64 system call numbers). A namespace flag must be refused
# with EPERM by Docker's profile (moby allows unshare and namespace-creating clone only
# with CAP_SYS_ADMIN), clone3 with ENOSYS (so that libc falls back to clone), while a
# plain fork works.
CELL_PROBE = r"""
import ctypes, errno, json, os, socket
libc = ctypes.CDLL(None, use_errno=True)
status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines() if ":" in l)
out = {"uid": os.getuid(), "gid": os.getgid(), "groups": sorted(os.getgroups()),
       "cap_eff": int(status["CapEff"], 16), "cap_bnd": int(status["CapBnd"], 16),
       "seccomp": int(status["Seccomp"]), "no_new_privs": int(status["NoNewPrivs"])}
def result(rc):
    return "ok" if rc >= 0 else errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))
def clone(flags):
    pid = libc.syscall(56, flags | 17, 0, 0, 0, 0)  # clone(flags | SIGCHLD, no new stack)
    if pid == 0:
        os._exit(0)
    r = result(pid)
    if pid > 0:
        os.waitpid(pid, 0)
    return r
flags = {"user": 0x10000000, "mount": 0x20000, "pid": 0x20000000, "net": 0x40000000,
         "uts": 0x4000000, "ipc": 0x8000000, "cgroup": 0x2000000}
out["fork"] = clone(0)
out["clone3"] = result(libc.syscall(435, None, 0))
for name, flag in flags.items():
    out["clone_" + name] = clone(flag)
for name, flag in flags.items():  # unshare last: a success changes this process
    pid = os.fork()
    if pid == 0:
        os._exit(0 if libc.syscall(272, flag) == 0 else 100 + ctypes.get_errno())
    st = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    out["unshare_" + name] = "ok" if st == 0 else errno.errorcode.get(st - 100, str(st))
try:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    c = socket.create_connection(s.getsockname(), timeout=5)
    out["loopback"] = "ok"
    c.close()
    s.close()
except OSError as e:
    out["loopback"] = str(e)
# The outer guard around the cell (pids and memory), read from the cgroup this process is in.
cg = dict((l.split(":", 2)[1], l.split(":", 2)[2]) for l in open("/proc/self/cgroup").read().splitlines())
def limit(ctrl, name):
    for d in ("/sys/fs/cgroup/%s%s" % (ctrl, cg.get(ctrl, "/")), "/sys/fs/cgroup/" + ctrl):
        try:
            return open(os.path.join(d, name)).read().strip()
        except OSError:
            pass
    return None
out["pids_max"] = limit("pids", "pids.max")
out["memory_limit"] = limit("memory", "memory.limit_in_bytes")
print(json.dumps(out))
"""

# Starts `sandflow serve` in the background on a free loopback port, runs the example graph
# through it, stops the server by its pid. stdout: `sandflow run`'s stdout only; stderr:
# the server's lines and `run`'s stderr. Exit status: run's, or 90 when the server did not
# start, or 91 when it did not stop on SIGTERM.
SERVE_AND_RUN = r"""
bin=$1 actors=$2 graph=$3
work=$(mktemp -d "${TMPDIR:-/tmp}/sandflow-matrix-XXXXXX") || exit 92
"$bin" serve --actors "$actors" --listen 127.0.0.1:0 --state memory >"$work/serve.out" 2>"$work/serve.err" &
pid=$!
i=0
while [ $i -lt 600 ] && ! grep -q '"listening"' "$work/serve.out"; do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
    i=$((i + 1))
done
url=$(sed -n 's/.*"listening":"\([^"]*\)".*/\1/p' "$work/serve.out")
if [ -z "$url" ]; then
    echo "matrix: the server did not report listening" >&2
    kill "$pid" 2>/dev/null
    wait "$pid"
    echo "matrix: server exit status $?" >&2
    cat "$work/serve.out" "$work/serve.err" >&2
    rm -rf "$work"
    exit 90
fi
echo "matrix: serve: $(cat "$work/serve.out")" >&2
"$bin" run "$graph" --runtime "$url"
rc=$?
kill -TERM "$pid"
i=0
while [ $i -lt 300 ] && kill -0 "$pid" 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
if kill -0 "$pid" 2>/dev/null; then
    echo "matrix: the server (pid $pid) did not stop on SIGTERM within 30s; killing it" >&2
    kill -KILL "$pid"
    rc=91
fi
wait "$pid"
echo "matrix: server exit status $?" >&2
sed 's/^/matrix: serve stderr: /' "$work/serve.err" | tail -n 20 >&2
rm -rf "$work"
exit $rc
"""


class Matrix:
    def __init__(self, cell, build, source, verbose, budget):
        self.cell, self.build, self.source, self.verbose = cell, build, source, verbose
        self.budget = budget
        self.deadline = time.monotonic() + budget
        self.sandflow = os.path.join(build, "sandflow")
        self.security_test = os.path.join(build, "tests", "security_test")
        self.counts = {"passed": 0, "failed": 0, "skipped": 0}
        self.auto_backend = None
        self.probe = None

    # -- reporting ------------------------------------------------------------------------

    def report(self, state, name, detail=""):
        key = {"ok": "passed", "FAIL": "failed", "skip": "skipped"}[state]
        self.counts[key] += 1
        print(f"{state:<4} {name}" + (f": {detail}" if detail else ""), flush=True)

    def show(self, title, text, limit=60):
        lines = text.rstrip("\n").splitlines()
        if not lines:
            return
        if len(lines) > limit:
            lines = lines[:limit // 2] + [f"... ({len(lines) - limit} lines)"] + lines[-limit // 2:]
        print(f"     | {title}:")
        for line in lines:
            print(f"     |   {line}")

    def run(self, argv, timeout, env=None):
        # Every command ends before the cell's budget does (ctest's TIMEOUT is 900 s), so that
        # a slow cell still tears its containers down itself.
        left = self.deadline - time.monotonic()
        if left < 10:
            raise oci.CellError(f"the cell's time budget ({self.budget:.0f}s) is spent")
        return oci.run(self.cell, argv, env=env, timeout=min(timeout, left - 5),
                       ro_binds=[self.source, self.build])

    def check(self, name, fn):
        try:
            fn(name)
        except oci.Skip as e:
            self.report("skip", name, str(e))
        except oci.CellError as e:
            self.report("FAIL", name, f"the cell itself failed: {e}")
        except Exception as e:  # a bug or an unexpected answer: this check fails, the rest run
            self.report("FAIL", name, f"the check raised {type(e).__name__}: {e}")

    # -- checks ---------------------------------------------------------------------------

    def check_cell(self, name):
        r = self.run(["/usr/bin/python3", "-c", CELL_PROBE], timeout=60)
        if r.returncode != 0:
            self.report("FAIL", name, f"the probe exited {r.returncode}")
            self.show("stderr", r.stderr)
            return
        p = json.loads(r.stdout.strip().splitlines()[-1])
        self.probe = p
        want_uid = 0 if self.cell == "root" else oci.APP_UID
        problems = []
        if (p["uid"], p["gid"]) != (want_uid, want_uid):
            problems.append(f"uid:gid {p['uid']}:{p['gid']}, expected {want_uid}:{want_uid}")
        if self.cell != "root" and p["groups"] not in ([], [oci.APP_GID]):
            problems.append(f"supplementary groups {p['groups']}")
        if self.cell == "root":
            if p["cap_eff"] != DOCKER_CAP_MASK:
                problems.append(f"effective caps {p['cap_eff']:#x}, Docker's are {DOCKER_CAP_MASK:#x}")
        elif p["cap_eff"] != 0:
            problems.append(f"effective caps {p['cap_eff']:#x}, expected none")
        if self.cell in oci.CONTAINER_CELLS:
            if p["cap_bnd"] != DOCKER_CAP_MASK:
                problems.append(f"bounding set {p['cap_bnd']:#x}, Docker's is {DOCKER_CAP_MASK:#x}")
            if p["seccomp"] != 2:
                problems.append(f"seccomp mode {p['seccomp']}, expected 2 (filter)")
        if p["no_new_privs"] != 0:
            problems.append("no_new_privs is set (Docker leaves it off)")
        if p["loopback"] != "ok":
            problems.append(f"no loopback: {p['loopback']}")
        guard = (p["pids_max"], p["memory_limit"])
        if guard != (str(oci.DEFAULT_PIDS_LIMIT), str(oci.DEFAULT_MEMORY_LIMIT)):
            if not (self.cell == "host-user" and (r.guard or "").startswith("prlimit")):
                problems.append(f"outer guard pids.max {guard[0]}, memory {guard[1]}; expected "
                                f"{oci.DEFAULT_PIDS_LIMIT}, {oci.DEFAULT_MEMORY_LIMIT}")
        detail = (f"uid {p['uid']} gid {p['gid']} groups {p['groups']}, CapEff {p['cap_eff']:#x} "
                  f"CapBnd {p['cap_bnd']:#x}, seccomp {p['seccomp']}, no_new_privs "
                  f"{p['no_new_privs']}, loopback {p['loopback']}, guard pids.max {guard[0]} "
                  f"memory {guard[1]}")
        self.report("FAIL" if problems else "ok", name,
                    "; ".join(problems) + f" ({detail})" if problems else detail)

    def check_seccomp(self, name):
        p = self.probe
        if p is None:
            self.report("FAIL", name, "the cell probe did not run")
            return
        ns = {k: v for k, v in p.items() if k.startswith(("unshare_", "clone_"))}
        summary = ", ".join(f"{k}={v}" for k, v in ns.items())
        if self.cell not in oci.CONTAINER_CELLS:
            self.report("skip", name, "not a container (the host's answers: "
                        f"unshare_user={p['unshare_user']}, clone3={p['clone3']})")
            return
        problems = [f"{k} -> {v}" for k, v in ns.items() if v != "EPERM"]
        if p["clone3"] != "ENOSYS":
            problems.append(f"clone3 -> {p['clone3']} (Docker's profile answers ENOSYS)")
        if p["fork"] != "ok":
            problems.append(f"a plain fork -> {p['fork']} (the probe itself is broken)")
        if problems:
            self.report("FAIL", name, "expected EPERM from Docker's profile: " + "; ".join(problems))
        else:
            self.report("ok", name, f"{summary}, clone3={p['clone3']}, fork={p['fork']}")

    def check_profile(self, name):
        # The committed profile is what dockerd would make of moby's on this kernel.
        r = subprocess.run([sys.executable, os.path.join(HERE, "convert_seccomp.py"), "--check"],
                           capture_output=True, text=True)
        if r.returncode == 0:
            self.report("ok", name, "docker-default-seccomp.json is the conversion of "
                                    "moby-default-seccomp.json for Docker's capabilities")
        else:
            self.report("FAIL", name, (r.stderr or r.stdout).strip())

    def check_doctor(self, name):
        r = self.run([self.sandflow, "doctor"], timeout=120)
        text = r.stdout + r.stderr
        if self.verbose:
            self.show("sandflow doctor", text, limit=200)
        # The backend `auto` picks, as a line like `auto (level process) -> landlock`.
        picked = None
        for line in text.splitlines():
            m = re.search(r"\bauto\b.*?(?:->|→|:|picks|uses)\s*`?([a-z]+)", line)
            if m and m.group(1) in ISOLATING_BACKENDS + ("none",):
                picked = (m.group(1), line.strip())
                break
        self.auto_backend = picked[0] if picked else None
        if r.timed_out or r.returncode < 0:
            self.report("FAIL", name, f"did not exit by itself (status {r.returncode})")
        elif r.returncode != 0:
            self.report("FAIL", name, f"exit status {r.returncode} (0 means the default backend "
                                      "can run here)")
            if not self.verbose:  # what does not work, and the verdict (-v: everything)
                lines = text.rstrip().splitlines()
                self.show("sandflow doctor (lines saying NO, and the last)",
                          "\n".join([l for l in lines[:-1] if re.search(r"\sNO\s", l)] +
                                    lines[-1:]), limit=20)
        else:
            self.report("ok", name, "exit status 0")
        if picked is None:
            self.report("FAIL", name + "-auto-backend",
                        "no line names the backend `auto` picks (wanted e.g. "
                        "`auto (level process) -> landlock`)")
        elif picked[0] == "none":
            self.report("FAIL", name + "-auto-backend", f"auto picks none: {picked[1]}")
        else:
            self.report("ok", name + "-auto-backend", f"{picked[0]} ({picked[1]})")

    def check_exec(self, name, script):
        path = os.path.join(self.source, script)
        # The default backend (auto); never --insecure-no-sandbox.
        r = self.run([self.sandflow, "exec", path, "--input", "input=21"], timeout=120)
        if self.verbose:
            self.show("stdout", r.stdout)
            self.show("stderr", r.stderr)
        outputs, results = [], []
        for line in r.stdout.splitlines():
            try:
                v = json.loads(line)
            except ValueError:
                continue
            if isinstance(v, dict) and v.get("port") == "output":
                outputs.append(v.get("data"))
            if isinstance(v, dict) and "result" in v:
                results.append(v["result"])
        problems = []
        if r.returncode != 0:
            problems.append(f"exit status {r.returncode}")
        if 42 not in outputs:
            problems.append(f"no output 42 on port output (got {outputs})")
        if len(results) != 1:
            problems.append(f"{len(results)} result lines, expected 1")
        if mentions_none(r.stderr):
            problems.append("stderr mentions the `none` backend")
        if problems:
            self.report("FAIL", name, "; ".join(problems))
            if not self.verbose:
                self.show("stdout", r.stdout, limit=10)
                self.show("stderr", r.stderr, limit=20)
        else:
            self.report("ok", name, f"output 42, exit 0 ({script})")

    def check_escape_suite(self, name, backend="auto"):
        report = "security_test.xml"
        # The report goes to $HOME (writable in every cell), then to stdout after a marker.
        script = ('cd "$HOME" && "$0" --gtest_brief=1 --gtest_output=xml:"$HOME/' + report +
                  '"; rc=$?; echo "@@report@@"; cat "$HOME/' + report + '"; rm -f "$HOME/' +
                  report + '"; exit $rc')
        r = self.run(["/bin/sh", "-c", script, self.security_test], timeout=600,
                     env={"SANDFLOW_TEST_BACKEND": backend})
        out, _, rep = r.stdout.partition("@@report@@")
        if self.verbose:
            self.show("security_test", out + r.stderr, limit=200)
        tests = parse_gtest_xml(rep)
        if r.timed_out:
            self.report("FAIL", name, "timed out after 600s")
            self.show("output", out + r.stderr, limit=40)
            return
        if tests is None:
            self.report("FAIL", name, f"exit status {r.returncode}, no test report")
            self.show("output", out + r.stderr, limit=40)
            return
        passed = [t for t in tests if t["result"] == "passed"]
        failed = [t for t in tests if t["result"] == "failed"]
        skipped = [t for t in tests if t["result"] == "skipped"]
        summary = (f"{len(passed)} passed, {len(failed)} failed, {len(skipped)} skipped of "
                   f"{len(tests)}")
        problems = []
        if r.returncode != 0:
            problems.append(f"exit status {r.returncode}")
        if failed:
            problems.append("failed: " + ", ".join(t["name"] for t in failed))
        # A suite that skips (no backend it can use) proves nothing: most tests must run.
        # Single tests may skip for a reason of the host (no writable memory cgroup, an
        # older Landlock ABI); they are listed below.
        if not passed or len(skipped) * 2 > len(tests):
            problems.append("most of the suite did not run")
        self.report("FAIL" if problems else "ok", name, summary +
                    (": " + "; ".join(problems) if problems else ""))
        by_reason = {}
        for t in skipped:
            by_reason.setdefault(t["message"], []).append(t["name"])
        for why, names in by_reason.items():
            shown = ", ".join(names if len(names) <= 4 else names[:3] + [f"{len(names) - 3} more"])
            print(f"     | {len(names)} skipped ({shown}): {why}")
        if failed and not self.verbose:
            # --gtest_brief prints only the failing tests' lines.
            self.show("failing lines", out, limit=80)

    def check_serve_and_run(self, name):
        r = self.run(["/bin/sh", "-c", SERVE_AND_RUN, "serve-and-run", self.sandflow,
                      os.path.join(self.source, "examples/graphs/actors"),
                      os.path.join(self.source, "examples/graphs/orders.graph.json")],
                     timeout=300)
        if self.verbose:
            self.show("stdout", r.stdout)
            self.show("stderr", r.stderr)
        by_port = {}
        for line in r.stdout.splitlines():
            try:
                v = json.loads(line)
            except ValueError:
                continue
            if isinstance(v, dict) and "port" in v:
                by_port.setdefault(v["port"], []).append(v.get("data"))
        backend = None
        m = re.search(r'matrix: serve: (\{.*\})', r.stderr)
        if m:
            try:
                backend = json.loads(m.group(1)).get("backend")
            except ValueError:
                pass
        problems = []
        if r.returncode == 90:
            problems.append("the server did not start")
        elif r.returncode == 91:
            problems.append("the server did not stop on SIGTERM")
        elif r.returncode != 0:
            problems.append(f"sandflow run exited {r.returncode}")
        if backend is not None and backend not in ISOLATING_BACKENDS:
            problems.append(f"the server runs backend {backend!r}")
        if mentions_none(r.stderr):
            problems.append("the server's or run's stderr mentions the `none` backend")
        if backend and self.auto_backend and backend != self.auto_backend:
            problems.append(f"the server runs {backend}, but doctor says auto picks "
                            f"{self.auto_backend}")
        # What tests/flow/run_cli_test.cpp expects of this graph: 6 orders, one rejected by
        # the Python validator, the rest priced (JS), counted, summarised, filtered, chunked.
        counts = {p: len(by_port.get(p, [])) for p in ("priced", "stats", "big_orders", "batches",
                                                      "rejected")}
        want = {"priced": 5, "stats": 5, "big_orders": 3, "batches": 3, "rejected": 1}
        if r.returncode not in (90, 91):
            for p, n in want.items():
                if counts[p] != n:
                    problems.append(f"{counts[p]} packets on {p}, expected {n}")
            stats = by_port.get("stats", [])
            if stats and not (isinstance(stats[-1], dict) and stats[-1].get("count") == 5):
                problems.append(f"last stats {stats[-1]}, expected count 5")
            rejected = by_port.get("rejected", [])
            if rejected and not (isinstance(rejected[0], dict) and rejected[0].get("node") == "validate"):
                problems.append(f"rejected packet {rejected[0]} not from node validate")
        if problems:
            self.report("FAIL", name, "; ".join(problems))
            if not self.verbose:
                self.show("stdout", r.stdout, limit=20)
                self.show("stderr", r.stderr, limit=40)
        else:
            self.report("ok", name, f"backend {backend}, packets {counts}")

    # -- the cell -------------------------------------------------------------------------

    def main(self):
        try:
            oci.preflight(self.cell)
        except oci.Skip as e:
            return self.skip_cell(str(e))
        missing = [p for p in (self.sandflow, self.security_test) if not os.access(p, os.X_OK)]
        if missing:
            print(f"FAIL setup: not built: {', '.join(missing)} (build first: make build)")
            self.counts["failed"] += 1
            return self.close()
        if self.cell != "root":
            bad = oci.unreadable_for(oci.APP_UID, oci.APP_GID, [
                self.source, self.build, self.sandflow, self.security_test,
                os.path.join(self.source, "examples/actors/python/double.actor.py")])
            if bad:
                return self.skip_cell("; ".join(f"{p}: {why}" for p, why in bad))
        print(f"cell {self.cell}: {describe(self.cell)}", flush=True)
        self.check("cell", self.check_cell)
        if self.cell in oci.CONTAINER_CELLS:
            self.check("seccomp-profile", self.check_profile)
        self.check("seccomp-refuses-namespaces", self.check_seccomp)
        self.check("doctor", self.check_doctor)
        self.check("exec-python", lambda n: self.check_exec(n, "examples/actors/python/double.actor.py"))
        self.check("exec-js", lambda n: self.check_exec(n, "examples/actors/js/double.actor.js"))
        self.check("escape-suite", self.check_escape_suite)
        if self.cell == "host-user":
            # auto picks the namespace tier on this host; the landlock tier is what a host
            # that restricts user namespaces would get for a runtime that is not root (the
            # sandbox then runs as the runtime's own uid): its suite runs here too.
            self.check("escape-suite-landlock",
                       lambda n: self.check_escape_suite(n, backend="landlock"))
        self.check("serve-and-run", self.check_serve_and_run)
        return self.close()

    def skip_cell(self, reason):
        print(f"skipped: cell {self.cell}: {reason}")
        print("0 passed, 0 failed, 1 skipped")
        return 77

    def close(self):
        c = self.counts
        print(f"{c['passed']} passed, {c['failed']} failed, {c['skipped']} skipped")
        return 1 if c["failed"] else 0


def mentions_none(text):
    """Whether text says the `none` backend (no isolation) is or would be used."""
    return re.search(r"backend[^\n]*\bnone\b|['\"`]none['\"`]|\bnone\b[^\n]*backend|->\s*none\b",
                     text, re.IGNORECASE) is not None


def parse_gtest_xml(text):
    """[{name, result: passed|failed|skipped, message}] from gtest's XML report, or None."""
    text = text.strip()
    if not text:
        return None
    try:
        root = ET.fromstring(text)
    except ET.ParseError:
        return None
    tests = []
    for case in root.iter("testcase"):
        name = f"{case.get('classname')}.{case.get('name')}"
        failure = case.find("failure")
        skipped = case.find("skipped")
        if failure is not None:
            result, node = "failed", failure
        elif skipped is not None or case.get("result") == "skipped":
            result, node = "skipped", skipped
        else:
            result, node = "passed", None
        message = node.get("message", "") if node is not None else ""
        # The first line is file:line, the rest what the test said.
        lines = [l for l in message.strip().splitlines() if l.strip()]
        tests.append({"name": name, "result": result,
                      "message": " ".join(lines[1:] if len(lines) > 1 else lines)})
    return tests


def describe(cell):
    if cell == "root":
        return "uid 0 in a runc container made like `docker run` (Docker's capabilities and seccomp)"
    if cell == "user":
        return (f"uid {oci.APP_UID} in a runc container made like `docker run --user "
                f"{oci.APP_UID}:{oci.APP_GID}`")
    return f"uid {oci.APP_UID} on the host (setpriv), under an outer pids+memory guard"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cell", required=True, choices=oci.CELLS)
    ap.add_argument("--build", required=True, help="the build folder (holds sandflow)")
    ap.add_argument("--source", required=True, help="the source folder (holds examples/)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every command's output")
    ap.add_argument("--budget", type=float, default=840,
                    help="seconds for the whole cell (default 840, under ctest's 900)")
    a = ap.parse_args()

    # SIGTERM (ctest, a user) unwinds like Ctrl-C, so that containers, network namespaces
    # and cgroups made so far are removed.
    def stop(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, stop)
    try:
        return Matrix(a.cell, os.path.realpath(a.build), os.path.realpath(a.source), a.verbose,
                      a.budget).main()
    except KeyboardInterrupt as e:
        print(f"interrupted ({e}); the cell's containers were removed", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
