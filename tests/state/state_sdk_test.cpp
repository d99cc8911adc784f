// The async state object of both SDKs (context.state) through a real `sandflow serve` on a
// sqlite file: every operation, expiry (across calls and a restart), the named limits in
// the worker and again on the host, and a failed call that commits nothing.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>

#include "support/server_support.hpp"

namespace sandflow::testing {
namespace {

namespace fs = std::filesystem;

// Each script runs one `op` per call and returns what the state object answered.
constexpr const char* kPython = R"PY(
import sys

@actor({"component": "kv_py", "inports": ["op", "arg"], "outports": ["r"]})
async def process(context):
    s = context.state
    op = context.get_input("op")
    if op == "all":
        await s.set("name", "ada")
        a = await s.get("name")
        b = await s.get("missing", "dflt")
        c = await s.increment("n")
        d = await s.increment("n", 5)
        e = await s.decrement("n", 2)
        f = await s.push("list", 1, 2)
        g = await s.extend("list", [3, 4])
        h = await s.pop("list")
        i = await s.exists("name")
        j = await s.delete("name")
        k = await s.exists("name")
        await s.set("tmp", 1)
        await s.delete("tmp")
        return {"r": [a, b, c, d, e, f, g, h, i, j, k, await s.keys(), await s.ttl("n"),
                      await s.ttl("nothing")]}
    if op == "expire":
        await s.set("short", "x")
        await s.set("long", "y")
        ok = await s.expire("short", context.get_input("arg"))
        await s.expire("long", 3600)
        return {"r": [ok, (await s.ttl("short")) > 0, (await s.ttl("long")) > 3000]}
    if op == "read":
        return {"r": [await s.get("short", "gone"), await s.get("long", "gone"),
                      await s.keys()]}
    if op == "big":
        await s.set("big", "x" * context.get_input("arg"))
        return {"r": "stored"}
    if op == "fail":
        await s.set("name", "changed")
        raise ValueError("after a change")
    if op == "bypass":
        # A worker that skips its own checks (it is untrusted): the host checks again.
        sys.modules["__main__"]._state_limits["value_bytes"] = 1 << 30
        await s.set("big", "x" * context.get_input("arg"))
        return {"r": "stored"}
    if op == "bad_type":
        await s.set("word", "abc")
        await s.increment("word")
    return {"r": None}
)PY";

constexpr const char* kJs = R"JS(
const metadata = { component: 'kv_js', inports: ['op', 'arg'], outports: ['r'] };

async function process(context) {
    const s = context.state;
    const op = context.getInput('op');
    if (op === 'all') {
        await s.set('name', 'ada');
        const r = [await s.get('name'), await s.get('missing', 'dflt'), await s.increment('n'),
            await s.increment('n', 5), await s.decrement('n', 2), await s.push('list', 1, 2),
            await s.extend('list', [3, 4]), await s.pop('list'), await s.exists('name'),
            await s.delete('name'), await s.exists('name')];
        await s.set('tmp', 1);
        await s.delete('tmp');
        r.push(await s.keys(), await s.ttl('n'), await s.ttl('nothing'));
        return { r };
    }
    if (op === 'expire') {
        await s.set('short', 'x');
        await s.set('long', 'y');
        const ok = await s.expire('short', context.getInput('arg'));
        await s.expire('long', 3600);
        return { r: [ok, (await s.ttl('short')) > 0, (await s.ttl('long')) > 3000] };
    }
    if (op === 'read') {
        return { r: [await s.get('short', 'gone'), await s.get('long', 'gone'), await s.keys()] };
    }
    if (op === 'big') {
        await s.set('big', 'x'.repeat(context.getInput('arg')));
        return { r: 'stored' };
    }
    if (op === 'fail') {
        await s.set('name', 'changed');
        throw new Error('after a change');
    }
    return { r: null };
}
)JS";

class StateSdk : public ::testing::TestWithParam<const char*> {
  protected:
    void SetUp() override {
        std::string t = (fs::temp_directory_path() / "sandflow-state-sdk-XXXXXX").string();
        dir_ = ::mkdtemp(t.data());
        std::ofstream(dir_ / "kv.actor.py") << kPython;
        std::ofstream(dir_ / "kv.actor.js") << kJs;
    }
    void TearDown() override { fs::remove_all(dir_); }
    std::unique_ptr<ServerProcess> serve() {
        return std::make_unique<ServerProcess>(std::vector<std::string>{
            "--actors", dir_.string(), "--state", "sqlite:" + (dir_ / "s.sqlite").string()});
    }
    std::string actor() const { return GetParam(); }
    Result<json::value> call(client::Client& c, std::string op, json::value arg = nullptr) {
        return c.call("process",
                      json::object{{"actor_id", actor()}, {"payload", {{"op", op}, {"arg", arg}}}});
    }
    fs::path dir_;
};

TEST_P(StateSdk, EveryOperation) {
    auto s = serve();
    auto c = connect(*s);
    ASSERT_TRUE(c);
    auto r = call(*c, "all");
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->at("outputs").at("r"),
              json::parse(R"(["ada", "dflt", 1, 6, 4, 2, 4, 4, true, true, false,
                              ["list", "n"], -1, -2])"));
    EXPECT_EQ(r->at("state"), json::parse(R"({"n": 4, "list": [1, 2, 3]})"));
}

TEST_P(StateSdk, AFailedCallCommitsNothing) {
    auto s = serve();
    auto c = connect(*s);
    ASSERT_TRUE(c);
    ASSERT_TRUE(call(*c, "all"));
    auto r = call(*c, "fail");
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, Errc::script);
    auto d = c->describe(actor());
    ASSERT_TRUE(d);
    EXPECT_EQ(d->at("instances").at(0).at("state"), json::parse(R"({"n": 4, "list": [1, 2, 3]})"));
    auto read = call(*c, "read");  // the worker, too, is back on the committed state
    ASSERT_TRUE(read);
    EXPECT_EQ(read->at("state"), json::parse(R"({"n": 4, "list": [1, 2, 3]})"));
}

// A key with an expiry time is there until its time, gone after it, in the next call and
// in a server restarted on the same file; the other key stays.
TEST_P(StateSdk, ExpiredKeysVanishAcrossCallsAndRestarts) {
    {
        auto s = serve();
        auto c = connect(*s);
        ASSERT_TRUE(c);
        auto r = call(*c, "expire", 0.3);
        ASSERT_TRUE(r) << r.error().message;
        EXPECT_EQ(r->at("outputs").at("r"), json::parse("[true, true, true]"));
        ::kill(s->pid(), SIGKILL);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(400));  // past the short key's time
    auto s = serve();
    auto c = connect(*s);
    ASSERT_TRUE(c);
    auto r = call(*c, "read");
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->at("outputs").at("r"), json::parse(R"(["gone", "y", ["long"]])"));
    // expire(key, 0) removes it at once.
    r = call(*c, "expire", 0);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->at("state"), json::parse(R"({"long": "y"})"));
}

TEST_P(StateSdk, AValueOverItsLimitIsAClearScriptError) {
    auto s = serve();
    auto c = connect(*s);
    ASSERT_TRUE(c);
    auto r = call(*c, "big", 2 << 20);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, Errc::script);
    EXPECT_EQ(r.error().data.at("type"), "StateLimitError");
    EXPECT_NE(r.error().message.find("kMaxStateValueBytes"), std::string::npos)
        << r.error().message;
    r = call(*c, "big", 1000);
    ASSERT_TRUE(r) << r.error().message;
}

INSTANTIATE_TEST_SUITE_P(Languages, StateSdk, ::testing::Values("kv_py", "kv_js"));

TEST(StateSdkHost, TheHostChecksTheLimitsAgain) {
    std::string t = (fs::temp_directory_path() / "sandflow-state-sdk-XXXXXX").string();
    const fs::path dir = ::mkdtemp(t.data());
    std::ofstream(dir / "kv.actor.py") << kPython;
    {
        ServerProcess s({"--actors", dir.string(), "--state", "memory"});
        auto c = connect(s);
        ASSERT_TRUE(c);
        auto r = c->call(
            "process",
            json::object{{"actor_id", "kv_py"}, {"payload", {{"op", "bypass"}, {"arg", 2 << 20}}}});
        ASSERT_FALSE(r);
        EXPECT_EQ(r.error().code, Errc::limit_exceeded) << r.error().message;
        EXPECT_EQ(r.error().data.at("limit"), "kMaxStateValueBytes");
        auto d = c->describe("kv_py");
        ASSERT_TRUE(d);
        EXPECT_FALSE(d->at("instances").at(0).as_object().contains("state"));
        auto bad = c->call("process",
                           json::object{{"actor_id", "kv_py"}, {"payload", {{"op", "bad_type"}}}});
        ASSERT_FALSE(bad);
        EXPECT_NE(bad.error().message.find("not a number"), std::string::npos)
            << bad.error().message;
    }
    fs::remove_all(dir);
}

}  // namespace
}  // namespace sandflow::testing
