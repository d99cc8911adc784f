// The network executor with native components only: fan-out, back-pressure, await_all,
// error routing, the standard components, and 10,000 messages with nothing lost or
// duplicated. Assertions are on counts and queue high-water marks, never on time.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "flow/components/json_path.hpp"
#include "flow/flow_limits.hpp"
#include "flow/graph.hpp"
#include "flow/network.hpp"
#include "support/flow_support.hpp"

using namespace sandflow;
using namespace sandflow::flow;

namespace {

using sandflow::testing::conn;
using sandflow::testing::FlowRun;
using sandflow::testing::iip;
using sandflow::testing::stats_of;

FlowRun run_graph(const std::string& text, const Registry& reg = Registry::standard(),
                  NetworkOptions opts = {}) {
    return sandflow::testing::run_flow(text, reg, nullptr, nullptr, std::move(opts));
}

template <class F>
ComponentSpec lambda_spec(std::string name, std::vector<PortSpec> in, std::vector<PortSpec> out,
                          F f, bool await_all = false) {
    ComponentSpec s;
    s.name = std::move(name);
    s.inports = std::move(in);
    s.outports = std::move(out);
    s.await_all_inports = await_all;
    s.make = [f](const json::object&) -> Result<std::unique_ptr<Component>> {
        struct C : Component {
            F f;
            explicit C(F g) : f(std::move(g)) {}
            Result<void> process(Context& ctx) override { return f(ctx); }
        };
        return std::make_unique<C>(f);
    };
    return s;
}

}  // namespace

TEST(NetworkTest, TenThousandMessagesNothingLostOrDuplicatedInOrder) {
    constexpr int kN = 10'000;
    const std::string text = R"({"processes": {
        "gen": {"component": "range"}, "a": {"component": "passthrough"},
        "b": {"component": "log", "metadata": {}}, "c": {"component": "counter"}},
      "connections": [)" + iip("gen", "start", std::to_string(kN)) +
                             "," + conn("gen", "out", "a", "in") + "," +
                             conn("a", "out", "c", "in") +
                             R"(],
      "outports": {"result": {"nodeId": "c", "portName": "out"},
                   "count": {"nodeId": "c", "portName": "count"}}})";
    NetworkOptions opts;
    opts.on_log = [](std::string_view, std::string_view) {};
    auto r = run_graph(text, Registry::standard(), opts);
    ASSERT_TRUE(r.result) << r.result.error().message;
    const auto& got = r.out["result"];
    ASSERT_EQ(got.size(), static_cast<std::size_t>(kN));
    for (int i = 0; i < kN; ++i) ASSERT_EQ(got[static_cast<std::size_t>(i)], json::value(i));
    EXPECT_EQ(r.out["count"].back(), json::value(kN));
    EXPECT_EQ(stats_of(*r.result, "c").packets_in, static_cast<std::uint64_t>(kN));
}

TEST(NetworkTest, FanOutGivesEveryConnectionItsOwnCopy) {
    // Two consumers of one outport: one mutates what it receives; the other must still
    // see the original packet.
    Registry reg = Registry::standard();
    reg.add(lambda_spec("mutate", {{"in"}}, {{"out"}}, [](Context& ctx) {
        ctx.value().as_object()["touched"] = true;
        return ctx.send("out", std::move(ctx.value()));
    }));
    reg.add(lambda_spec("wrap", {{"in"}}, {{"out"}}, [](Context& ctx) {
        return ctx.send("out", json::object{{"n", ctx.value().as_int64()}});
    }));
    const std::string text = R"({"processes": {
        "gen": {"component": "range", "metadata": {"count": 500}}, "w": {"component": "wrap"},
        "m": {"component": "mutate"}, "p": {"component": "passthrough"},
        "q": {"component": "passthrough"}},
      "connections": [)" + iip("gen", "start", "true") +
                             "," + conn("gen", "out", "w", "in") + "," +
                             conn("w", "out", "m", "in") + "," + conn("w", "out", "p", "in") + "," +
                             conn("w", "out", "q", "in") + R"(],
      "outports": {"m": {"nodeId": "m", "portName": "out"}, "p": {"nodeId": "p", "portName": "out"},
                   "q": {"nodeId": "q", "portName": "out"}}})";
    auto r = run_graph(text, reg);
    ASSERT_TRUE(r.result) << r.result.error().message;
    ASSERT_EQ(r.out["m"].size(), 500u);
    ASSERT_EQ(r.out["p"].size(), 500u);
    ASSERT_EQ(r.out["q"].size(), 500u);
    for (std::size_t i = 0; i < 500; ++i) {
        EXPECT_EQ(r.out["m"][i], (json::value{{"n", i}, {"touched", true}}));
        EXPECT_EQ(r.out["p"][i], (json::value{{"n", i}}));
        EXPECT_EQ(r.out["q"][i], (json::value{{"n", i}}));
    }
}

TEST(NetworkTest, SlowConsumerBoundsEveryQueue) {
    // A fast generator feeds a slow consumer through a passthrough: with a capacity of 4,
    // no queue may hold more than one activation's worth beyond it.
    Registry reg = Registry::standard();
    reg.add(lambda_spec("slow", {{"in"}}, {{"out"}}, [](Context& ctx) {
        std::this_thread::sleep_for(std::chrono::microseconds(100));
        return ctx.send("out", std::move(ctx.value()));
    }));
    const std::string text = R"({"processes": {"gen": {"component": "range"},
        "p": {"component": "passthrough"}, "s": {"component": "slow"}},
      "connections": [)" + iip("gen", "start", "1000") +
                             "," + conn("gen", "out", "p", "in") + "," +
                             conn("p", "out", "s", "in") + R"(],
      "outports": {"out": {"nodeId": "s", "portName": "out"}}})";
    NetworkOptions opts;
    opts.queue_capacity = 4;
    auto r = run_graph(text, reg, opts);
    ASSERT_TRUE(r.result) << r.result.error().message;
    EXPECT_EQ(r.out["out"].size(), 1000u);
    const std::size_t bound = 4 + limits::kMaxFlowBatch;
    EXPECT_LE(stats_of(*r.result, "p").queue_high_water, bound);
    EXPECT_LE(stats_of(*r.result, "s").queue_high_water, bound);
    // The generator was paced: it needed many activations, not one.
    EXPECT_GE(stats_of(*r.result, "gen").calls, 1000 / limits::kMaxFlowBatch);
}

TEST(NetworkTest, AwaitAllInportsCollectsOnePacketPerInport) {
    const std::string text = R"({"processes": {
        "ga": {"component": "range", "metadata": {"count": 5}},
        "gb": {"component": "range", "metadata": {"count": 5, "from": 100}},
        "z": {"component": "zip"}},
      "connections": [)" + iip("ga", "start", "true") +
                             "," + iip("gb", "start", "true") + "," + conn("ga", "out", "z", "a") +
                             "," + conn("gb", "out", "z", "b") + R"(],
      "outports": {"pairs": {"nodeId": "z", "portName": "out"}}})";
    auto r = run_graph(text);
    ASSERT_TRUE(r.result) << r.result.error().message;
    ASSERT_EQ(r.out["pairs"].size(), 5u);
    for (std::int64_t i = 0; i < 5; ++i)
        EXPECT_EQ(r.out["pairs"][static_cast<std::size_t>(i)],
                  (json::value{{"a", i}, {"b", 100 + i}}));
    EXPECT_EQ(stats_of(*r.result, "z").calls, 5u);
}

TEST(NetworkTest, AwaitAllLeftoversEndTheRunInsteadOfHanging) {
    auto graph = [](int count) {
        return R"({"processes": {
        "ga": {"component": "range", "metadata": {"count": )" +
               std::to_string(count) + R"(}}, "z": {"component": "zip"}},
      "connections": [)" +
               iip("ga", "start", "true") + "," + iip("z", "b", "\"once\"") + "," +
               conn("ga", "out", "z", "a") + R"(],
      "outports": {"pairs": {"nodeId": "z", "portName": "out"}}})";
    };
    auto r = run_graph(graph(3));
    ASSERT_TRUE(r.result) << r.result.error().message;
    EXPECT_EQ(r.out["pairs"].size(), 1u);

    // The same with a generator paced by the stuck queue: it still runs to its end.
    NetworkOptions opts;
    opts.queue_capacity = 2;
    r = run_graph(graph(1000), Registry::standard(), opts);
    ASSERT_TRUE(r.result) << r.result.error().message;
    EXPECT_EQ(r.out["pairs"].size(), 1u);
    EXPECT_EQ(stats_of(*r.result, "ga").packets_out, 1000u);
}

namespace {
Registry with_failing() {
    Registry reg = Registry::standard();
    reg.add(lambda_spec("odd_fails", {{"in"}}, {{"out"}}, [](Context& ctx) -> Result<void> {
        if (ctx.value().as_int64() % 2 == 1)
            return fail(Errc::invalid_argument, "odd number " + to_json_string(ctx.value()));
        return ctx.send("out", std::move(ctx.value()));
    }));
    return reg;
}
}  // namespace

TEST(NetworkTest, ErrorsGoToTheErrorOutportWhenConnected) {
    const std::string text = R"({"processes": {"gen": {"component": "range"},
        "f": {"component": "odd_fails"}, "errs": {"component": "passthrough"}},
      "connections": [)" + iip("gen", "start", "10") +
                             "," + conn("gen", "out", "f", "in") + "," +
                             conn("f", "error", "errs", "in") + R"(],
      "outports": {"ok": {"nodeId": "f", "portName": "out"},
                   "errors": {"nodeId": "errs", "portName": "out"}}})";
    auto r = run_graph(text, with_failing());
    ASSERT_TRUE(r.result) << r.result.error().message;
    EXPECT_EQ(r.out["ok"].size(), 5u);
    ASSERT_EQ(r.out["errors"].size(), 5u);
    const auto& e = r.out["errors"][0].as_object();
    EXPECT_EQ(e.at("node"), json::value("f"));
    EXPECT_EQ(e.at("port"), json::value("in"));
    EXPECT_EQ(e.at("error").at("message"), json::value("odd number 1"));
    EXPECT_EQ(stats_of(*r.result, "f").errors, 5u);
}

TEST(NetworkTest, AnUnroutedErrorStopsTheRunNamingNodePortAndCause) {
    const std::string text = R"({"processes": {"gen": {"component": "range"},
        "f": {"component": "odd_fails"}},
      "connections": [)" + iip("gen", "start", "10") +
                             "," + conn("gen", "out", "f", "in") + R"(],
      "outports": {"ok": {"nodeId": "f", "portName": "out"}}})";
    auto r = run_graph(text, with_failing());
    ASSERT_FALSE(r.result);
    EXPECT_EQ(r.result.error().message, "node 'f' (odd_fails) failed on inport 'in': odd number 1");
    EXPECT_EQ(r.result.error().data.at("node"), json::value("f"));
    EXPECT_EQ(r.result.error().data.at("port"), json::value("in"));
}

TEST(NetworkTest, StandardComponents) {
    std::string dir = (std::filesystem::temp_directory_path() / "sandflow-flow-XXXXXX").string();
    ASSERT_NE(::mkdtemp(dir.data()), nullptr);
    const std::string path = dir + "/collect.jsonl";
    const std::string text =
        R"({"processes": {
        "split": {"component": "split"},
        "big": {"component": "filter", "metadata": {"path": "$.v", "gt": 2}},
        "join": {"component": "join", "metadata": {"size": 2}},
        "rest": {"component": "join"},
        "merge": {"component": "merge"},
        "collect": {"component": "collect", "metadata": {"path": ")" +
        path + R"("}},
        "delay": {"component": "delay", "metadata": {"ms": 5}},
        "timer": {"component": "timer", "metadata": {"interval": 1, "count": 3}}},
      "connections": [)" +
        iip("split", "in", R"([{"v": 1}, {"v": 5}, {"v": 3}, {"v": 0}])") + "," +
        conn("split", "out", "big", "in") + "," + conn("big", "out", "join", "in") + "," +
        conn("big", "rejected", "rest", "in") + "," + conn("join", "out", "merge", "in1") + "," +
        conn("rest", "out", "merge", "in2") + "," + conn("merge", "out", "collect", "in") + "," +
        iip("delay", "in", "\"late\"") + "," + iip("timer", "start", "1") +
        R"(],
      "outports": {"merged": {"nodeId": "merge", "portName": "out"},
                   "late": {"nodeId": "delay", "portName": "out"},
                   "ticks": {"nodeId": "timer", "portName": "tick"},
                   "collected": {"nodeId": "collect", "portName": "count"}}})";
    auto r = run_graph(text);
    ASSERT_TRUE(r.result) << r.result.error().message;
    // join(size 2) sends [{v:5},{v:3}]; the unsized join sends the rest when idle.
    ASSERT_EQ(r.out["merged"].size(), 2u);
    EXPECT_EQ(r.out["merged"][0], (json::value{{{"v", 5}}, {{"v", 3}}}));
    EXPECT_EQ(r.out["merged"][1], (json::value{{{"v", 1}}, {{"v", 0}}}));
    EXPECT_EQ(r.out["late"], (std::vector<json::value>{"late"}));
    // In order, also when a loaded machine lets all three timers fall due together.
    EXPECT_EQ(r.out["ticks"], (std::vector<json::value>{0, 1, 2}));
    EXPECT_EQ(r.out["collected"].back(), json::value(2));
    std::ifstream in(path);
    std::string line;
    std::vector<std::string> lines;
    while (std::getline(in, line)) lines.push_back(line);
    std::filesystem::remove_all(dir);
    EXPECT_EQ(lines, (std::vector<std::string>{R"([{"v":5},{"v":3}])", R"([{"v":1},{"v":0}])"}));
}

TEST(NetworkTest, TimedPacketsKeepTheirOrder) {
    // 500 packets through a delay arrive in 64-packet activations, so whole batches of
    // timers fall due together and their handlers run on several pool threads at once;
    // the timer's ticks are due 0 ms apart. Both must still come out in order.
    const std::string text = R"({"processes": {"gen": {"component": "range"},
        "delay": {"component": "delay", "metadata": {"ms": 1}},
        "timer": {"component": "timer", "metadata": {"interval": 0, "count": 200}}},
      "connections": [)" + iip("gen", "start", "500") +
                             "," + conn("gen", "out", "delay", "in") + "," +
                             iip("timer", "start", "1") + R"(],
      "outports": {"late": {"nodeId": "delay", "portName": "out"},
                   "ticks": {"nodeId": "timer", "portName": "tick"}}})";
    auto r = run_graph(text);
    ASSERT_TRUE(r.result) << r.result.error().message;
    ASSERT_EQ(r.out["late"].size(), 500u);
    for (std::size_t i = 0; i < 500; ++i) ASSERT_EQ(r.out["late"][i], json::value(i));
    ASSERT_EQ(r.out["ticks"].size(), 200u);
    for (std::size_t i = 0; i < 200; ++i) ASSERT_EQ(r.out["ticks"][i], json::value(i));
}

TEST(NetworkTest, IdleFlushRepeatsUntilNothingMoves) {
    // An unsized join feeding another through a passthrough: the first flush sends the
    // inner array on, and only a second flush, once that has arrived, sends the outer one.
    // Each level adds a flush; the run must not end before the last.
    const std::string text = R"({"processes": {"gen": {"component": "range"},
        "j1": {"component": "join"}, "p": {"component": "passthrough"},
        "j2": {"component": "join"}, "j3": {"component": "join"}},
      "connections": [)" + iip("gen", "start", "3") +
                             "," + conn("gen", "out", "j1", "in") + "," +
                             conn("j1", "out", "p", "in") + "," + conn("p", "out", "j2", "in") +
                             "," + conn("j2", "out", "j3", "in") + R"(],
      "outports": {"out": {"nodeId": "j3", "portName": "out"}}})";
    for (int i = 0; i < 20; ++i) {
        auto r = run_graph(text);
        ASSERT_TRUE(r.result) << r.result.error().message;
        ASSERT_EQ(r.out["out"].size(), 1u) << "run " << i;
        EXPECT_EQ(to_json_string(r.out["out"][0]), "[[[0,1,2]]]");
    }
}

TEST(NetworkTest, CyclesRunToCompletion) {
    // A countdown loop: n -> dec -> back into the same node while n > 0.
    Registry reg = Registry::standard();
    reg.add(lambda_spec("dec", {{"in"}}, {{"again"}, {"done"}}, [](Context& ctx) {
        const auto n = ctx.value().as_int64();
        return n > 0 ? ctx.send("again", n - 1) : ctx.send("done", n);
    }));
    const std::string text = R"({"processes": {"d": {"component": "dec"}},
      "connections": [)" + iip("d", "in", "1000") +
                             "," + conn("d", "again", "d", "in") + R"(],
      "outports": {"done": {"nodeId": "d", "portName": "done"}}})";
    auto r = run_graph(text, reg);
    ASSERT_TRUE(r.result) << r.result.error().message;
    EXPECT_EQ(r.out["done"], (std::vector<json::value>{0}));
    EXPECT_EQ(stats_of(*r.result, "d").calls, 1001u);
}

TEST(NetworkTest, ExportedInportsTakePacketsBeforeTheRun) {
    auto g = parse_graph(R"({"processes": {"p": {"component": "passthrough"}},
        "inports": {"x": {"nodeId": "p", "portName": "in"}},
        "outports": {"y": {"nodeId": "p", "portName": "out"}}})",
                         "t");
    ASSERT_TRUE(g);
    std::vector<json::value> got;
    NetworkOptions opts;
    opts.on_output = [&](std::string_view, const json::value& v) { got.push_back(v); };
    auto net = Network::build(*g, Registry::standard(), nullptr, nullptr, std::move(opts));
    ASSERT_TRUE(net);
    EXPECT_FALSE((*net)->send("nope", 1));
    ASSERT_TRUE((*net)->send("x", "hello"));
    ASSERT_TRUE((*net)->run());
    EXPECT_EQ(got, (std::vector<json::value>{"hello"}));
}

TEST(NetworkTest, TraceSeesEveryHop) {
    const std::string text = R"({"processes": {"gen": {"component": "range"},
        "p": {"component": "passthrough"}},
      "connections": [)" + iip("gen", "start", "3") +
                             "," + conn("gen", "out", "p", "in") + R"(],
      "outports": {"out": {"nodeId": "p", "portName": "out"}}})";
    std::mutex mu;
    std::vector<std::string> hops;
    NetworkOptions opts;
    opts.on_trace = [&](const TraceEvent& e) {
        std::lock_guard l(mu);
        hops.push_back(std::string(e.from_node) + "." + std::string(e.from_port) + ">" +
                       std::string(e.to_node) + "." + std::string(e.to_port) + ":" +
                       std::to_string(e.size));
    };
    auto r = run_graph(text, Registry::standard(), opts);
    ASSERT_TRUE(r.result);
    std::multiset<std::string> got(hops.begin(), hops.end());
    EXPECT_EQ(got.count("gen.out>p.in:1"), 3u);
    EXPECT_EQ(got.count("p.out>.out:1"), 3u);
    EXPECT_EQ(got.count(">gen.start:1"), 0u);  // initial packets are not hops
}

TEST(NetworkTest, FilterPathsInEveryNotation) {
    const json::value doc = {{"a", {{"b", {10, 20, {{"c", "x"}}}}}}};
    for (const char* p : {"$.a.b[2].c", "a.b.2.c", "/a/b/2/c"}) {
        auto path = JsonPath::parse(p);
        ASSERT_TRUE(path);
        const json::value* v = path->find(doc);
        ASSERT_NE(v, nullptr) << p;
        EXPECT_EQ(*v, json::value("x"));
    }
    auto missing = JsonPath::parse("$.a.b[7]");
    ASSERT_TRUE(missing);
    EXPECT_EQ(missing->find(doc), nullptr);
    auto root = JsonPath::parse("$");
    ASSERT_TRUE(root);
    EXPECT_EQ(root->find(doc), &doc);
}
