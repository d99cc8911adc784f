// Helpers shared by the flow engine's suites (tests/flow) and its benchmark
// (bench/flow_bench.cpp): graph JSON snippets, building and running a graph, and
// `sandflow serve` on a free loopback port, script actors the suites share in a folder of
// their own. Free of GoogleTest so that the benchmark can
// include it; `ServeProcess` needs SANDFLOW_BINARY, the path of the built `sandflow`.
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "core/json.hpp"
#include "flow/graph.hpp"
#include "flow/network.hpp"

namespace sandflow::testing {

// A running sum in the instance's state, streamed.
inline const char* const kStatsActor =
    R"(@actor({"component": "stats", "inports": ["value"], "outports": ["total"]})
async def process(context):
    total = await context.get_state("total", 0) + context.get_input("value")
    await context.set_state("total", total)
    await context.send_output("total", total)
)";

// Raises on odd inputs, passes even ones on.
inline const char* const kOddFailsActor =
    R"(@actor({"component": "odd_fails", "inports": ["in"], "outports": ["out"]})
def process(context):
    n = context.get_input("in")
    if n % 2:
        raise ValueError("odd %d" % n)
    return {"out": n}
)";

// A new folder under the temporary directory holding `files` (name, text); removed with
// everything in it at the end. path() is empty when it could not be made.
class ScriptDir {
  public:
    ScriptDir(const std::string& prefix,
              std::initializer_list<std::pair<const char*, const char*>> files) {
        std::string tmpl = (std::filesystem::temp_directory_path() / (prefix + "-XXXXXX")).string();
        if (::mkdtemp(tmpl.data()) == nullptr) return;
        path_ = tmpl;
        for (const auto& [name, text] : files) std::ofstream(path_ / name) << text;
    }
    ~ScriptDir() {
        std::error_code ignored;
        if (!path_.empty()) std::filesystem::remove_all(path_, ignored);
    }
    ScriptDir(const ScriptDir&) = delete;
    ScriptDir& operator=(const ScriptDir&) = delete;
    const std::filesystem::path& path() const { return path_; }

  private:
    std::filesystem::path path_;
};

// A connection from outport `fport` of node `from` to inport `tport` of node `to`, as a
// graph file writes it.
inline std::string conn(const std::string& from, const std::string& fport, const std::string& to,
                        const std::string& tport) {
    return R"({"from": {"nodeId": ")" + from + R"(", "portName": ")" + fport +
           R"("}, "to": {"nodeId": ")" + to + R"(", "portName": ")" + tport + R"("}})";
}

// An initial packet: `data` (JSON text) for inport `port` of node `to`, with the empty
// `from` that Reflow writes.
inline std::string iip(const std::string& to, const std::string& port, const std::string& data) {
    return R"({"from": {"nodeId": "", "portName": ""}, "to": {"nodeId": ")" + to +
           R"(", "portName": ")" + port + R"("}, "data": )" + data + "}";
}

struct FlowRun {
    Result<flow::RunReport> result = fail(Errc::internal, "not run");
    // What reached each exported outport, in order (unless the caller set on_output).
    std::map<std::string, std::vector<json::value>> out;
};

// Parses `text` (named t.graph.json in messages), builds the network and runs it to the
// end. A graph or build error is the run's result.
inline FlowRun run_flow(const std::string& text, const flow::Registry& registry,
                        const flow::ScriptCatalog* scripts, flow::ScriptHost* host,
                        flow::NetworkOptions opts = {}) {
    FlowRun r;
    auto g = flow::parse_graph(text, "t.graph.json");
    if (!g) {
        r.result = tl::unexpected(g.error());
        return r;
    }
    if (!opts.on_output) {
        auto* out = &r.out;
        opts.on_output = [out](std::string_view port, const json::value& v) {
            (*out)[std::string(port)].push_back(v);
        };
    }
    auto net = flow::Network::build(*g, registry, scripts, host, std::move(opts));
    if (!net) {
        r.result = tl::unexpected(net.error());
        return r;
    }
    r.result = (*net)->run();
    return r;
}

// The statistics of node `id`; throws when the report has no such node.
inline const flow::NodeStats& stats_of(const flow::RunReport& r, const std::string& id) {
    for (const auto& n : r.nodes)
        if (n.id == id) return n;
    throw std::runtime_error("no node " + id);
}

// `sandflow serve` on a free loopback port (127.0.0.1:0) with `backend`, stopped (SIGTERM)
// at the end. url() is empty when it did not start.
class ServeProcess {
  public:
    explicit ServeProcess(const char* backend) {
        int fds[2];
        if (::pipe(fds) != 0) return;
        pid_ = ::fork();
        if (pid_ == 0) {
            ::dup2(fds[1], 1);
            ::close(fds[0]);
            ::close(fds[1]);
            ::execl(SANDFLOW_BINARY, SANDFLOW_BINARY, "--log-level", "error", "serve", "--listen",
                    "127.0.0.1:0", "--backend", backend, "--insecure-no-sandbox", "--state",
                    "memory", static_cast<char*>(nullptr));
            ::_exit(127);
        }
        ::close(fds[1]);
        // Its first stdout line is {"listening": "ws://127.0.0.1:PORT"}.
        std::string line;
        char c;
        while (::read(fds[0], &c, 1) == 1 && c != '\n') line += c;
        ::close(fds[0]);
        auto v = parse_json(line, "serve output");
        if (v && v->is_object())
            if (const auto* u = v->get_object().if_contains("listening"); u && u->is_string())
                url_ = std::string(u->get_string());
    }
    ~ServeProcess() {
        if (pid_ > 0) {
            ::kill(pid_, SIGTERM);
            int st = 0;
            ::waitpid(pid_, &st, 0);
        }
    }
    ServeProcess(const ServeProcess&) = delete;
    ServeProcess& operator=(const ServeProcess&) = delete;
    const std::string& url() const { return url_; }

  private:
    pid_t pid_ = -1;
    std::string url_;
};

}  // namespace sandflow::testing
