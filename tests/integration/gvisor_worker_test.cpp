// What only the gvisor sandbox has: what it looks like from inside and what of the host it
// cannot reach, its limits, how its runsc processes end (killed, or with a runtime that is
// killed) and what they leave behind. The whole worker suite (worker_test) also runs on this
// backend; its OCI bundle is checked as data in sandbox_plan_test. Sandboxes start in the
// optimised build only (sandflow::testing::kTestGvisor), and few of them: each costs ~0.4 s.
#include <grp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "runtime/instance.hpp"
#include "sandbox/gvisor/gvisor_backend.hpp"
#include "support/test_support.hpp"
#include "support/worker_support.hpp"

using namespace sandflow;
namespace fs = std::filesystem;

namespace {

// The pids of processes whose command line mentions `text` (a backend's folder: every runsc
// process of its sandboxes names its state folder with --root).
std::vector<pid_t> processes_mentioning(const std::string& text) {
    std::vector<pid_t> found;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator("/proc", ec)) {
        const std::string name = e.path().filename().string();
        if (name.find_first_not_of("0123456789") != std::string::npos) continue;
        std::ifstream in(e.path() / "cmdline", std::ios::binary);
        const std::string cmd((std::istreambuf_iterator<char>(in)), {});
        const pid_t pid = std::stoi(name);
        if (cmd.find(text) != std::string::npos && !sandflow::testing::process_gone(pid))
            found.push_back(pid);
    }
    return found;
}

// Waits up to `timeout` until `done()`.
template <class Done>
bool eventually(Done done, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    while (!done()) {
        if (std::chrono::steady_clock::now() > until) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return true;
}

std::size_t entries(const fs::path& dir) {
    std::size_t n = 0;
    std::error_code ec;
    for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir, ec)) ++n;
    return n;
}

class GvisorWorkerTest : public sandflow::testing::BackendSuite<sandbox::GvisorBackend> {
  protected:
    void SetUp() override {
        if (!sandflow::testing::kTestGvisor)
            GTEST_SKIP() << "gVisor sandboxes start in the optimised build only";
        if (auto p = sandbox::GvisorBackend::probe(); !p)
            GTEST_SKIP() << "gVisor cannot run here: " << p.error().message;
        make_dir("/tmp/sandflow-gvisor-test-");
        auto b = sandbox::GvisorBackend::create();
        ASSERT_TRUE(b) << b.error().message;
        backend_ = std::move(*b);
    }

    // The process's stdout up to its first newline, waiting up to 20 s.
    static std::string read_line(sandbox::Process& p) {
        return BackendSuite::read_line(p, std::chrono::seconds(20));
    }

    // What the process wrote to stderr so far.
    static std::string read_stderr(sandbox::Process& p) {
        std::string text;
        char buf[4096];
        ssize_t n;
        while ((n = ::read(p.stderr_fd(), buf, sizeof buf)) > 0)
            text.append(buf, static_cast<std::size_t>(n));
        return text;
    }

    // How the process ends by itself, waiting up to 20 s.
    static std::optional<sandbox::ExitStatus> wait_exit(sandbox::Process& p) {
        std::optional<sandbox::ExitStatus> st;
        eventually([&] { return (st = p.try_wait()).has_value(); }, std::chrono::seconds(20));
        return st;
    }
};

}  // namespace

TEST_F(GvisorWorkerTest, TheViewFromInsideAndNothingOfTheHostWithinReach) {
    // A listener on the host's loopback, an abstract unix socket, a file in the host's /tmp.
    const int tcp = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    ASSERT_GE(tcp, 0);
    sockaddr_in in{};
    in.sin_family = AF_INET;
    in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::bind(tcp, reinterpret_cast<sockaddr*>(&in), sizeof in), 0);
    ASSERT_EQ(::listen(tcp, 4), 0);
    socklen_t len = sizeof in;
    ASSERT_EQ(::getsockname(tcp, reinterpret_cast<sockaddr*>(&in), &len), 0);
    const int port = ntohs(in.sin_port);
    const std::string abstract = "sandflow-gvisor-test-" + std::to_string(::getpid());
    const int unx = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    ASSERT_GE(unx, 0);
    sockaddr_un un{};
    un.sun_family = AF_UNIX;
    std::memcpy(un.sun_path + 1, abstract.data(), abstract.size());
    ASSERT_EQ(::bind(unx, reinterpret_cast<sockaddr*>(&un),
                     static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + abstract.size())),
              0);
    ASSERT_EQ(::listen(unx, 4), 0);
    const fs::path secret = dir_ / "secret";
    std::ofstream(secret) << "host secret";
    ASSERT_EQ(secret.parent_path().parent_path(), "/tmp");

    auto inst = must_load(write("v.py", R"(import errno, os, resource, socket
@actor({"component": "view", "inports": ["port", "abstract", "secret"], "outports": ["out"]})
def process(ctx):
    def attempt(f):
        try:
            f()
            return "ok"
        except OSError as e:
            return errno.errorcode.get(e.errno, str(e.errno))
    def tcp():
        with socket.create_connection(("127.0.0.1", ctx.get_input("port")), timeout=2):
            pass
    def abstract():
        with socket.socket(socket.AF_UNIX) as s:
            s.connect("\0" + ctx.get_input("abstract"))
    status = {}
    for line in open("/proc/self/status"):
        k, _, v = line.partition(":")
        status[k] = v.strip()
    limits = {name: resource.getrlimit(getattr(resource, name))[0]
              for name in ("RLIMIT_NOFILE", "RLIMIT_NPROC", "RLIMIT_FSIZE", "RLIMIT_CPU",
                           "RLIMIT_CORE")}
    st = os.statvfs("/tmp")
    return {"out": {
        "tcp": attempt(tcp),
        "abstract": attempt(abstract),
        "secret": attempt(lambda: open(ctx.get_input("secret")).read()),
        "write_usr": attempt(lambda: open("/usr/sandflow-test", "w")),
        "write_etc": attempt(lambda: open("/etc/sandflow-test", "w")),
        "write_tmp": attempt(lambda: open("/tmp/sandflow-test", "w").write("x")),
        "root": sorted(os.listdir("/")),
        "etc": sorted(os.listdir("/etc")),
        "uid": [os.getuid(), os.geteuid(), os.getgid(), os.getegid()],
        "groups": os.getgroups(),
        "cwd": os.getcwd(),
        "hostname": socket.gethostname(),
        "env": dict(os.environ),
        "passwd": open("/etc/passwd").read(),
        "cap_eff": status["CapEff"], "cap_prm": status["CapPrm"], "cap_bnd": status["CapBnd"],
        "no_new_privs": status.get("NoNewPrivs"),
        "limits": limits,
        "tmp_bytes": st.f_blocks * st.f_frsize,
        "kernel": os.uname().release,
    }}
)"));
    ASSERT_TRUE(inst);
    sandflow::testing::RecordedEvents rec;
    auto r = inst->call(req({{"port", port}, {"abstract", abstract}, {"secret", secret.string()}}),
                        rec.events());
    ASSERT_TRUE(r) << r.error().message;
    const auto& o = r->outputs.at("out").as_object();
    EXPECT_EQ(o.at("tcp"), "ECONNREFUSED") << "the sandbox's loopback is its own";
    EXPECT_EQ(o.at("abstract"), "ECONNREFUSED");
    EXPECT_EQ(o.at("secret"), "ENOENT") << "the sandbox's /tmp is its own";
    // The root and /usr are read-only, and the sandbox's user may not write there anyway:
    // gVisor checks the permission first.
    for (const char* key : {"write_usr", "write_etc"})
        EXPECT_TRUE(o.at(key) == "EACCES" || o.at(key) == "EROFS") << key << ": " << o.at(key);
    EXPECT_EQ(o.at("write_tmp"), "ok");
    pollfd host[2] = {{tcp, POLLIN, 0}, {unx, POLLIN, 0}};
    EXPECT_EQ(::poll(host, 2, 0), 0) << "a connection reached the host";
    ::close(tcp);
    ::close(unx);

    EXPECT_EQ(o.at("root"), (json::array{"bin", "dev", "etc", "lib", "lib32", "lib64", "proc",
                                         "sbin", "sys", "tmp", "usr"}));
    // Debian's alternatives (links into /usr) where the host has them.
    json::array etc = {"group",     "hostname",      "hosts", "ld.so.cache",
                       "localtime", "nsswitch.conf", "passwd"};
    if (fs::is_directory("/etc/alternatives")) etc.insert(etc.begin(), "alternatives");
    EXPECT_EQ(o.at("etc"), etc);
    EXPECT_EQ(o.at("uid"), (json::array{65534, 65534, 65534, 65534}));
    EXPECT_EQ(o.at("groups"), json::array{});
    EXPECT_EQ(o.at("cwd"), "/tmp");
    EXPECT_EQ(o.at("hostname"), "sandflow");
    EXPECT_EQ(o.at("env"),
              (json::object{{"PATH", "/usr/bin:/bin"}, {"LANG", "C.UTF-8"}, {"HOME", "/tmp"}}));
    EXPECT_EQ(o.at("passwd"), "sandbox:x:65534:65534:Sandflow sandbox:/tmp:/usr/sbin/nologin\n");
    EXPECT_EQ(o.at("cap_eff"), "0000000000000000");
    EXPECT_EQ(o.at("cap_prm"), "0000000000000000");
    EXPECT_EQ(o.at("cap_bnd"), "0000000000000000");
    // gVisor's kernel enforces the rlimits of the sandbox's limits.
    const sandbox::SandboxLimits d;
    const auto& lim = o.at("limits").as_object();
    EXPECT_EQ(lim.at("RLIMIT_NOFILE"), d.open_files) << json::serialize(lim);
    EXPECT_EQ(lim.at("RLIMIT_NPROC"), std::min(d.nproc, d.pids) + 1);  // and the init's task
    EXPECT_EQ(lim.at("RLIMIT_FSIZE"), d.tmpfs_bytes);
    EXPECT_EQ(lim.at("RLIMIT_CPU"), d.cpu_seconds);
    EXPECT_EQ(lim.at("RLIMIT_CORE"), 0);
    EXPECT_EQ(o.at("tmp_bytes"), json::value(d.tmpfs_bytes));
    // The kernel the worker sees is gVisor's, not the host's.
    std::ifstream release("/proc/sys/kernel/osrelease");
    std::string host_release;
    std::getline(release, host_release);
    EXPECT_NE(o.at("kernel").as_string(), host_release);
}

TEST_F(GvisorWorkerTest, KillEndsTheWholeSandboxAndLeavesNothingBehind) {
    const std::string folder = backend_->folder();
    auto p = start({"/usr/bin/sleep", "1000"});
    ASSERT_TRUE(p);
    // runsc, its gofer and the sandbox (gVisor's kernel), all naming the sandbox's state.
    ASSERT_TRUE(eventually([&] { return processes_mentioning(folder).size() >= 3; }))
        << processes_mentioning(folder).size() << " runsc processes";
    ASSERT_EQ(entries(fs::path(folder) / "sandboxes"), 1u);
    // The sandbox's id names its folder and its cgroups.
    const std::string id =
        fs::directory_iterator(fs::path(folder) / "sandboxes")->path().filename().string();
    std::vector<std::string> groups;
    for (const auto& c : backend_->cgroup_support().controllers)
        if (c.usable()) groups.push_back(c.base + "/" + id);
    for (const auto& g : groups) EXPECT_TRUE(fs::exists(g)) << g;

    const auto st = p->kill_and_wait();
    EXPECT_TRUE(st.killed_by(SIGKILL)) << st.describe();
    p.reset();
    EXPECT_TRUE(
        eventually([&] { return processes_mentioning(folder).empty(); }, std::chrono::seconds(5)))
        << processes_mentioning(folder).size() << " runsc processes left";
    EXPECT_EQ(entries(fs::path(folder) / "sandboxes"), 0u) << "a sandbox's state was left";
    for (const auto& g : groups) EXPECT_FALSE(fs::exists(g)) << g << " was left";
    // The runtime's own runsc state folder is never used.
    EXPECT_TRUE(processes_mentioning("/run/runsc").empty());
}

TEST_F(GvisorWorkerTest, ARuntimeKilledWithSigkillTakesItsSandboxesWithIt) {
    const std::string state = (dir_ / "state").string();
    int pipe_fds[2];
    ASSERT_EQ(::pipe(pipe_fds), 0);
    const pid_t runtime = ::fork();
    ASSERT_GE(runtime, 0);
    if (runtime == 0) {
        // A runtime of its own, in this child: a backend and one sandbox, then it waits.
        ::close(pipe_fds[0]);
        sandbox::GvisorOptions o;
        o.state_dir = state;
        auto b = sandbox::GvisorBackend::create(o);
        if (!b) ::_exit(10);
        sandbox::WorkerSpec spec;
        spec.argv = {"/usr/bin/sleep", "1000"};
        auto p = (*b)->spawn(spec);
        if (!p) ::_exit(11);
        const std::string line = (*b)->folder() + "\n";
        if (::write(pipe_fds[1], line.data(), line.size()) != static_cast<ssize_t>(line.size()))
            ::_exit(12);
        for (;;) ::pause();
    }
    ::close(pipe_fds[1]);
    std::string folder;
    char c;
    while (::read(pipe_fds[0], &c, 1) == 1 && c != '\n') folder += c;
    ::close(pipe_fds[0]);
    ASSERT_FALSE(folder.empty()) << "the child runtime could not start a sandbox";
    ASSERT_TRUE(eventually([&] { return processes_mentioning(folder).size() >= 3; }));

    ASSERT_EQ(::kill(runtime, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(::waitpid(runtime, &status, 0), runtime);
    EXPECT_TRUE(
        eventually([&] { return processes_mentioning(folder).empty(); }, std::chrono::seconds(5)))
        << processes_mentioning(folder).size() << " runsc processes outlived their runtime";
    // What the gone runtime left goes with the next backend made there.
    EXPECT_TRUE(fs::exists(folder));
    sandbox::GvisorOptions o;
    o.state_dir = state;
    auto next = sandbox::GvisorBackend::create(o);
    ASSERT_TRUE(next) << next.error().message;
    EXPECT_FALSE(fs::exists(folder)) << folder << " was left";
    EXPECT_EQ(entries(state), 1u);  // the new backend's own
}

TEST_F(GvisorWorkerTest, RunsForAnOrdinaryUserToo) {
    if (::geteuid() != 0) GTEST_SKIP() << "already unprivileged: every other test covers it";
    // As root, the test drops to nobody in a child process and runs a call there: runsc then
    // runs with --rootless (its own user namespace), and no cgroup is writable.
    fs::permissions(dir_, fs::perms(0755));
    const fs::path state = dir_ / "state";
    fs::create_directory(state);
    ASSERT_EQ(::chown(state.c_str(), 65534, 65534), 0) << std::strerror(errno);
    auto spec = runtime::spec_from_file(write("d.py", sandflow::testing::kDoublePy));
    ASSERT_TRUE(spec) << spec.error().message;
    call_as_nobody(std::move(*spec), [&] {
        sandbox::GvisorOptions o;
        o.state_dir = state.string();
        auto b = sandbox::GvisorBackend::create(o);
        return b && (*b)->rootless() ? std::move(*b) : nullptr;
    });
    EXPECT_EQ(entries(state), 0u) << "the ordinary user's backend left its folder";
}

TEST_F(GvisorWorkerTest, TheExitStatusIsTheWorkers) {
    auto code = start({"/bin/sh", "-c", "exit 7"});
    ASSERT_TRUE(code);
    auto st = wait_exit(*code);
    ASSERT_TRUE(st);
    EXPECT_EQ(st->describe(), "exited with status 7");
    auto signalled = start({"/bin/sh", "-c", "kill -TERM $$"});
    ASSERT_TRUE(signalled);
    st = wait_exit(*signalled);
    ASSERT_TRUE(st);
    EXPECT_TRUE(st->killed_by(SIGTERM)) << st->describe();
}

// gVisor re-parents orphans to the sandbox's pid 1: the init (tini), not the worker, which
// would never wait for them. Without it each call's background process would stay a zombie
// and count against RLIMIT_NPROC.
TEST_F(GvisorWorkerTest, TheSandboxsInitWaitsForOrphans) {
    auto inst = must_load(write("o.py", R"PY(import os, subprocess, time
@actor({"component": "orphans", "inports": ["n"], "outports": ["out"]})
def process(ctx):
    for _ in range(ctx.get_input("n")):
        subprocess.run(["/bin/sh", "-c", "/bin/sleep 0.05 &"], check=True)
    def zombies():
        z = []
        for p in os.listdir("/proc"):
            if p.isdigit():
                try:
                    if open("/proc/%s/stat" % p).read().rpartition(")")[2].split()[0] == "Z":
                        z.append(int(p))
                except OSError:
                    pass
        return z
    for _ in range(200):  # the sleeps end after 50 ms; their zombies go when waited for
        if not zombies():
            break
        time.sleep(0.01)
    return {"out": {"zombies": zombies(), "pid": os.getpid(), "ppid": os.getppid()}}
)PY"));
    ASSERT_TRUE(inst);
    auto r = inst->call(req({{"n", 5}}), {});
    ASSERT_TRUE(r) << r.error().message;
    const auto& out = r->outputs.at("out").as_object();
    EXPECT_EQ(out.at("zombies"), json::array{}) << json::serialize(out);
    EXPECT_EQ(out.at("ppid"), 1) << "the worker is the init's child";
    EXPECT_NE(out.at("pid"), 1);
}

TEST_F(GvisorWorkerTest, LimitsHoldInsideAndMemoryAndCpuChangeLive) {
    sandbox::SandboxLimits l;
    l.pids = 12;
    l.open_files = 40;
    l.tmpfs_bytes = 4 << 20;
    auto p = start({"/usr/bin/python3", "-I", "-S", "-c", R"(import errno, json, os, threading, time
def count(f):
    n = 0
    try:
        while n < 1000:
            f()
            n += 1
    except (OSError, RuntimeError) as e:
        return [n, errno.errorcode.get(getattr(e, "errno", None) or 0, type(e).__name__)]
    return [n, "none"]
ev = threading.Event()
def thread():
    threading.Thread(target=ev.wait, daemon=True).start()
threads = count(thread)
ev.set()
kept = []
files = count(lambda: kept.append(open("/dev/null")))
kept.clear()
big = open("/tmp/big", "wb", buffering=0)
tmp = count(lambda: big.write(b"x" * (1 << 20)))
print(json.dumps({"threads": threads, "files": files, "tmp": tmp}), flush=True)
os.read(0, 1)
)"},
                   l);
    ASSERT_TRUE(p);
    auto parsed = parse_json(read_line(*p), "the script's line");
    ASSERT_TRUE(parsed) << parsed.error().message << "; stderr: " << read_stderr(*p);
    const auto& o = parsed->as_object();
    // Every task counts, the main thread included.
    EXPECT_EQ(o.at("threads"), (json::array{l.pids - 1, "RuntimeError"})) << json::serialize(o);
    EXPECT_EQ(o.at("files").as_array().at(1), "EMFILE");
    EXPECT_LE(o.at("files").as_array().at(0).to_number<int>(), 40);
    EXPECT_EQ(o.at("tmp").as_array().at(0), 4) << json::serialize(o);

    // Memory and CPU change live (the host's cgroups); the pids limit is gVisor's rlimit.
    if (has_cgroup("memory") && has_cgroup("cpu")) {
        std::string cpu;
        for (const auto& c : backend_->cgroup_support().controllers)
            if (c.name == "cpu") cpu = c.base;
        cpu += "/" + fs::directory_iterator(fs::path(backend_->folder()) / "sandboxes")
                         ->path()
                         .filename()
                         .string();
        auto read = [&](const char* file) {
            std::ifstream in(cpu + "/" + file);
            long long v = -1;
            in >> v;
            return v;
        };
        // A burst of one period's quota, where the kernel has it (gVisor's start).
        const long long burst = read("cpu.cfs_burst_us");
        if (burst >= 0) {
            EXPECT_EQ(burst, read("cpu.cfs_quota_us"));
        }
        auto more = l;
        more.memory_bytes = 300 << 20;
        more.cpu_milli = 500;  // below the burst the kernel allowed the old quota
        auto r = p->update_limits(more);
        ASSERT_TRUE(r) << r.error().message;
        EXPECT_TRUE(*r);
        EXPECT_EQ(p->limits()->memory_bytes, 300u << 20);
        EXPECT_EQ(read("cpu.cfs_quota_us"), 50'000);
        if (burst >= 0) {
            EXPECT_EQ(read("cpu.cfs_burst_us"), 50'000);
        }
    }
    auto pids = *p->limits();
    pids.pids = 20;
    auto r = p->update_limits(pids);
    ASSERT_TRUE(r);
    EXPECT_FALSE(*r);
    const char go = 1;
    ASSERT_EQ(::write(p->channel_fd(), &go, 1), 1);
    auto st = wait_exit(*p);
    ASSERT_TRUE(st);
    EXPECT_EQ(st->describe(), "exited with status 0");

    // Over its memory limit the sandbox is killed, and the limit named.
    if (!has_cgroup("memory")) return;
    sandbox::SandboxLimits small;
    small.memory_bytes = 48 << 20;
    auto hog = start(
        {"/usr/bin/python3", "-I", "-S", "-c", "b = []\nwhile True: b.append(bytearray(1 << 20))"},
        small);
    ASSERT_TRUE(hog);
    st = wait_exit(*hog);
    ASSERT_TRUE(st);
    EXPECT_EQ(st->limit, "memory") << st->describe();
    EXPECT_EQ(st->limit_value, 48u << 20);
}
