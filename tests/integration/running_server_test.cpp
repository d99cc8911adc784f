// The wiring `serve` and the benchmarks share (server/running_server.hpp), with real
// workers under the `none` backend and the C++ client on loopback, and the sandbox layer's
// host probes (sandbox/host_probe.hpp) that `auto`, `doctor` and serve's health check use.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <set>

#include "sandbox/host_probe.hpp"
#include "sandbox/none/none_backend.hpp"
#include "sandflow/client.hpp"
#include "server/running_server.hpp"

using namespace sandflow;
namespace fs = std::filesystem;

namespace {

const char* kDouble = R"(@actor({"component": "double", "inports": ["x"], "outports": ["y"]})
def process(context):
    return {"y": 2 * context.get_input("x")}
)";

// The none backend, whose sandboxes cannot start while `fail` is set.
class SwitchableBackend final : public sandbox::Backend {
  public:
    std::string_view name() const override { return real_.name(); }
    sandbox::IsolationLevel level() const override { return real_.level(); }
    sandbox::SandboxLimits default_limits() const override { return real_.default_limits(); }
    Result<std::unique_ptr<sandbox::Process>> spawn(const sandbox::WorkerSpec& spec) override {
        if (fail) return tl::unexpected(Error(Errc::sandbox_unavailable, "no sandbox (injected)"));
        return real_.spawn(spec);
    }
    std::atomic<bool> fail{false};

  private:
    sandbox::NoneBackend real_;
};

class RunningServerTest : public ::testing::Test {
  protected:
    void SetUp() override {
        server::prepare_process_for_serving();
        char tmpl[] = "/tmp/sandflow-running-server-test-XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
        std::ofstream(dir_ / "double.actor.py") << kDouble;
    }
    void TearDown() override { fs::remove_all(dir_); }

    Result<std::unique_ptr<server::RunningServer>> start() {
        server::RunningServerOptions o;
        o.server.actor_roots = {dir_};
        o.server.warm_discovered = false;
        o.transport.port = 0;
        return server::RunningServer::start(backend_, std::move(o), nullptr);
    }

    SwitchableBackend backend_;
    fs::path dir_;
};

TEST_F(RunningServerTest, ServesTheActorsFoundAndDrains) {
    auto rs = start();
    ASSERT_TRUE(rs) << rs.error().message;
    EXPECT_EQ((*rs)->actors_registered(), 1u);
    EXPECT_EQ((*rs)->url(), "ws://127.0.0.1:" + std::to_string((*rs)->port()));
    EXPECT_EQ((*rs)->server().on_http("/healthz", true).status, 200);
    {
        auto c = client::Client::connect((*rs)->url());
        ASSERT_TRUE(c) << c.error().message;
        auto r = (*c)->process("double", {{"x", 21}});
        ASSERT_TRUE(r) << r.error().message;
        EXPECT_EQ(r->outputs.at("y"), 42);
    }
    (*rs)->drain_and_stop(std::chrono::seconds(1));
    EXPECT_FALSE(client::Client::connect((*rs)->url()));
}

TEST_F(RunningServerTest, ABackendThatCannotStartASandboxIsUnhealthyFromTheStart) {
    backend_.fail = true;
    auto rs = start();
    ASSERT_TRUE(rs) << rs.error().message;
    const auto h = (*rs)->server().on_http("/healthz", true);
    EXPECT_EQ(h.status, 503);
    EXPECT_NE(h.body.find("(injected)"), std::string::npos) << h.body;
}

TEST_F(RunningServerTest, AnAddressInUseIsAnError) {
    auto first = start();
    ASSERT_TRUE(first) << first.error().message;
    server::RunningServerOptions o;
    o.transport.port = (*first)->port();
    auto second = server::RunningServer::start(backend_, std::move(o), nullptr);
    ASSERT_FALSE(second);
    EXPECT_NE(second.error().message.find("cannot listen"), std::string::npos)
        << second.error().message;
}

TEST(HostProbe, TheIsolatingBackendsInTheOrderAutoPrefersThem) {
    std::vector<std::string> names;
    for (const auto& b : sandbox::isolating_backends()) names.emplace_back(b.name);
    EXPECT_EQ(names, (std::vector<std::string>{"namespace", "landlock", "gvisor", "microvm"}));
    const auto statuses = sandbox::probe_backends();
    ASSERT_EQ(statuses.size(), names.size());
    for (std::size_t i = 0; i < names.size(); ++i) {
        EXPECT_EQ(statuses[i].name, names[i]);
        EXPECT_EQ(statuses[i].level, sandbox::isolating_backends()[i].level);
        // One that cannot run says why.
        EXPECT_TRUE(statuses[i].runs || !statuses[i].why.empty()) << statuses[i].name;
    }
    EXPECT_FALSE(sandbox::probe_backend("none"));
    // What `auto` picks is a backend the probes say runs.
    if (auto pick = sandbox::select_backend(sandbox::IsolationLevel::process)) {
        auto status = sandbox::probe_backend(pick->backend);
        ASSERT_TRUE(status);
        EXPECT_TRUE(status->runs);
    }
}

TEST(HostProbe, ProbeStartSaysWhyABackendCannotStartASandbox) {
    SwitchableBackend backend;
    EXPECT_TRUE(sandbox::probe_start(backend));
    backend.fail = true;
    auto r = sandbox::probe_start(backend);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, Errc::sandbox_unavailable);
}

TEST(HostProbe, EveryMechanismCheckSaysWhatItFound) {
    std::set<std::string> seen;
    for (const auto& checks : {sandbox::namespace_tier_checks(), sandbox::process_tier_checks()}) {
        EXPECT_FALSE(checks.empty());
        for (const auto& c : checks) {
            EXPECT_TRUE(seen.insert(c.mechanism).second) << "checked twice: " << c.mechanism;
            EXPECT_FALSE(c.detail.empty()) << c.mechanism;
        }
    }
    EXPECT_TRUE(seen.contains("user namespace"));
    EXPECT_TRUE(seen.contains("namespace sandbox (end to end)"));
    EXPECT_TRUE(seen.contains("no_new_privs"));
    EXPECT_TRUE(seen.contains("landlock sandbox (end to end)"));
    // Without a backend, an interpreter cannot be run: each check says why.
    const auto interpreters = sandbox::interpreter_checks(nullptr);
    ASSERT_EQ(interpreters.size(), 2u);
    for (const auto& c : interpreters) {
        EXPECT_EQ(c.state, sandbox::HostCheck::State::fails) << c.mechanism;
        EXPECT_FALSE(c.detail.empty()) << c.mechanism;
    }
}

}  // namespace
