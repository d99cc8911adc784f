// Script nodes on a runtime server (`sandflow serve`, through the C++ client) with several
// calls in flight per node: each node's calls run, and its outputs leave, in input order
// (state included); the window and the consumers' room bound the calls in flight and the
// queues; errors keep that order; a run that stops cancels the calls still in flight.
#include <gtest/gtest.h>

#include "flow/graph.hpp"
#include "flow/network.hpp"
#include "flow/remote.hpp"
#include "support/flow_support.hpp"

using namespace sandflow;
using namespace sandflow::flow;
using sandflow::testing::conn;
using sandflow::testing::FlowRun;
using sandflow::testing::iip;
using sandflow::testing::kOddFailsActor;
using sandflow::testing::kStatsActor;
using sandflow::testing::run_flow;
using sandflow::testing::ScriptDir;
using sandflow::testing::ServeProcess;
using sandflow::testing::stats_of;

namespace {

// Two outputs per call: one streamed, one returned.
const char* kPair = R"(@actor({"component": "pair", "inports": ["in"], "outports": ["out"]})
async def process(context):
    n = context.get_input("in")
    await context.send_output("out", [n, "streamed"])
    return {"out": [n, "returned"]}
)";

const char* kEcho = R"(@actor({"component": "echo", "inports": ["in"], "outports": ["out"]})
def process(context):
    return {"out": context.get_input("in")}
)";

const char* kSlow = R"(import time
@actor({"component": "slow", "inports": ["in"], "outports": ["out"]})
def process(context):
    time.sleep(0.002)
    return {"out": context.get_input("in")}
)";

// The first call fails at once; every other one would take a minute.
const char* kFirstFails =
    R"(import time
@actor({"component": "first_fails", "inports": ["in"], "outports": ["out"]})
def process(context):
    n = context.get_input("in")
    if n == 0:
        raise ValueError("first")
    time.sleep(60)
    return {"out": n}
)";

class RemoteFlowTest : public ::testing::Test {
  protected:
    void SetUp() override {
        ASSERT_FALSE(dir_.path().empty()) << "cannot make a temporary folder";
        catalog_ = ScriptCatalog::discover({dir_.path()});
        ASSERT_FALSE(server_.url().empty()) << "sandflow serve did not start";
    }

    std::unique_ptr<ScriptHost> host(std::size_t calls_in_flight) {
        RemoteOptions o;
        o.url = server_.url();
        o.calls_in_flight = calls_in_flight;
        return remote_host(std::move(o));
    }
    static NetworkOptions quiet(NetworkOptions opts = {}) {
        opts.on_log = [](std::string_view, std::string_view) {};
        return opts;
    }

    ScriptDir dir_{"sandflow-remote-flow",
                   {{"stats.actor.py", kStatsActor},
                    {"pair.actor.py", kPair},
                    {"echo.actor.py", kEcho},
                    {"slow.actor.py", kSlow},
                    {"odd_fails.actor.py", kOddFailsActor},
                    {"first_fails.actor.py", kFirstFails}}};
    ServeProcess server_{"none"};
    ScriptCatalog catalog_;
    Registry registry_ = Registry::standard();
};

}  // namespace

TEST_F(RemoteFlowTest, CallsInFlightKeepEachNodesOrderAndState) {
    constexpr std::size_t kWindow = 4, kMessages = 200;
    auto h = host(kWindow);
    auto r = run_flow(R"({"processes": {"gen": {"component": "range", "metadata": {"from": 1}},
        "stats": {"component": "stats"}, "pair": {"component": "pair"}},
      "connections": [)" + iip("gen", "start", std::to_string(kMessages)) +
                          "," + conn("gen", "out", "stats", "value") + "," +
                          conn("stats", "total", "pair", "in") + R"(],
      "outports": {"total": {"nodeId": "stats", "portName": "total"},
                   "pair": {"nodeId": "pair", "portName": "out"}}})",
                      registry_, &catalog_, h.get(), quiet());
    ASSERT_TRUE(r.result) << r.result.error().message;
    // The state saw the inputs in order: the running sums, in order.
    ASSERT_EQ(r.out["total"].size(), kMessages);
    std::int64_t sum = 0;
    for (std::size_t i = 0; i < kMessages; ++i) {
        sum += static_cast<std::int64_t>(i + 1);
        EXPECT_EQ(r.out["total"][i], json::value(sum)) << "at " << i;
    }
    // Each call's streamed output, then its returned one, call after call.
    ASSERT_EQ(r.out["pair"].size(), 2 * kMessages);
    for (std::size_t i = 0; i < kMessages; ++i) {
        EXPECT_EQ(r.out["pair"][2 * i], (json::array{r.out["total"][i], "streamed"}));
        EXPECT_EQ(r.out["pair"][2 * i + 1], (json::array{r.out["total"][i], "returned"}));
    }
    // Several calls were in flight at once, never more than the window.
    for (const char* node : {"stats", "pair"}) {
        EXPECT_GT(stats_of(*r.result, node).in_flight_high_water, 1u) << node;
        EXPECT_LE(stats_of(*r.result, node).in_flight_high_water, kWindow) << node;
    }
}

TEST_F(RemoteFlowTest, SlowConsumerBoundsAFastNodesCallsAndQueues) {
    // `echo` answers far sooner than `slow`: unbounded, it would start all 300 calls and
    // fill slow's queue with nearly all of them.
    constexpr std::size_t kWindow = 8, kCapacity = 2;
    auto h = host(kWindow);
    NetworkOptions opts;
    opts.queue_capacity = kCapacity;
    auto r = run_flow(R"({"processes": {"gen": {"component": "range"},
        "echo": {"component": "echo"}, "slow": {"component": "slow"}},
      "connections": [)" + iip("gen", "start", "300") +
                          "," + conn("gen", "out", "echo", "in") + "," +
                          conn("echo", "out", "slow", "in") + R"(],
      "outports": {"out": {"nodeId": "slow", "portName": "out"}}})",
                      registry_, &catalog_, h.get(), quiet(opts));
    ASSERT_TRUE(r.result) << r.result.error().message;
    ASSERT_EQ(r.out["out"].size(), 300u);
    for (std::size_t i = 0; i < 300; ++i) EXPECT_EQ(r.out["out"][i], json::value(i));
    // Soft by one output per call in flight.
    EXPECT_LE(stats_of(*r.result, "slow").queue_high_water, kCapacity + kWindow);
    EXPECT_LE(stats_of(*r.result, "echo").in_flight_high_water, kWindow);
    EXPECT_LE(stats_of(*r.result, "slow").in_flight_high_water, kWindow);
}

TEST_F(RemoteFlowTest, ErrorsOfCallsInFlightAreRoutedInOrderOrStopTheRun) {
    auto h = host(8);
    auto r = run_flow(R"({"processes": {"gen": {"component": "range"},
        "f": {"component": "odd_fails"}, "e": {"component": "passthrough"}},
      "connections": [)" + iip("gen", "start", "40") +
                          "," + conn("gen", "out", "f", "in") + "," +
                          conn("f", "error", "e", "in") + R"(],
      "outports": {"ok": {"nodeId": "f", "portName": "out"},
                   "errors": {"nodeId": "e", "portName": "out"}}})",
                      registry_, &catalog_, h.get(), quiet());
    ASSERT_TRUE(r.result) << r.result.error().message;
    ASSERT_EQ(r.out["ok"].size(), 20u);
    ASSERT_EQ(r.out["errors"].size(), 20u);
    for (std::size_t i = 0; i < 20; ++i) {
        EXPECT_EQ(r.out["ok"][i], json::value(2 * i));
        const auto& err = r.out["errors"][i].as_object().at("error").as_object();
        EXPECT_EQ(err.at("code"), json::value("script"));
        EXPECT_NE(
            json::value_to<std::string>(err.at("message")).find("odd " + std::to_string(2 * i + 1)),
            std::string::npos)
            << err.at("message");
    }
    EXPECT_EQ(stats_of(*r.result, "f").errors, 20u);

    // Not routed: the run stops on the first error in the node's order.
    auto stopped = run_flow(R"({"processes": {"gen": {"component": "range"},
        "f": {"component": "odd_fails"}},
      "connections": [)" + iip("gen", "start", "40") +
                                "," + conn("gen", "out", "f", "in") + R"(],
      "outports": {"ok": {"nodeId": "f", "portName": "out"}}})",
                            registry_, &catalog_, h.get(), quiet());
    ASSERT_FALSE(stopped.result);
    EXPECT_EQ(stopped.result.error().code, Errc::script);
    EXPECT_NE(stopped.result.error().message.find("node 'f' (odd_fails) failed on inport 'in': "),
              std::string::npos)
        << stopped.result.error().message;
    EXPECT_NE(stopped.result.error().message.find("odd 1"), std::string::npos)
        << stopped.result.error().message;
}

TEST_F(RemoteFlowTest, AStoppedRunCancelsItsCallsInFlight) {
    // The first call fails and stops the run; the calls behind it would sleep a minute
    // each. They are cancelled on the server (the running one's worker is killed, the
    // queued ones never run), so each ends in an error instead of its result.
    auto h = host(8);
    auto g = parse_graph(R"({"processes": {"gen": {"component": "range"},
        "f": {"component": "first_fails"}},
      "connections": [)" + iip("gen", "start", "8") +
                             "," + conn("gen", "out", "f", "in") + R"(],
      "outports": {"ok": {"nodeId": "f", "portName": "out"}}})",
                         "t.graph.json");
    ASSERT_TRUE(g) << g.error().message;
    auto net = Network::build(*g, registry_, &catalog_, h.get(), quiet());
    ASSERT_TRUE(net) << net.error().message;
    auto r = (*net)->run();
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("first"), std::string::npos) << r.error().message;
    const auto report = (*net)->report();
    const auto& f = stats_of(report, "f");
    EXPECT_GE(f.calls, 2u) << "the calls behind the first were not in flight";
    EXPECT_EQ(f.errors, f.calls) << "a call in flight ran to its end instead of being cancelled";
}
