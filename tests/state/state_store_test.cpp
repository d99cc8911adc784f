// The state stores against real files: commit and load, compare-and-set, group commit from
// many threads, reopening, and files that are not Sandflow state databases (a clear error
// naming the file, and the file left as it was).
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <thread>

#include "runtime/state/resp.hpp"
#include "runtime/state/store.hpp"
#include "state/redis_support.hpp"

namespace sandflow::runtime {
namespace {

namespace fs = std::filesystem;

class TempDir {
  public:
    TempDir() {
        std::string t = (fs::temp_directory_path() / "sandflow-state-XXXXXX").string();
        path_ = ::mkdtemp(t.data());
    }
    ~TempDir() { fs::remove_all(path_); }
    std::string file(std::string_view name) const { return (path_ / name).string(); }

  private:
    fs::path path_;
};

StateCommit commit_of(std::string component, std::uint64_t base, json::object state) {
    StateCommit c;
    c.ref = {std::move(component), "default"};
    c.base_version = base;
    c.state = std::move(state);
    for (const auto& [k, v] : c.state) c.changed.emplace_back(k);
    return c;
}

// Runs SQL on a file with SQLite itself, as another program would.
void sql(const std::string& path, const char* text) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    char* err = nullptr;
    const int rc = sqlite3_exec(db, text, nullptr, nullptr, &err);
    EXPECT_EQ(rc, SQLITE_OK) << (err ? err : "");
    sqlite3_free(err);
    sqlite3_close(db);
}

std::string read_all(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

void round_trip(StateStore& store) {
    const InstanceRef ref{"counter", "default"};
    auto none = store.load(ref);
    ASSERT_TRUE(none) << none.error().message;
    EXPECT_FALSE(*none);

    auto c = commit_of("counter", 0, {{"n", 1}, {"tags", json::array{"a", "b"}}});
    c.expires["tags"] = wall_ms() + 60'000;
    c.call_id = "call-1";
    c.outputs = {{"out", 1}};
    auto v1 = store.commit_wait(c);
    ASSERT_TRUE(v1) << v1.error().message;
    EXPECT_EQ(*v1, 1u);

    auto got = store.load(ref);
    ASSERT_TRUE(got && *got);
    EXPECT_EQ((*got)->version, 1u);
    EXPECT_EQ((*got)->state, (json::object{{"n", 1}, {"tags", json::array{"a", "b"}}}));
    EXPECT_EQ((*got)->expires, c.expires);
    EXPECT_EQ((*got)->last_call, "call-1");
    EXPECT_EQ((*got)->last_outputs, (json::object{{"out", 1}}));

    // A second commit from the version it read; a stale one loses.
    auto v2 = store.commit_wait(commit_of("counter", 1, {{"n", 2}}));
    ASSERT_TRUE(v2) << v2.error().message;
    EXPECT_EQ(*v2, 2u);
    auto stale = store.commit_wait(commit_of("counter", 1, {{"n", 99}}));
    ASSERT_FALSE(stale);
    EXPECT_EQ(stale.error().code, Errc::state_conflict) << stale.error().message;
    auto fresh = store.commit_wait(commit_of("counter", 0, {{"n", 99}}));
    ASSERT_FALSE(fresh);
    EXPECT_EQ(fresh.error().code, Errc::state_conflict);
    got = store.load(ref);
    ASSERT_TRUE(got && *got);
    EXPECT_EQ((*got)->state, (json::object{{"n", 2}}));
    EXPECT_EQ((*got)->version, 2u);

    ASSERT_TRUE(store.erase_wait(ref));
    got = store.load(ref);
    ASSERT_TRUE(got);
    EXPECT_FALSE(*got);
}

TEST(StateStore, MemoryRoundTripAndCompareAndSet) {
    auto store = make_memory_store();
    round_trip(*store);
}

TEST(StateStore, SqliteRoundTripAndCompareAndSet) {
    TempDir dir;
    for (bool full : {false, true}) {
        const std::string path = dir.file(full ? "full.sqlite" : "normal.sqlite");
        auto store = open_sqlite_store(path, StoreOptions{full});
        ASSERT_TRUE(store) << store.error().message;
        EXPECT_EQ((*store)->describe(),
                  "sqlite:" + path + (full ? " (synchronous=FULL)" : " (synchronous=NORMAL)"));
        round_trip(**store);
    }
}

TEST(StateStore, SqliteKeepsCommitsAcrossReopen) {
    TempDir dir;
    const std::string path = dir.file("sub/folder/state.sqlite");  // folders made
    {
        auto store = open_sqlite_store(path, {});
        ASSERT_TRUE(store) << store.error().message;
        std::uint64_t v = 0;
        for (int i = 1; i <= 5; ++i) {
            auto r = (*store)->commit_wait(commit_of("counter", v, {{"n", i}}));
            ASSERT_TRUE(r) << r.error().message;
            v = *r;
        }
    }
    auto store = open_sqlite_store(path, {});
    ASSERT_TRUE(store) << store.error().message;
    auto got = (*store)->load({"counter", "default"});
    ASSERT_TRUE(got && *got);
    EXPECT_EQ((*got)->version, 5u);
    EXPECT_EQ((*got)->state, (json::object{{"n", 5}}));
}

// Many instances committing at once from many threads: each commit lands once, at its
// own version, whatever batches the writer made of them.
TEST(StateStore, SqliteGroupCommitFromManyThreads) {
    TempDir dir;
    auto store = open_sqlite_store(dir.file("state.sqlite"), {});
    ASSERT_TRUE(store) << store.error().message;
    constexpr int kThreads = 16, kCommits = 50;
    std::vector<std::thread> threads;
    std::atomic<int> failures{0};
    for (int t = 0; t < kThreads; ++t)
        threads.emplace_back([&, t] {
            std::uint64_t v = 0;
            for (int i = 1; i <= kCommits; ++i) {
                auto r =
                    (*store)->commit_wait(commit_of("actor" + std::to_string(t), v, {{"n", i}}));
                if (!r) {
                    failures++;
                    return;
                }
                v = *r;
            }
        });
    for (auto& th : threads) th.join();
    EXPECT_EQ(failures.load(), 0);
    for (int t = 0; t < kThreads; ++t) {
        auto got = (*store)->load({"actor" + std::to_string(t), "default"});
        ASSERT_TRUE(got && *got);
        EXPECT_EQ((*got)->version, static_cast<std::uint64_t>(kCommits));
        EXPECT_EQ((*got)->state, (json::object{{"n", kCommits}}));
    }
}

// Two stores on one file (two servers on one disk): one commit per version.
TEST(StateStore, SqliteTwoStoresOnOneFileCommitOncePerVersion) {
    TempDir dir;
    const std::string path = dir.file("state.sqlite");
    auto a = open_sqlite_store(path, {});
    auto b = open_sqlite_store(path, {});
    ASSERT_TRUE(a && b);
    ASSERT_TRUE((*a)->commit_wait(commit_of("x", 0, {{"n", 1}})));
    auto from_a = (*a)->commit_wait(commit_of("x", 1, {{"n", 2}}));
    auto from_b = (*b)->commit_wait(commit_of("x", 1, {{"n", 20}}));
    ASSERT_TRUE(from_a) << from_a.error().message;
    ASSERT_FALSE(from_b);
    EXPECT_EQ(from_b.error().code, Errc::state_conflict);
    auto got = (*b)->load({"x", "default"});
    ASSERT_TRUE(got && *got);
    EXPECT_EQ((*got)->state, (json::object{{"n", 2}}));
}

// Commits written on the callers' threads (NORMAL, writer free) and queued ones (writer
// busy) mixed, with two threads racing on one instance: each version is committed once,
// and a commit from a version that moved is refused, never applied.
TEST(StateStore, SqliteInlineAndQueuedCommitsRacingOnOneInstance) {
    TempDir dir;
    auto store = open_sqlite_store(dir.file("state.sqlite"), {});
    ASSERT_TRUE(store) << store.error().message;
    constexpr int kThreads = 8, kCommits = 40;
    std::atomic<int> failures{0}, landed{0}, conflicts{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t)
        threads.emplace_back([&, t] {
            std::uint64_t v = 0;
            for (int i = 1; i <= kCommits; ++i) {
                auto r = (*store)->commit_wait(commit_of("own" + std::to_string(t), v, {{"n", i}}));
                if (!r) failures++;
                v = r ? *r : v;
            }
        });
    for (int t = 0; t < 2; ++t)
        threads.emplace_back([&] {
            for (int i = 0; i < kCommits; ++i) {
                auto got = (*store)->load({"shared", "default"});
                if (!got) {
                    failures++;
                    return;
                }
                const std::uint64_t v = *got ? (*got)->version : 0;
                auto r = (*store)->commit_wait(
                    commit_of("shared", v, {{"n", static_cast<std::int64_t>(v + 1)}}));
                if (r)
                    landed++;
                else if (r.error().code == Errc::state_conflict)
                    conflicts++;
                else
                    failures++;
            }
        });
    for (auto& th : threads) th.join();
    EXPECT_EQ(failures.load(), 0);
    EXPECT_EQ(landed + conflicts, 2 * kCommits);
    auto shared = (*store)->load({"shared", "default"});
    ASSERT_TRUE(shared && *shared);
    EXPECT_EQ((*shared)->version, static_cast<std::uint64_t>(landed.load()));
    EXPECT_EQ((*shared)->state, (json::object{{"n", landed.load()}}));
    for (int t = 0; t < kThreads; ++t) {
        auto got = (*store)->load({"own" + std::to_string(t), "default"});
        ASSERT_TRUE(got && *got);
        EXPECT_EQ((*got)->version, static_cast<std::uint64_t>(kCommits));
    }
}

// Another program holds the file's write lock: a commit is not written on the caller's
// thread (commit() returns at once, unanswered) but queued, and lands once the lock is
// released; two commits from one version queued behind it: one lands, one is refused.
TEST(StateStore, SqliteCommitBehindAnotherWriterIsQueued) {
    TempDir dir;
    const std::string path = dir.file("state.sqlite");
    auto store = open_sqlite_store(path, {});
    ASSERT_TRUE(store) << store.error().message;
    ASSERT_TRUE((*store)->commit_wait(commit_of("x", 0, {{"n", 1}})));
    sqlite3* other = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &other), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(other, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);
    std::promise<Result<std::uint64_t>> a, b;
    (*store)->commit(commit_of("x", 1, {{"n", 2}}),
                     [&a](Result<std::uint64_t> r) { a.set_value(std::move(r)); });
    (*store)->commit(commit_of("x", 1, {{"n", 20}}),
                     [&b](Result<std::uint64_t> r) { b.set_value(std::move(r)); });
    auto fa = a.get_future(), fb = b.get_future();
    // Nothing can have landed while the lock is held.
    EXPECT_EQ(fa.wait_for(std::chrono::milliseconds(50)), std::future_status::timeout);
    EXPECT_EQ(sqlite3_exec(other, "COMMIT", nullptr, nullptr, nullptr), SQLITE_OK);
    sqlite3_close(other);
    auto ra = fa.get(), rb = fb.get();
    ASSERT_TRUE(ra) << ra.error().message;
    EXPECT_EQ(*ra, 2u);
    ASSERT_FALSE(rb);
    EXPECT_EQ(rb.error().code, Errc::state_conflict);
    auto got = (*store)->load({"x", "default"});
    ASSERT_TRUE(got && *got);
    EXPECT_EQ((*got)->state, (json::object{{"n", 2}}));
}

// Checkpoints run on the writer thread (SQLite's own auto-checkpoint is replaced): the WAL
// is reused instead of growing with every commit.
TEST(StateStore, SqliteWalIsCheckpointed) {
    TempDir dir;
    const std::string path = dir.file("state.sqlite");
    auto store = open_sqlite_store(path, {});
    ASSERT_TRUE(store) << store.error().message;
    constexpr int kCommits = 3000;  // ~3 times the WAL's checkpoint size, a page each
    std::uint64_t v = 0;
    for (int i = 1; i <= kCommits; ++i) {
        auto r = (*store)->commit_wait(commit_of("x", v, {{"n", i}}));
        ASSERT_TRUE(r) << r.error().message;
        v = *r;
    }
    // Unchecked, 3,000 frames of 4 KiB would be ~12 MB.
    EXPECT_LT(fs::file_size(path + "-wal"), 6u << 20);
    auto got = (*store)->load({"x", "default"});
    ASSERT_TRUE(got && *got);
    EXPECT_EQ((*got)->version, static_cast<std::uint64_t>(kCommits));
}

void expect_refused(const std::string& path, std::string_view why) {
    const std::string before = read_all(path);
    auto store = open_sqlite_store(path, {});
    ASSERT_FALSE(store) << "opened " << path;
    EXPECT_EQ(store.error().code, Errc::state_store);
    EXPECT_NE(store.error().message.find(path), std::string::npos) << store.error().message;
    EXPECT_NE(store.error().message.find(why), std::string::npos) << store.error().message;
    EXPECT_TRUE(read_all(path) == before) << "the file was changed";
}

TEST(StateStore, SqliteRefusesAFileThatIsNotSqlite) {
    TempDir dir;
    const std::string path = dir.file("notes.txt");
    std::ofstream(path) << "these are my notes, not a database\n";
    expect_refused(path, "does not start with SQLite's header");
}

TEST(StateStore, SqliteRefusesAnotherSchema) {
    TempDir dir;
    const std::string path = dir.file("app.db");
    sql(path, "CREATE TABLE users(id INTEGER); INSERT INTO users VALUES(1)");
    expect_refused(path, "it holds other tables (users)");
}

TEST(StateStore, SqliteRefusesAnotherSchemaVersion) {
    TempDir dir;
    const std::string path = dir.file("state.sqlite");
    ASSERT_TRUE(open_sqlite_store(path, {}));
    sql(path, "UPDATE sandflow_meta SET value='7' WHERE key='schema_version'");
    expect_refused(path, "has schema version 7");
}

TEST(StateStore, SqliteRefusesADamagedFile) {
    TempDir dir;
    const std::string path = dir.file("state.sqlite");
    {
        auto store = open_sqlite_store(path, {});
        ASSERT_TRUE(store);
        std::uint64_t v = 0;
        for (int i = 0; i < 20; ++i) {
            auto r = (*store)->commit_wait(
                commit_of("a" + std::to_string(i), 0, {{"text", std::string(500, 'x')}}));
            ASSERT_TRUE(r);
            v = *r;
        }
        EXPECT_EQ(v, 1u);
    }
    // Closed: the WAL is checkpointed into the file. Damage the table's pages.
    const auto size = fs::file_size(path);
    ASSERT_GE(size, 3u * 4096);
    {
        std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
        for (std::uintmax_t off = 4096; off + 64 < size; off += 4096) {
            f.seekp(static_cast<std::streamoff>(off + 8));
            f.write(std::string(64, '\xff').data(), 64);
        }
    }
    expect_refused(path, "is damaged");
}

TEST(StateStore, SpecsAndTheDefaultPath) {
    auto mem = open_state_store("memory", {});
    ASSERT_TRUE(mem);
    EXPECT_EQ((*mem)->kind(), "memory");
    auto bad = open_state_store("postgres://x", {});
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error().code, Errc::invalid_argument);
    EXPECT_NE(bad.error().message.find("sqlite:PATH"), std::string::npos);
    TempDir dir;
    ::setenv("SANDFLOW_DATA_DIR", dir.file("data").c_str(), 1);
    EXPECT_EQ(default_state_path(), dir.file("data") + "/state.sqlite");
    auto def = open_state_store("sqlite:", {});
    ::unsetenv("SANDFLOW_DATA_DIR");
    ASSERT_TRUE(def) << def.error().message;
    EXPECT_EQ((*def)->kind(), "sqlite");
    EXPECT_TRUE(fs::exists(dir.file("data/state.sqlite")));
}

TEST(StateStore, DropExpired) {
    json::object state{{"a", 1}, {"b", 2}, {"c", 3}};
    StateExpiry e{{"a", 100}, {"b", 300}, {"gone", 50}};
    drop_expired(state, e, 200);
    EXPECT_EQ(state, (json::object{{"b", 2}, {"c", 3}}));
    EXPECT_EQ(e, (StateExpiry{{"b", 300}}));
}

// --- redis: a redis-server of the test's own -------------------------------------------

#define REQUIRE_REDIS(r) \
    if (!(r).available()) GTEST_SKIP() << (r).why_not()

RedisTarget target_of(const testing::RedisServer& r) {
    RedisTarget t;
    t.unix_path = r.socket();
    return t;
}

TEST(RedisStore, RoundTripAndCompareAndSet) {
    testing::RedisServer redis;
    REQUIRE_REDIS(redis);
    auto store = open_state_store(redis.url(), {});
    ASSERT_TRUE(store) << store.error().message;
    EXPECT_EQ((*store)->kind(), "redis");
    round_trip(**store);
}

// A host that reads Redis finds {namespace}:{actor_id}:{key} holding each value as JSON,
// with the key's expiry time as Redis's own.
TEST(RedisStore, KeysFollowTheSchemeOfTheSystemReplaced) {
    testing::RedisServer redis;
    REQUIRE_REDIS(redis);
    auto store = open_state_store(redis.url("namespace=flows"), {});
    ASSERT_TRUE(store) << store.error().message;
    auto c = commit_of("counter", 0, {{"n", 1}, {"name", "ada"}});
    c.expires["name"] = wall_ms() + 60'000;
    ASSERT_TRUE((*store)->commit_wait(c));
    StateCommit other;
    other.ref = {"counter", "eu"};
    other.state = {{"n", 7}};
    other.changed = {"n"};
    ASSERT_TRUE((*store)->commit_wait(other));

    RespConnection conn;
    ASSERT_TRUE(conn.ensure(target_of(redis), std::chrono::seconds(2)));
    auto n = conn.command({"GET", "flows:counter:n"});
    ASSERT_TRUE(n);
    EXPECT_EQ(n->str, "1");
    auto name = conn.command({"GET", "flows:counter:name"});
    ASSERT_TRUE(name);
    EXPECT_EQ(name->str, "\"ada\"");
    auto ttl = conn.command({"PTTL", "flows:counter:name"});
    ASSERT_TRUE(ttl);
    EXPECT_GT(ttl->integer, 0);
    auto eu = conn.command({"GET", "flows:counter@eu:n"});
    ASSERT_TRUE(eu);
    EXPECT_EQ(eu->str, "7");
    // A third commit deletes a key: gone from Redis too.
    auto d = commit_of("counter", 1, {{"n", 2}});
    d.removed = {"name"};
    ASSERT_TRUE((*store)->commit_wait(d));
    auto gone = conn.command({"EXISTS", "flows:counter:name"});
    ASSERT_TRUE(gone);
    EXPECT_EQ(gone->integer, 0);
}

// Two stores (two servers) on one Redis, racing from one version: exactly one commits.
TEST(RedisStore, TwoStoresRacingCommitOncePerVersion) {
    testing::RedisServer redis;
    REQUIRE_REDIS(redis);
    auto a = open_state_store(redis.url(), {});
    auto b = open_state_store(redis.url(), {});
    ASSERT_TRUE(a && b);
    for (int round = 0; round < 50; ++round) {
        const auto base = static_cast<std::uint64_t>(round);
        Result<std::uint64_t> ra, rb;
        std::thread ta([&] { ra = (*a)->commit_wait(commit_of("x", base, {{"by", "a"}})); });
        std::thread tb([&] { rb = (*b)->commit_wait(commit_of("x", base, {{"by", "b"}})); });
        ta.join();
        tb.join();
        ASSERT_NE(ra.has_value(), rb.has_value()) << "round " << round;
        const auto& lost = ra ? rb : ra;
        EXPECT_EQ(lost.error().code, Errc::state_conflict);
    }
    auto got = (*a)->load({"x", "default"});
    ASSERT_TRUE(got && *got);
    EXPECT_EQ((*got)->version, 50u);
}

// The store names its scripts by SHA1 (EVALSHA); a Redis that forgot them (SCRIPT FLUSH,
// as after a restart) gets them again with the next load and commit, which both land.
TEST(RedisStore, ScriptsForgottenByRedisAreSentAgain) {
    testing::RedisServer redis;
    REQUIRE_REDIS(redis);
    auto store = open_state_store(redis.url(), {});
    ASSERT_TRUE(store);
    ASSERT_TRUE((*store)->commit_wait(commit_of("x", 0, {{"n", 1}})));
    RespConnection raw;
    ASSERT_TRUE(raw.ensure(target_of(redis), std::chrono::seconds(5)));
    for (int round = 1; round <= 2; ++round) {
        auto flushed = raw.command({"SCRIPT", "FLUSH"});
        ASSERT_TRUE(flushed && flushed->type != RespValue::Type::error);
        if (round == 2) {  // the commit first this time
            auto v = (*store)->commit_wait(commit_of("x", 2, {{"n", 3}}));
            ASSERT_TRUE(v) << v.error().message;
            EXPECT_EQ(*v, 3u);
            continue;
        }
        auto got = (*store)->load({"x", "default"});
        ASSERT_TRUE(got && *got) << (got ? "none" : got.error().message);
        EXPECT_EQ((*got)->version, 1u);
        auto v = (*store)->commit_wait(commit_of("x", 1, {{"n", 2}}));
        ASSERT_TRUE(v) << v.error().message;
        EXPECT_EQ(*v, 2u);
    }
}

// Redis stopped: commits and loads fail with state_store naming it; restarted (its data
// kept), the store reconnects and goes on from the committed version.
TEST(RedisStore, StoppedAndRestarted) {
    testing::RedisServer redis;
    REQUIRE_REDIS(redis);
    auto store = open_state_store(redis.url(), {});
    ASSERT_TRUE(store);
    ASSERT_TRUE((*store)->commit_wait(commit_of("x", 0, {{"n", 1}})));
    redis.stop();
    auto down = (*store)->commit_wait(commit_of("x", 1, {{"n", 2}}));
    ASSERT_FALSE(down);
    EXPECT_EQ(down.error().code, Errc::state_store);
    EXPECT_NE(down.error().message.find(redis.socket()), std::string::npos) << down.error().message;
    auto unreadable = (*store)->load({"x", "default"});
    ASSERT_FALSE(unreadable);
    EXPECT_EQ(unreadable.error().code, Errc::state_store);
    redis.start();
    ASSERT_TRUE(redis.available()) << redis.why_not();
    auto got = (*store)->load({"x", "default"});
    ASSERT_TRUE(got && *got) << (got ? "none" : got.error().message);
    EXPECT_EQ((*got)->version, 1u);
    auto up = (*store)->commit_wait(commit_of("x", 1, {{"n", 2}}));
    ASSERT_TRUE(up) << up.error().message;
    EXPECT_EQ(*up, 2u);
}

TEST(RedisStore, BadUrlsAndAnAbsentRedisAreClearErrors) {
    for (const char* url : {"redis://", "redis://host:99999/0", "redis://h:1/x",
                            "redis+unix://relative/path", "redis://h:1/0?color=blue"}) {
        auto s = open_state_store(url, {});
        ASSERT_FALSE(s) << url;
        EXPECT_EQ(s.error().code, Errc::invalid_argument) << url;
        EXPECT_NE(s.error().message.find("redis://HOST:PORT/DB"), std::string::npos);
    }
    auto absent = open_state_store("redis+unix:///nonexistent/redis.sock", {});
    ASSERT_FALSE(absent);
    EXPECT_EQ(absent.error().code, Errc::state_store);
    EXPECT_NE(absent.error().message.find("/nonexistent/redis.sock"), std::string::npos);
}

}  // namespace
}  // namespace sandflow::runtime
