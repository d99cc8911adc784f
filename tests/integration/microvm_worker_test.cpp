// The microvm backend: a Python actor's calls served from inside a VM of its own, what the
// worker sees there, how the VM ends and what its errors say. VMs boot in the optimised
// build only (sandflow::testing::kTestMicrovm) and few of them: under TCG each boot costs
// several seconds. Skipped, with the reason, where QEMU or the guest image is missing.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/utsname.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "runtime/instance.hpp"
#include "runtime/warm_pool.hpp"
#include "sandbox/mechanisms/cgroups.hpp"
#include "sandbox/microvm/guest_protocol.hpp"
#include "sandbox/microvm/microvm_backend.hpp"
#include "support/test_support.hpp"
#include "support/worker_support.hpp"

using namespace sandflow;
namespace fs = std::filesystem;

namespace {

class MicrovmWorkerTest : public ::testing::Test {
  protected:
    void SetUp() override {
        if (!sandflow::testing::kTestMicrovm)
            GTEST_SKIP() << "microVMs boot in the optimised build only";
        auto b = sandbox::MicrovmBackend::create();
        if (!b) GTEST_SKIP() << "the microvm backend cannot run here: " << b.error().message;
        backend_ = std::move(*b);
        std::printf("[ microvm ] %s\n", sandbox::MicrovmBackend::detect_accel().why.c_str());
        char tmpl[] = "/tmp/sandflow-microvm-test-XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
    }
    void TearDown() override {
        backend_.reset();
        if (!dir_.empty()) fs::remove_all(dir_);
    }

    std::unique_ptr<sandbox::Process> start(std::vector<std::string> argv) {
        sandbox::WorkerSpec spec;
        spec.argv = std::move(argv);
        auto p = backend_->spawn(spec);
        EXPECT_TRUE(p) << (p ? "" : p.error().message);
        return p ? std::move(*p) : nullptr;
    }

    // How the VM ends by itself, within its boot allowance; the console is drained meanwhile
    // (a full socket would stall the guest) and kept for failure messages.
    std::optional<sandbox::ExitStatus> wait_exit(sandbox::Process& p) {
        const auto until = std::chrono::steady_clock::now() + backend_->boot_allowance();
        std::optional<sandbox::ExitStatus> st;
        while (!(st = p.try_wait()) && std::chrono::steady_clock::now() < until) {
            char buf[4096];
            ssize_t n;
            while ((n = ::read(p.stderr_fd(), buf, sizeof buf)) > 0)
                console_.append(buf, static_cast<std::size_t>(n));
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
        return st;
    }

    std::unique_ptr<sandbox::MicrovmBackend> backend_;
    fs::path dir_;
    std::string console_;
};

}  // namespace

// No VM: how the guest reports the worker's end through QEMU's exit status, and back.
TEST(MicrovmProtocol, ExitCodesAndTheStartFrameRoundTrip) {
    using namespace sandbox::microvm;
    for (int code : {0, 1, 7, 62}) {
        const int qemu = static_cast<int>((encode_exit(false, code) << 1) | 1) & 0xff;
        const GuestExit g = decode_exit(qemu);
        EXPECT_TRUE(g.reported && !g.signaled && g.value == code) << code;
    }
    EXPECT_EQ(decode_exit(static_cast<int>((encode_exit(false, 200) << 1) | 1) & 0xff).value, 62)
        << "exit statuses above 62 read as 62";
    for (int sig : {SIGKILL, SIGTERM, SIGXCPU, 63}) {
        const GuestExit g = decode_exit(static_cast<int>((encode_exit(true, sig) << 1) | 1) & 0xff);
        EXPECT_TRUE(g.reported && g.signaled && g.value == sig) << sig;
    }
    EXPECT_FALSE(decode_exit(0).reported) << "QEMU's 0: the guest ended without a report";
    EXPECT_FALSE(decode_exit(1).reported) << "QEMU's 1: QEMU itself failed";

    StartSpec s;
    s.argv = {"/usr/bin/python3", "-c", "print('a=b')\n"};
    s.env = {"LANG=C.UTF-8"};
    s.tmpfs_bytes = 1 << 20;
    s.tmpfs_inodes = 16;
    s.open_files = 8;
    s.nproc = 4;
    s.cpu_seconds = 9;
    s.clock_ns = 1'796'219'068'057'393'000;
    const std::string frame = encode_start(s);
    StartSpec back;
    ASSERT_TRUE(decode_start(std::string_view(frame).substr(4), back));
    EXPECT_EQ(back.argv, s.argv);
    EXPECT_EQ(back.env, s.env);
    EXPECT_EQ(back.tmpfs_bytes, s.tmpfs_bytes);
    EXPECT_EQ(back.cpu_seconds, s.cpu_seconds);
    EXPECT_EQ(back.clock_ns, s.clock_ns);
    StartSpec bad;
    EXPECT_FALSE(decode_start(std::string_view("a=x\0", 4), bad)) << "a relative argv[0]";
    EXPECT_FALSE(decode_start(std::string_view("a=/x\0zz=1\0", 10), bad)) << "an unknown key";
    EXPECT_FALSE(decode_start(std::string_view("a=/x", 4), bad)) << "an unterminated entry";
}

TEST(MicrovmBackend, ErrorsSayHowToFixThem) {
    sandbox::MicrovmOptions no_qemu;
    no_qemu.accel = "tcg";
    no_qemu.qemu = "/nonexistent/qemu-system-x86_64";
    auto b = sandbox::MicrovmBackend::create(no_qemu);
    ASSERT_FALSE(b);
    EXPECT_EQ(b.error().code, Errc::sandbox_unavailable);
    EXPECT_NE(b.error().message.find("apt-get install qemu-system-x86"), std::string::npos)
        << b.error().message;

    sandbox::MicrovmOptions no_image;
    no_image.accel = "tcg";
    no_image.image_dir = "/nonexistent";
    b = sandbox::MicrovmBackend::create(no_image);
    if (::access(std::string(sandbox::microvm::kQemuPath).c_str(), X_OK) != 0)
        GTEST_SKIP() << "QEMU is not installed: the image is checked after it";
    ASSERT_FALSE(b);
    EXPECT_NE(b.error().message.find("/nonexistent/vmlinuz"), std::string::npos)
        << b.error().message;
    EXPECT_NE(b.error().message.find("make microvm-image"), std::string::npos) << b.error().message;

    sandbox::MicrovmOptions bad_accel;
    bad_accel.accel = "hvf";
    b = sandbox::MicrovmBackend::create(bad_accel);
    ASSERT_FALSE(b);
    EXPECT_EQ(b.error().code, Errc::invalid_argument);
}

// One VM serves a Python actor's calls, with its state kept between them; from inside, the
// worker sees the guest's kernel, runs as nobody without capabilities, cannot write the
// host's /usr, sees no host file outside it and has no network. Its prints are captured.
TEST_F(MicrovmWorkerTest, ServesAPythonActorsCallsFromInsideAVmOfItsOwn) {
    const fs::path script = sandflow::testing::write_script(dir_, "vm.py", R"PY(import os, socket
@actor({"component": "vm", "inports": ["input"], "outports": ["output", "view"]})
async def process(context):
    n = (context.get_state("calls") or 0) + 1
    context.set_state("calls", n)
    print("call", n, "in the guest")
    view = {"kernel": os.uname().release, "uid": os.getuid(), "pid1": os.getpid() == 1,
            "caps": open("/proc/self/status").read().split("CapEff:")[1].split()[0]}
    try:
        open("/usr/sandflow-probe", "w")
        view["usr"] = "writable"
    except OSError as e:
        view["usr"] = e.strerror
    # The image's own entries; /root is the guest kernel's (made empty, 0700, for its
    # initramfs handling).
    view["host_files"] = sorted(p for p in os.listdir("/") if p not in
        ("bin", "dev", "etc", "init", "lib", "lib64", "proc", "root", "sandflow", "sbin", "sys",
         "tmp", "usr"))
    # The image's own /etc, not the host's: one account, no shadow file.
    view["passwd"] = [l.split(":")[0] for l in open("/etc/passwd").read().splitlines()]
    view["shadow"] = os.path.exists("/etc/shadow")
    view["interfaces"] = sorted(name for _, name in socket.if_nameindex())
    try:
        socket.create_connection(("10.0.2.2", 80), timeout=2)
        view["net"] = "connected"
    except OSError as e:
        view["net"] = e.strerror
    await context.send_output("output", context.get_input("input") * 2)
    await context.send_output("view", view)
    return {"calls": n}
)PY");
    auto spec = runtime::spec_from_file(script);
    ASSERT_TRUE(spec) << spec.error().message;
    std::vector<std::string> logs;
    spec->on_log = [&logs](const runtime::LogLine& l) { logs.push_back(l.text); };
    auto inst = runtime::Instance::create(*backend_, std::move(*spec));
    ASSERT_TRUE(inst) << inst.error().message;

    sandflow::testing::RecordedEvents ev;
    auto r = (*inst)->call(sandflow::testing::call_request({{"input", 21}}), ev.events());
    ASSERT_TRUE(r) << r.error().message;
    ASSERT_EQ(ev.outputs.size(), 2u);
    EXPECT_EQ(ev.outputs[0].second, 42);
    const auto& view = ev.outputs[1].second.as_object();
    struct utsname host {};
    ::uname(&host);
    EXPECT_NE(view.at("kernel").as_string(), host.release) << "the guest's kernel is its own";
    EXPECT_EQ(view.at("uid"), 65534);
    EXPECT_EQ(view.at("pid1"), false) << "the agent is PID 1, the worker its child";
    EXPECT_EQ(view.at("caps"), "0000000000000000");
    EXPECT_EQ(view.at("usr"), "Read-only file system");
    EXPECT_EQ(view.at("host_files"), json::array{}) << json::serialize(view);
    EXPECT_EQ(view.at("passwd"), (json::array{"sandbox"})) << json::serialize(view);
    EXPECT_EQ(view.at("shadow"), false);
    EXPECT_EQ(view.at("interfaces"), (json::array{"lo"}))
        << "no network device: the guest's own loopback only";
    EXPECT_NE(view.at("net"), "connected");

    sandflow::testing::RecordedEvents ev2;
    r = (*inst)->call(sandflow::testing::call_request({{"input", 5}}), ev2.events());
    ASSERT_TRUE(r) << r.error().message;
    ASSERT_FALSE(ev2.outputs.empty());
    EXPECT_EQ(ev2.outputs[0].second, 10);
    EXPECT_EQ(r->outputs.at("calls"), 2) << "the same worker, its committed state";
    bool printed = false;
    for (const auto& l : ev2.logs)
        printed = printed || l.find("call 2 in the guest") != std::string::npos;
    EXPECT_TRUE(printed) << "the worker's stdout reaches the runtime's log";
}

// The agent reports the worker's exit status and signal through QEMU's own exit status.
TEST_F(MicrovmWorkerTest, TheExitStatusIsTheWorkers) {
    auto code = start({"/bin/sh", "-c", "exit 7"});
    ASSERT_TRUE(code);
    auto st = wait_exit(*code);
    ASSERT_TRUE(st) << "console: " << console_;
    EXPECT_EQ(st->describe(), "exited with status 7") << "console: " << console_;
    auto signalled = start({"/bin/sh", "-c", "kill -TERM $$"});
    ASSERT_TRUE(signalled);
    st = wait_exit(*signalled);
    ASSERT_TRUE(st) << "console: " << console_;
    EXPECT_TRUE(st->killed_by(SIGTERM)) << st->describe() << "; console: " << console_;
}

// Killing the Process kills QEMU, and the VM with it, at any point of its boot.
TEST_F(MicrovmWorkerTest, KillEndsTheVm) {
    auto p = start({"/bin/sleep", "1000"});
    ASSERT_TRUE(p);
    const pid_t qemu = p->pid();
    const sandbox::ExitStatus st = p->kill_and_wait();
    EXPECT_TRUE(st.killed_by(SIGKILL)) << st.describe();
    EXPECT_TRUE(sandflow::testing::process_gone(qemu));
}

// Node's shim takes its channel as a socket (net.Socket): the agent relays the port through
// one, so the JavaScript actors run in the VM as the Python ones do.
TEST_F(MicrovmWorkerTest, ServesAJavaScriptActor) {
    const fs::path script =
        sandflow::testing::write_script(dir_, "double.js", sandflow::testing::kDoubleJs);
    auto spec = runtime::spec_from_file(script);
    ASSERT_TRUE(spec) << spec.error().message;
    spec->on_log = [](const runtime::LogLine&) {};
    auto inst = runtime::Instance::create(*backend_, std::move(*spec));
    ASSERT_TRUE(inst) << inst.error().message;
    sandflow::testing::RecordedEvents ev;
    auto r = (*inst)->call(sandflow::testing::call_request({{"input", 21}}), ev.events());
    ASSERT_TRUE(r) << r.error().message;
    ASSERT_EQ(ev.outputs.size(), 1u);
    EXPECT_EQ(ev.outputs[0].second, 42);
}

// Package sets in the VM (docs/actors.md#packages): the guest shares the host's /usr, so the
// `system` set is there, numpy's native modules and the library it reaches through Debian's
// alternatives (libblas.so.3) included; a set outside /usr is refused, saying why.
TEST_F(MicrovmWorkerTest, PackageSetsUnderUsrRunInTheVmAndOthersAreRefused) {
    if (!fs::exists("/usr/lib/python3/dist-packages/numpy") ||
        !fs::exists("/usr/lib/python3/dist-packages/yaml"))
        GTEST_SKIP()
            << "python3-numpy and python3-yaml are not installed (make deps installs them)";
    const fs::path script = sandflow::testing::write_script(dir_, "stats.py", R"PY(import numpy
import yaml

@actor({"component": "stats", "inports": ["doc"], "outports": ["sum"],
        "requires": ["yaml", "numpy"]})
def process(context):
    return {"sum": float(numpy.asarray(yaml.safe_load(context.get_input("doc"))).sum())}
)PY");
    auto sets = actor::PackageCatalog::create({"system"}, false);
    ASSERT_TRUE(sets) << sets.error().message;
    auto spec = runtime::spec_from_file(script);
    ASSERT_TRUE(spec) << spec.error().message;
    ASSERT_TRUE(runtime::resolve_packages(*spec, **sets, true));
    spec->on_log = [](const runtime::LogLine&) {};
    auto inst = runtime::Instance::create(*backend_, std::move(*spec));
    ASSERT_TRUE(inst) << inst.error().message;
    auto r = (*inst)->call(sandflow::testing::call_request({{"doc", "[1, 2, 3.5]"}}), {});
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->outputs.at("sum"), 6.5);

    sandbox::WorkerSpec outside;
    outside.argv = {"/usr/bin/true"};
    outside.shared = {{dir_.string(), "python/mine"}};
    ::chmod(dir_.c_str(), 0755);
    auto refused = backend_->spawn(outside);
    ASSERT_FALSE(refused);
    EXPECT_NE(refused.error().message.find("only the host's /usr"), std::string::npos)
        << refused.error().message;
}

namespace {
// FNV-1a of a whole file, read in chunks (a snapshot's RAM file is a few hundred MiB, sparse).
std::uint64_t file_hash(const std::string& path) {
    std::uint64_t h = 1469598103934665603ull;
    std::ifstream in(path, std::ios::binary);
    std::vector<char> buf(1 << 20);
    while (in.read(buf.data(), static_cast<std::streamsize>(buf.size())) || in.gcount() > 0) {
        for (std::streamsize i = 0; i < in.gcount(); ++i)
            h = (h ^ static_cast<unsigned char>(buf[static_cast<std::size_t>(i)])) *
                1099511628211ull;
        if (!in) break;
    }
    return h;
}
}  // namespace

// Warm start by snapshot: the first VM is saved once its agent waits for a start frame and
// every later one is restored from it, its RAM the saved file mapped copy-on-write. A VM
// that writes 48 MiB of its RAM leaves the file as it was, so the next restored VM starts
// from the same state and none sees another's writes; a restored guest's clock is the host's.
TEST_F(MicrovmWorkerTest, RestoredVmsShareTheSavedStateButNotTheirWrites) {
    if (backend_->accel() == sandbox::VmAccel::tcg)
        std::printf("[ microvm ] under TCG emulation: KVM does not run a guest here\n");
    auto first = start({"/bin/sh", "-c", "exit 0"});
    ASSERT_TRUE(first);
    auto st = wait_exit(*first);
    ASSERT_TRUE(st && st->describe() == "exited with status 0") << "console: " << console_;
    ASSERT_EQ(backend_->snapshots_taken(), 1u);
    const std::string ram = backend_->snapshot_ram(backend_->default_limits());
    ASSERT_FALSE(ram.empty());
    const std::uint64_t before = file_hash(ram);

    auto writer = start({"/usr/bin/python3", "-c",
                         "import time\n"
                         "open('/tmp/fill', 'wb').write(b'x' * (48 << 20))\n"
                         "print(int(time.time()))\n"});
    ASSERT_TRUE(writer);
    st = wait_exit(*writer);
    ASSERT_TRUE(st && st->describe() == "exited with status 0")
        << (st ? st->describe() : "still running") << "; console: " << console_;
    const std::string out = sandbox::read_available(writer->stdout_fd(), 4096);
    const long long guest_now = std::atoll(out.c_str());
    const long long host_now = static_cast<long long>(::time(nullptr));
    EXPECT_LT(std::llabs(host_now - guest_now), 120) << "guest printed '" << out << "'";
    EXPECT_EQ(file_hash(ram), before) << "a restored VM wrote the snapshot's RAM file";

    auto next = start({"/bin/sh", "-c", "test ! -e /tmp/fill && exit 5"});
    ASSERT_TRUE(next);
    st = wait_exit(*next);
    ASSERT_TRUE(st) << "console: " << console_;
    EXPECT_EQ(st->describe(), "exited with status 5") << "console: " << console_;
    EXPECT_EQ(backend_->restores(), 3u);
    EXPECT_EQ(backend_->snapshots_taken(), 1u);
}

// With snapshots off every VM boots, and ends as the worker did.
TEST_F(MicrovmWorkerTest, BootsWithoutASnapshot) {
    sandbox::MicrovmOptions cold;
    cold.snapshot = false;
    auto b = sandbox::MicrovmBackend::create(cold);
    ASSERT_TRUE(b) << b.error().message;
    backend_ = std::move(*b);
    auto p = start({"/bin/sh", "-c", "exit 4"});
    ASSERT_TRUE(p);
    auto st = wait_exit(*p);
    ASSERT_TRUE(st) << "console: " << console_;
    EXPECT_EQ(st->describe(), "exited with status 4") << "console: " << console_;
    EXPECT_EQ(backend_->restores(), 0u);
}

// QEMU itself is jailed: namespaces of its own where allowed, no_new_privs, its own seccomp filter
// (-sandbox), a Landlock wall where the kernel has one, and cgroups of its own (where usable)
// holding the guest's RAM and QEMU's threads; the wall leaves the guest what it was given (its
// calls above run).
TEST_F(MicrovmWorkerTest, QemuRunsJailed) {
    auto p = start({"/bin/sleep", "1000"});
    ASSERT_TRUE(p);
    std::ifstream status("/proc/" + std::to_string(p->pid()) + "/status");
    std::string line, nnp, seccomp;
    while (std::getline(status, line)) {
        if (line.rfind("NoNewPrivs:", 0) == 0) nnp = line.substr(11);
        if (line.rfind("Seccomp:", 0) == 0) seccomp = line.substr(8);
    }
    EXPECT_NE(nnp.find('1'), std::string::npos) << "NoNewPrivs:" << nnp;
    EXPECT_NE(seccomp.find('2'), std::string::npos) << "Seccomp:" << seccomp;
    std::ifstream groups("/proc/" + std::to_string(p->pid()) + "/cgroup");
    const std::string cg((std::istreambuf_iterator<char>(groups)),
                         std::istreambuf_iterator<char>());
    if (sandbox::mech::detect_cgroup_support().controllers.empty())
        std::printf("[ microvm ] no usable cgroup controller here: QEMU runs without cgroups\n");
    else
        EXPECT_NE(cg.find("sandflow"), std::string::npos) << cg;
    if (backend_->vmm_namespaces()) {
        for (const char* ns : {"user", "net", "ipc", "uts"})
            EXPECT_NE(fs::read_symlink("/proc/" + std::to_string(p->pid()) + "/ns/" + ns),
                      fs::read_symlink(std::string("/proc/self/ns/") + ns))
                << "QEMU shares the runtime's " << ns << " namespace";
    } else {
        std::printf("[ microvm ] namespaces are refused here: QEMU runs in the runtime's\n");
    }
    p->kill_and_wait();
}

// The warm pool on this backend: it fills with restored VMs whose interpreter and SDK wait
// for a script, and an instance's load takes one of them.
TEST_F(MicrovmWorkerTest, TheWarmPoolHoldsRestoredVms) {
    runtime::PoolOptions po;
    po.python = 1;
    po.node = 0;
    auto pool = runtime::WarmPool::create(*backend_, po);
    ASSERT_TRUE(pool) << pool.error().message;
    ASSERT_TRUE((*pool)->wait_full(runtime::Clock::now() + std::chrono::seconds(180)))
        << "the pool did not fill within 180 s";
    const fs::path script =
        sandflow::testing::write_script(dir_, "double.py", sandflow::testing::kDoublePy);
    auto spec = runtime::spec_from_file(script);
    ASSERT_TRUE(spec) << spec.error().message;
    spec->pool = pool->get();
    auto inst = runtime::Instance::create(*backend_, std::move(*spec));
    ASSERT_TRUE(inst) << inst.error().message;
    sandflow::testing::RecordedEvents ev;
    auto r = (*inst)->call(sandflow::testing::call_request({{"input", 21}}), ev.events());
    ASSERT_TRUE(r) << r.error().message;
    ASSERT_EQ(ev.outputs.size(), 1u);
    EXPECT_EQ(ev.outputs[0].second, 42);
    EXPECT_EQ((*pool)->stats().python.taken, 1u);
    EXPECT_EQ((*pool)->stats().python.missed, 0u);
    EXPECT_GE(backend_->restores(), 1u) << "the pool's VMs are restored, not booted";
}
