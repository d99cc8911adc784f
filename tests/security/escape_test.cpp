// The escape suite (tests/security/README.md): a hostile actor script, run through each
// isolating backend, tries each way out; every test asserts that the probe is blocked,
// that the host is unaffected, and that the instance serves the next call. README.md in
// this folder maps each probe to the layer that stops it; the LayerOff tests show that
// the suite notices when a layer is removed.
//
// Network probes target only listeners this test opens on 127.0.0.1 (and an abstract
// unix socket it binds); bombs run only inside sandboxes whose own cgroup and rlimit
// limits contain them, and the memory bomb is skipped where no memory cgroup applies.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "runtime/instance.hpp"
#include "runtime/runtime_limits.hpp"
#include "sandbox/gvisor/gvisor_backend.hpp"
#include "sandbox/landlock/landlock_backend.hpp"
#include "sandbox/namespace/namespace_backend.hpp"
#include "support/test_support.hpp"
#include "support/worker_support.hpp"

using namespace sandflow;
namespace fs = std::filesystem;

namespace {

// The hostile actor: `probe` names an attack, `arg` parameterises it. Every probe
// returns {"blocked": bool, "how": "<what happened>"} plus details.
const char* kProbe = R"PY(import ctypes, errno, os, signal, socket, subprocess, sys, time

@actor({"component": "hostile", "inports": ["probe", "arg"], "outports": ["out"]})
def process(ctx):
    return PROBES[ctx.get_input("probe")](ctx.get_input("arg"))

def _err(e):
    return "%s (%s)" % (errno.errorcode.get(e.errno, e.errno), e.strerror)

def attempt(fn):
    try:
        r = fn()
        return {"blocked": False, "how": "succeeded: %r" % (r,)}
    except OSError as e:
        return {"blocked": True, "how": _err(e), "errno": e.errno}

def every(fns):
    results = [attempt(f) for f in fns]
    return {"blocked": all(r["blocked"] for r in results),
            "how": "; ".join(r["how"] for r in results)}

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
# The sandbox's writable folder and working directory: /tmp in the namespace tier, its own
# work folder in the landlock tier.
W = os.getcwd()

def syscall(nr, *args):
    ctypes.set_errno(0)
    conv = []
    for a in args:
        conv.append(ctypes.c_long(a) if isinstance(a, int) else a)
    r = libc.syscall(ctypes.c_long(nr), *conv)
    return r, ctypes.get_errno()

# x86_64 numbers; arg: [name, expected errno]
SYSCALLS = {
    "ptrace": lambda: syscall(101, 16, 1, 0, 0),                  # PTRACE_ATTACH to init
    "mount": lambda: syscall(165, b"none", b"/tmp", b"tmpfs", 0, 0),
    "umount2": lambda: syscall(166, b"/usr", 2),                   # MNT_DETACH
    "pivot_root": lambda: syscall(155, b"/tmp", b"/tmp"),
    "unshare": lambda: syscall(272, 0x10000000),                   # CLONE_NEWUSER
    "setns": lambda: syscall(308, os.open("/proc/self/ns/net", os.O_RDONLY), 0),
    "keyctl": lambda: syscall(250, 0, -3, 1),                      # session keyring id
    "add_key": lambda: syscall(248, b"user", b"k", b"v", 1, -3),
    "bpf": lambda: syscall(321, 0, ctypes.create_string_buffer(128), 128),
    "io_uring_setup": lambda: syscall(425, 1, ctypes.create_string_buffer(120)),
    "perf_event_open": lambda: syscall(298, ctypes.create_string_buffer(128), 0, -1, -1, 0),
    "userfaultfd": lambda: syscall(323, 0),
    "process_vm_readv": lambda: syscall(310, 1, 0, 0, 0, 0, 0),
    "kexec_load": lambda: syscall(246, 0, 0, 0, 0),
    "init_module": lambda: syscall(175, 0, 0, b""),
    "finit_module": lambda: syscall(313, 0, b"", 0),
    "personality": lambda: syscall(135, 0x0040000),                 # ADDR_NO_RANDOMIZE
    "clone3": lambda: syscall(435, ctypes.create_string_buffer(88), 88),
}

def raw_syscall(arg):
    name = arg
    r, e = SYSCALLS[name]()
    if r == 0 and name == "unshare":
        return {"blocked": False, "how": "unshare(CLONE_NEWUSER) succeeded"}
    return {"blocked": r == -1, "how": "%s -> %d, %s" % (name, r, errno.errorcode.get(e, e)),
            "errno": e}

def clone_newuser(arg):
    pid = libc.syscall(ctypes.c_long(56), ctypes.c_long(0x10000000 | 17), 0, 0, 0, 0)
    if pid == 0:
        os._exit(0)
    if pid > 0:
        os.waitpid(pid, 0)
        return {"blocked": False, "how": "clone(CLONE_NEWUSER) succeeded"}
    return {"blocked": True, "how": errno.errorcode.get(ctypes.get_errno(), "?"),
            "errno": ctypes.get_errno()}

def read_file(path):
    return attempt(lambda: open(path, "rb").read(64))

def list_dir(path):
    return attempt(lambda: os.listdir(path))

def write_files(paths):
    def w(p):
        return lambda: open(p, "w").write("escaped")
    return every([w(p) for p in paths])

def fill_tmp(arg):
    # Many files, each under the per-file cap (RLIMIT_FSIZE), to reach the tmpfs's own cap.
    written, files = 0, 0
    chunk = b"x" * (1 << 20)
    try:
        while written < (1 << 30):
            with open(os.path.join(W, "fill%d" % files), "wb") as f:
                files += 1
                for _ in range(4):
                    f.write(chunk)
                    f.flush()
                    written += len(chunk)
        return {"blocked": False, "how": "wrote 1 GiB", "written": written}
    except OSError as e:
        for i in range(files):
            os.unlink(os.path.join(W, "fill%d" % i))
        return {"blocked": e.errno == errno.ENOSPC, "how": _err(e), "written": written}

def tcp(port):
    def go():
        s = socket.create_connection(("127.0.0.1", port), timeout=2)
        s.sendall(b"escaped")
        return "connected"
    return attempt(go)

def udp(port):
    def go():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        return s.sendto(b"escaped", ("127.0.0.1", port))
    return attempt(go)

def abstract_unix(name):
    def go():
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect("\0" + name)
        return "connected"
    return attempt(go)

def sockets(arg):
    return every([
        lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP),
        lambda: socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6),
        lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0),
        lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 9),   # audit
        lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0),
    ])

def fork_bomb(arg):
    # Every child keeps forking; only the sandbox's pids limit stops it.
    forked, refused = 0, 0
    deadline = time.time() + arg
    while time.time() < deadline:
        try:
            pid = os.fork()
        except OSError:
            refused += 1
            time.sleep(0.01)
            continue
        if pid == 0:
            while True:
                try:
                    os.fork()
                except OSError:
                    time.sleep(0.01)
        forked += 1
    return {"blocked": refused > 0, "how": "forked %d, refused %d" % (forked, refused)}

def memory_bomb(arg):
    hog = []
    while True:
        hog.append(b"x" * (16 << 20))

def kill_all(runtime_pid):
    results = [attempt(lambda: os.kill(-1, signal.SIGKILL)),
               attempt(lambda: os.kill(runtime_pid, signal.SIGKILL)),
               attempt(lambda: os.kill(1, signal.SIGKILL))]
    # kill(-1) from inside reaches only the sandbox's own processes (none but this one),
    # and init ignores signals from inside: still here to answer means it was contained.
    return {"blocked": not results[1]["blocked"] is False, "how": [r["how"] for r in results]}

def setuid_binary(arg):
    target = os.path.join(W, "m")
    os.makedirs(target, exist_ok=True)
    r = subprocess.run(["/usr/bin/mount", "-t", "tmpfs", "none", target],
                       capture_output=True, text=True)
    mounted = os.path.ismount(target)
    return {"blocked": r.returncode != 0 and not mounted,
            "how": "mount exited %d: %s" % (r.returncode, (r.stderr or r.stdout).strip())}

def devices(arg):
    return every([lambda: open("/dev/mem", "rb"), lambda: open("/dev/kmsg", "rb"),
                  lambda: open("/dev/vda", "rb"), lambda: open("/dev/sda", "rb"),
                  lambda: os.mknod(os.path.join(W, "null2"), 0o20666, os.makedev(1, 3))])

def links(secret):
    def via_symlink(target):
        def go():
            link = os.path.join(W, "l%d" % abs(hash(target)))
            if not os.path.lexists(link):
                os.symlink(target, link)
            return open(link, "rb").read(64)
        return go
    return every([
        via_symlink("/etc/shadow"),
        via_symlink("/proc/1/root/etc/shadow"),
        via_symlink("/proc/1/cwd/" + secret),
        via_symlink("../../../../../../" + secret),
        lambda: os.link("/usr/bin/python3", os.path.join(W, "py")),
        lambda: os.link("/etc/passwd", os.path.join(W, "passwd")),
        lambda: open("/tmp/../../../" + secret, "rb").read(),
        lambda: open("/proc/self/root/../../" + secret, "rb").read(),
    ])

def find_canary(canary):
    found = []
    if any(canary in v for v in os.environ.values()):
        found.append("os.environ")
    try:
        pids = os.listdir("/proc")
    except OSError:  # the landlock tier: /proc cannot be listed; try the likely ones
        pids = ["self", "1", str(os.getppid())]
    for pid in pids:
        for what in ("environ", "cmdline"):
            try:
                if canary.encode() in open("/proc/%s/%s" % (pid, what), "rb").read():
                    found.append("/proc/%s/%s" % (pid, what))
            except OSError:
                pass
    try:
        open("/proc/1/mem", "rb")
        found.append("/proc/1/mem opened")
    except OSError:
        pass
    return {"blocked": not found, "how": ", ".join(found) or "nowhere"}

def spin(arg):
    while True:
        pass

def block_in_c(arg):
    libc.sleep(3600)

def print_lots(mb):
    line = "y" * 1023
    for _ in range(mb * 1024):
        print(line)
    return {"blocked": True, "how": "printed %d MiB" % mb}

def write_tmp(arg):
    path = os.path.join(W, "mine")
    open(path, "w").write(arg)
    return {"blocked": True, "how": "wrote", "path": path}

PROBES = {
    "ping": lambda arg: {"blocked": True, "how": "pong"},
    "read": read_file, "list": list_dir, "write": write_files, "fill_tmp": fill_tmp,
    "tcp": tcp, "udp": udp, "abstract_unix": abstract_unix, "sockets": sockets,
    "fork_bomb": fork_bomb, "memory_bomb": memory_bomb, "kill": kill_all,
    "syscall": raw_syscall, "clone_newuser": clone_newuser, "setuid": setuid_binary,
    "devices": devices, "links": links, "canary": find_canary, "spin": spin,
    "block_in_c": block_in_c, "print": print_lots, "write_tmp": write_tmp,
    "import": lambda name: attempt(lambda: __import__(name).__name__),
}
)PY";

constexpr const char* kCanary = "c4n4ry-5a7df10w";

struct ProbeResult {
    Result<runtime::CallOutcome> outcome;
    bool blocked() const {
        return outcome && outcome->outputs.contains("blocked") &&
               outcome->outputs.at("blocked").as_bool();
    }
    std::string how() const {
        if (!outcome) return "call failed: " + outcome.error().message;
        return json::serialize(outcome->outputs);
    }
};

// The suite's body, whatever backend it runs on: EscapeTest runs it on each isolating
// backend (or on SANDFLOW_TEST_BACKEND's), the LayerOff suites on one backend with a layer
// removed.
class EscapeBase : public ::testing::Test {
  protected:
    static sandbox::SandboxLimits test_limits() {
        sandbox::SandboxLimits l;
        l.memory_bytes = 128ull << 20;
        l.pids = 32;
        l.nproc = 32;
        l.tmpfs_bytes = 16ull << 20;
        return l;
    }
    // The backend under test; null after GTEST_SKIP() when it cannot run here.
    virtual std::unique_ptr<sandbox::Backend> make_test_backend() = 0;

    void SetUp() override {
#if !defined(__x86_64__)
        GTEST_SKIP() << "the probes' system call numbers are x86_64's";
#endif
        // In this process's environment: no probe may find it.
        ::setenv("SANDFLOW_ESCAPE_CANARY", kCanary, 1);
        backend_ = make_test_backend();
        if (IsSkipped()) return;
        ASSERT_TRUE(backend_);
        char tmpl[] = "/tmp/sandflow-escape-XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
        std::ofstream(dir_ / "secret") << kCanary;
        // Every probe runs with package sets mounted: one of the test's own (beside a file
        // it must not reach) and, where the host has it, `system`.
        char sets_tmpl[] = "/tmp/sandflow-escape-sets-XXXXXX";
        ASSERT_NE(::mkdtemp(sets_tmpl), nullptr);
        sets_root_ = sets_tmpl;
        ::chmod(sets_root_.c_str(), 0755);
        fs::create_directories(sets_root_ / "set" / "escape_probe_pkg");
        fs::create_directories(sets_root_ / "beside");
        std::ofstream(sets_root_ / "set" / "escape_probe_pkg" / "__init__.py") << "OK = 1\n";
        std::ofstream(sets_root_ / "beside" / "secret") << kCanary;
        std::vector<std::string> sets = {"probe=" + (sets_root_ / "set").string()};
        if (fs::is_directory("/usr/lib/python3/dist-packages")) sets.emplace_back("system");
        auto catalog = actor::PackageCatalog::create(sets, false);
        ASSERT_TRUE(catalog) << catalog.error().message;
        catalog_ = *catalog;
        inst_ = load();
        ASSERT_TRUE(inst_);
    }
    void TearDown() override {
        inst_.reset();
        if (!dir_.empty()) fs::remove_all(dir_);
        if (!sets_root_.empty()) fs::remove_all(sets_root_);
    }

    bool landlock_tier() const {
        return backend_->name() == "landlock";
    }
    // gVisor's kernel: the sandbox's own network stack, process table, /proc and uid 65534.
    bool gvisor_tier() const {
        return backend_->name() == "gvisor";
    }

    std::unique_ptr<runtime::Instance> load() {
        const fs::path p = dir_ / "hostile.py";
        std::ofstream(p) << kProbe;
        auto spec = runtime::spec_from_file(p);
        EXPECT_TRUE(spec) << (spec ? "" : spec.error().message);
        if (!spec) return nullptr;
        spec->on_log = [](const runtime::LogLine&) {};
        auto sets = runtime::resolve_packages(*spec, *catalog_, true);
        EXPECT_TRUE(sets) << (sets ? "" : sets.error().message);
        // No limits of its own: the instance gets the test backend's (smaller) defaults.
        EXPECT_FALSE(spec->limits.has_value());
        auto inst = runtime::Instance::create(*backend_, std::move(*spec));
        EXPECT_TRUE(inst) << (inst ? "" : inst.error().message);
        return inst ? std::move(*inst) : nullptr;
    }

    ProbeResult probe(runtime::Instance& inst, const std::string& name, json::value arg = nullptr,
                      std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
        runtime::CallRequest r;
        r.inputs = {{"probe", name}, {"arg", std::move(arg)}};
        r.timeout = timeout;
        runtime::CallEvents ev;
        ev.on_log = [this](const runtime::LogLine& l) { log_bytes_ += l.text.size() + 1; };
        ProbeResult result{inst.call(r, ev)};
        // SANDFLOW_ESCAPE_VERBOSE=1 shows how each probe was stopped.
        if (std::getenv("SANDFLOW_ESCAPE_VERBOSE"))
            std::fprintf(stderr, "  [%s] probe %s(%s): %s\n", std::string(backend_->name()).c_str(),
                         name.c_str(), json::serialize(r.inputs.at("arg")).c_str(),
                         result.how().c_str());
        return result;
    }
    ProbeResult probe(const std::string& name, json::value arg = nullptr,
                      std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
        return probe(*inst_, name, std::move(arg), timeout);
    }

    const sandbox::mech::CgroupSupport& cgroup_support() const {
        static const sandbox::mech::CgroupSupport none;
        if (auto* ns = dynamic_cast<const sandbox::NamespaceBackend*>(backend_.get()))
            return ns->cgroup_support();
        if (auto* ll = dynamic_cast<const sandbox::LandlockBackend*>(backend_.get()))
            return ll->cgroup_support();
        if (auto* gv = dynamic_cast<const sandbox::GvisorBackend*>(backend_.get()))
            return gv->cgroup_support();
        return none;
    }
    bool has_cgroup(const std::string& controller) const {
        for (const auto& c : cgroup_support().controllers)
            if (c.name == controller && c.usable()) return true;
        return false;
    }

    // The worker process itself: the child of the sandbox's init (namespace) or supervisor
    // (landlock), whose pid the instance reports.
    pid_t worker_process(runtime::Instance& inst) const {
        const auto kids = sandflow::testing::children_of(std::to_string(inst.worker_pid()));
        return kids.empty() ? -1 : kids.front();
    }

    // After every probe: the instance answers, and the runtime (this process) lives.
    void expect_serves_next_call() {
        auto r = probe("ping");
        ASSERT_TRUE(r.outcome) << r.outcome.error().message;
        EXPECT_TRUE(r.blocked());
    }

    // The probe is refused, and the worker serves the next call.
    void expect_blocked(const std::string& name, json::value arg = nullptr) {
        auto r = probe(name, std::move(arg));
        EXPECT_TRUE(r.blocked()) << name << ": " << r.how();
        expect_serves_next_call();
    }

    std::unique_ptr<sandbox::Backend> backend_;
    std::unique_ptr<runtime::Instance> inst_;
    fs::path dir_;
    fs::path sets_root_;  // its set/ is a package set, beside/ holds a secret
    std::shared_ptr<const actor::PackageCatalog> catalog_;
    std::size_t log_bytes_ = 0;
};

class EscapeTest : public EscapeBase, public ::testing::WithParamInterface<std::string> {
  protected:
    std::unique_ptr<sandbox::Backend> make_test_backend() override {
        return sandflow::testing::backend_for_test(GetParam(), test_limits());
    }
};

// A listener on the host's 127.0.0.1 that records whether anything reached it.
struct HostListener {
    int fd = -1;
    int port = 0;
    explicit HostListener(int type) {
        fd = ::socket(AF_INET, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
        if (type == SOCK_STREAM) ::listen(fd, 8);
        socklen_t len = sizeof a;
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
        port = ntohs(a.sin_port);
    }
    ~HostListener() { ::close(fd); }
    bool reached(int wait_ms = 200) const {
        pollfd p{fd, POLLIN, 0};
        return ::poll(&p, 1, wait_ms) == 1;
    }
};

// A process as seen at one moment: its pid and its start time (/proc/<pid>/stat field 22),
// so that a later process that reuses the pid is not taken for it.
struct SeenProcess {
    pid_t pid;
    std::string start;
    bool operator==(const SeenProcess&) const = default;
};
std::string start_time_of(pid_t pid) {
    const std::string text =
        sandflow::testing::read_proc_file("/proc/" + std::to_string(pid) + "/stat");
    const auto close = text.rfind(')');
    if (close == std::string::npos) return "";
    std::istringstream fields(text.substr(close + 2));
    std::string f;
    for (int field = 3; fields >> f; ++field)
        if (field == 22) return f;
    return "";
}
// `root` and every process beneath it: one sandbox's processes (orphans are re-parented to
// the namespace tier's init and to the landlock tier's supervisor, so none hides).
std::vector<SeenProcess> tree_of(pid_t root) {
    std::vector<SeenProcess> out;
    std::vector<pid_t> todo{root};
    while (!todo.empty()) {
        const pid_t p = todo.back();
        todo.pop_back();
        const std::string start = start_time_of(p);
        if (start.empty()) continue;
        out.push_back({p, start});
        for (pid_t c : sandflow::testing::children_of(std::to_string(p))) todo.push_back(c);
    }
    return out;
}
bool still_runs(const SeenProcess& p) {
    return !sandflow::testing::process_gone(p.pid) && start_time_of(p.pid) == p.start;
}

}  // namespace

TEST_P(EscapeTest, ReadsHostSecretsAndHomes) {
    for (const char* path :
         {"/etc/shadow", "/etc/gshadow", "/root/.bashrc", "/root/.ssh/id_rsa",
          "/etc/ssh/ssh_host_ed25519_key", "/proc/1/environ", "/proc/kcore", "/sys/kernel/notes"}) {
        // gVisor's pid 1 is the sandbox's own init (tini), started by gVisor's kernel with the
        // worker's cleared environment: nothing of the host's. The canary test below looks
        // for the runtime's environment in every process there.
        if (gvisor_tier() && std::string_view(path) == "/proc/1/environ") continue;
        auto r = probe("read", path);
        EXPECT_TRUE(r.blocked()) << path << ": " << r.how();
    }
    for (const char* path : {"/root", "/home", "/var", "/run", "/sys", "/mnt", "/proc/sys"}) {
        auto r = probe("list", path);
        EXPECT_TRUE(r.blocked()) << path << ": " << r.how();
    }
    // The host's own /tmp (where this test keeps a secret) is not the sandbox's /tmp.
    expect_blocked("read", json::value((dir_ / "secret").string()));
}

TEST_P(EscapeTest, FindsNoTraceOfTheRuntimesEnvironmentOrMemory) {
    expect_blocked("canary", kCanary);
}

TEST_P(EscapeTest, ReadsAnotherSandboxsFiles) {
    auto wrote = probe("write_tmp", kCanary);
    ASSERT_TRUE(wrote.outcome) << wrote.how();
    auto other = load();
    ASSERT_TRUE(other);
    // The same path in the other sandbox (its own /tmp), or the first one's folder.
    auto r = probe(*other, "read", wrote.outcome->outputs.at("path"));
    EXPECT_TRUE(r.blocked()) << r.how();
    expect_serves_next_call();
}

TEST_P(EscapeTest, PackageSetsAreReadOnlyAndShowNothingBesideThem) {
    const auto& sets = inst_->packages().sets;
    ASSERT_FALSE(sets.empty());
    // The set is there: its package imports.
    auto imported = probe("import", "escape_probe_pkg");
    ASSERT_TRUE(imported.outcome) << imported.how();
    EXPECT_FALSE(imported.blocked()) << imported.how();
    // Nothing in any set can be written, where the worker finds it.
    json::array writes;
    for (const auto& dir : runtime::package_dirs(sets)) {
        const std::string inside = backend_->shared_dir_path(dir);
        writes.emplace_back(inside + "/x");
        writes.emplace_back(inside + "/escape_probe_pkg/__init__.py");
        writes.emplace_back(inside + "/escape_probe_pkg/x");
    }
    auto wrote = probe("write", writes);
    EXPECT_TRUE(wrote.blocked()) << wrote.how();
    EXPECT_FALSE(fs::exists(sets_root_ / "set" / "x"));
    EXPECT_FALSE(fs::exists(sets_root_ / "set" / "escape_probe_pkg" / "x"));
    std::ifstream init(sets_root_ / "set" / "escape_probe_pkg" / "__init__.py");
    EXPECT_EQ(std::string(std::istreambuf_iterator<char>(init), {}), "OK = 1\n");
    // What lies beside a set on the host is out of reach.
    auto listed = probe("list", json::value(sets_root_.string()));
    EXPECT_TRUE(listed.blocked()) << listed.how();
    auto read = probe("read", json::value((sets_root_ / "beside" / "secret").string()));
    EXPECT_TRUE(read.blocked()) << read.how();
    expect_serves_next_call();
}

TEST_P(EscapeTest, WritesOutsideTheWritableFolder) {
    auto r = probe("write", json::array{"/x", "/etc/passwd", "/etc/x", "/usr/x", "/usr/bin/python3",
                                        "/dev/x", "/proc/x", "/bin/x", "/lib/x"});
    EXPECT_TRUE(r.blocked()) << r.how();
    EXPECT_FALSE(fs::exists("/x"));
    EXPECT_FALSE(fs::exists("/usr/x"));
    expect_serves_next_call();
}

TEST_P(EscapeTest, FillsTheTmpfsPastItsCap) {
    const auto before = fs::space("/tmp").available;
    auto r = probe("fill_tmp");
    if (landlock_tier()) {
        // No tmpfs: the runtime watches the folder and kills the sandbox past its cap.
        ASSERT_FALSE(r.outcome) << r.how();
        EXPECT_EQ(r.outcome.error().code, Errc::limit_exceeded) << r.outcome.error().message;
        EXPECT_EQ(r.outcome.error().data.at("limit").as_string(), "tmpfs_bytes")
            << r.outcome.error().message;
    } else {
        ASSERT_TRUE(r.blocked()) << r.how();
        const auto written = r.outcome->outputs.at("written").as_int64();
        EXPECT_LE(written, static_cast<std::int64_t>(test_limits().tmpfs_bytes));
    }
    if (landlock_tier()) {
        // The work folders live on the host's disk: the killed sandbox's went with it (what
        // the folders hold now is measured, not the disk's free space, which other work on
        // the machine moves).
        std::uintmax_t left = 0;
        std::error_code ec;
        for (auto it = fs::recursive_directory_iterator(sandbox::work_root_default(), ec);
             !ec && it != fs::recursive_directory_iterator(); it.increment(ec))
            if (it->is_regular_file(ec)) left += it->file_size(ec);
        EXPECT_LT(left, 1u << 20) << "bytes left in " << sandbox::work_root_default();
    } else {
        // The host's disk did not pay for it (allowing for unrelated activity).
        EXPECT_GT(fs::space("/tmp").available + (8u << 20), before);
    }
    expect_serves_next_call();
}

TEST_P(EscapeTest, ConnectsToAHostTcpListener) {
    HostListener host(SOCK_STREAM);
    auto r = probe("tcp", host.port);
    EXPECT_TRUE(r.blocked()) << r.how();
    EXPECT_FALSE(host.reached());
    expect_serves_next_call();
}

TEST_P(EscapeTest, SendsToAHostUdpListener) {
    HostListener host(SOCK_DGRAM);
    auto r = probe("udp", host.port);
    // gVisor's network stack (runsc --network=none) has a loopback of its own: the datagram
    // is sent, to the sandbox's own 127.0.0.1, where no one listens.
    if (!gvisor_tier()) {
        EXPECT_TRUE(r.blocked()) << r.how();
    }
    EXPECT_FALSE(host.reached());
    expect_serves_next_call();
}

TEST_P(EscapeTest, ReachesAHostAbstractUnixSocket) {
    const std::string name = "sandflow-escape-" + std::to_string(::getpid());
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::memcpy(a.sun_path + 1, name.data(), name.size());
    const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), len), 0);
    ASSERT_EQ(::listen(fd, 4), 0);
    auto r = probe("abstract_unix", json::value(name));
    EXPECT_TRUE(r.blocked()) << r.how();
    pollfd p{fd, POLLIN, 0};
    EXPECT_EQ(::poll(&p, 1, 200), 0);
    ::close(fd);
    expect_serves_next_call();
}

TEST_P(EscapeTest, OpensRawAndNetlinkSockets) {
    expect_blocked("sockets");
}

TEST_P(EscapeTest, ForkBombIsContained) {
    const pid_t root = inst_->worker_pid();
    ASSERT_GT(root, 0);
    // The bomb forks for 1.5 s; its children go on forking. The sandbox's pids limit refuses
    // the forks past it; with a pids cgroup the refusal is a crossed limit, so the runtime
    // kills the whole sandbox (sandbox::kPidsScanInterval after the first refusal) and the
    // call fails naming the limit.
    std::size_t peak = 0;
    std::vector<SeenProcess> seen;
    std::atomic<bool> done{false};
    std::thread counter([&] {
        while (!done) {
            const auto now = tree_of(root);
            peak = std::max(peak, now.size());
            for (const auto& p : now)
                if (std::find(seen.begin(), seen.end(), p) == seen.end()) seen.push_back(p);
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
    });
    auto r = probe("fork_bomb", 1.5, std::chrono::seconds(5));
    done = true;
    counter.join();
    // The sandbox's init or supervisor is one of its processes and not counted by the limit.
    EXPECT_LE(peak, test_limits().pids + 1);
    if (gvisor_tier()) {
        // gVisor's kernel refuses the forks past RLIMIT_NPROC (its count of the sandbox's
        // tasks); the forked interpreters' memory, held by gVisor's kernel, may cross the
        // memory limit first, which ends the sandbox.
        if (r.outcome) {
            EXPECT_TRUE(r.blocked()) << r.how();
            expect_serves_next_call();
            inst_.reset();
        } else {
            EXPECT_EQ(r.outcome.error().code, Errc::limit_exceeded) << r.outcome.error().message;
            EXPECT_EQ(r.outcome.error().data.at("limit").as_string(), "memory")
                << r.outcome.error().message;
        }
    } else if (!has_cgroup("pids")) {
        // RLIMIT_NPROC alone refuses the forks, and no one counts its refusals: the call
        // returns, and the bomb's children live as long as the sandbox.
        ASSERT_TRUE(r.outcome) << r.how();
        EXPECT_TRUE(r.blocked()) << r.how();
        expect_serves_next_call();
        inst_.reset();
    } else {
        ASSERT_FALSE(r.outcome) << r.how();
        EXPECT_EQ(r.outcome.error().code, Errc::limit_exceeded) << r.outcome.error().message;
        EXPECT_EQ(r.outcome.error().data.at("limit").as_string(), "pids");
        EXPECT_EQ(r.outcome.error().data.at("value"), json::value(test_limits().pids));
    }
    // Every process of the sandbox goes, the bomb's detached children included (the pid
    // namespace's teardown, or the supervisor's sweep): wait for that, bounded.
    auto left = [&] {
        return std::count_if(seen.begin(), seen.end(), [](const auto& p) { return still_runs(p); });
    };
    for (int i = 0; i < 500 && left() > 0; ++i) ::usleep(10'000);
    EXPECT_EQ(left(), 0) << "of " << seen.size() << " processes seen";
    // The next call gets a new sandbox.
    if (!inst_) inst_ = load();
    ASSERT_TRUE(inst_);
    expect_serves_next_call();
    EXPECT_NE(inst_->worker_pid(), root);
}

TEST_P(EscapeTest, MemoryBombKillsOnlyItsSandbox) {
    if (!has_cgroup("memory") && landlock_tier()) {
        // RLIMIT_DATA refuses the allocation: the script sees a MemoryError.
        auto r = probe("memory_bomb", nullptr, std::chrono::seconds(30));
        ASSERT_FALSE(r.outcome);
        EXPECT_EQ(r.outcome.error().code, Errc::script) << r.outcome.error().message;
        EXPECT_NE(r.outcome.error().message.find("MemoryError"), std::string::npos)
            << r.outcome.error().message;
        expect_serves_next_call();
        return;
    }
    if (!has_cgroup("memory"))
        GTEST_SKIP() << "no writable memory cgroup here: a memory bomb would not be contained "
                        "("
                     << cgroup_support().summary() << ")";
    auto r = probe("memory_bomb", nullptr, std::chrono::seconds(30));
    ASSERT_FALSE(r.outcome);
    EXPECT_EQ(r.outcome.error().code, Errc::limit_exceeded) << r.outcome.error().message;
    EXPECT_EQ(r.outcome.error().data.at("limit").as_string(), "memory");
    EXPECT_EQ(r.outcome.error().data.at("value"), json::value(test_limits().memory_bytes))
        << r.outcome.error().message;
    expect_serves_next_call();
}

TEST_P(EscapeTest, KillsEverythingAndTheRuntime) {
    // A host process with the very uid the sandbox's worker runs as: still out of reach.
    const pid_t worker = worker_process(*inst_);
    ASSERT_GT(worker, 0);
    std::ifstream status("/proc/" + std::to_string(worker) + "/status");
    std::string key;
    uid_t uid = ::geteuid();
    while (status >> key)
        if (key == "Uid:" && status >> uid) break;
    const pid_t bystander = ::fork();
    ASSERT_GE(bystander, 0);
    if (bystander == 0) {
        if (uid == ::geteuid() ||
            (::setresgid(uid, uid, uid) == 0 && ::setresuid(uid, uid, uid) == 0))
            ::pause();
        ::_exit(0);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    auto r = probe("kill", static_cast<std::int64_t>(::getpid()));
    ASSERT_TRUE(r.outcome) << r.how();
    const auto& how = r.outcome->outputs.at("how").as_array();
    // kill(runtime pid): no such process (outside the pid namespace), or not permitted
    // (another uid, Landlock's scoping, the seccomp signal guard).
    const std::string runtime = json::serialize(how[1]);
    EXPECT_TRUE(runtime.find("ESRCH") != std::string::npos ||
                runtime.find("EPERM") != std::string::npos)
        << r.how();
    int st = 0;
    EXPECT_EQ(::waitpid(bystander, &st, WNOHANG), 0) << "the bystander (uid " << uid << ") died";
    ::kill(bystander, SIGKILL);
    ::waitpid(bystander, &st, 0);
    expect_serves_next_call();
}

TEST_P(EscapeTest, DangerousSystemCallsFail) {
    for (const char* name :
         {"ptrace", "mount", "umount2", "pivot_root", "unshare", "setns", "keyctl", "add_key",
          "bpf", "io_uring_setup", "perf_event_open", "userfaultfd", "process_vm_readv",
          "kexec_load", "init_module", "finit_module", "personality"}) {
        auto r = probe("syscall", name);
        ASSERT_TRUE(r.outcome) << name << ": " << r.how();
        EXPECT_TRUE(r.blocked()) << name << ": " << r.how();
        // gVisor's kernel knows no other persona: it refuses the call itself, with EINVAL.
        const int expected =
            gvisor_tier() && std::string_view(name) == "personality" ? EINVAL : EPERM;
        EXPECT_EQ(r.outcome->outputs.at("errno"), json::value(expected)) << name << ": " << r.how();
    }
    // clone3 gets ENOSYS, so that libc falls back to clone, whose flags are checked.
    auto c3 = probe("syscall", "clone3");
    EXPECT_EQ(c3.outcome->outputs.at("errno"), json::value(ENOSYS)) << c3.how();
    auto cl = probe("clone_newuser");
    EXPECT_TRUE(cl.blocked()) << cl.how();
    expect_serves_next_call();
}

TEST_P(EscapeTest, SetuidBinaryGainsNothing) {
    if (!fs::exists("/usr/bin/mount")) GTEST_SKIP() << "no setuid /usr/bin/mount on this host";
    expect_blocked("setuid");
}

TEST_P(EscapeTest, OpensHostDevices) {
    expect_blocked("devices");
}

TEST_P(EscapeTest, SymlinkAndHardlinkTricks) {
    expect_blocked("links", json::value((dir_ / "secret").string()));
}

TEST_P(EscapeTest, SpinningAndBlockingInCPastTheDeadline) {
    for (const char* name : {"spin", "block_in_c"}) {
        const auto start = std::chrono::steady_clock::now();
        auto r = probe(name, nullptr, std::chrono::milliseconds(500));
        ASSERT_FALSE(r.outcome) << name;
        EXPECT_EQ(r.outcome.error().code, Errc::timeout) << name;
        // Killed at its deadline, not left to spin: a bound far from any machine's speed.
        EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(20)) << name;
        expect_serves_next_call();
    }
}

TEST_P(EscapeTest, PrintingHundredsOfMegabytes) {
    auto r = probe("print", 200, std::chrono::seconds(60));
    // Either it finished (its log capped), or the output limit per call or the deadline
    // stopped it; the runtime kept only the capped amount of log either way.
    if (!r.outcome) {
        const Errc code = r.outcome.error().code;
        EXPECT_TRUE(code == Errc::timeout || code == Errc::limit_exceeded) << r.how();
        if (code == Errc::limit_exceeded) {
            EXPECT_EQ(r.outcome.error().data.at("limit").as_string(), "output_bytes") << r.how();
        }
    }
    EXPECT_LE(log_bytes_, limits::kMaxLogBytesPerCall + 4096);
    expect_serves_next_call();
}

TEST_P(EscapeTest, NodeProbesAreBlockedToo) {
    if (::access("/usr/bin/node", X_OK) != 0) GTEST_SKIP() << "no /usr/bin/node";
    const fs::path p = dir_ / "hostile.js";
    std::ofstream(p)
        << R"JS(const metadata = {component: 'hostile_js', inports: ['port'], outports: ['out']};
const fs = require('fs');
const net = require('net');
const cp = require('child_process');
function tryIt(fn) {
    try { return {blocked: false, how: String(fn())}; }
    catch (e) { return {blocked: true, how: e.code || String(e)}; }
}
async function process(ctx) {
    const tcp = await new Promise((resolve) => {
        const s = net.connect({host: '127.0.0.1', port: ctx.getInput('port')});
        s.on('connect', () => { s.destroy(); resolve({blocked: false, how: 'connected'}); });
        s.on('error', (e) => resolve({blocked: true, how: e.code}));
    });
    return {
        shadow: tryIt(() => fs.readFileSync('/etc/shadow')),
        root: tryIt(() => fs.readdirSync('/root')),
        write: tryIt(() => fs.writeFileSync('/usr/escaped', 'x')),
        kill: tryIt(() => require('process').kill(1, 'SIGKILL')),
        tcp,
        // A child process works inside (posix_spawn falls back from clone3 to clone).
        child: cp.execFileSync('/usr/bin/id', ['-u']).toString().trim(),
    };
}
)JS";
    auto spec = runtime::spec_from_file(p);
    ASSERT_TRUE(spec) << spec.error().message;
    spec->on_log = [](const runtime::LogLine&) {};
    auto inst = runtime::Instance::create(*backend_, std::move(*spec));
    ASSERT_TRUE(inst) << inst.error().message;
    HostListener host(SOCK_STREAM);
    runtime::CallRequest r;
    r.inputs = {{"port", host.port}};
    auto out = (*inst)->call(r, {});
    ASSERT_TRUE(out) << out.error().message;
    const auto& o = out->outputs;
    for (const char* k : {"shadow", "root", "write", "tcp"})
        EXPECT_TRUE(o.at(k).at("blocked").as_bool()) << k << ": " << json::serialize(o.at(k));
    // The child runs as the worker does: uid 0 of its user namespace, the sandbox's uid in
    // gVisor's kernel, or the landlock tier's per-sandbox (or the runtime's own) uid.
    const std::string uid = std::string(o.at("child").as_string());
    if (gvisor_tier()) {
        EXPECT_EQ(uid, std::to_string(sandbox::gvisor::kSandboxUid));
    } else if (!landlock_tier()) {
        EXPECT_EQ(uid, "0");
    }
    EXPECT_FALSE(uid.empty());
    EXPECT_EQ(uid.find_first_not_of("0123456789"), std::string::npos) << uid;
    EXPECT_FALSE(host.reached());
    auto again = (*inst)->call(r, {});
    EXPECT_TRUE(again) << again.error().message;
}

// With one layer turned off, the probe that layer stops gets through: the suite notices.
// The layer a LayerOff test removes is named in the test's name.
bool test_name_has(const char* word) {
    const std::string which = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    return which.find(word) != std::string::npos;
}

// A backend of tier `B` made with the layers named in the test's name turned off.
template <class B, class Options>
class LayerOffBase : public EscapeBase {
  protected:
    std::unique_ptr<sandbox::Backend> make_test_backend() override {
        if (auto p = B::probe(); !p) {
            [&] { GTEST_SKIP() << "this sandbox cannot run here: " << p.error().message; }();
            return nullptr;
        }
        Options o;
        o.limits = test_limits();
        if (test_name_has("Seccomp")) o.layers.seccomp = false;
        if (test_name_has("Landlock")) o.layers.landlock = false;
        if constexpr (requires { o.layers.network_namespace; })
            if (test_name_has("Network")) o.layers.network_namespace = false;
        auto b = B::create(o);
        EXPECT_TRUE(b) << b.error().message;
        return b ? std::move(*b) : nullptr;
    }
};

using LayerOffTest = LayerOffBase<sandbox::NamespaceBackend, sandbox::NamespaceOptions>;
using LandlockLayerOffTest = LayerOffBase<sandbox::LandlockBackend, sandbox::LandlockOptions>;

TEST_F(LayerOffTest, WithoutSeccompKeyringsAndNamespacesAreReachable) {
    auto keyctl = probe("syscall", "keyctl");
    EXPECT_FALSE(keyctl.blocked()) << keyctl.how();
    auto unshare = probe("syscall", "unshare");
    EXPECT_FALSE(unshare.blocked()) << unshare.how();
}

// TCP has two walls: the empty network namespace, and Landlock's network rules (ABI >= 4).
TEST_F(LayerOffTest, WithoutTheNetworkNamespaceTcpIsStillRefused) {
    if (sandbox::mech::landlock_abi() < 4) GTEST_SKIP() << "Landlock has no network rules here";
    HostListener host(SOCK_STREAM);
    auto r = probe("tcp", host.port);
    EXPECT_TRUE(r.blocked()) << r.how();
    EXPECT_EQ(r.outcome->outputs.at("errno"), json::value(EACCES)) << r.how();
    EXPECT_FALSE(host.reached());
}

TEST_F(LayerOffTest, WithoutTheNetworkNamespaceAndLandlockTheHostListenerIsReached) {
    HostListener host(SOCK_STREAM);
    auto r = probe("tcp", host.port);
    EXPECT_FALSE(r.blocked()) << r.how();
    EXPECT_TRUE(host.reached());
}

// UDP has one wall in this tier: seccomp's refusal of socket() (Landlock has no UDP rules).
TEST_F(LandlockLayerOffTest, WithoutSeccompUdpReachesTheHost) {
    HostListener host(SOCK_DGRAM);
    auto r = probe("udp", host.port);
    EXPECT_FALSE(r.blocked()) << r.how();
    EXPECT_TRUE(host.reached());
}

// Files have one wall too (beyond file modes): Landlock.
TEST_F(LandlockLayerOffTest, WithoutLandlockHostFilesAreReadable) {
    auto r = probe("read", "/etc/passwd");
    EXPECT_FALSE(r.blocked()) << r.how();
}

// TCP has two: seccomp's refusal of socket(), and Landlock's network rules (ABI >= 4).
TEST_F(LandlockLayerOffTest, WithoutLandlockTcpIsStillRefused) {
    HostListener host(SOCK_STREAM);
    auto r = probe("tcp", host.port);
    EXPECT_TRUE(r.blocked()) << r.how();
    EXPECT_EQ(r.outcome->outputs.at("errno"), json::value(EPERM)) << r.how();
    EXPECT_FALSE(host.reached());
}

TEST_F(LandlockLayerOffTest, WithoutSeccompTcpIsStillRefused) {
    if (sandbox::mech::landlock_abi() < 4) GTEST_SKIP() << "Landlock has no network rules here";
    HostListener host(SOCK_STREAM);
    auto r = probe("tcp", host.port);
    EXPECT_TRUE(r.blocked()) << r.how();
    EXPECT_EQ(r.outcome->outputs.at("errno"), json::value(EACCES)) << r.how();
    EXPECT_FALSE(host.reached());
}

INSTANTIATE_TEST_SUITE_P(Backends, EscapeTest,
                         ::testing::ValuesIn(sandflow::testing::isolating_backends_for_test()),
                         sandflow::testing::backend_test_name);
