// sandflow run GRAPH: run a Reflow graph of native components and sandboxed script actors
// (docs/flow.md).
//
// stdout carries results only: one JSON line per packet that reaches one of the graph's
// exported outports, {"port": NAME, "data": VALUE}. Everything else goes to stderr: logs,
// the scripts' prints, --trace lines, progress and the per-node summary.
#include <cstdio>
#include <filesystem>

#include "cli/common.hpp"
#include "core/duration.hpp"
#include "core/json.hpp"
#include "core/log.hpp"
#include "flow/flow_limits.hpp"
#include "flow/graph.hpp"
#include "flow/network.hpp"
#include "flow/remote.hpp"
#include "flow/script.hpp"
#include "runtime/runtime_limits.hpp"
#include "runtime/state/store.hpp"

namespace sandflow::cli {

namespace {

namespace fs = std::filesystem;

struct RunOptions {
    std::string graph;
    std::vector<std::string> actors;
    std::vector<std::string> inputs;
    std::string runtime;
    std::string token;
    std::string timeout;           // empty: each actor's declared timeout_ms, else 30 s
    std::string state = "memory";  // the embedded runtime's store (runtime::open_state_store)
    std::string state_sync = "normal";
    std::size_t queue_capacity = limits::kDefaultFlowQueueCapacity;
    bool trace = false;
    bool no_summary = false;
    BackendFlags backend;
    PackageFlags packages;
};

void print_stdout(const json::value& v) {
    std::string s = to_json_string(v);
    s += '\n';
    std::fwrite(s.data(), 1, s.size(), stdout);
    std::fflush(stdout);
}

void print_summary(const flow::Graph& g, const flow::RunReport& r, bool ok) {
    std::fprintf(
        stderr,
        "sandflow: run of '%s' %s after %.3f s: %llu packets delivered, %llu to "
        "exported outports\n",
        g.name().c_str(), ok ? "finished" : "stopped", static_cast<double>(r.elapsed.count()) / 1e6,
        static_cast<unsigned long long>(r.packets), static_cast<unsigned long long>(r.outputs));
    std::fprintf(stderr, "  %-20s %-20s %-6s %8s %6s %8s %8s %9s %6s\n", "node", "component",
                 "kind", "calls", "errors", "in", "out", "busy_ms", "queue");
    for (const auto& n : r.nodes)
        std::fprintf(stderr, "  %-20s %-20s %-6s %8llu %6llu %8llu %8llu %9.1f %6zu\n",
                     n.id.c_str(), n.component.c_str(), n.kind.c_str(),
                     static_cast<unsigned long long>(n.calls),
                     static_cast<unsigned long long>(n.errors),
                     static_cast<unsigned long long>(n.packets_in),
                     static_cast<unsigned long long>(n.packets_out),
                     static_cast<double>(n.busy.count()) / 1e3, n.queue_high_water);
}

int run(const RunOptions& o) {
    auto graph = flow::load_graph_file(o.graph);
    if (!graph) return report(graph.error());
    Result<std::chrono::microseconds> timeout = std::chrono::microseconds(0);
    if (!o.timeout.empty()) timeout = parse_duration(o.timeout);
    if (!timeout) return report(timeout.error());

    std::vector<fs::path> dirs;
    for (const auto& d : o.actors) {
        std::error_code ec;
        if (!fs::is_directory(d, ec))
            return report(Error(Errc::invalid_argument, "--actors " + d + " is not a folder"));
        dirs.emplace_back(d);
    }
    if (dirs.empty()) {
        const fs::path base = fs::absolute(o.graph).parent_path();
        dirs = {base, base / "actors"};
    }
    const auto registry = flow::Registry::standard();
    const auto catalog = flow::ScriptCatalog::discover(dirs);

    bool needs_scripts = false;
    for (const auto& n : graph->nodes)
        needs_scripts = needs_scripts || (!registry.find(n.component) && catalog.find(n.component));

    std::unique_ptr<sandbox::Backend> backend;
    std::unique_ptr<flow::ScriptHost> host;
    const auto call_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(*timeout);
    if (!o.runtime.empty() && o.state != "memory")
        return report(Error(Errc::invalid_argument,
                            "--state is for the embedded runtime; with --runtime the servers' "
                            "own --state holds the nodes' state"));
    if (!o.runtime.empty() && (!o.packages.sets.empty() || o.packages.local))
        return report(Error(Errc::invalid_argument,
                            "--packages and --local-packages are for the embedded runtime; with "
                            "--runtime, give them to the servers (serve --packages)"));
    if (o.state_sync != "normal" && o.state_sync != "full")
        return report(Error(Errc::invalid_argument,
                            "--state-sync must be normal (state survives a crash) or full (also "
                            "a power cut), not '" +
                                o.state_sync + "'"));
    if (needs_scripts && !o.runtime.empty()) {
        host = flow::remote_host({o.runtime, o.token, call_timeout});
    } else if (needs_scripts) {
        std::shared_ptr<runtime::StateStore> store;
        if (o.state != "memory") {
            runtime::StoreOptions so;
            so.sqlite_full_sync = o.state_sync == "full";
            auto st = runtime::open_state_store(o.state, so);
            if (!st) return report(st.error());
            store = std::move(*st);
            std::fprintf(stderr, "sandflow: the nodes' state is in %s\n",
                         store->describe().c_str());
        }
        auto packages = open_packages(o.packages);
        if (!packages) return report(packages.error());
        auto b = open_backend(o.backend);
        if (!b) return report(b.error());
        backend = std::move(*b);
        host = flow::embedded_host(*backend, call_timeout, std::move(store), std::move(*packages));
    }

    flow::NetworkOptions opts;
    opts.queue_capacity = o.queue_capacity;
    opts.on_output = [](std::string_view port, const json::value& data) {
        print_stdout(json::object{{"port", port}, {"data", data}});
    };
    opts.on_log = [](std::string_view node, std::string_view text) {
        std::fprintf(stderr, "[%.*s] %.*s\n", static_cast<int>(node.size()), node.data(),
                     static_cast<int>(text.size()), text.data());
    };
    if (o.trace) {
        opts.on_trace = [](const flow::TraceEvent& e) {
            json::object line{{"time_us", e.time.count()},
                              {"node", e.from_node},
                              {"port", e.from_port},
                              {"size", e.size}};
            if (e.to_node.empty()) {
                line["to_outport"] = e.to_port;
            } else {
                line["to_node"] = e.to_node;
                line["to_port"] = e.to_port;
            }
            const std::string s = to_json_string(line);
            std::fprintf(stderr, "%s\n", s.c_str());
        };
    }
    opts.on_progress = [](const flow::Progress& p) {
        std::fprintf(stderr, "sandflow: %.1f s: %llu packets, %llu calls, %zu queued\n",
                     static_cast<double>(p.elapsed.count()) / 1e3,
                     static_cast<unsigned long long>(p.packets),
                     static_cast<unsigned long long>(p.calls), p.queued);
    };

    auto net = flow::Network::build(*graph, registry, &catalog, host.get(), std::move(opts));
    if (!net) return report(net.error());
    for (const auto& item : o.inputs) {
        const auto eq = item.find('=');
        if (eq == std::string::npos || eq == 0)
            return report(Error(Errc::invalid_argument,
                                "--input '" + item + "' must be INPORT=JSON, like --input in=21"));
        auto v = parse_json(std::string_view(item).substr(eq + 1), "--input " + item.substr(0, eq));
        if (!v) return report(v.error());
        if (auto ok = (*net)->send(item.substr(0, eq), std::move(*v)); !ok)
            return report(ok.error());
    }
    auto r = (*net)->run();
    if (!o.no_summary) print_summary(*graph, r ? *r : (*net)->report(), r.has_value());
    if (!r) {
        if (const auto* cause = r.error().data.if_contains("cause"); cause && cause->is_object())
            if (const auto* d = cause->get_object().if_contains("data"); d && d->is_object())
                if (const auto* f = d->get_object().if_contains("formatted"); f && f->is_string())
                    std::fprintf(stderr, "%s\n", f->get_string().c_str());
        return report(r.error());
    }
    return kExitOk;
}

}  // namespace

void register_run(CLI::App& app, int& status) {
    auto o = std::make_shared<RunOptions>();
    auto* cmd = app.add_subcommand(
        "run",
        "Run a Reflow graph (JSON) of native components and sandboxed script actors.\n"
        "stdout: one JSON line {\"port\",\"data\"} per packet reaching an exported outport.\n"
        "stderr: logs, --trace lines, progress and a per-node summary.\n" +
            std::string(kExitStatusHelp));
    cmd->add_option("GRAPH", o->graph, "Graph file (Reflow GraphExport JSON)")->required();
    cmd->add_option("--actors", o->actors,
                    "Folder of script actors (repeatable; default: the graph's folder and its "
                    "actors/ folder)");
    cmd->add_option("-i,--input", o->inputs,
                    "A packet for an exported inport: INPORT=JSON (repeatable)");
    cmd->add_option("--runtime", o->runtime,
                    "Run script actors on this runtime server (ws://HOST:PORT) instead of "
                    "in-process; several, comma-separated, on one shared state store: each "
                    "node's instance moves to another when its server is lost");
    cmd->add_option("--token", o->token, "Bearer token for --runtime");
    cmd->add_option("--state", o->state,
                    "Where the embedded runtime's nodes keep their state, as serve's --state: "
                    "memory (the default: gone after the run), sqlite:PATH (sqlite: alone is " +
                        runtime::default_state_path() +
                        ") or redis://HOST:PORT/DB; each node is (component, node id) there, "
                        "starts on what it holds and keeps it after the run");
    cmd->add_option("--state-sync", o->state_sync,
                    "sqlite durability, as serve's: normal or full (each commit waits for the "
                    "disk)");
    cmd->add_option("--timeout", o->timeout,
                    "Wall-clock limit per script call, for every script actor (default: the "
                    "timeout_ms each actor declares in its limits, else " +
                        format_duration(limits::kDefaultCallTimeout) + ")");
    cmd->add_option("--queue-capacity", o->queue_capacity, "Packets queued per node inport")
        ->capture_default_str()
        ->check(CLI::Range(std::size_t{1}, limits::kMaxFlowQueueCapacity));
    cmd->add_flag("--trace", o->trace, "Print every message hop as a JSON line on stderr");
    cmd->add_flag("--no-summary", o->no_summary, "Do not print the per-node summary");
    add_backend_flags(*cmd, o->backend);
    add_package_flags(*cmd, o->packages);
    cmd->callback([o, &status] { status = run(*o); });
}

}  // namespace sandflow::cli
