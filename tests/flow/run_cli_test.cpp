// `sandflow run` as users call it: the example graph (examples/graphs/orders.graph.json)
// end to end, stdout/stderr separation, --trace, and graph errors with exit status 2.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "core/json.hpp"
#include "support/test_support.hpp"

using namespace sandflow;
namespace fs = std::filesystem;

namespace {

using sandflow::testing::run_cli;

const std::string kGraph = std::string(SANDFLOW_SOURCE_DIR) + "/examples/graphs/orders.graph.json";

}  // namespace

TEST(RunCliTest, ExampleGraphPrintsExportedOutputsOnStdout) {
    auto r = run_cli({"run", kGraph, "--backend", "none", "--insecure-no-sandbox"});
    ASSERT_EQ(r.status, 0) << r.err;
    std::map<std::string, std::vector<json::value>> by_port;
    for (const auto& l : sandflow::testing::json_lines(r.out, false)) {
        ASSERT_EQ(l.size(), 2u) << json::serialize(l);
        by_port[json::value_to<std::string>(l.at("port"))].push_back(l.at("data"));
    }
    // 6 orders, one rejected by the Python validator (its error is routed, not fatal).
    EXPECT_EQ(by_port["priced"].size(), 5u);
    ASSERT_EQ(by_port["stats"].size(), 5u);
    EXPECT_EQ(by_port["stats"].back().at("count"), json::value(5));  // state across calls
    EXPECT_EQ(by_port["big_orders"].size(), 3u);
    EXPECT_EQ(by_port["batches"].size(), 3u);  // 5 orders streamed in chunks of 2
    ASSERT_EQ(by_port["rejected"].size(), 1u);
    EXPECT_EQ(by_port["rejected"][0].at("node"), json::value("validate"));
    EXPECT_NE(r.err.find("calls"), std::string::npos);  // the summary is on stderr
}

TEST(RunCliTest, TraceLinesGoToStderr) {
    auto r = run_cli(
        {"run", kGraph, "--backend", "none", "--insecure-no-sandbox", "--trace", "--no-summary"});
    ASSERT_EQ(r.status, 0) << r.err;
    std::size_t hops = 0;
    for (const auto& l : sandflow::testing::json_lines(r.err, false))
        if (l.contains("time_us") && l.contains("size") && l.contains("node")) ++hops;
    EXPECT_GE(hops, 40u);
    for (const auto& l : sandflow::testing::json_lines(r.out, false))
        EXPECT_FALSE(l.contains("time_us"));
}

TEST(RunCliTest, GraphErrorsExitWithStatusTwo) {
    char tmpl[] = "/tmp/sandflow-run-graph-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    const fs::path g = fs::path(tmpl) / "bad.graph.json";
    std::ofstream(g) << R"({"processes": {"a": {"component": "no_such_thing"}}})";
    auto r = run_cli({"run", g.string()});
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.err.find("processes.a.component: unknown component 'no_such_thing'"),
              std::string::npos)
        << r.err;
    EXPECT_TRUE(r.out.empty());
    fs::remove_all(tmpl);
}

// Without --timeout each script actor runs under the timeout_ms it declares; --timeout
// replaces it for every actor.
TEST(RunCliTest, AnActorsDeclaredTimeoutAppliesUnlessTimeoutIsGiven) {
    char tmpl[] = "/tmp/sandflow-run-timeout-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    const fs::path dir = tmpl;
    std::ofstream(dir / "slow.actor.py") << R"(import time
@actor({"component": "slow", "inports": ["in"], "outports": ["out"], "limits": {"timeout_ms": 200}})
def process(ctx):
    time.sleep(ctx.get_input("in"))
    return {"out": "done"}
)";
    std::ofstream(dir / "slow.graph.json") << R"({
  "processes": {"s": {"component": "slow"}},
  "connections": [{"data": 1.0, "to": {"nodeId": "s", "portName": "in"}}],
  "outports": {"out": {"nodeId": "s", "portName": "out"},
               "errors": {"nodeId": "s", "portName": "error"}}
})";
    auto ports = [](const std::string& out) {
        std::map<std::string, std::vector<json::value>> by_port;
        for (const auto& l : sandflow::testing::json_lines(out, false))
            by_port[json::value_to<std::string>(l.at("port"))].push_back(l.at("data"));
        return by_port;
    };
    const std::string graph = (dir / "slow.graph.json").string();
    auto declared = run_cli({"run", graph, "--backend", "none", "--insecure-no-sandbox"});
    auto by_port = ports(declared.out);
    EXPECT_TRUE(by_port["out"].empty()) << declared.out << declared.err;
    ASSERT_EQ(by_port["errors"].size(), 1u) << declared.out << declared.err;
    EXPECT_NE(json::serialize(by_port["errors"][0]).find("200ms"), std::string::npos)
        << json::serialize(by_port["errors"][0]);

    auto given =
        run_cli({"run", graph, "--backend", "none", "--insecure-no-sandbox", "--timeout", "20s"});
    ASSERT_EQ(given.status, 0) << given.err;
    by_port = ports(given.out);
    ASSERT_EQ(by_port["out"].size(), 1u) << given.out << given.err;
    EXPECT_EQ(by_port["out"][0], "done");
    EXPECT_TRUE(by_port["errors"].empty());
    fs::remove_all(dir);
}

// --state: the embedded runtime's nodes start on what the store holds and commit each
// call, so a second run goes on from the first; the default (memory) starts afresh.
TEST(RunCliTest, StateInASqliteFileCarriesOverToTheNextRun) {
    char tmpl[] = "/tmp/sandflow-run-state-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    const std::string spec = "sqlite:" + (fs::path(tmpl) / "state.sqlite").string();
    auto stats_count = [](const std::string& out) {
        json::value last;
        for (const auto& l : sandflow::testing::json_lines(out, false))
            if (l.at("port") == json::value("stats")) last = l.at("data").at("count");
        return last;
    };
    for (int run = 1; run <= 2; ++run) {
        auto r = run_cli({"run", kGraph, "--backend", "none", "--insecure-no-sandbox",
                          "--no-summary", "--state", spec});
        ASSERT_EQ(r.status, 0) << r.err;
        EXPECT_EQ(stats_count(r.out), json::value(5 * run)) << "run " << run;
        EXPECT_NE(r.err.find(spec.substr(7)), std::string::npos) << r.err;  // says where
    }
    auto fresh =
        run_cli({"run", kGraph, "--backend", "none", "--insecure-no-sandbox", "--no-summary"});
    ASSERT_EQ(fresh.status, 0) << fresh.err;
    EXPECT_EQ(stats_count(fresh.out), json::value(5));
    auto both = run_cli({"run", kGraph, "--runtime", "ws://127.0.0.1:1", "--state", spec});
    EXPECT_EQ(both.status, 2) << both.err;
    fs::remove_all(tmpl);
}
