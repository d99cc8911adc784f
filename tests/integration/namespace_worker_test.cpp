// The worker suite's kinds of scripts, in real namespace sandboxes: python3 and node must
// run unchanged inside (streaming, state, tracebacks, prints, kills, deadlines, many
// calls), and what the sandbox looks like from inside is what docs/sandbox.md says.
#include <grp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "runtime/instance.hpp"
#include "sandbox/namespace/namespace_backend.hpp"
#include "sandbox/namespace/seccomp_policy.hpp"
#include "support/worker_support.hpp"

using namespace sandflow;
namespace fs = std::filesystem;

namespace {

class NamespaceWorkerTest : public ::testing::Test {
  protected:
    void SetUp() override {
        if (auto p = sandbox::NamespaceBackend::probe(); !p)
            GTEST_SKIP() << "the namespace sandbox cannot run here: " << p.error().message;
        auto b = sandbox::NamespaceBackend::create();
        ASSERT_TRUE(b) << b.error().message;
        backend_ = std::move(*b);
        char tmpl[] = "/tmp/sandflow-ns-test-XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
    }
    void TearDown() override {
        if (!dir_.empty()) fs::remove_all(dir_);
    }

    fs::path write(const std::string& name, const std::string& text) {
        return sandflow::testing::write_script(dir_, name, text);
    }

    std::unique_ptr<runtime::Instance> must_load(const fs::path& script) {
        auto spec = runtime::spec_from_file(script);
        EXPECT_TRUE(spec) << (spec ? "" : spec.error().message);
        if (!spec) return nullptr;
        spec->on_log = [](const runtime::LogLine&) {};
        auto inst = runtime::Instance::create(*backend_, std::move(*spec));
        EXPECT_TRUE(inst) << (inst ? "" : inst.error().message);
        return inst ? std::move(*inst) : nullptr;
    }

    using Recorded = sandflow::testing::RecordedEvents;

    static runtime::CallRequest req(json::object inputs) {
        return sandflow::testing::call_request(std::move(inputs));
    }

    std::unique_ptr<sandbox::NamespaceBackend> backend_;
    fs::path dir_;
};

const char* const kDouble = sandflow::testing::kDoublePy;

const char* const kDoubleJs = sandflow::testing::kDoubleJs;

}  // namespace

TEST_F(NamespaceWorkerTest, SeedDoublingActorRunsInBothLanguages) {
    for (auto [name, text] : {std::pair{"d.py", kDouble}, std::pair{"d.js", kDoubleJs}}) {
        auto inst = must_load(write(name, text));
        ASSERT_TRUE(inst);
        Recorded rec;
        auto r = inst->call(req({{"input", 21}}), rec.events());
        ASSERT_TRUE(r) << name << ": " << r.error().message;
        ASSERT_EQ(rec.outputs.size(), 1u) << name;
        EXPECT_EQ(rec.outputs[0].second, json::value(42));
        EXPECT_EQ(r->outputs, (json::object{{"status", "completed"}}));
    }
}

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

TEST_F(NamespaceWorkerTest, ManyCallsOnOneSandbox) {
    for (auto [name, text] : {std::pair{"d.py", kDouble}, std::pair{"d.js", kDoubleJs}}) {
        auto inst = must_load(write(name, text));
        ASSERT_TRUE(inst);
        const pid_t pid = inst->worker_pid();
        for (int i = 0; i < 500; ++i) {
            Recorded rec;
            auto r = inst->call(req({{"input", i}}), rec.events());
            ASSERT_TRUE(r) << r.error().message;
            ASSERT_EQ(rec.outputs.at(0).second, json::value(2 * i));
        }
        EXPECT_EQ(inst->worker_pid(), pid);
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
    for (const auto& c : backend_->cgroup_support().controllers) {
        if (!c.usable()) continue;
        const std::string prefix = std::to_string(::getpid()) + "-";
        if (!fs::exists(c.base)) continue;  // removed with the last sandbox
        for (const auto& e : fs::directory_iterator(c.base))
            EXPECT_NE(e.path().filename().string().rfind(prefix, 0), 0u)
                << "left behind: " << e.path();
    }
}

TEST_F(NamespaceWorkerTest, RunsForAnOrdinaryUserToo) {
    if (::geteuid() != 0) GTEST_SKIP() << "already unprivileged: every other test covers it";
    // As root, the test drops to nobody in a child process and starts a sandbox there: the
    // id map is then the caller's own id, setgroups is denied, and no cgroup is writable.
    auto spec = runtime::spec_from_file(write("d.py", kDouble));
    ASSERT_TRUE(spec) << spec.error().message;
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        if (::setgroups(0, nullptr) != 0 || ::setresgid(65534, 65534, 65534) != 0 ||
            ::setresuid(65534, 65534, 65534) != 0)
            ::_exit(10);
        // Changing uid made this process non-dumpable: its /proc files would belong to
        // root, and its own sandbox's uid_map would not be writable by it.
        ::prctl(PR_SET_DUMPABLE, 1);
        auto b = sandbox::NamespaceBackend::create();
        if (!b) ::_exit(11);
        for (const auto& c : (*b)->cgroup_support().controllers)
            if (c.usable()) ::_exit(12);
        auto inst = runtime::Instance::create(**b, std::move(*spec));
        if (!inst) {
            std::fprintf(stderr, "%s\n", inst.error().message.c_str());
            ::_exit(13);
        }
        runtime::CallEvents ev;
        auto r = (*inst)->call(req({{"input", 4}}), ev);
        ::_exit(r && r->outputs.at("status") == json::value("completed") ? 0 : 14);
    }
    int st = 0;
    ASSERT_EQ(::waitpid(child, &st, 0), child);
    ASSERT_TRUE(WIFEXITED(st));
    EXPECT_EQ(WEXITSTATUS(st), 0) << "10: dropping to nobody, 11: backend, 12: a cgroup was "
                                     "writable, 13: start, 14: call";
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

TEST(SeccompPolicy, EveryRuleResolvesAndHasAReason) {
    for (const auto& r : sandbox::ns::seccomp_rules()) {
        EXPECT_GT(std::strlen(r.reason), 10u) << r.syscall;
        EXPECT_TRUE(r.errno_value == EPERM || r.errno_value == ENOSYS) << r.syscall;
        EXPECT_LT(r.arg, 6) << r.syscall;
    }
    auto prog = sandbox::ns::build_seccomp_program();
    ASSERT_TRUE(prog) << prog.error().message;
    EXPECT_GT(prog->main.size(), sandbox::ns::seccomp_rules().size());
    EXPECT_FALSE(prog->personality.empty());
}
