// The graph model and loader for Reflow's graph files (GraphExport JSON, camelCase;
// docs/flow.md).
//
// parse_graph checks the file's shape: every field Reflow writes is parsed, including the
// snake_case workspace keys (graph_dependencies, external_connections, provided_interfaces,
// required_interfaces), and every reference inside the graph (a connection's node, a group
// member, an exported port) must name a process. What components exist and which ports
// they have is checked later, when a network is built from the graph (flow/network.hpp).
// Errors are Errc::invalid_argument, name the file and the place ("connections[3].to"),
// and carry {file, where} in data; crossing a limit is Errc::limit_exceeded.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"
#include "core/json.hpp"

namespace sandflow::flow {

// One end of a connection, or an exported port.
struct PortRef {
    std::string node;
    std::string port;
    std::string port_id;
    std::optional<std::int64_t> index;  // array port index, when given
    bool expose = false;
    std::string type = "any";  // the portType tag
    json::value type_value;    // the portType's "value" (null when absent)
};

struct Node {
    std::string id;
    std::string component;
    json::object config;  // the process's `metadata`
};

struct Connection {
    std::optional<PortRef> from;  // absent for an initial packet
    PortRef to;
    std::optional<json::value> data;  // set for an initial packet
    json::object metadata;
    std::size_t index = 0;  // position in the file's `connections`
};

struct Export {
    std::string name;
    PortRef target;
};

struct Group {
    std::string name;
    std::vector<std::string> nodes;
    json::object metadata;
};

struct Graph {
    std::string file;  // for messages
    bool case_sensitive = false;
    json::object properties;
    std::vector<Node> nodes;  // in file order
    std::vector<Connection> connections;
    std::vector<Export> inports;
    std::vector<Export> outports;
    std::vector<Group> groups;
    // Reflow workspace keys, checked for shape and kept as written.
    json::array graph_dependencies;
    json::array external_connections;
    json::object provided_interfaces;
    json::object required_interfaces;

    const Node* find_node(std::string_view id) const;
    std::string name() const;  // properties.name, or the file's stem
};

// Parses a graph document. `file` names it in errors.
Result<Graph> parse_graph(std::string_view text, std::string_view file);
// Reads (at most limits::kMaxGraphBytes) and parses a graph file.
Result<Graph> load_graph_file(const std::filesystem::path& path);

// Port names compare case-insensitively unless the graph is case sensitive (Reflow's
// `caseSensitive`, false in the files it writes).
bool same_port(const Graph& g, std::string_view a, std::string_view b);

// The Error every graph check returns: "FILE: WHERE: WHAT", data {file, where}.
Error graph_error(std::string_view file, std::string_view where, std::string_view what,
                  Errc code = Errc::invalid_argument);

}  // namespace sandflow::flow
