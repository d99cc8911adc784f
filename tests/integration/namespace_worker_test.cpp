// What only the namespace sandbox has: what it looks like from inside (docs/sandbox.md),
// its limits and cgroups, its set-up failures, and combined scenarios (streaming, state and
// tracebacks; kills and deadlines with committed state) in real sandboxes. The whole worker
// suite (worker_test) also runs on this backend.
#include <grp.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "runtime/instance.hpp"
#include "sandbox/namespace/namespace_backend.hpp"
#include "support/test_support.hpp"
#include "support/worker_support.hpp"

using namespace sandflow;
namespace fs = std::filesystem;

namespace {

class NamespaceWorkerTest : public sandflow::testing::BackendSuite<sandbox::NamespaceBackend> {
  protected:
    void SetUp() override {
        if (auto p = sandbox::NamespaceBackend::probe(); !p)
            GTEST_SKIP() << "the namespace sandbox cannot run here: " << p.error().message;
        auto b = sandbox::NamespaceBackend::create();
        ASSERT_TRUE(b) << b.error().message;
        backend_ = std::move(*b);
        make_dir("/tmp/sandflow-ns-test-");
    }

    // The folder of the sandbox's own group of `controller`: its init's group, as the host
    // sees it in /proc/<pid>/cgroup, under the backend's base.
    std::string cgroup_dir(const sandbox::Process& p, const std::string& controller) const {
        std::ifstream in("/proc/" + std::to_string(p.pid()) + "/cgroup");
        std::string line;
        while (std::getline(in, line)) {
            const auto a = line.find(':'), b = line.find(':', a + 1);
            const std::string names = "," + line.substr(a + 1, b - a - 1) + ",";
            if (names.find("," + controller + ",") == std::string::npos) continue;
            const std::string path = line.substr(b + 1);
            for (const auto& c : backend_->cgroup_support().controllers)
                if (c.name == controller) return c.base + path.substr(path.rfind('/'));
        }
        return {};
    }

    static std::string read_text(const std::string& path) {
        std::ifstream in(path);
        std::string text;
        std::getline(in, text);
        return text;
    }

    // Starts python3 running `code` directly in a sandbox, without the runtime.
    std::unique_ptr<sandbox::Process> start_python(
        const std::string& code, std::optional<sandbox::SandboxLimits> limits = std::nullopt) {
        return start({"/usr/bin/python3", "-I", "-S", "-c", code}, limits);
    }

    // Lets a script blocked in os.read(3, 1) go on.
    static void release(sandbox::Process& p) {
        const char go = 1;
        ASSERT_EQ(::write(p.channel_fd(), &go, 1), 1);
    }
};

const char* const kDouble = sandflow::testing::kDoublePy;

}  // namespace

TEST_F(NamespaceWorkerTest, TheViewFromInside) {
    auto inst = must_load(write("v.py", R"(import os, socket
def environ_of_init():
    try:
        return open("/proc/1/environ", "rb").read().decode(errors="replace")
    except PermissionError:
        return "denied"

@actor({"component": "view", "outports": ["out"]})
def process(ctx):
    status = {}
    for line in open("/proc/self/status"):
        k, _, v = line.partition(":")
        status[k] = v.strip()
    return {
        "root": sorted(os.listdir("/")),
        "etc": sorted(os.listdir("/etc")),
        "dev": sorted(os.listdir("/dev")),
        "proc1": open("/proc/1/cmdline", "rb").read().decode(errors="replace") if os.path.exists("/proc/1/cmdline") else None,
        "proc1_environ": environ_of_init(),
        "uid": [os.getuid(), os.geteuid(), os.getgid()],
        "groups": os.getgroups(),
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "cwd": os.getcwd(),
        "hostname": socket.gethostname(),
        "cap_eff": status["CapEff"], "cap_prm": status["CapPrm"], "cap_bnd": status["CapBnd"],
        "cap_amb": status["CapAmb"],
        "no_new_privs": status["NoNewPrivs"], "seccomp": status["Seccomp"],
        "cgroup": open("/proc/self/cgroup").read(),
        "mounts": open("/proc/self/mounts").read(),
        "env": dict(os.environ),
        "netdev": open("/proc/self/net/dev").read() if os.path.exists("/proc/self/net/dev") else None,
        "passwd": open("/etc/passwd").read(),
    }
)"));
    ASSERT_TRUE(inst);
    Recorded rec;
    auto r = inst->call(req({}), rec.events());
    ASSERT_TRUE(r) << r.error().message;
    const auto& o = r->outputs;
    EXPECT_EQ(o.at("uid"), (json::array{0, 0, 0}));
    EXPECT_EQ(o.at("cap_eff").as_string(), "0000000000000000");
    EXPECT_EQ(o.at("cap_prm").as_string(), "0000000000000000");
    EXPECT_EQ(o.at("cap_bnd").as_string(), "0000000000000000");
    EXPECT_EQ(o.at("cap_amb").as_string(), "0000000000000000");
    EXPECT_EQ(o.at("no_new_privs").as_string(), "1");
    EXPECT_EQ(o.at("seccomp").as_string(), "2");
    EXPECT_EQ(o.at("hostname").as_string(), "sandflow");
    EXPECT_EQ(o.at("cwd").as_string(), "/tmp");
    EXPECT_EQ(o.at("pid"), json::value(2));  // init is 1
    EXPECT_EQ(o.at("groups"), json::array{});
    EXPECT_EQ(o.at("root"), (json::array{"bin", "dev", "etc", "lib", "lib32", "lib64", "proc",
                                         "sbin", "tmp", "usr"}));
    EXPECT_EQ(o.at("dev"), (json::array{"fd", "full", "null", "random", "stderr", "stdin", "stdout",
                                        "urandom", "zero"}));
    // init is a copy of this process: its command line and memory are not readable.
    EXPECT_EQ(json::value_to<std::string>(o.at("proc1")).substr(0, 13), "sandflow-init");
    EXPECT_EQ(o.at("proc1_environ").as_string(), "denied");
    EXPECT_EQ(o.at("env"),
              (json::object{{"PATH", "/usr/bin:/bin"}, {"LANG", "C.UTF-8"}, {"HOME", "/tmp"}}));
    EXPECT_EQ(o.at("passwd").as_string(),
              "sandbox:x:0:0:Sandflow sandbox:/tmp:/usr/sbin/nologin\n");
    // Every cgroup controller shows "/": the runtime's hierarchy is out of sight.
    EXPECT_EQ(o.at("cgroup").as_string().find("sandflow"), std::string::npos);
    // No interface but a loopback that is down.
    const std::string netdev = json::value_to<std::string>(o.at("netdev"));
    EXPECT_EQ(netdev.find("eth"), std::string::npos) << netdev;
    const std::string mounts = json::value_to<std::string>(o.at("mounts"));
    EXPECT_NE(mounts.find("tmpfs / tmpfs ro,"), std::string::npos) << mounts;
    const auto usr = mounts.find(" /usr ");
    ASSERT_NE(usr, std::string::npos) << mounts;
    const std::string usr_line = mounts.substr(usr, mounts.find('\n', usr) - usr);
    for (const char* opt : {" ro,", "nosuid", "nodev"})
        EXPECT_NE(usr_line.find(opt), std::string::npos) << usr_line;
}

TEST_F(NamespaceWorkerTest, StreamingStateAndTracebacksInBothLanguages) {
    auto py =
        write("c.py", R"(@actor({"component": "c", "inports": ["x"], "outports": ["seq", "n"]})
async def process(ctx):
    n = await ctx.get_state("n", 0)
    ctx.set_state("n", n + 1)
    for i in range(5):
        await ctx.send_output("seq", i)
    if ctx.get_input("x") < 0:
        raise ValueError("negative")
    return {"n": n + 1}
)");
    auto js =
        write("c.js", R"(const metadata = {component: 'c', inports: ['x'], outports: ['seq', 'n']};
async function process(ctx) {
    const n = await ctx.getState('n', 0);
    ctx.setState('n', n + 1);
    for (let i = 0; i < 5; i++) await ctx.sendOutput('seq', i);
    if (ctx.getInput('x') < 0) throw new RangeError('negative');
    return {n: n + 1};
}
)");
    for (const auto& script : {py, js}) {
        auto inst = must_load(script);
        ASSERT_TRUE(inst);
        Recorded rec;
        auto r = inst->call(req({{"x", 1}}), rec.events());
        ASSERT_TRUE(r) << r.error().message;
        ASSERT_EQ(rec.outputs.size(), 5u);
        for (std::size_t i = 0; i < 5; ++i)
            EXPECT_EQ(rec.outputs[i].second, json::value(static_cast<std::int64_t>(i)));
        auto bad = inst->call(req({{"x", -1}}), rec.events());
        ASSERT_FALSE(bad);
        EXPECT_EQ(bad.error().code, Errc::script);
        EXPECT_EQ(bad.error().data.at("traceback").as_array().back().at("line").as_int64(),
                  script.extension() == ".py" ? 8 : 6)
            << json::serialize(bad.error().data);
        auto again = inst->call(req({{"x", 1}}), rec.events());
        ASSERT_TRUE(again) << again.error().message;
        EXPECT_EQ(again->outputs.at("n"), json::value(2));  // the failed call did not commit
        EXPECT_EQ(inst->worker_starts(), 1u);
    }
}

TEST_F(NamespaceWorkerTest, PrintsImportsAndBytes) {
    auto py = write("p.py", R"(import sys, asyncio, json, hashlib, ctypes
@actor({"component": "p", "inports": ["data"], "outports": ["out"]})
async def process(ctx):
    print("hello from print")
    print("to stderr", file=sys.stderr)
    await asyncio.sleep(0.01)
    data = ctx.get_input("data")
    return {"out": data[::-1], "sha": hashlib.sha256(data).hexdigest()[:8],
            "json": json.dumps({"a": 1})}
)");
    auto inst = must_load(py);
    ASSERT_TRUE(inst);
    Recorded rec;
    auto r = inst->call(req({{"data", {{"$bytes", "AAEC"}}}}), rec.events());
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->outputs.at("out"), (json::object{{"$bytes", "AgEA"}}));
    EXPECT_EQ(r->outputs.at("json"), json::value("{\"a\": 1}"));
    auto has = [&](const std::string& s) {
        return std::find(rec.logs.begin(), rec.logs.end(), s) != rec.logs.end();
    };
    EXPECT_TRUE(has("hello from print"));
    EXPECT_TRUE(has("to stderr"));

    auto js = must_load(write("p.js", R"(const metadata = {component: 'p', outports: ['out']};
const crypto = require('crypto');
async function process(ctx) {
    console.log('hello', 42);
    console.error('warned');
    await new Promise((r) => setTimeout(r, 10));
    return {out: crypto.createHash('sha256').update('x').digest('hex').slice(0, 8)};
}
)"));
    ASSERT_TRUE(js);
    Recorded rec2;
    auto r2 = js->call(req({}), rec2.events());
    ASSERT_TRUE(r2) << r2.error().message;
    EXPECT_EQ(r2->outputs.at("out"), json::value("2d711642"));
    EXPECT_NE(std::find(rec2.logs.begin(), rec2.logs.end(), "hello 42"), rec2.logs.end());
    EXPECT_NE(std::find(rec2.logs.begin(), rec2.logs.end(), "warned"), rec2.logs.end());
}

TEST_F(NamespaceWorkerTest, KilledSandboxAndDeadlineGiveAFreshSandboxWithCommittedState) {
    auto py = write("k.py", R"(import time
@actor({"component": "k", "inports": ["hang"], "outports": ["n"]})
def process(ctx):
    n = ctx.get_state("n", 0) + 1
    ctx.set_state("n", n)
    if ctx.get_input("hang"):
        while True:
            pass
    return {"n": n}
)");
    auto js =
        write("k.js", R"(const metadata = {component: 'k', inports: ['hang'], outports: ['n']};
async function process(ctx) {
    const n = ctx.getState('n', 0) + 1;
    ctx.setState('n', n);
    if (ctx.getInput('hang')) await new Promise((r) => setTimeout(r, 60000));
    return {n};
}
)");
    for (const auto& script : {py, js}) {
        auto inst = must_load(script);
        ASSERT_TRUE(inst);
        Recorded rec;
        ASSERT_TRUE(inst->call(req({{"hang", false}}), rec.events()));  // n = 1 committed
        // Killed from the host, mid-call: the whole sandbox goes.
        const pid_t pid = inst->worker_pid();
        runtime::CallEvents ev;
        std::thread killer([pid] {
            std::this_thread::sleep_for(std::chrono::milliseconds(200));
            ::kill(pid, SIGKILL);
        });
        auto r = inst->call(req({{"hang", true}}), ev);
        killer.join();
        ASSERT_FALSE(r);
        EXPECT_EQ(r.error().code, Errc::worker_crashed) << r.error().message;
        EXPECT_NE(r.error().message.find("SIGKILL"), std::string::npos) << r.error().message;
        EXPECT_NE(::kill(pid, 0), 0);  // reaped
        // A deadline.
        auto rq = req({{"hang", true}});
        rq.timeout = std::chrono::milliseconds(300);
        auto t = inst->call(rq, ev);
        ASSERT_FALSE(t);
        EXPECT_EQ(t.error().code, Errc::timeout);
        auto next = inst->call(req({{"hang", false}}), rec.events());
        ASSERT_TRUE(next) << next.error().message;
        EXPECT_EQ(next->outputs.at("n"), json::value(2));
        EXPECT_EQ(inst->worker_starts(), 3u);
    }
}

TEST_F(NamespaceWorkerTest, ScriptsThatExitEndTheirSandboxCleanly) {
    // os._exit in the worker: init reports the worker's own status, not its own.
    auto inst = must_load(write("x.py", R"(import os
@actor({"component": "x", "inports": ["code"], "outports": ["ok"]})
def process(ctx):
    if ctx.get_input("code") >= 0:
        os._exit(ctx.get_input("code"))
    return {"ok": 1}
)"));
    ASSERT_TRUE(inst);
    Recorded rec;
    auto r = inst->call(req({{"code", 7}}), rec.events());
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, Errc::worker_crashed);
    EXPECT_NE(r.error().message.find("exited with status 7"), std::string::npos)
        << r.error().message;
    ASSERT_TRUE(inst->call(req({{"code", -1}}), rec.events()));
}

TEST_F(NamespaceWorkerTest, SandboxesStartAndStopWithoutLeaks) {
    // Each start creates cgroups and namespaces; stopping must release all of them.
    auto count_fds = [] {
        std::size_t n = 0;
        for ([[maybe_unused]] const auto& e : fs::directory_iterator("/proc/self/fd")) ++n;
        return n;
    };
    const std::size_t fds = count_fds();
    for (int i = 0; i < 20; ++i) {
        sandbox::WorkerSpec spec;
        spec.argv = {"/usr/bin/true"};
        auto p = backend_->spawn(spec);
        ASSERT_TRUE(p) << p.error().message;
        const auto st = (*p)->kill_and_wait();
        (void)st;
    }
    EXPECT_EQ(count_fds(), fds);
    // Every sandbox's groups went with it; what is left is the backend's one spare (made ahead
    // for the next sandbox, holding no process), which goes with the backend.
    const auto support = backend_->cgroup_support();
    const std::string prefix = std::to_string(::getpid()) + "-";
    auto ours = [&](const std::string& base) {
        std::vector<fs::path> found;
        if (!fs::exists(base)) return found;  // removed with the last group
        for (const auto& e : fs::directory_iterator(base))
            if (e.path().filename().string().rfind(prefix, 0) == 0) found.push_back(e.path());
        return found;
    };
    for (const auto& c : support.controllers) {
        if (!c.usable()) continue;
        const auto left = ours(c.base);
        EXPECT_LE(left.size(), 1u) << "left behind: " << (left.empty() ? "" : left.back().string());
        for (const auto& g : left) {
            std::ifstream procs(g / "cgroup.procs");
            std::string pid;
            EXPECT_FALSE(procs >> pid) << g << " still holds " << pid;
        }
    }
    backend_.reset();
    for (const auto& c : support.controllers) {
        if (!c.usable()) continue;
        for (const auto& g : ours(c.base)) ADD_FAILURE() << "left behind: " << g;
    }
}

// From its second start on the backend makes the next sandbox's groups ahead; the next start
// takes them: the spare seen between two starts is where the later sandbox runs.
TEST_F(NamespaceWorkerTest, ASpareSetOfGroupsIsMadeAheadAndTaken) {
    if (!has_cgroup("pids")) GTEST_SKIP() << "no writable pids cgroup here";
    std::string base;
    for (const auto& c : backend_->cgroup_support().controllers)
        if (c.name == "pids") base = c.base;
    const std::string prefix = std::to_string(::getpid()) + "-";
    // This process's groups under `base`, and which of them hold a process.
    auto groups = [&] {
        std::map<std::string, bool> found;
        if (!fs::exists(base)) return found;
        for (const auto& e : fs::directory_iterator(base)) {
            if (e.path().filename().string().rfind(prefix, 0) != 0) continue;
            std::ifstream procs(e.path() / "cgroup.procs");
            std::string pid;
            found[e.path().filename().string()] = static_cast<bool>(procs >> pid);
        }
        return found;
    };
    auto sleeper = [&] {
        sandbox::WorkerSpec spec;
        spec.argv = {"/usr/bin/sleep", "60"};
        auto p = backend_->spawn(spec);
        EXPECT_TRUE(p) << (p ? "" : p.error().message);
        return p ? std::move(*p) : nullptr;
    };
    auto first = sleeper();
    ASSERT_TRUE(first);
    for (const auto& [name, busy] : groups()) EXPECT_TRUE(busy) << "a spare after one start";
    auto second = sleeper();
    ASSERT_TRUE(second);
    std::string spare;
    for (const auto& [name, busy] : groups())
        if (!busy) spare = name;
    ASSERT_FALSE(spare.empty()) << "no spare after the second start";
    auto third = sleeper();
    ASSERT_TRUE(third);
    const auto now = groups();
    ASSERT_TRUE(now.contains(spare));
    EXPECT_TRUE(now.at(spare)) << "the third sandbox does not run in the spare " << spare;
}

TEST_F(NamespaceWorkerTest, RunsForAnOrdinaryUserToo) {
    if (::geteuid() != 0) GTEST_SKIP() << "already unprivileged: every other test covers it";
    // As root, the test drops to nobody in a child process and starts a sandbox there: the
    // id map is then the caller's own id, setgroups is denied, and no cgroup is writable.
    auto spec = runtime::spec_from_file(write("d.py", kDouble));
    ASSERT_TRUE(spec) << spec.error().message;
    call_as_nobody(std::move(*spec), [] {
        auto b = sandbox::NamespaceBackend::create();
        return b ? std::move(*b) : nullptr;
    });
}

TEST_F(NamespaceWorkerTest, SetUpFailuresNameTheStepAndHowToFixIt) {
    sandbox::WorkerSpec spec;
    spec.argv = {"/usr/bin/no-such-interpreter"};
    auto p = backend_->spawn(spec);
    ASSERT_FALSE(p);
    EXPECT_EQ(p.error().code, Errc::sandbox_unavailable);
    EXPECT_EQ(p.error().data.at("step").as_string(), "execve");
    EXPECT_EQ(p.error().data.at("errno"), json::value(ENOENT));
    EXPECT_NE(p.error().message.find("not installed under /usr"), std::string::npos)
        << p.error().message;

    spec.argv = {"/usr/bin/true"};
    spec.workdir = "/home";
    auto outside = backend_->spawn(spec);
    ASSERT_FALSE(outside);
    EXPECT_EQ(outside.error().code, Errc::invalid_argument) << outside.error().message;

    spec.workdir = "/tmp/job/dir";
    auto nested = backend_->spawn(spec);
    ASSERT_TRUE(nested) << nested.error().message;
}

// What the sandbox reports about its limits, then waits to be killed.
const char* const kLimitsProbe = R"(import os, resource, time
s = os.statvfs("/tmp")
print(s.f_blocks * s.f_frsize, s.f_files, resource.getrlimit(resource.RLIMIT_NOFILE)[0],
      resource.getrlimit(resource.RLIMIT_NPROC)[0], flush=True)
time.sleep(60)
)";

TEST_F(NamespaceWorkerTest, SpawnsWithItsOwnLimits) {
    const sandbox::SandboxLimits defaults = backend_->default_limits();
    sandbox::SandboxLimits l = defaults;
    l.tmpfs_bytes = 8ull << 20;
    l.tmpfs_inodes = 500;
    l.open_files = 100;
    l.memory_bytes = 96ull << 20;
    l.pids = 20;
    l.cpu_milli = 500;
    auto p = start_python(kLimitsProbe, l);
    ASSERT_TRUE(p);
    ASSERT_NE(p->limits(), nullptr);
    EXPECT_EQ(*p->limits(), l);
    // With a pids group RLIMIT_NPROC stays above the pids limit, so that the group is what
    // refuses forks (and counts it); without one it takes the pids limit's place.
    const std::uint32_t nproc = has_cgroup("pids") ? std::max(l.nproc, l.pids + 1) : l.pids;
    EXPECT_EQ(read_line(*p), "8388608 500 100 " + std::to_string(nproc));
    if (has_cgroup("memory")) {
        const std::string d = cgroup_dir(*p, "memory");
        EXPECT_EQ(read_text(d + "/memory.limit_in_bytes"), std::to_string(l.memory_bytes));
        if (fs::exists(d + "/memory.memsw.limit_in_bytes")) {
            EXPECT_EQ(read_text(d + "/memory.memsw.limit_in_bytes"),
                      std::to_string(l.memory_bytes));
        }
    }
    if (has_cgroup("pids")) {
        EXPECT_EQ(read_text(cgroup_dir(*p, "pids") + "/pids.max"), "20");
    }
    if (has_cgroup("cpu")) {
        EXPECT_EQ(read_text(cgroup_dir(*p, "cpu") + "/cpu.cfs_quota_us"), "50000");
    }
    p->kill_and_wait();

    // Zero is refused, not read as "no limit" (tmpfs would).
    sandbox::WorkerSpec zero;
    zero.argv = {"/usr/bin/true"};
    zero.limits = defaults;
    zero.limits->tmpfs_bytes = 0;
    auto z = backend_->spawn(zero);
    ASSERT_FALSE(z);
    EXPECT_EQ(z.error().code, Errc::invalid_argument);
    EXPECT_EQ(z.error().data.at("limit"), json::value("tmpfs_bytes"));

    // Unset: the backend's own, from the plans built once.
    auto d = start_python(kLimitsProbe);
    ASSERT_TRUE(d);
    EXPECT_EQ(*d->limits(), defaults);
    const std::uint32_t dnproc = has_cgroup("pids") ? std::max(defaults.nproc, defaults.pids + 1)
                                                    : std::min(defaults.nproc, defaults.pids);
    EXPECT_EQ(read_line(*d),
              std::to_string(defaults.tmpfs_bytes) + " " + std::to_string(defaults.tmpfs_inodes) +
                  " " + std::to_string(defaults.open_files) + " " + std::to_string(dnproc));
}

TEST_F(NamespaceWorkerTest, AnInstanceAsksForItsOwnLimits) {
    auto spec = runtime::spec_from_file(write("t.py", R"(import os
@actor({"component": "t", "outports": ["out"]})
def process(ctx):
    s = os.statvfs("/tmp")
    return {"tmpfs": s.f_blocks * s.f_frsize, "pid": os.getpid()}
)"));
    ASSERT_TRUE(spec) << spec.error().message;
    spec->on_log = [](const runtime::LogLine&) {};
    spec->limits = runtime::default_limits(*backend_);
    spec->limits->sandbox.tmpfs_bytes = 8ull << 20;
    auto inst = runtime::Instance::create(*backend_, std::move(*spec));
    ASSERT_TRUE(inst) << inst.error().message;
    Recorded rec;
    auto r = (*inst)->call(req({}), rec.events());
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->outputs.at("tmpfs"), json::value(8ll << 20));
    // A call asking for another tmpfs size gets a sandbox of its own.
    auto rq = req({});
    rq.limits = (*inst)->limits();
    rq.limits->sandbox.tmpfs_bytes = 4ull << 20;
    auto other = (*inst)->call(rq, rec.events());
    ASSERT_TRUE(other) << other.error().message;
    EXPECT_EQ(other->outputs.at("tmpfs"), json::value(4ll << 20));
    EXPECT_EQ((*inst)->worker_starts(), 2u);
}

TEST_F(NamespaceWorkerTest, UpdatesCgroupLimitsLive) {
    for (const char* c : {"memory", "pids", "cpu"})
        if (!has_cgroup(c))
            GTEST_SKIP() << "no writable " << c
                         << " cgroup here: " << backend_->cgroup_support().summary();
    auto p = start_python("import time; time.sleep(60)");
    ASSERT_TRUE(p);
    const sandbox::SandboxLimits start = *p->limits();
    const std::string mem = cgroup_dir(*p, "memory"), pids = cgroup_dir(*p, "pids"),
                      cpu = cgroup_dir(*p, "cpu");
    const bool memsw = fs::exists(mem + "/memory.memsw.limit_in_bytes");
    auto expect_files = [&](const sandbox::SandboxLimits& l) {
        EXPECT_EQ(read_text(mem + "/memory.limit_in_bytes"), std::to_string(l.memory_bytes));
        if (memsw) {
            EXPECT_EQ(read_text(mem + "/memory.memsw.limit_in_bytes"),
                      std::to_string(l.memory_bytes));
        }
        EXPECT_EQ(read_text(pids + "/pids.max"), std::to_string(l.pids));
        EXPECT_EQ(read_text(cpu + "/cpu.cfs_quota_us"), std::to_string(l.cpu_milli * 100));
    };
    expect_files(start);

    // Raising memory: memory+swap must go first in v1, or the write fails.
    sandbox::SandboxLimits up = start;
    up.memory_bytes = 512ull << 20;
    up.pids = 40;
    up.cpu_milli = 2000;
    auto r = p->update_limits(up);
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_TRUE(*r);
    EXPECT_EQ(*p->limits(), up);
    expect_files(up);

    // Lowering: memory first.
    sandbox::SandboxLimits down = up;
    down.memory_bytes = 64ull << 20;
    down.pids = 16;
    down.cpu_milli = 250;
    r = p->update_limits(down);
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_TRUE(*r);
    expect_files(down);

    // Fixed at start: the tmpfs size, the rlimits, and a pids limit at or above the
    // RLIMIT_NPROC the sandbox started with. Nothing changes.
    sandbox::SandboxLimits tmpfs = down;
    tmpfs.tmpfs_bytes *= 2;
    tmpfs.memory_bytes = 128ull << 20;
    r = p->update_limits(tmpfs);
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_FALSE(*r);
    sandbox::SandboxLimits many = down;
    many.pids = std::max(start.nproc, start.pids + 1);
    r = p->update_limits(many);
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_FALSE(*r);
    EXPECT_EQ(*p->limits(), down);
    expect_files(down);
    // The same limits again: nothing to do.
    r = p->update_limits(down);
    ASSERT_TRUE(r && *r);
    EXPECT_FALSE(p->try_wait());
}

TEST_F(NamespaceWorkerTest, AForkBombAtThePidsLimitIsAnnounced) {
    if (!has_cgroup("pids"))
        GTEST_SKIP() << "no writable pids cgroup here: refused forks are not counted ("
                     << backend_->cgroup_support().summary() << ")";
    // Waits for the test, then forks 200 children that sleep: past the limit of 64.
    auto p = start_python(R"(import os, time
os.read(3, 1)
made, refused = 0, 0
for i in range(200):
    try:
        pid = os.fork()
    except OSError:
        refused += 1
        continue
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    made += 1
print(made, refused, flush=True)
time.sleep(60)
)");
    ASSERT_TRUE(p);
    ASSERT_EQ(p->limits()->pids, 64u);
    const int fd = p->limit_event_fd();
    ASSERT_GE(fd, 0);
    // Nothing crossed yet (one scan interval and a bit, to be sure).
    pollfd f{fd, POLLIN, 0};
    EXPECT_EQ(::poll(&f, 1, 250), 0);
    EXPECT_FALSE(p->limit_crossed());
    release(*p);
    f.revents = 0;
    ASSERT_EQ(::poll(&f, 1, 5000), 1) << "no limit event within 5 s";
    auto hit = p->limit_crossed();
    ASSERT_TRUE(hit);
    EXPECT_EQ(hit->limit, "pids");
    EXPECT_EQ(hit->value, 64u);
    const std::string counts = read_line(*p);
    EXPECT_NE(counts.find(' '), std::string::npos) << counts;
    EXPECT_GT(std::stoi(counts.substr(counts.find(' ') + 1)), 0) << counts;
    // The sandbox lives on until its owner kills it; the answer stays the same.
    EXPECT_FALSE(p->try_wait());
    EXPECT_EQ(p->limit_crossed()->limit, "pids");
}

// A limit crossed between calls is acted on when it is seen, not by the next call: here a
// thread left running forks past the pids limit after its call has ended.
TEST_F(NamespaceWorkerTest, APidsLimitCrossedBetweenCallsCostsTheWorkerThen) {
    if (!has_cgroup("pids"))
        GTEST_SKIP() << "no writable pids cgroup here: refused forks are not counted ("
                     << backend_->cgroup_support().summary() << ")";
    auto spec = runtime::spec_from_file(write("forker.py", R"(import os, threading, time
@actor({"component": "forker"})
def process(ctx):
    def fork_many():
        time.sleep(0.2)  # after the call has ended
        for i in range(200):
            try:
                if os.fork() == 0:
                    time.sleep(60)
                    os._exit(0)
            except OSError:
                pass
    threading.Thread(target=fork_many, daemon=True).start()
    return {}
)"));
    ASSERT_TRUE(spec) << spec.error().message;
    spec->on_log = [](const runtime::LogLine&) {};
    spec->limits = runtime::default_limits(*backend_);
    spec->limits->sandbox.pids = 64;
    auto inst = runtime::Instance::create(*backend_, std::move(*spec));
    ASSERT_TRUE(inst) << inst.error().message;
    ASSERT_TRUE((*inst)->call(req({}), {}));
    const pid_t pid = (*inst)->worker_pid();
    auto lost = sandflow::testing::poll_idle_until(**inst, [] { return false; });
    ASSERT_FALSE(lost) << "the crossed limit was not seen between calls";
    EXPECT_EQ(lost.error().code, Errc::limit_exceeded) << lost.error().message;
    EXPECT_EQ(lost.error().data.at("limit"), "pids");
    EXPECT_NE(lost.error().message.find("between calls"), std::string::npos)
        << lost.error().message;
    EXPECT_TRUE(sandflow::testing::process_gone(pid));
    EXPECT_TRUE((*inst)->call(req({}), {}));
    EXPECT_EQ((*inst)->worker_starts(), 2u);
}

TEST_F(NamespaceWorkerTest, AnOomKillInsideIsAnnounced) {
    if (!has_cgroup("memory"))
        GTEST_SKIP() << "no writable memory cgroup here: OOM kills are not counted ("
                     << backend_->cgroup_support().summary() << ")";
    sandbox::SandboxLimits l = backend_->default_limits();
    l.memory_bytes = 64ull << 20;
    // A child allocates until the OOM killer takes it; the worker itself survives.
    auto p = start_python(R"(import os, time
os.read(3, 1)
pid = os.fork()
if pid == 0:
    hog = []
    while True:
        hog.append(b"x" * (8 << 20))
_, status = os.waitpid(pid, 0)
print("child", status, flush=True)
time.sleep(60)
)",
                          l);
    ASSERT_TRUE(p);
    const int fd = p->limit_event_fd();
    ASSERT_GE(fd, 0);
    pollfd f{fd, POLLIN, 0};
    EXPECT_EQ(::poll(&f, 1, 0), 0);
    EXPECT_FALSE(p->limit_crossed());
    release(*p);
    f.revents = 0;
    ASSERT_EQ(::poll(&f, 1, 10'000), 1) << "no limit event within 10 s";
    auto hit = p->limit_crossed();
    ASSERT_TRUE(hit);
    EXPECT_EQ(hit->limit, "memory");
    EXPECT_EQ(hit->value, l.memory_bytes);
    EXPECT_EQ(read_line(*p), "child 9");  // SIGKILL
    EXPECT_FALSE(p->try_wait());
}

// A runtime killed with SIGKILL leaves its sandboxes' groups behind; the next runtime
// removes those of runtimes that are gone, and never a live runtime's.
TEST_F(NamespaceWorkerTest, GroupsLeftByAGoneRuntimeAreRemoved) {
    if (!has_cgroup("pids")) GTEST_SKIP() << "no writable pids cgroup here";
    std::string base;
    for (const auto& c : backend_->cgroup_support().controllers)
        if (c.name == "pids") base = c.base;
    // A pid that runs nothing now: the test's own child, reaped.
    const pid_t gone = ::fork();
    if (gone == 0) ::_exit(0);
    ASSERT_GT(gone, 0);
    ASSERT_EQ(::waitpid(gone, nullptr, 0), gone);
    const std::string stale = base + "/" + std::to_string(gone) + "-0000beef-1";
    const std::string live = base + "/" + std::to_string(::getpid()) + "-0000beef-1";
    ::mkdir(base.c_str(), 0755);
    ASSERT_EQ(::mkdir(stale.c_str(), 0755), 0) << std::strerror(errno);
    ASSERT_EQ(::mkdir(live.c_str(), 0755), 0) << std::strerror(errno);

    EXPECT_GE(sandbox::mech::remove_stale_groups(backend_->cgroup_support()), 1u);
    EXPECT_NE(::access(stale.c_str(), F_OK), 0) << stale << " was left";
    EXPECT_EQ(::access(live.c_str(), F_OK), 0) << "a live runtime's group was removed";
    ::rmdir(live.c_str());
    ::rmdir(base.c_str());

    // New groups carry a per-process random part: a reused pid cannot collide.
    const std::string a = sandbox::mech::new_group_id(), b = sandbox::mech::new_group_id();
    EXPECT_NE(a, b);
    EXPECT_EQ(a.rfind(std::to_string(::getpid()) + "-", 0), 0u) << a;
}
