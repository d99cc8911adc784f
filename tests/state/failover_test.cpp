// Two `sandflow serve` (SANDFLOW_BINARY) on one real redis-server: the C++ client over
// both (client::FailoverClient) moves an instance to the other server when its server is
// killed (SIGKILL by pid) and replays the unanswered call; a server whose copy of an
// instance is stale runs the call again on the reloaded state; a crash after a commit
// and before its answer is answered from the store; Redis killed and started again under
// load fails calls with state_store and doubles none; and a 10,000-message flow
// (`sandflow run --runtime A,B`) survives the kill of its server with every message's
// effect in the final state exactly once. Skipped, saying why, without redis-server.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include "sandflow/limits.hpp"
#include "state/redis_support.hpp"
#include "support/server_support.hpp"

namespace sandflow::testing {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr const char* kCounter = R"PY(
@actor({"component": "counter", "inports": ["by", "stream"], "outports": ["count"]})
async def process(context):
    count = await context.get_state("count", 0)
    count += context.get_input("by", 1)
    context.set_state("count", count)
    if context.get_input("stream", False):
        await context.send_output("count", count)
    return {"count": count}
)PY";

// Each message once into a bucket of its own hundred; a message found there already is a
// doubled effect and is counted as one.
constexpr const char* kTally = R"PY(
@actor({"component": "tally", "inports": ["in"], "outports": ["out"]})
async def process(context):
    m = context.get_input("in")
    bucket = "b%d" % (m // 100)
    seen = context.get_state(bucket, [])
    dups = context.get_state("dups", 0)
    if m in seen:
        dups += 1
        context.set_state("dups", dups)
    else:
        seen.append(m)
        context.set_state(bucket, seen)
    n = context.get_state("n", 0) + 1
    context.set_state("n", n)
    return {"out": {"m": m, "n": n, "dups": dups, "distinct": sum(
        len(context.get_state("b%d" % b, [])) for b in range(100))}}
)PY";

std::int64_t count_of(const client::ProcessResult& r) {
    const auto* c = r.outputs.if_contains("count");
    return c && c->is_int64() ? c->get_int64() : -1;
}

class Failover : public ::testing::Test {
  protected:
    void SetUp() override {
        if (!redis_.available()) GTEST_SKIP() << redis_.why_not();
        std::string t = (fs::temp_directory_path() / "sandflow-failover-XXXXXX").string();
        dir_ = ::mkdtemp(t.data());
        std::ofstream(dir_ / "counter.actor.py") << kCounter;
    }
    void TearDown() override {
        if (!dir_.empty()) fs::remove_all(dir_);
    }
    std::unique_ptr<ServerProcess> serve(bool with_actors = true) {
        std::vector<std::string> args = {"--state", redis_.url()};
        if (with_actors) args.insert(args.end(), {"--actors", dir_.string()});
        return std::make_unique<ServerProcess>(args);
    }

    RedisServer redis_;
    fs::path dir_;
};

TEST_F(Failover, AnInstanceMovesToTheOtherServerWhenItsServerIsKilled) {
    auto a = serve(false);
    auto b = serve(false);
    auto c = client::FailoverClient::connect({a->url(), b->url()});
    ASSERT_TRUE(c) << c.error().message;
    auto& fc = **c;
    auto loaded = fc.load_source("counter", kCounter, "python", "i1", "counter.py");
    ASSERT_TRUE(loaded && loaded->success) << (loaded ? loaded->error : loaded.error().message);
    client::ProcessOptions o;
    o.instance_id = "i1";
    for (int i = 1; i <= 5; ++i) {
        auto r = fc.process("counter", {{"by", 1}}, {}, o);
        ASSERT_TRUE(r) << r.error().message;
        EXPECT_EQ(count_of(*r), i);
    }
    const std::string first = fc.server_for("counter", "i1");
    ServerProcess& victim = first == a->url() ? *a : *b;
    const std::string other = first == a->url() ? b->url() : a->url();
    ::kill(victim.pid(), SIGKILL);
    const auto killed = Clock::now();
    auto r = fc.process("counter", {{"by", 1}}, {}, o);
    const auto took = Clock::now() - killed;
    ASSERT_TRUE(r) << r.error().message;
    // The other server loaded the script again and started the instance on what the
    // store holds: nothing lost, nothing doubled.
    EXPECT_EQ(count_of(*r), 6);
    EXPECT_FALSE(r->replayed);
    EXPECT_EQ(fc.server_for("counter", "i1"), other);
    EXPECT_EQ(fc.failovers(), 1u);
    std::printf(
        "[ failover ] SIGKILL of the instance's server to its next call answered by "
        "the other: %.1f ms\n",
        std::chrono::duration<double, std::milli>(took).count());
    for (int i = 7; i <= 9; ++i) {
        auto r2 = fc.process("counter", {{"by", 1}}, {}, o);
        ASSERT_TRUE(r2) << r2.error().message;
        EXPECT_EQ(count_of(*r2), i);
    }
}

// The lost server started again on its address: once it may be tried again
// (kFailoverRetryAfter) the client reconnects and the instance goes back to it, on what
// the store holds; the server it had moved to, its copy now stale, runs a later call
// again on the newer state.
TEST_F(Failover, AnInstanceGoesBackToItsServerWhenThatServerIsBack) {
    auto a = serve(false);
    auto b = serve(false);
    auto c = client::FailoverClient::connect({a->url(), b->url()});
    ASSERT_TRUE(c) << c.error().message;
    auto& fc = **c;
    ASSERT_TRUE(fc.load_source("counter", kCounter, "python", "i1", "counter.py"));
    client::ProcessOptions o;
    o.instance_id = "i1";
    auto step = [&](std::int64_t want) {
        auto r = fc.process("counter", {{"by", 1}}, {}, o);
        ASSERT_TRUE(r) << r.error().message;
        EXPECT_EQ(count_of(*r), want);
    };
    step(1);
    const std::string first = fc.server_for("counter", "i1");
    auto& victim = first == a->url() ? a : b;
    const int port = victim->port();
    ::kill(victim->pid(), SIGKILL);
    EXPECT_NE(victim->wait_exit(std::chrono::seconds(10)), -1);
    step(2);  // on the other server
    EXPECT_NE(fc.server_for("counter", "i1"), first);
    victim = std::make_unique<ServerProcess>(std::vector<std::string>{
        "--state", redis_.url(), "--listen", "127.0.0.1:" + std::to_string(port)});
    ASSERT_EQ(victim->url(), first);
    // Not a timing assertion: the client does not try a lost server again before then.
    std::this_thread::sleep_for(limits::kFailoverRetryAfter + std::chrono::milliseconds(200));
    step(3);  // back on the first server, loaded there again
    EXPECT_EQ(fc.server_for("counter", "i1"), first);
    auto back = connect(*victim);
    ASSERT_TRUE(back);
    auto names = back->list();
    ASSERT_TRUE(names);
    EXPECT_NE(std::find(names->begin(), names->end(), "counter"), names->end());
    // The other server still has the instance at 2: its next call there runs again on 3.
    ServerProcess& other = first == a->url() ? *b : *a;
    auto co = connect(other);
    ASSERT_TRUE(co);
    client::ProcessOptions oi;
    oi.instance_id = "i1";
    auto r = co->process("counter", {{"by", 10}}, {}, oi);
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(count_of(*r), 13);
    step(14);  // and the first server, stale in turn, runs it again on 13
}

// A call committed by a server that died before answering, sent again with its call_id to
// a server that had the instance from before (its copy is stale): that server's commit is
// refused, it reloads from the store, finds the call committed and answers it from there.
TEST_F(Failover, ACallCommittedElsewhereIsAnsweredFromTheStoreByAStaleServer) {
    auto a = serve();
    auto b = serve();
    auto ca = connect(*a);
    auto cb = connect(*b);
    ASSERT_TRUE(ca && cb);
    auto call = [](client::Client& c, std::string call_id) {
        client::ProcessOptions o;
        o.call_id = std::move(call_id);
        return c.process("counter", {{"by", 10}}, {}, o);
    };
    auto r = call(*cb, "x-1");  // B starts the instance: version 1
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(count_of(*r), 10);
    r = call(*ca, "x-2");  // A commits version 2; B's copy is stale now
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(count_of(*r), 20);
    r = call(*cb, "x-2");  // x-2 again, as after a lost answer, on B
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_TRUE(r->replayed);
    EXPECT_EQ(count_of(*r), 20);
    auto st = cb->stats();
    ASSERT_TRUE(st);
    EXPECT_EQ(st->at("state_conflict_retries").as_int64(), 1);
    r = call(*cb, "x-3");
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(count_of(*r), 30);
}

// A stale server runs the call again on the reloaded state when nothing of it was
// streamed; a call that streamed an output fails with state_conflict instead (running it
// again would send that output twice), and the call after runs on the newer state.
TEST_F(Failover, AStaleServerRunsTheCallAgainUnlessItStreamed) {
    auto a = serve();
    auto b = serve();
    auto ca = connect(*a);
    auto cb = connect(*b);
    ASSERT_TRUE(ca && cb);
    auto r = ca->process("counter", {{"by", 1}});
    ASSERT_TRUE(r) << r.error().message;
    r = cb->process("counter", {{"by", 1}});  // B starts the instance on what A committed
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(count_of(*r), 2);
    r = ca->process("counter", {{"by", 100}});  // A's copy was stale: run again on 2
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(count_of(*r), 102);
    std::vector<std::int64_t> streamed;
    auto stale =
        cb->process("counter", {{"by", 1000}, {"stream", true}},
                    [&](const client::Output& o) { streamed.push_back(o.data.as_int64()); });
    ASSERT_FALSE(stale);
    EXPECT_EQ(stale.error().code, Errc::state_conflict) << stale.error().message;
    EXPECT_EQ(streamed, std::vector<std::int64_t>{1002});  // from B's stale copy
    r = cb->process("counter", {{"by", 1}});
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(count_of(*r), 103);
    // The client over both servers sends a state_conflict again, on the reloaded state.
    auto fc = client::FailoverClient::connect({a->url(), b->url()});
    ASSERT_TRUE(fc) << fc.error().message;
    ServerProcess& other = (*fc)->server_for("counter") == a->url() ? *b : *a;
    auto co = connect(other);
    ASSERT_TRUE(co);
    r = co->process("counter", {{"by", 1}});  // the other server commits: the first is stale
    ASSERT_TRUE(r) << r.error().message;
    std::vector<std::int64_t> seen;
    r = (*fc)->process("counter", {{"by", 1}, {"stream", true}},
                       [&](const client::Output& o) { seen.push_back(o.data.as_int64()); });
    ASSERT_TRUE(r) << r.error().message;
    const std::int64_t final_count = count_of(*r);
    EXPECT_EQ(final_count, 105);
    ASSERT_FALSE(seen.empty());
    EXPECT_EQ(seen.back(), 105);  // the stale run's output first, at least once
}

// The server dies after its commit is durable and before its answer leaves (the one fault
// injected, SANDFLOW_TEST_CRASH_AFTER_COMMITS): the client sends the call to the other
// server, which answers it from the store without running it again.
TEST_F(Failover, ACrashAfterCommitBeforeTheAnswerIsAnsweredFromTheStoreByTheOther) {
#ifndef SANDFLOW_FAULT_HOOKS
    GTEST_SKIP() << "built without SANDFLOW_FAULT_HOOKS (a Release build)";
#else
    ::setenv("SANDFLOW_TEST_CRASH_AFTER_COMMITS", "3", 1);
    auto a = serve(false);
    ::unsetenv("SANDFLOW_TEST_CRASH_AFTER_COMMITS");
    auto b = serve(false);
    auto c = client::FailoverClient::connect({a->url(), b->url()});
    ASSERT_TRUE(c) << c.error().message;
    auto& fc = **c;
    // An instance whose first choice is A.
    std::string instance;
    for (int i = 0; i < 64 && instance.empty(); ++i)
        if (fc.server_for("counter", "i" + std::to_string(i)) == a->url())
            instance = "i" + std::to_string(i);
    ASSERT_FALSE(instance.empty());
    auto loaded = fc.load_source("counter", kCounter, "python", instance, "counter.py");
    ASSERT_TRUE(loaded && loaded->success);
    client::ProcessOptions o;
    o.instance_id = instance;
    for (int i = 1; i <= 3; ++i) {
        auto r = fc.process("counter", {{"by", 1}}, {}, o);
        ASSERT_TRUE(r) << r.error().message;
        EXPECT_EQ(count_of(*r), i);
        EXPECT_EQ(r->replayed, i == 3);  // the third: committed by A, answered by B
    }
    EXPECT_EQ(a->wait_exit(std::chrono::seconds(10)), 128 + SIGKILL);
    EXPECT_EQ(fc.failovers(), 1u);
    EXPECT_EQ(fc.server_for("counter", instance), b->url());
    auto r = fc.process("counter", {{"by", 1}}, {}, o);
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(count_of(*r), 4);
    EXPECT_FALSE(r->replayed);
#endif
}

// Redis killed and started again while four clients call a server on it: calls fail with
// state_store while it is down and succeed once it is back; each client sends a failed
// call again with its call_id, and no call is applied twice or lost.
TEST_F(Failover, RedisStoppedAndRestartedUnderLoad) {
    auto a = serve();
    constexpr int kClients = 4, kCalls = 150;
    std::atomic<int> ok{0}, store_errors{0};
    std::vector<std::string> other_errors(kClients);
    std::vector<std::int64_t> last(kClients, -1);
    std::vector<std::thread> threads;
    for (int t = 0; t < kClients; ++t) {
        threads.emplace_back([&, t] {
            auto c = client::Client::connect(a->url());
            if (!c) {
                other_errors[static_cast<std::size_t>(t)] = c.error().message;
                return;
            }
            client::ProcessOptions o;
            o.instance_id = "w" + std::to_string(t);
            for (int k = 1; k <= kCalls; ++k) {
                o.call_id = o.instance_id + "-" + std::to_string(k);
                for (int tries = 0;; ++tries) {
                    auto r = (*c)->process("counter", {{"by", 1}}, {}, o);
                    if (r) {
                        last[static_cast<std::size_t>(t)] = count_of(*r);
                        ok++;
                        break;
                    }
                    if (r.error().code != Errc::state_store || tries > 3000) {
                        other_errors[static_cast<std::size_t>(t)] = r.error().message;
                        return;
                    }
                    store_errors++;
                    std::this_thread::sleep_for(std::chrono::milliseconds(10));
                }
            }
        });
    }
    for (int i = 0; i < 3000 && ok < 100; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    redis_.stop();
    for (int i = 0; i < 3000 && store_errors < 2 * kClients; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    const int errors_while_down = store_errors;
    redis_.start();
    ASSERT_TRUE(redis_.available()) << redis_.log_tail();
    for (auto& th : threads) th.join();
    for (int t = 0; t < kClients; ++t) {
        EXPECT_EQ(other_errors[static_cast<std::size_t>(t)], "") << "client " << t;
        EXPECT_EQ(last[static_cast<std::size_t>(t)], kCalls) << "client " << t;
    }
    EXPECT_GE(errors_while_down, 2 * kClients);
    std::printf("[ redis ] %d calls failed with state_store while Redis was down\n",
                store_errors.load());
}

// The fault test: a flow of 10,000 messages through one script node, its instance on two
// servers that share Redis; the server running it is killed half-way. Every message's
// effect is in the final state exactly once: the node counts the messages it applied and
// the ones it found applied already, from the committed state it runs on.
TEST_F(Failover, TenThousandMessageFlowSurvivesTheKillOfItsServer) {
    constexpr int kMessages = 10'000;
    std::ofstream(dir_ / "tally.py") << kTally;
    const fs::path graph = dir_ / "fault.graph.json";
    std::ofstream(graph) << R"({"processes": {
        "gen": {"component": "timer", "metadata": {"interval": 0, "count": )"
                         << kMessages << R"(}},
        "tally": {"component": "tally", "metadata": {}}},
      "connections": [
        {"from": {"nodeId": "", "portName": ""}, "to": {"nodeId": "gen", "portName": "start"}, "data": 1},
        {"from": {"nodeId": "gen", "portName": "tick"}, "to": {"nodeId": "tally", "portName": "in"}}],
      "outports": {"out": {"nodeId": "tally", "portName": "out"}}})";
    auto a = serve(false);
    auto b = serve(false);
    int out[2];
    ASSERT_EQ(::pipe(out), 0);
    const std::string runtime = a->url() + "," + b->url();
    const std::string actors = dir_.string(), graph_path = graph.string();
    const pid_t run = ::fork();
    if (run == 0) {
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        ::dup2(out[1], 1);
        ::close(out[0]);
        ::execl(SANDFLOW_BINARY, SANDFLOW_BINARY, "run", graph_path.c_str(), "--actors",
                actors.c_str(), "--runtime", runtime.c_str(), "--no-summary",
                static_cast<char*>(nullptr));
        ::_exit(127);
    }
    ::close(out[1]);
    FILE* lines = ::fdopen(out[0], "r");
    ASSERT_NE(lines, nullptr);
    std::set<std::int64_t> delivered;
    std::int64_t last_n = 0, max_dups = 0, last_distinct = 0, lines_read = 0;
    bool killed = false;
    char buf[4096];
    while (std::fgets(buf, sizeof buf, lines)) {
        auto j = parse_json(buf, "run stdout");
        ASSERT_TRUE(j && j->is_object()) << buf;
        const auto& d = j->at("data").as_object();
        delivered.insert(d.at("m").as_int64());
        last_n = std::max(last_n, d.at("n").as_int64());
        last_distinct = std::max(last_distinct, d.at("distinct").as_int64());
        max_dups = std::max(max_dups, d.at("dups").as_int64());
        ++lines_read;
        if (!killed && lines_read == kMessages / 3) {
            // The server that runs the node's instance is the one where it is registered.
            auto ca = connect(*a);
            ASSERT_TRUE(ca);
            auto names = ca->list();
            ASSERT_TRUE(names);
            const bool on_a = std::find(names->begin(), names->end(), "tally") != names->end();
            ca->close();
            ServerProcess& victim = on_a ? *a : *b;
            ::kill(victim.pid(), SIGKILL);
            killed = true;
            std::printf("[ fault ] killed %s (pid %d) after %lld messages\n",
                        on_a ? "server A" : "server B", victim.pid(),
                        static_cast<long long>(lines_read));
        }
    }
    std::fclose(lines);
    int st = 0;
    ASSERT_EQ(::waitpid(run, &st, 0), run);
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "sandflow run ended with " << st;
    EXPECT_TRUE(killed);
    // Every message came out (its outputs at least once), and the committed state counted
    // each exactly once.
    EXPECT_EQ(delivered.size(), static_cast<std::size_t>(kMessages));
    EXPECT_EQ(last_n, kMessages);
    EXPECT_EQ(last_distinct, kMessages);
    EXPECT_EQ(max_dups, 0);
}

}  // namespace
}  // namespace sandflow::testing
