// Helpers shared by the suites that drive workers through runtime::Instance.
#pragma once

#include <grp.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "runtime/instance.hpp"
#include "runtime/worker.hpp"
#include "sandbox/backend.hpp"
#include "sandbox/host_probe.hpp"
#include "sandbox/none/none_backend.hpp"

namespace sandflow::testing {

// `none`, with the worker's channel on its stdin (descriptor 0) as under gvisor, where runsc
// hands a container only the standard descriptors: the SDK shims' path for that, on the
// host, in every build. A shell moves the channel from where spawn_process() puts it.
class StdinChannelBackend final : public sandbox::Backend {
  public:
    std::string_view name() const override { return "none_stdin"; }
    sandbox::IsolationLevel level() const override { return sandbox::IsolationLevel::none; }
    sandbox::SandboxLimits default_limits() const override { return none_.default_limits(); }
    int channel_fd_in_worker() const override { return 0; }
    std::string shared_dir_path(const sandbox::SharedDir& dir) const override {
        return none_.shared_dir_path(dir);
    }
    Result<std::unique_ptr<sandbox::Process>> spawn(const sandbox::WorkerSpec& spec) override {
        sandbox::WorkerSpec moved = spec;
        const std::string fd = std::to_string(sandbox::kChannelFd);
        moved.argv = {"/bin/sh", "-c", "exec \"$0\" \"$@\" 0<&" + fd + " " + fd + "<&-"};
        moved.argv.insert(moved.argv.end(), spec.argv.begin(), spec.argv.end());
        return none_.spawn(moved);
    }

  private:
    sandbox::NoneBackend none_;
};

// gVisor sandboxes are slow to start (~0.4 s to a python3 worker's hello here, ~0.6 s for
// node, as runsc, its gofer and gVisor's kernel start) and the interpreters run under
// ptrace: the suites run on gvisor once, in the optimised build only. Under AddressSanitizer the
// interpreters inside would not be instrumented, and the backend's own code is plain
// fork/exec and file writing.
#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kTestGvisor = false;
#else
inline constexpr bool kTestGvisor = true;
#endif

// microVMs boot in seconds under TCG (no usable KVM on these machines): their suite
// (microvm_worker_test) runs in the optimised build only, with few VMs, and the shared
// worker suites do not run on them.
#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kTestMicrovm = false;
#else
inline constexpr bool kTestMicrovm = true;
#endif

// The backends a suite parameterised over backends runs on.
inline std::vector<std::string> worker_backends() {
    std::vector<std::string> v = {"none", "none_stdin", "namespace", "landlock"};
    if (kTestGvisor) v.push_back("gvisor");
    return v;
}

// For suites parameterised over backends (worker_backends(), or "auto"): the
// backend to run on with `limits` as its defaults, or null with the test marked skipped,
// and why, when that sandbox cannot run here (the caller returns when IsSkipped()).
inline std::unique_ptr<sandbox::Backend> backend_for_test(
    const std::string& name, const sandbox::SandboxLimits& limits = {}) {
    if (name == "none") return std::make_unique<sandbox::NoneBackend>(limits);
    if (name == "none_stdin") return std::make_unique<StdinChannelBackend>();
    std::string chosen = name;
    if (name == "auto") {
        auto pick = sandbox::select_backend(sandbox::IsolationLevel::process);
        if (!pick) {
            [&] { GTEST_SKIP() << "auto: " << pick.error().message; }();
            return nullptr;
        }
        chosen = pick->backend;
    }
    if (auto status = sandbox::probe_backend(chosen); status && !status->runs) {
        [&] { GTEST_SKIP() << "the " << chosen << " sandbox cannot run here: " << status->why; }();
        return nullptr;
    }
    sandbox::BackendOptions o;
    o.limits = limits;
    auto b = sandbox::make_backend(chosen, o);
    EXPECT_TRUE(b) << b.error().message;
    return b ? std::move(*b) : nullptr;
}

// The backends a suite parameterised over isolating backends runs on: the one named by
// SANDFLOW_TEST_BACKEND (the container matrix sets "auto"), else every isolating tier.
inline std::vector<std::string> isolating_backends_for_test() {
    if (const char* b = std::getenv("SANDFLOW_TEST_BACKEND"); b && *b) return {b};
    std::vector<std::string> v = {"namespace", "landlock"};
    if (kTestGvisor) v.push_back("gvisor");
    return v;
}

// Test names for such suites: the parameter itself.
inline std::string backend_test_name(const ::testing::TestParamInfo<std::string>& i) {
    return i.param;
}

// Looks at an idle instance as its owner would (the server does it on its event loop):
// poll_idle() each time wait_fd() polls readable, until `done` or an error (10 s at most).
template <class Done>
Result<void> poll_idle_until(runtime::Instance& inst, Done done) {
    for (int i = 0; i < 500 && !done(); ++i) {
        if (inst.wait_fd() < 0) return {};
        pollfd f{inst.wait_fd(), POLLIN, 0};
        if (::poll(&f, 1, 20) == 1)
            if (auto ok = inst.poll_idle(); !ok) return ok;
    }
    return {};
}

// Records what a call streams: outputs in order, and every log line's text.
struct RecordedEvents {
    std::vector<std::pair<std::string, json::value>> outputs;
    std::vector<std::string> logs;
    runtime::CallEvents events() {
        runtime::CallEvents e;
        e.on_output = [this](std::string_view p, const json::value& v) {
            outputs.emplace_back(p, v);
        };
        e.on_log = [this](const runtime::LogLine& l) { logs.push_back(l.text); };
        return e;
    }
};

inline runtime::CallRequest call_request(json::object inputs, json::object config = {}) {
    runtime::CallRequest r;
    r.inputs = std::move(inputs);
    r.config = std::move(config);
    return r;
}

inline std::filesystem::path write_script(const std::filesystem::path& dir, const std::string& name,
                                          const std::string& text) {
    const auto p = dir / name;
    std::ofstream(p) << text;
    return p;
}

// What the suites of one sandbox backend (namespace_worker_test, gvisor_worker_test) share:
// the backend, a scratch folder, and ways to start workers in it and read what they say.
// The suite's SetUp() makes backend_ (or skips) and calls make_dir().
template <class B>
class BackendSuite : public ::testing::Test {
  protected:
    void make_dir(std::string prefix) {
        prefix += "XXXXXX";
        ASSERT_NE(::mkdtemp(prefix.data()), nullptr);
        dir_ = prefix;
    }
    void TearDown() override {
        backend_.reset();
        if (!dir_.empty()) std::filesystem::remove_all(dir_);
    }

    std::filesystem::path write(const std::string& name, const std::string& text) {
        return write_script(dir_, name, text);
    }

    std::unique_ptr<runtime::Instance> must_load(const std::filesystem::path& script) {
        auto spec = runtime::spec_from_file(script);
        EXPECT_TRUE(spec) << (spec ? "" : spec.error().message);
        if (!spec) return nullptr;
        spec->on_log = [](const runtime::LogLine&) {};
        auto inst = runtime::Instance::create(*backend_, std::move(*spec));
        EXPECT_TRUE(inst) << (inst ? "" : inst.error().message);
        return inst ? std::move(*inst) : nullptr;
    }

    // Starts `argv` directly in a sandbox, without the runtime.
    std::unique_ptr<sandbox::Process> start(std::vector<std::string> argv,
                                            std::optional<sandbox::SandboxLimits> limits = {}) {
        sandbox::WorkerSpec spec;
        spec.argv = std::move(argv);
        spec.limits = limits;
        auto p = backend_->spawn(spec);
        EXPECT_TRUE(p) << (p ? "" : p.error().message);
        return p ? std::move(*p) : nullptr;
    }

    // The process's stdout up to its first newline, waiting up to `timeout`.
    static std::string read_line(sandbox::Process& p,
                                 std::chrono::seconds timeout = std::chrono::seconds(10)) {
        std::string text;
        const auto until = std::chrono::steady_clock::now() + timeout;
        while (text.find('\n') == std::string::npos && std::chrono::steady_clock::now() < until) {
            pollfd f{p.stdout_fd(), POLLIN, 0};
            if (::poll(&f, 1, 100) != 1) continue;
            char buf[4096];
            const ssize_t n = ::read(p.stdout_fd(), buf, sizeof buf);
            if (n <= 0) break;
            text.append(buf, static_cast<std::size_t>(n));
        }
        return text.substr(0, text.find('\n'));
    }

    // As root: drops to nobody in a child process, makes a backend there with `make` (null
    // when it is not what the test expects) and runs one call of `spec` (the doubling actor)
    // on it. No cgroup may be writable for nobody. The test fails naming the step that did.
    template <class Make>
    void call_as_nobody(runtime::InstanceSpec spec, Make make) {
        const pid_t child = ::fork();
        ASSERT_GE(child, 0);
        if (child == 0) {
            if (::setgroups(0, nullptr) != 0 || ::setresgid(65534, 65534, 65534) != 0 ||
                ::setresuid(65534, 65534, 65534) != 0)
                ::_exit(10);
            // Changing uid made this process non-dumpable: its /proc files would belong to
            // root, and its own sandbox's uid_map would not be writable by it.
            ::prctl(PR_SET_DUMPABLE, 1);
            std::unique_ptr<B> b = make();
            if (!b) ::_exit(11);
            for (const auto& c : b->cgroup_support().controllers)
                if (c.usable()) ::_exit(12);
            auto inst = runtime::Instance::create(*b, std::move(spec));
            if (!inst) {
                std::fprintf(stderr, "%s\n", inst.error().message.c_str());
                ::_exit(13);
            }
            runtime::CallEvents ev;
            auto r = (*inst)->call(req({{"input", 4}}), ev);
            const bool ok = r && r->outputs.at("status") == json::value("completed");
            inst->reset();  // _exit runs no destructor: the sandbox and its folders go here
            b.reset();
            ::_exit(ok ? 0 : 14);
        }
        int st = 0;
        ASSERT_EQ(::waitpid(child, &st, 0), child);
        ASSERT_TRUE(WIFEXITED(st));
        EXPECT_EQ(WEXITSTATUS(st), 0) << "10: dropping to nobody, 11: backend, 12: a cgroup was "
                                         "writable, 13: start, 14: call";
    }

    bool has_cgroup(const std::string& controller) const {
        for (const auto& c : backend_->cgroup_support().controllers)
            if (c.name == controller && c.usable()) return true;
        return false;
    }

    static runtime::CallRequest req(json::object inputs) { return call_request(std::move(inputs)); }

    using Recorded = RecordedEvents;

    std::unique_ptr<B> backend_;
    std::filesystem::path dir_;
};

// The seed's doubling actor, and the same in JavaScript.
inline constexpr const char* kDoublePy =
    R"(@actor({"component": "double", "description": "...", "inports": ["input"], "outports": ["output"]})
async def process(context):
    await context.send_output("output", context.get_input("input") * 2)
    return {"status": "completed"}
)";
inline constexpr const char* kDoubleJs =
    R"(const metadata = {component: 'double', inports: ['input'], outports: ['output']};
async function process(context) {
    await context.sendOutput('output', context.getInput('input') * 2);
    return {status: 'completed'};
}
)";

// Lists the descriptors open in the worker (fstat opens none itself), and reads stdin: a
// worker must see exactly stdin, stdout, stderr and its channel, and an empty stdin.
inline constexpr const char* kOpenFdsPy = R"(import os, sys
@actor({"component": "fds", "outports": ["open", "stdin"]})
def process(context):
    found = []
    for fd in range(1024):
        try:
            os.fstat(fd)
            found.append(fd)
        except OSError:
            pass
    return {"open": found, "stdin": sys.stdin.read()}
)";

// Reads process.stdin to its end (the global: `process` here is the actor's function).
inline constexpr const char* kStdinJs =
    R"(const metadata = {component: 'stdin', outports: ['stdin']};
async function process(context) {
    let text = '';
    for await (const chunk of globalThis.process.stdin) text += chunk;
    return {stdin: text};
}
)";

}  // namespace sandflow::testing
