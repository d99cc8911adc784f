// A `sandflow serve` (SANDFLOW_BINARY) on a real sqlite file: what a call committed is
// there after kill -9 and a restart, a call killed half-way commits nothing, a replayed
// call id commits once, and a damaged file stops the server with an error naming it.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>

#include "state/redis_support.hpp"
#include "support/server_support.hpp"

namespace sandflow::testing {
namespace {

namespace fs = std::filesystem;

constexpr const char* kCounter = R"PY(
import time

@actor({"component": "counter", "inports": ["by", "sleep_ms"], "outports": ["count"]})
async def process(context):
    count = await context.get_state("count", 0)
    count += context.get_input("by", 1)
    context.set_state("count", count)
    if context.get_input("sleep_ms", 0):
        time.sleep(context.get_input("sleep_ms") / 1000)
    return {"count": count}
)PY";

class StateServer : public ::testing::Test {
  protected:
    void SetUp() override {
        std::string t = (fs::temp_directory_path() / "sandflow-state-e2e-XXXXXX").string();
        dir_ = ::mkdtemp(t.data());
        std::ofstream(dir_ / "counter.actor.py") << kCounter;
    }
    void TearDown() override { fs::remove_all(dir_); }

    std::unique_ptr<ServerProcess> serve(std::vector<std::string> extra = {}) {
        std::vector<std::string> args = {"--actors", dir_.string(), "--state", state_spec()};
        args.insert(args.end(), extra.begin(), extra.end());
        return std::make_unique<ServerProcess>(args);
    }
    std::string state_spec() const { return "sqlite:" + (dir_ / "state.sqlite").string(); }

    static json::object process(client::Client& c, json::object params) {
        params["actor_id"] = "counter";
        auto r = c.call("process", params);
        EXPECT_TRUE(r) << (r ? "" : r.error().message);
        return r && r->is_object() ? r->get_object() : json::object{};
    }
    static std::int64_t count_of(const json::object& result) {
        const auto* o = result.if_contains("outputs");
        return o && o->is_object() && o->get_object().contains("count")
                   ? o->get_object().at("count").as_int64()
                   : -1;
    }

    fs::path dir_;
};

TEST_F(StateServer, CommittedStateSurvivesKill9AndRestart) {
    for (const char* sync : {"normal", "full"}) {
        fs::remove(dir_ / "state.sqlite");
        {
            auto s = serve({"--state-sync", sync});
            auto c = connect(*s);
            ASSERT_TRUE(c);
            for (int i = 1; i <= 5; ++i)
                EXPECT_EQ(count_of(process(*c, {{"payload", {{"by", 1}}}})), i);
            ::kill(s->pid(), SIGKILL);
            EXPECT_NE(s->wait_exit(std::chrono::seconds(10)), -1);
        }
        auto s = serve({"--state-sync", sync});
        auto c = connect(*s);
        ASSERT_TRUE(c);
        EXPECT_EQ(count_of(process(*c, {{"payload", {{"by", 1}}}})), 6) << sync;
    }
}

// The server dies while the call runs (after the script changed the state, before the
// call ended): nothing of it is committed.
TEST_F(StateServer, KillDuringACallCommitsNothingOfIt) {
    {
        auto s = serve();
        auto c = connect(*s);
        ASSERT_TRUE(c);
        EXPECT_EQ(count_of(process(*c, {{"payload", {{"by", 10}}}})), 10);
        auto pending = c->call_async(
            "process", json::object{{"actor_id", "counter"},
                                    {"payload", {{"by", 1000}, {"sleep_ms", 60'000}}}});
        // The call is running once the instance is busy.
        bool busy = false;
        for (int i = 0; i < 500 && !busy; ++i) {
            auto st = c->stats();
            busy = st && st->at("sandboxes").at("busy").as_int64() == 1;
            if (!busy) std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        ASSERT_TRUE(busy);
        ::kill(s->pid(), SIGKILL);
        EXPECT_FALSE(pending.get());
    }
    auto s = serve();
    auto c = connect(*s);
    ASSERT_TRUE(c);
    EXPECT_EQ(count_of(process(*c, {{"payload", {{"by", 1}}}})), 11);
}

// A call sent again with the id of the last committed call (its answer was lost) is
// answered from the store, even by a new server, and commits nothing twice.
TEST_F(StateServer, ReplayedCallIdIsCommittedOnce) {
    {
        auto s = serve();
        auto c = connect(*s);
        ASSERT_TRUE(c);
        auto first = process(*c, {{"payload", {{"by", 5}}}, {"call_id", "flow-1:msg-1"}});
        EXPECT_EQ(count_of(first), 5);
        EXPECT_FALSE(first.contains("replayed"));
        auto again = process(*c, {{"payload", {{"by", 5}}}, {"call_id", "flow-1:msg-1"}});
        EXPECT_EQ(count_of(again), 5);
        EXPECT_EQ(again["replayed"], json::value(true));
        ::kill(s->pid(), SIGKILL);
    }
    auto s = serve();
    auto c = connect(*s);
    ASSERT_TRUE(c);
    auto replay = process(*c, {{"payload", {{"by", 5}}}, {"call_id", "flow-1:msg-1"}});
    EXPECT_EQ(count_of(replay), 5);
    EXPECT_EQ(replay["replayed"], json::value(true));
    EXPECT_EQ(count_of(process(*c, {{"payload", {{"by", 5}}}, {"call_id", "flow-1:msg-2"}})), 10);
}

TEST_F(StateServer, ServeNamesItsStateInItsFirstLineAndStats) {
    auto s = serve();
    auto c = connect(*s);
    ASSERT_TRUE(c);
    auto st = c->stats();
    ASSERT_TRUE(st);
    EXPECT_EQ(st->at("state_store"), "sqlite");
    EXPECT_EQ(st->at("state_store_at"), json::value(state_spec() + " (synchronous=NORMAL)"));
}

TEST_F(StateServer, ADamagedStateFileStopsTheServerNamingIt) {
    const fs::path file = dir_ / "state.sqlite";
    std::ofstream(file) << "not a database at all";
    ServerProcess s({"--actors", dir_.string(), "--state", state_spec()}, false);
    EXPECT_EQ(s.wait_exit(std::chrono::seconds(10)), 3);
    EXPECT_NE(s.stderr_text().find(file.string()), std::string::npos) << s.stderr_text();
    std::ifstream in(file);
    EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), "not a database at all");
}

// Two servers on one Redis share each instance's state; a server whose copy is stale
// (the other committed since) has its commit refused, and runs the call again on what the
// store holds: no commit is made from a version twice, and none is lost.
TEST_F(StateServer, TwoServersOnOneRedisNeverCommitFromOneVersionTwice) {
    RedisServer redis;
    if (!redis.available()) GTEST_SKIP() << redis.why_not();
    ServerProcess a({"--actors", dir_.string(), "--state", redis.url()});
    auto ca = connect(a);
    ASSERT_TRUE(ca);
    for (int i = 1; i <= 3; ++i) EXPECT_EQ(count_of(process(*ca, {{"payload", {{"by", 1}}}})), i);
    // B starts its instances (on what Redis holds) when it starts.
    ServerProcess b({"--actors", dir_.string(), "--state", redis.url()});
    auto cb = connect(b);
    ASSERT_TRUE(cb);
    EXPECT_EQ(count_of(process(*cb, {{"payload", {{"by", 1}}}})), 4);  // B reads what A committed
    // A's copy is stale: its commit from version 3 is refused, and the call runs again on 4.
    EXPECT_EQ(count_of(process(*ca, {{"payload", {{"by", 100}}}})), 104);
    EXPECT_EQ(count_of(process(*ca, {{"payload", {{"by", 1}}}})), 105);
    EXPECT_EQ(count_of(process(*cb, {{"payload", {{"by", 100}}}})), 205);  // B's copy, stale
    EXPECT_EQ(count_of(process(*cb, {{"payload", {{"by", 1}}}})), 206);
    for (auto* c : {ca.get(), cb.get()}) {
        auto st = c->stats();
        ASSERT_TRUE(st);
        EXPECT_EQ(st->at("state_conflict_retries").as_int64(), 1);
    }
}

}  // namespace
}  // namespace sandflow::testing
