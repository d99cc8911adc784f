// Graphs with sandboxed script actors (real /usr/bin/python3 and /usr/bin/node workers on
// the `none` backend): await_all_inports, back-pressure into and out of a sandbox, error
// routing, and the same graph on the embedded runtime and on a runtime server
// (`sandflow serve`, through the C++ client) giving the same results.
#include <gtest/gtest.h>

#include <map>
#include <thread>

#include "flow/flow_limits.hpp"
#include "flow/graph.hpp"
#include "flow/network.hpp"
#include "flow/remote.hpp"
#include "sandbox/none/none_backend.hpp"
#include "support/flow_support.hpp"

using namespace sandflow;
using namespace sandflow::flow;
using sandflow::testing::conn;
using sandflow::testing::FlowRun;
using sandflow::testing::iip;
using sandflow::testing::run_flow;
using sandflow::testing::ServeProcess;
using sandflow::testing::stats_of;

namespace {

const char* kAdd = R"(@actor({"component": "add", "inports": ["a", "b"], "outports": ["sum"],
        "await_all_inports": True})
def process(context):
    return {"sum": context.get_input("a") + context.get_input("b")}
)";

const char* kSlow = R"(import time
@actor({"component": "slow", "inports": ["in"], "outports": ["out"]})
def process(context):
    time.sleep(0.001)
    return {"out": context.get_input("in")}
)";

const char* kStreamer = R"(@actor({"component": "streamer", "inports": ["n"], "outports": ["item"]})
async def process(context):
    for i in range(context.get_input("n")):
        await context.send_output("item", i)
)";

const char* kJsTag = R"(const metadata = {component: 'tag_js', inports: ['in'], outports: ['out']};
async function process(context) {
    await context.sendOutput('out', {n: context.getInput('in'), via: 'js'});
    return {};
}
)";

class ScriptFlowTest : public ::testing::Test {
  protected:
    void SetUp() override {
        ASSERT_FALSE(dir_.path().empty()) << "cannot make a temporary folder";
        catalog_ = ScriptCatalog::discover({dir_.path()});
        host_ = embedded_host(backend_);
        // A native consumer slower than any script producer.
        ComponentSpec slow = *registry_.find("passthrough");
        slow.name = "slow_native";
        slow.make = [](const json::object&) -> Result<std::unique_ptr<Component>> {
            struct Slow : Component {
                Result<void> process(Context& ctx) override {
                    std::this_thread::sleep_for(std::chrono::microseconds(300));
                    return ctx.send("out", std::move(ctx.value()));
                }
            };
            return std::make_unique<Slow>();
        };
        registry_.add(std::move(slow));
    }

    FlowRun run(const std::string& text, NetworkOptions opts = {}, ScriptHost* host = nullptr) {
        opts.on_log = [](std::string_view, std::string_view) {};
        return run_flow(text, registry_, &catalog_, host ? host : host_.get(), std::move(opts));
    }

    sandflow::testing::ScriptDir dir_{"sandflow-flow-test",
                                      {{"add.actor.py", kAdd},
                                       {"slow.actor.py", kSlow},
                                       {"streamer.actor.py", kStreamer},
                                       {"odd_fails.actor.py", sandflow::testing::kOddFailsActor},
                                       {"stats.actor.py", sandflow::testing::kStatsActor},
                                       {"tag.actor.js", kJsTag}}};
    sandbox::NoneBackend backend_;
    ScriptCatalog catalog_;
    Registry registry_ = Registry::standard();
    std::unique_ptr<ScriptHost> host_;
};

// The graph used by the embedded-vs-remote comparison: fan-out to a Python and a JS
// actor, state in the Python one, native nodes around them.
std::string comparison_graph() {
    return R"({"processes": {"gen": {"component": "range", "metadata": {"from": 1}},
        "stats": {"component": "stats"}, "tag": {"component": "tag_js"},
        "count": {"component": "counter"}},
      "connections": [)" +
           iip("gen", "start", "50") + "," + conn("gen", "out", "stats", "value") + "," +
           conn("gen", "out", "tag", "in") + "," + conn("tag", "out", "count", "in") + R"(],
      "outports": {"total": {"nodeId": "stats", "portName": "total"},
                   "tagged": {"nodeId": "count", "portName": "out"},
                   "count": {"nodeId": "count", "portName": "count"}}})";
}

}  // namespace

TEST_F(ScriptFlowTest, AwaitAllInportsCollectsOnePacketPerInportBeforeACall) {
    auto r = run(R"({"processes": {"ga": {"component": "range", "metadata": {"count": 20}},
        "gb": {"component": "range", "metadata": {"count": 20, "from": 1000}},
        "add": {"component": "add"}},
      "connections": [)" +
                 iip("ga", "start", "true") + "," + iip("gb", "start", "true") + "," +
                 conn("ga", "out", "add", "a") + "," + conn("gb", "out", "add", "b") + R"(],
      "outports": {"sum": {"nodeId": "add", "portName": "sum"}}})");
    ASSERT_TRUE(r.result) << r.result.error().message;
    ASSERT_EQ(r.out["sum"].size(), 20u);
    for (std::int64_t i = 0; i < 20; ++i)
        EXPECT_EQ(r.out["sum"][static_cast<std::size_t>(i)], json::value(1000 + 2 * i));
    EXPECT_EQ(stats_of(*r.result, "add").calls, 20u);
}

TEST_F(ScriptFlowTest, FastProducerSlowSandboxedConsumerKeepsQueuesBounded) {
    NetworkOptions opts;
    opts.queue_capacity = 4;
    auto r = run(R"({"processes": {"gen": {"component": "range"}, "p": {"component": "passthrough"},
        "slow": {"component": "slow"}},
      "connections": [)" +
                     iip("gen", "start", "400") + "," + conn("gen", "out", "p", "in") + "," +
                     conn("p", "out", "slow", "in") + R"(],
      "outports": {"out": {"nodeId": "slow", "portName": "out"}}})",
                 opts);
    ASSERT_TRUE(r.result) << r.result.error().message;
    ASSERT_EQ(r.out["out"].size(), 400u);
    for (std::size_t i = 0; i < 400; ++i) EXPECT_EQ(r.out["out"][i], json::value(i));
    // The slow script paced the passthrough, which paced the generator.
    EXPECT_LE(stats_of(*r.result, "slow").queue_high_water, 4 + limits::kMaxFlowBatch);
    EXPECT_LE(stats_of(*r.result, "p").queue_high_water, 4 + limits::kMaxFlowBatch);
    EXPECT_GE(stats_of(*r.result, "gen").calls, 400 / limits::kMaxFlowBatch);
}

TEST_F(ScriptFlowTest, StreamingScriptWaitsForItsSlowConsumer) {
    // One call streams 500 outputs; the consumer is slow. The script's sends block while
    // the consumer's queue is full, so it never holds more than the capacity.
    NetworkOptions opts;
    opts.queue_capacity = 4;
    auto r = run(R"({"processes": {"s": {"component": "streamer"},
        "c": {"component": "slow_native"}},
      "connections": [)" +
                     iip("s", "n", "500") + "," + conn("s", "item", "c", "in") + R"(],
      "outports": {"out": {"nodeId": "c", "portName": "out"}}})",
                 opts);
    ASSERT_TRUE(r.result) << r.result.error().message;
    ASSERT_EQ(r.out["out"].size(), 500u);
    for (std::size_t i = 0; i < 500; ++i) EXPECT_EQ(r.out["out"][i], json::value(i));
    EXPECT_LE(stats_of(*r.result, "c").queue_high_water, 4u);
    EXPECT_EQ(stats_of(*r.result, "s").calls, 1u);
}

TEST_F(ScriptFlowTest, ScriptErrorsAreRoutedOrStopTheRun) {
    const std::string routed =
        R"({"processes": {"gen": {"component": "range"}, "f": {"component": "odd_fails"},
        "e": {"component": "passthrough"}},
      "connections": [)" +
        iip("gen", "start", "6") + "," + conn("gen", "out", "f", "in") + "," +
        conn("f", "error", "e", "in") + R"(],
      "outports": {"ok": {"nodeId": "f", "portName": "out"},
                   "errors": {"nodeId": "e", "portName": "out"}}})";
    auto r = run(routed);
    ASSERT_TRUE(r.result) << r.result.error().message;
    EXPECT_EQ(r.out["ok"], (std::vector<json::value>{0, 2, 4}));
    ASSERT_EQ(r.out["errors"].size(), 3u);
    const auto& err = r.out["errors"][0].as_object().at("error").as_object();
    EXPECT_EQ(err.at("code"), json::value("script"));
    EXPECT_NE(json::value_to<std::string>(err.at("message")).find("odd 1"), std::string::npos);

    const std::string unrouted =
        R"({"processes": {"gen": {"component": "range"}, "f": {"component": "odd_fails"}},
      "connections": [)" +
        iip("gen", "start", "6") + "," + conn("gen", "out", "f", "in") + R"(],
      "outports": {"ok": {"nodeId": "f", "portName": "out"}}})";
    r = run(unrouted);
    ASSERT_FALSE(r.result);
    EXPECT_EQ(r.result.error().code, Errc::script);
    EXPECT_NE(r.result.error().message.find("node 'f' (odd_fails) failed on inport 'in': "),
              std::string::npos)
        << r.result.error().message;
    EXPECT_NE(r.result.error().message.find("odd 1"), std::string::npos);
}

TEST_F(ScriptFlowTest, EmbeddedAndRemoteRuntimesGiveTheSameResults) {
    auto embedded = run(comparison_graph());
    ASSERT_TRUE(embedded.result) << embedded.result.error().message;
    ASSERT_EQ(embedded.out["total"].size(), 50u);
    EXPECT_EQ(embedded.out["total"].back(), json::value(50 * 51 / 2));
    EXPECT_EQ(embedded.out["tagged"][0], (json::value{{"n", 1}, {"via", "js"}}));

    ServeProcess server("none");
    ASSERT_FALSE(server.url().empty()) << "sandflow serve did not start";
    auto remote_host_ = remote_host({server.url(), "", {}});
    auto remote = run(comparison_graph(), {}, remote_host_.get());
    ASSERT_TRUE(remote.result) << remote.result.error().message;
    EXPECT_EQ(remote.out, embedded.out);
}
