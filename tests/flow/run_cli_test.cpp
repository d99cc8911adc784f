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

using namespace sandflow;
namespace fs = std::filesystem;

namespace {

struct Run {
    int status = -1;
    std::string out, err;
    std::vector<json::object> lines(const std::string& text) const {
        std::vector<json::object> v;
        std::istringstream in(text);
        std::string line;
        while (std::getline(in, line)) {
            if (line.empty() || line[0] != '{') continue;
            auto j = parse_json(line, "line");
            if (j && j->is_object()) v.push_back(j->as_object());
        }
        return v;
    }
};

std::string quote(const std::string& s) {
    std::string q = "'";
    for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return q + "'";
}

Run run_cli(const std::vector<std::string>& args) {
    char tmpl[] = "/tmp/sandflow-run-cli-XXXXXX";
    EXPECT_NE(::mkdtemp(tmpl), nullptr);
    const fs::path dir = tmpl;
    std::string cmd = quote(SANDFLOW_BINARY);
    for (const auto& a : args) cmd += " " + quote(a);
    cmd += " >" + quote((dir / "out").string()) + " 2>" + quote((dir / "err").string()) +
           " </dev/null";
    const int raw = std::system(cmd.c_str());
    Run r;
    r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
    std::stringstream o, e;
    o << std::ifstream(dir / "out").rdbuf();
    e << std::ifstream(dir / "err").rdbuf();
    r.out = o.str();
    r.err = e.str();
    fs::remove_all(dir);
    return r;
}

const std::string kGraph = std::string(SANDFLOW_SOURCE_DIR) + "/examples/graphs/orders.graph.json";

}  // namespace

TEST(RunCliTest, ExampleGraphPrintsExportedOutputsOnStdout) {
    auto r = run_cli({"run", kGraph, "--backend", "none", "--insecure-no-sandbox"});
    ASSERT_EQ(r.status, 0) << r.err;
    std::map<std::string, std::vector<json::value>> by_port;
    for (const auto& l : r.lines(r.out)) {
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
    for (const auto& l : r.lines(r.err))
        if (l.contains("time_us") && l.contains("size") && l.contains("node")) ++hops;
    EXPECT_GE(hops, 40u);
    for (const auto& l : r.lines(r.out)) EXPECT_FALSE(l.contains("time_us"));
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
