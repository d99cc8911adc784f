// The warm pool (runtime/warm_pool.hpp) on both backends: it fills to its configured
// size and refills after each take, instances take a started worker and never share one,
// a worker that died while idle is never handed out, a crashed instance's replacement is
// a new pooled worker with the committed state, and destroying the pool kills what idled.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "runtime/instance.hpp"
#include "runtime/warm_pool.hpp"
#include "sandbox/namespace/namespace_backend.hpp"
#include "sandbox/none/none_backend.hpp"
#include "support/test_support.hpp"
#include "support/worker_support.hpp"

using namespace sandflow;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

constexpr auto kFillWait = 30s;  // generous: a loaded CI machine starts node slowly

// Processes this test process started: every thread's children (the pool's refill
// thread spawns the pooled workers).
std::set<pid_t> own_children() {
    const auto c = sandflow::testing::children_of("self");
    return {c.begin(), c.end()};
}

// The children started since `before` was taken.
std::vector<pid_t> children_since(const std::set<pid_t>& before) {
    std::vector<pid_t> out;
    for (pid_t p : own_children())
        if (!before.count(p)) out.push_back(p);
    return out;
}

using sandflow::testing::process_gone;

class WarmPoolTest : public ::testing::TestWithParam<std::string> {
  protected:
    void SetUp() override {
        backend_ = sandflow::testing::backend_for_test(GetParam());
        if (IsSkipped()) return;
        ASSERT_TRUE(backend_);
        char tmpl[] = "/tmp/sandflow-pool-test-XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
    }
    void TearDown() override {
        if (!dir_.empty()) fs::remove_all(dir_);
    }

    std::unique_ptr<runtime::WarmPool> make_pool(std::size_t python, std::size_t node) {
        runtime::PoolOptions o;
        o.python = python;
        o.node = node;
        auto p = runtime::WarmPool::create(*backend_, o);
        EXPECT_TRUE(p) << (p ? "" : p.error().message);
        if (!p) return nullptr;
        EXPECT_TRUE((*p)->wait_full(runtime::Clock::now() + kFillWait))
            << "the pool did not fill within " << kFillWait.count() << " s";
        return std::move(*p);
    }

    Result<std::unique_ptr<runtime::Instance>> load(const std::string& name,
                                                    const std::string& text,
                                                    runtime::WarmPool* pool) {
        auto spec = runtime::spec_from_file(sandflow::testing::write_script(dir_, name, text));
        if (!spec) return tl::unexpected(spec.error());
        spec->on_log = [](const runtime::LogLine&) {};
        spec->pool = pool;
        return runtime::Instance::create(*backend_, std::move(*spec));
    }

    static json::value call(runtime::Instance& inst, json::object inputs) {
        sandflow::testing::RecordedEvents rec;
        auto r = inst.call(sandflow::testing::call_request(std::move(inputs)), rec.events());
        EXPECT_TRUE(r) << (r ? "" : r.error().message);
        if (!r || rec.outputs.empty()) return nullptr;
        return rec.outputs.front().second;
    }

    std::unique_ptr<sandbox::Backend> backend_;
    fs::path dir_;
};

constexpr const char* kCounter =
    R"(@actor({"component": "counter", "inports": ["tick"], "outports": ["count"]})
async def process(context):
    if context.get_input("tick") == "crash":
        import os
        os._exit(3)
    n = (context.get_state("n") or 0) + 1
    context.set_state("n", n)
    await context.send_output("count", n)
    return {}
)";

TEST_P(WarmPoolTest, FillsToItsSizeAndRefillsAfterEachTake) {
    auto pool = make_pool(2, 1);
    ASSERT_TRUE(pool);
    auto s = pool->stats();
    EXPECT_EQ(s.python.idle, 2u);
    EXPECT_EQ(s.node.idle, 1u);
    EXPECT_EQ(s.python.target, 2u);

    auto w = pool->take(actor::Language::python);
    ASSERT_TRUE(w);
    EXPECT_TRUE(w->alive());
    EXPECT_EQ(w->language(), actor::Language::python);
    EXPECT_EQ(pool->stats().python.taken, 1u);
    ASSERT_TRUE(pool->wait_full(runtime::Clock::now() + kFillWait));
    s = pool->stats();
    EXPECT_EQ(s.python.idle, 2u);
    EXPECT_EQ(s.python.started, 3u);
    EXPECT_EQ(s.python.failed, 0u);
}

TEST_P(WarmPoolTest, EachInstanceTakesItsOwnStartedWorker) {
    auto pool = make_pool(2, 1);
    ASSERT_TRUE(pool);
    auto a = load("a.py", sandflow::testing::kDoublePy, pool.get());
    auto b = load("b.py", sandflow::testing::kDoublePy, pool.get());
    auto js = load("c.js", sandflow::testing::kDoubleJs, pool.get());
    ASSERT_TRUE(a && b && js);
    EXPECT_EQ((*a)->pooled_starts(), 1u);
    EXPECT_EQ((*b)->pooled_starts(), 1u);
    EXPECT_EQ((*js)->pooled_starts(), 1u);
    EXPECT_NE((*a)->worker_pid(), (*b)->worker_pid());
    EXPECT_EQ(call(**a, {{"input", 21}}), json::value(42));
    EXPECT_EQ(call(**b, {{"input", 5}}), json::value(10));
    EXPECT_EQ(call(**js, {{"input", 4}}), json::value(8));

    // The refilled pool holds new sandboxes, none of those the instances own.
    ASSERT_TRUE(pool->wait_full(runtime::Clock::now() + kFillWait));
    auto next = pool->take(actor::Language::python);
    ASSERT_TRUE(next);
    EXPECT_NE(next->pid(), (*a)->worker_pid());
    EXPECT_NE(next->pid(), (*b)->worker_pid());
    EXPECT_EQ(pool->stats().python.taken, 3u);
}

TEST_P(WarmPoolTest, AReplacementAfterACrashIsANewPooledWorkerWithTheCommittedState) {
    auto pool = make_pool(1, 0);
    ASSERT_TRUE(pool);
    auto inst = load("counter.py", kCounter, pool.get());
    ASSERT_TRUE(inst) << inst.error().message;
    EXPECT_EQ(call(**inst, {{"tick", 1}}), json::value(1));
    EXPECT_EQ(call(**inst, {{"tick", 1}}), json::value(2));
    const pid_t first = (*inst)->worker_pid();

    ASSERT_TRUE(pool->wait_full(runtime::Clock::now() + kFillWait));
    auto crashed = (*inst)->call(sandflow::testing::call_request({{"tick", "crash"}}), {});
    ASSERT_FALSE(crashed);
    EXPECT_EQ(crashed.error().code, Errc::worker_crashed);

    EXPECT_EQ(call(**inst, {{"tick", 1}}), json::value(3));
    EXPECT_NE((*inst)->worker_pid(), first);
    EXPECT_EQ((*inst)->pooled_starts(), 2u);
    EXPECT_EQ((*inst)->worker_starts(), 2u);
}

TEST_P(WarmPoolTest, AWorkerThatDiedWhileIdleIsNeverHandedOut) {
    const auto before = own_children();
    auto pool = make_pool(1, 0);
    ASSERT_TRUE(pool);
    const auto idle = children_since(before);
    ASSERT_EQ(idle.size(), 1u) << "expected exactly the one pooled sandbox";
    ASSERT_EQ(::kill(idle[0], SIGKILL), 0);
    // Give the kernel a moment to deliver the signal; the check below is what matters.
    for (int i = 0; i < 200 && !process_gone(idle[0]); ++i) std::this_thread::sleep_for(5ms);

    auto inst = load("a.py", sandflow::testing::kDoublePy, pool.get());
    ASSERT_TRUE(inst) << inst.error().message;
    EXPECT_NE((*inst)->worker_pid(), idle[0]);
    EXPECT_EQ(call(**inst, {{"input", 1}}), json::value(2));
}

TEST_P(WarmPoolTest, ALoadErrorInAPooledWorkerIsTheScriptsError) {
    auto pool = make_pool(1, 0);
    ASSERT_TRUE(pool);
    auto inst = load("broken.py",
                     "@actor({\"component\": \"broken\", \"inports\": [], \"outports\": []})\n"
                     "async def process(context):\n    return {}\n"
                     "raise ValueError('no import for you')\n",
                     pool.get());
    ASSERT_FALSE(inst);
    EXPECT_EQ(inst.error().code, Errc::script);
    EXPECT_NE(inst.error().message.find("no import for you"), std::string::npos)
        << inst.error().message;
    EXPECT_EQ(pool->stats().python.taken, 1u);
}

TEST_P(WarmPoolTest, ALanguageOfSizeZeroIsNotPooled) {
    auto pool = make_pool(0, 0);
    ASSERT_TRUE(pool);
    EXPECT_FALSE(pool->take(actor::Language::python));
    auto inst = load("a.py", sandflow::testing::kDoublePy, pool.get());
    ASSERT_TRUE(inst) << inst.error().message;
    EXPECT_EQ((*inst)->pooled_starts(), 0u);
    EXPECT_EQ((*inst)->worker_starts(), 1u);
    EXPECT_EQ(pool->stats().python.missed, 0u);
}

TEST_P(WarmPoolTest, DestroyingThePoolKillsTheIdleWorkers) {
    const auto before = own_children();
    auto pool = make_pool(2, 1);
    ASSERT_TRUE(pool);
    const auto idle = children_since(before);
    ASSERT_EQ(idle.size(), 3u);
    pool.reset();
    for (pid_t p : idle)
        EXPECT_TRUE(process_gone(p)) << "pooled process " << p << " outlived the pool";
}

TEST_P(WarmPoolTest, OnlyInstancesOnTheDefaultFixedLimitsTakeFromThePool) {
    auto pool = make_pool(2, 0);
    ASSERT_TRUE(pool);
    auto with = [&](auto change) -> Result<std::unique_ptr<runtime::Instance>> {
        auto spec = runtime::spec_from_file(
            sandflow::testing::write_script(dir_, "a.py", sandflow::testing::kDoublePy));
        if (!spec) return tl::unexpected(spec.error());
        spec->on_log = [](const runtime::LogLine&) {};
        spec->pool = pool.get();
        spec->limits = runtime::default_limits(*backend_);
        change(spec->limits->sandbox);
        return runtime::Instance::create(*backend_, std::move(*spec));
    };
    // A tmpfs size is fixed when a sandbox starts: this one starts cold.
    auto tmpfs = with([](sandbox::SandboxLimits& l) { l.tmpfs_bytes = 8u << 20; });
    ASSERT_TRUE(tmpfs) << tmpfs.error().message;
    EXPECT_EQ((*tmpfs)->pooled_starts(), 0u);
    EXPECT_EQ(pool->stats().python.taken, 0u);
    EXPECT_EQ(call(**tmpfs, {{"input", 2}}), json::value(4));

    // Memory can change in place where a cgroup holds it: the pooled sandbox is used.
    auto memory = with([](sandbox::SandboxLimits& l) { l.memory_bytes = 200u << 20; });
    ASSERT_TRUE(memory) << memory.error().message;
    EXPECT_EQ(call(**memory, {{"input", 3}}), json::value(6));
    const auto* ns = dynamic_cast<sandbox::NamespaceBackend*>(backend_.get());
    bool live = !ns;  // `none` enforces nothing, so any limit "fits"
    if (ns)
        for (const auto& c : ns->cgroup_support().controllers)
            live = live || (c.name == "memory" && c.usable());
    EXPECT_EQ((*memory)->pooled_starts(), live ? 1u : 0u);
}

INSTANTIATE_TEST_SUITE_P(Backends, WarmPoolTest, ::testing::Values("none", "namespace", "landlock"),
                         sandflow::testing::backend_test_name);

TEST(WarmPoolLimits, AnOversizedPoolIsRejected) {
    sandbox::NoneBackend backend;
    runtime::PoolOptions o;
    o.python = limits::kMaxPoolSize + 1;
    auto p = runtime::WarmPool::create(backend, o);
    ASSERT_FALSE(p);
    EXPECT_EQ(p.error().code, Errc::invalid_argument);
    EXPECT_NE(p.error().message.find("python"), std::string::npos) << p.error().message;
}

TEST(WarmPoolLimits, APoolOnAnotherBackendIsNotUsed) {
    sandbox::NoneBackend pooled, other;
    runtime::PoolOptions o;
    o.python = 1;
    o.node = 0;
    auto pool = runtime::WarmPool::create(pooled, o);
    ASSERT_TRUE(pool);
    ASSERT_TRUE((*pool)->wait_full(runtime::Clock::now() + kFillWait));
    char tmpl[] = "/tmp/sandflow-pool-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    auto spec = runtime::spec_from_file(
        sandflow::testing::write_script(tmpl, "a.py", sandflow::testing::kDoublePy));
    ASSERT_TRUE(spec);
    spec->pool = pool->get();
    auto inst = runtime::Instance::create(other, std::move(*spec));
    fs::remove_all(tmpl);
    ASSERT_TRUE(inst) << inst.error().message;
    EXPECT_EQ((*inst)->pooled_starts(), 0u);
    EXPECT_EQ((*pool)->stats().python.idle, 1u);
}

}  // namespace
