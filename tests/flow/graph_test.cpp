// Graph loading (valid and invalid), including Reflow's own example graphs
// (tests/data/reflow-graphs, copied from offbit-ai/reflow), and validation against
// components when a network is built. No processes are started here.
#include <gtest/gtest.h>

#include <filesystem>

#include "flow/flow_limits.hpp"
#include "flow/graph.hpp"
#include "flow/network.hpp"

using namespace sandflow;
using namespace sandflow::flow;
namespace fs = std::filesystem;

namespace {

const fs::path kReflowGraphs = fs::path(SANDFLOW_SOURCE_DIR) / "tests/data/reflow-graphs";

Graph must_parse(const std::string& text) {
    auto g = parse_graph(text, "t.graph.json");
    EXPECT_TRUE(g) << (g ? "" : g.error().message);
    return g ? std::move(*g) : Graph{};
}

Error parse_error(const std::string& text) {
    auto g = parse_graph(text, "t.graph.json");
    EXPECT_FALSE(g) << "expected an error for " << text;
    return g ? Error{} : g.error();
}

Error build_error(const std::string& text, const Registry& reg = Registry::standard()) {
    auto g = parse_graph(text, "t.graph.json");
    EXPECT_TRUE(g) << (g ? "" : g.error().message);
    if (!g) return {};
    auto n = Network::build(*g, reg, nullptr, nullptr, {});
    EXPECT_FALSE(n) << "expected a build error";
    return n ? Error{} : n.error();
}

// A Reflow-style pipeline: initial packet with an empty `from`, typed ports, exports.
const char* kPipeline = R"({
  "caseSensitive": false,
  "properties": {"name": "pipe", "description": "d"},
  "processes": {
    "gen": {"id": "gen", "component": "range", "metadata": {"count": 3}},
    "pass": {"id": "pass", "component": "passthrough", "metadata": {}}
  },
  "connections": [
    {"from": {"nodeId": "", "portName": "", "portId": "", "expose": false,
              "portType": {"type": "any"}},
     "to": {"nodeId": "gen", "portName": "start", "portId": "start", "expose": false,
            "portType": {"type": "any"}},
     "data": true, "metadata": {}},
    {"from": {"nodeId": "gen", "portName": "out", "portId": "out", "portType": {"type": "integer"}},
     "to": {"nodeId": "pass", "portName": "in", "portId": "in", "portType": {"type": "integer"}},
     "metadata": {"label": "numbers"}}
  ],
  "inports": {},
  "outports": {"result": {"nodeId": "pass", "portName": "out", "portId": "out", "expose": true,
                          "portType": {"type": "any"}}},
  "groups": [{"name": "all", "nodes": ["gen", "pass"], "metadata": {"color": 1}}]
})";

}  // namespace

TEST(GraphTest, ParsesEveryFieldOfAReflowStyleGraph) {
    Graph g = must_parse(kPipeline);
    EXPECT_EQ(g.name(), "pipe");
    EXPECT_FALSE(g.case_sensitive);
    ASSERT_EQ(g.nodes.size(), 2u);
    EXPECT_EQ(g.nodes[0].id, "gen");
    EXPECT_EQ(g.nodes[0].config.at("count"), json::value(3));
    ASSERT_EQ(g.connections.size(), 2u);
    EXPECT_FALSE(g.connections[0].from);  // an initial packet: the empty `from` is dropped
    EXPECT_EQ(*g.connections[0].data, json::value(true));
    EXPECT_EQ(g.connections[1].from->type, "integer");
    EXPECT_EQ(g.connections[1].metadata.at("label"), json::value("numbers"));
    ASSERT_EQ(g.outports.size(), 1u);
    EXPECT_EQ(g.outports[0].name, "result");
    ASSERT_EQ(g.groups.size(), 1u);
    EXPECT_EQ(g.groups[0].nodes, (std::vector<std::string>{"gen", "pass"}));
}

TEST(GraphTest, InitialPacketWithoutFromIsAccepted) {
    Graph g = must_parse(R"({"processes": {"a": {"component": "passthrough"}},
        "connections": [{"to": {"nodeId": "a", "portName": "in"}, "data": {"x": [1, 2]}}]})");
    ASSERT_EQ(g.connections.size(), 1u);
    EXPECT_FALSE(g.connections[0].from);
    EXPECT_EQ(*g.connections[0].data, (json::value{{"x", {1, 2}}}));
}

TEST(GraphTest, ReflowExampleGraphsParseAndFailOnlyOnUnknownComponents) {
    std::size_t files = 0;
    for (const auto& e : fs::directory_iterator(kReflowGraphs)) {
        if (e.path().extension() != ".json") continue;
        ++files;
        auto g = load_graph_file(e.path());
        ASSERT_TRUE(g) << e.path() << ": " << g.error().message;
        EXPECT_FALSE(g->nodes.empty()) << e.path();
        EXPECT_FALSE(g->graph_dependencies.empty() && g->external_connections.empty() &&
                     g->provided_interfaces.empty() && g->required_interfaces.empty())
            << e.path() << ": the workspace keys were not read";
        auto n = Network::build(*g, Registry::standard(), nullptr, nullptr, {});
        ASSERT_FALSE(n) << e.path();
        EXPECT_NE(n.error().message.find("unknown component '" + g->nodes[0].component + "'"),
                  std::string::npos)
            << n.error().message;
        EXPECT_NE(n.error().message.find("processes." + g->nodes[0].id + ".component"),
                  std::string::npos)
            << n.error().message;
    }
    EXPECT_EQ(files, 6u);
}

TEST(GraphTest, ReflowExampleGraphRunsOnceItsComponentsExist) {
    // Stand-ins for Reflow's Rust actors, with Reflow's port names: the graph's shape
    // (case-insensitive ports, chained connections, exports) runs as written.
    auto g = load_graph_file(kReflowGraphs / "data_processing_transformer.graph.json");
    ASSERT_TRUE(g) << g.error().message;
    Registry reg = Registry::standard();
    for (const auto& n : g->nodes) {
        ComponentSpec spec = *reg.find("passthrough");
        spec.name = n.component;
        spec.inports = {{"input"}};  // the graph says "Input": caseSensitive is false
        spec.outports = {{"output"}};
        spec.make = [](const json::object&) -> Result<std::unique_ptr<Component>> {
            struct Fwd : Component {
                Result<void> process(Context& c) override {
                    return c.send("output", std::move(c.value()));
                }
            };
            return std::make_unique<Fwd>();
        };
        reg.add(std::move(spec));
    }
    std::vector<std::pair<std::string, json::value>> seen;
    NetworkOptions opts;
    opts.on_output = [&](std::string_view port, const json::value& v) {
        seen.emplace_back(port, v);
    };
    auto net = Network::build(*g, reg, nullptr, nullptr, std::move(opts));
    ASSERT_TRUE(net) << net.error().message;
    ASSERT_TRUE((*net)->send("raw_data", json::object{{"cpu", 0.5}}));
    auto r = (*net)->run();
    ASSERT_TRUE(r) << r.error().message;
    ASSERT_EQ(seen.size(), 1u);
    EXPECT_EQ(seen[0].first, "clean_data");
    EXPECT_EQ(seen[0].second, (json::value{{"cpu", 0.5}}));
}

TEST(GraphTest, InvalidGraphsNameThePlace) {
    struct Case {
        const char* text;
        const char* where;
    };
    const Case cases[] = {
        {R"([])", "top level"},
        {R"({"connections": []})", "processes: is missing"},
        {R"({"processes": {"a": {"component": "x"}, "a": {"component": "y"}}})", "processes.a"},
        {R"({"processes": {"a": {"id": "b", "component": "x"}}})", "processes.a.id"},
        {R"({"processes": {"a": {}}})", "processes.a.component"},
        {R"({"processes": {"a": {"component": 7}}})", "processes.a.component"},
        {R"({"processes": {"a": {"component": "x", "metadata": []}}})", "processes.a.metadata"},
        {R"({"processes": {"a": {"component": "x"}},
             "connections": [{"from": {"nodeId": "zz", "portName": "out"},
                              "to": {"nodeId": "a", "portName": "in"}}]})",
         "connections[0].from.nodeId"},
        {R"({"processes": {"a": {"component": "x"}},
             "connections": [{"to": {"nodeId": "a", "portName": "in"}}]})",
         "connections[0]: has neither"},
        {R"({"processes": {"a": {"component": "x"}},
             "connections": [{"from": {"nodeId": "a", "portName": "out"},
                              "to": {"nodeId": "a", "portName": "in",
                                     "portType": {"type": "bogus"}}}]})",
         "connections[0].to.portType.type"},
        {R"({"processes": {"a": {"component": "x"}},
             "outports": {"o": {"nodeId": "nope", "portName": "out"}}})",
         "outports.o.nodeId"},
        {R"({"processes": {"a": {"component": "x"}}, "groups": [{"name": "g", "nodes": ["q"]}]})",
         "groups[0].nodes[0]"},
        {R"({"processes": {"a": {"component": "x"}}, "caseSensitive": "no"})", "caseSensitive"},
        {R"({"processes": {"a": {"component": "x"}},
             "outports": {"o": {"nodeId": "a", "portName": "out"},
                          "o": {"nodeId": "a", "portName": "error"}}})",
         "outports.o: is given twice"},
        {R"({"processes": {"a": {"component": "x"}},
             "provided_interfaces": {"i": {"processName": "ghost"}}})",
         "provided_interfaces.i.processName"},
        {R"({"processes": {"a": {"component": "x"}}, "inports": {"i": {"nodeId": "a"}}})",
         "inports.i.portName"},
    };
    for (const auto& c : cases) {
        Error e = parse_error(c.text);
        EXPECT_EQ(e.code, Errc::invalid_argument) << c.text;
        EXPECT_NE(e.message.find(std::string("t.graph.json: ") + c.where), std::string::npos)
            << e.message;
    }
}

TEST(GraphTest, LimitsAreCheckedBeforeBuilding) {
    std::string big = R"({"processes": {)";
    for (std::size_t i = 0; i <= limits::kMaxGraphNodes; ++i)
        big += (i ? "," : "") + std::string("\"n") + std::to_string(i) +
               R"(": {"component": "passthrough"})";
    big += "}}";
    Error e = parse_error(big);
    EXPECT_EQ(e.code, Errc::limit_exceeded);
    EXPECT_NE(e.message.find("processes"), std::string::npos);

    const std::string long_id(limits::kMaxGraphIdBytes + 1, 'x');
    e = parse_error(R"({"processes": {")" + long_id + R"(": {"component": "c"}}})");
    EXPECT_EQ(e.code, Errc::limit_exceeded);

    e = parse_error(std::string(limits::kMaxGraphBytes + 1, ' '));
    EXPECT_EQ(e.code, Errc::limit_exceeded);
}

TEST(GraphTest, BuildRejectsUnknownComponentsPortsAndMismatchedTypes) {
    Error e = build_error(R"({"processes": {"a": {"component": "nope"}}})");
    EXPECT_NE(e.message.find("processes.a.component: unknown component 'nope'"), std::string::npos)
        << e.message;
    EXPECT_NE(e.message.find("passthrough"), std::string::npos);  // lists what exists

    e = build_error(R"({"processes": {"a": {"component": "passthrough"}, "b": {"component": "log"}},
        "connections": [{"from": {"nodeId": "a", "portName": "nowhere"},
                         "to": {"nodeId": "b", "portName": "in"}}]})");
    EXPECT_NE(e.message.find("connections[0].from.portName: node 'a' (passthrough) has no outport "
                             "'nowhere'; its outports: out, error"),
              std::string::npos)
        << e.message;

    e = build_error(R"({"processes": {"a": {"component": "passthrough"}},
        "connections": [{"to": {"nodeId": "a", "portName": "inn"}, "data": 1}]})");
    EXPECT_NE(e.message.find("connections[0].to.portName"), std::string::npos) << e.message;

    // Declared port types on both ends that do not match.
    e = build_error(R"({"processes": {"a": {"component": "passthrough"}, "b": {"component": "log"}},
        "connections": [{"from": {"nodeId": "a", "portName": "out", "portType": {"type": "string"}},
                         "to": {"nodeId": "b", "portName": "in",
                                "portType": {"type": "integer"}}}]})");
    EXPECT_NE(e.message.find("connections[0]: port types do not match"), std::string::npos)
        << e.message;

    // The graph's declared type against the component's own port type.
    e = build_error(R"({"processes": {"g": {"component": "range"}, "b": {"component": "log"}},
        "connections": [{"from": {"nodeId": "g", "portName": "out", "portType": {"type": "string"}},
                         "to": {"nodeId": "b", "portName": "in"}}]})");
    EXPECT_NE(e.message.find("connections[0].from.portType"), std::string::npos) << e.message;

    // An initial packet of the wrong kind for a typed inport.
    e = build_error(R"({"processes": {"s": {"component": "split"}},
        "connections": [{"to": {"nodeId": "s", "portName": "in"}, "data": "not an array"}]})");
    EXPECT_NE(e.message.find("connections[0].data"), std::string::npos) << e.message;

    // A component's config is checked when the node is made.
    e = build_error(R"({"processes": {"c": {"component": "collect", "metadata": {}}}})");
    EXPECT_NE(e.message.find("processes.c.metadata"), std::string::npos) << e.message;
}

TEST(GraphTest, PortNamesFollowCaseSensitivity) {
    const char* text = R"({"caseSensitive": %s, "processes": {"a": {"component": "passthrough"}},
        "connections": [{"to": {"nodeId": "a", "portName": "IN"}, "data": 1}]})";
    char buf[512];
    std::snprintf(buf, sizeof buf, text, "false");
    auto g = parse_graph(buf, "t");
    ASSERT_TRUE(g);
    EXPECT_TRUE(Network::build(*g, Registry::standard(), nullptr, nullptr, {}));
    std::snprintf(buf, sizeof buf, text, "true");
    g = parse_graph(buf, "t");
    ASSERT_TRUE(g);
    EXPECT_FALSE(Network::build(*g, Registry::standard(), nullptr, nullptr, {}));
}
