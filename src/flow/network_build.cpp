// Building a network from a graph (flow/network.hpp): resolving each node's component,
// checking ports and types, wiring connections and queues, finding cycles, opening script
// instances, and the packets queued before the run.
#include <algorithm>
#include <set>
#include <thread>

#include "actor/script_limits.hpp"
#include "flow/flow_limits.hpp"
#include "flow/network_impl.hpp"

namespace sandflow::flow {

namespace {

bool type_compatible(std::string_view a, std::string_view b) {
    return a == "any" || b == "any" || a == b;
}

bool value_has_type(const json::value& v, std::string_view type) {
    if (type == "integer") return v.is_int64() || v.is_uint64();
    if (type == "float") return v.is_number();
    if (type == "boolean") return v.is_bool();
    if (type == "string") return v.is_string();
    if (type == "object") return v.is_object();
    if (type == "array") return v.is_array();
    return true;
}

std::string join_names(const std::vector<std::string>& names, std::size_t max = 20) {
    std::string s;
    for (std::size_t i = 0; i < names.size() && i < max; ++i) s += (i ? ", " : "") + names[i];
    if (names.size() > max) s += ", ...";
    return s.empty() ? "(none)" : s;
}

struct Builder {
    const Graph& g;
    const Registry& registry;
    const ScriptCatalog* scripts;
    ScriptHost* host;
    Network::Impl& net;

    Error err(std::string_view where, std::string_view what) const {
        return graph_error(g.file, where, what);
    }

    // Index of the port called `name` (compared as the graph says: caseSensitive) in `ports`.
    template <class Port>
    std::optional<std::uint32_t> find_port(const std::vector<Port>& ports,
                                           std::string_view name) const {
        for (std::uint32_t i = 0; i < ports.size(); ++i)
            if (same_port(g, ports[i].name, name)) return i;
        return std::nullopt;
    }
    template <class Port>
    static std::string port_names(const std::vector<Port>& ps) {
        std::vector<std::string> v;
        for (const auto& p : ps) v.push_back(p.name);
        return join_names(v);
    }

    // The port of node n that `ref` names among `ports`, checked against the type the graph
    // declares for it. `kind`: "inport" or "outport"; `verb`: what such a port does with
    // packets of its type ("takes", "sends").
    template <class Port>
    Result<std::uint32_t> port(const RtNode& n, const std::vector<Port>& ports, const PortRef& ref,
                               const std::string& where, const std::string& kind,
                               const std::string& verb) {
        auto i = find_port(ports, ref.port);
        if (!i)
            return tl::unexpected(err(where + ".portName", "node '" + n.id + "' (" + n.component +
                                                               ") has no " + kind + " '" +
                                                               ref.port + "'; its " + kind +
                                                               "s: " + port_names(ports)));
        const auto& declared = ports[*i].type;
        if (!type_compatible(ref.type, declared))
            return tl::unexpected(
                err(where + ".portType", "port types do not match: the graph declares '" +
                                             ref.type + "' but " + kind + " '" + n.id + "." +
                                             ports[*i].name + "' " + verb + " '" + declared + "'"));
        return *i;
    }
    Result<std::uint32_t> in_port(const RtNode& n, const PortRef& ref, const std::string& where) {
        return port(n, n.in, ref, where, "inport", "takes");
    }
    Result<std::uint32_t> out_port(const RtNode& n, const PortRef& ref, const std::string& where) {
        return port(n, n.out, ref, where, "outport", "sends");
    }

    Result<void> make_nodes() {
        std::size_t script_nodes = 0;
        net.nodes.reserve(g.nodes.size());
        for (const auto& gn : g.nodes) {
            auto n = std::make_unique<RtNode>();
            n->id = gn.id;
            n->component = gn.component;
            n->config = gn.config;
            const std::string where = "processes." + gn.id;
            if (const auto* spec = registry.find(gn.component)) {
                for (const auto& p : spec->inports) n->in.push_back({p.name, p.type, false});
                for (const auto& p : spec->outports) n->out.push_back({p.name, p.type, {}, {}});
                n->await_all = spec->await_all_inports;
                auto c = spec->make(gn.config);
                if (!c)
                    return tl::unexpected(
                        err(where + ".metadata",
                            "node '" + gn.id + "' (" + gn.component + "): " + c.error().message));
                n->native = std::move(*c);
            } else if (const ScriptActor* a = scripts ? scripts->find(gn.component) : nullptr) {
                if (!host)
                    return tl::unexpected(err(
                        where + ".component",
                        "script actor '" + gn.component + "' needs a runtime (none was given)"));
                if (++script_nodes > limits::kMaxScriptNodes)
                    return tl::unexpected(graph_error(g.file, where,
                                                      "more than " +
                                                          std::to_string(limits::kMaxScriptNodes) +
                                                          " script nodes (one sandbox each)",
                                                      Errc::limit_exceeded));
                n->script = true;
                n->await_all = a->metadata.await_all_inports;
                for (const auto& p : a->metadata.inports) n->in.push_back({p.name, p.type, false});
                for (const auto& p : a->metadata.outports)
                    n->out.push_back({p.name, p.type, {}, {}});
            } else {
                std::string what = "unknown component '" + gn.component +
                                   "'; native components: " + join_names(registry.names());
                if (scripts) {
                    std::vector<std::string> dirs;
                    for (const auto& d : scripts->dirs()) dirs.push_back(d.string());
                    what += "; script actors under " + join_names(dirs) + ": " +
                            join_names(scripts->names());
                }
                return tl::unexpected(err(where + ".component", what));
            }
            if (n->in.size() > limits::kMaxPorts || n->out.size() > limits::kMaxPorts)
                return tl::unexpected(err(where, "has too many ports"));
            // Every node has an `error` outport: where its failures go when connected.
            auto ep = find_port(n->out, "error");
            if (!ep) {
                n->out.push_back({"error", "object", {}, {}});
                ep = static_cast<std::uint32_t>(n->out.size() - 1);
            }
            n->error_port = *ep;
            net.nodes.push_back(std::move(n));
        }
        return {};
    }

    RtNode* node(std::string_view id) {
        for (auto& n : net.nodes)
            if (n->id == id) return n.get();
        return nullptr;
    }

    struct Initial {
        RtNode* node;
        std::uint32_t port;
        json::value data;
    };

    Result<std::vector<Initial>> connect() {
        std::vector<Initial> initial;
        for (const auto& c : g.connections) {
            const std::string where = "connections[" + std::to_string(c.index) + "]";
            RtNode* to = node(c.to.node);
            auto ti = in_port(*to, c.to, where + ".to");
            if (!ti) return tl::unexpected(ti.error());
            to->in[*ti].connected = true;
            if (!c.from) {
                const auto& type = to->in[*ti].type;
                const auto& want = type == "any" ? c.to.type : type;
                if (!value_has_type(*c.data, want))
                    return tl::unexpected(err(where + ".data", "initial packet is not of type '" +
                                                                   want + "' that inport '" +
                                                                   to->id + "." + to->in[*ti].name +
                                                                   "' takes"));
                initial.push_back({to, *ti, *c.data});
                continue;
            }
            RtNode* from = node(c.from->node);
            auto fo = out_port(*from, *c.from, where + ".from");
            if (!fo) return tl::unexpected(fo.error());
            const auto& ft = c.from->type != "any" ? c.from->type : from->out[*fo].type;
            const auto& tt = c.to.type != "any" ? c.to.type : to->in[*ti].type;
            if (!type_compatible(ft, tt))
                return tl::unexpected(err(where, "port types do not match: '" + from->id + "." +
                                                     from->out[*fo].name + "' sends '" + ft +
                                                     "' but '" + to->id + "." + to->in[*ti].name +
                                                     "' takes '" + tt + "'"));
            Edge e;
            e.target = to;
            e.inport = *ti;
            from->out[*fo].edges.push_back(std::move(e));
        }
        for (const auto& ex : g.inports) {
            const std::string where = "inports." + ex.name;
            RtNode* n = node(ex.target.node);
            auto i = in_port(*n, ex.target, where);
            if (!i) return tl::unexpected(i.error());
            n->in[*i].connected = true;
            net.exported_in.push_back({ex.name, {n, *i}});
        }
        for (const auto& ex : g.outports) {
            const std::string where = "outports." + ex.name;
            RtNode* n = node(ex.target.node);
            auto o = out_port(*n, ex.target, where);
            if (!o) return tl::unexpected(o.error());
            n->out[*o].exports.push_back(ex.name);
        }
        return initial;
    }

    // Connections inside a strongly connected component (a cycle) are not gated.
    void mark_cycles() {
        const std::size_t N = net.nodes.size();
        std::vector<std::size_t> index_of_node;
        auto idx = [&](const RtNode* p) {
            for (std::size_t i = 0; i < N; ++i)
                if (net.nodes[i].get() == p) return i;
            return N;
        };
        std::vector<std::vector<std::size_t>> adj(N), radj(N);
        for (std::size_t i = 0; i < N; ++i)
            for (const auto& op : net.nodes[i]->out)
                for (const auto& e : op.edges) {
                    const std::size_t j = idx(e.target);
                    adj[i].push_back(j);
                    radj[j].push_back(i);
                }
        // Kosaraju, iteratively: finishing order on adj, then components on radj.
        std::vector<std::size_t> order;
        std::vector<char> seen(N, 0);
        for (std::size_t s = 0; s < N; ++s) {
            if (seen[s]) continue;
            std::vector<std::pair<std::size_t, std::size_t>> stack{{s, 0}};
            seen[s] = 1;
            while (!stack.empty()) {
                auto& [v, k] = stack.back();
                if (k < adj[v].size()) {
                    const std::size_t w = adj[v][k++];
                    if (!seen[w]) {
                        seen[w] = 1;
                        stack.push_back({w, 0});
                    }
                } else {
                    order.push_back(v);
                    stack.pop_back();
                }
            }
        }
        std::vector<std::size_t> comp(N, N);
        std::size_t c = 0;
        for (auto it = order.rbegin(); it != order.rend(); ++it) {
            if (comp[*it] != N) continue;
            std::vector<std::size_t> stack{*it};
            comp[*it] = c;
            while (!stack.empty()) {
                const std::size_t v = stack.back();
                stack.pop_back();
                for (std::size_t w : radj[v])
                    if (comp[w] == N) {
                        comp[w] = c;
                        stack.push_back(w);
                    }
            }
            ++c;
        }
        for (std::size_t i = 0; i < N; ++i)
            for (auto& op : net.nodes[i]->out)
                for (auto& e : op.edges) e.gated = comp[i] != comp[idx(e.target)];
    }

    void make_queues() {
        for (auto& n : net.nodes) {
            const std::size_t k = n->await_all ? std::max<std::size_t>(n->in.size(), 1) : 1;
            for (std::size_t i = 0; i < k; ++i) n->queues.push_back(std::make_unique<Queue>());
        }
        for (auto& n : net.nodes)
            for (auto& op : n->out)
                for (auto& e : op.edges) {
                    e.queue = &e.target->queue_for(e.inport);
                    auto& ps = e.target->producers;
                    if (e.gated && std::find(ps.begin(), ps.end(), n.get()) == ps.end())
                        ps.push_back(n.get());
                }
    }

    Result<void> open_scripts() {
        for (auto& n : net.nodes) {
            if (!n->script) continue;
            const ScriptActor* a = scripts->find(n->component);
            RtNode* np = n.get();
            Network::Impl* impl = &net;
            auto r =
                host->open(*a, n->id, [impl, np](std::string_view text) { impl->log(*np, text); });
            if (!r)
                return tl::unexpected(err("processes." + n->id,
                                          "node '" + n->id + "' (" + n->component +
                                              "): cannot start the script: " + r.error().message));
            n->runner = std::move(*r);
            n->window = std::max<std::size_t>(1, n->runner->max_in_flight());
            if (n->window == 1)
                n->serial = std::make_unique<asio::thread_pool>(1);
            else
                n->executor = n->runner->executor();
        }
        return {};
    }
};

}  // namespace

Network::Network(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Network::~Network() = default;

Result<std::unique_ptr<Network>> Network::build(const Graph& graph, const Registry& registry,
                                                const ScriptCatalog* scripts, ScriptHost* host,
                                                NetworkOptions options) {
    auto impl = std::make_unique<Impl>();
    impl->file = graph.file;
    impl->opt = std::move(options);
    if (impl->opt.queue_capacity == 0 || impl->opt.queue_capacity > limits::kMaxFlowQueueCapacity)
        return fail(Errc::invalid_argument, "queue capacity must be between 1 and " +
                                                std::to_string(limits::kMaxFlowQueueCapacity));
    impl->cap = impl->opt.queue_capacity;
    Builder b{graph, registry, scripts, host, *impl};
    if (auto ok = b.make_nodes(); !ok) return tl::unexpected(ok.error());
    auto initial = b.connect();
    if (!initial) return tl::unexpected(initial.error());
    b.mark_cycles();
    b.make_queues();
    for (auto& n : impl->nodes)
        if (n->native) n->ctx = std::make_unique<NativeCtx>(*impl, *n);
    if (auto ok = b.open_scripts(); !ok) return tl::unexpected(ok.error());
    std::size_t threads = impl->opt.threads;
    if (threads == 0) threads = std::max(2u, std::thread::hardware_concurrency());
    impl->pool = std::make_unique<asio::thread_pool>(threads);
    for (auto& ip : *initial) {
        Edge e;
        e.target = ip.node;
        e.inport = ip.port;
        e.queue = &ip.node->queue_for(ip.port);
        json::value* p = &ip.data;
        impl->enqueue(e, p, p + 1);
    }
    return std::unique_ptr<Network>(new Network(std::move(impl)));
}

Result<void> Network::send(std::string_view exported_inport, json::value data) {
    for (auto& [name, target] : impl_->exported_in) {
        if (name != exported_inport) continue;
        Edge e;
        e.target = target.first;
        e.inport = target.second;
        e.queue = &target.first->queue_for(target.second);
        json::value* p = &data;
        impl_->enqueue(e, p, p + 1);
        return {};
    }
    std::vector<std::string> names;
    for (const auto& [name, t] : impl_->exported_in) names.push_back(name);
    return fail(Errc::invalid_argument, "the graph exports no inport '" +
                                            std::string(exported_inport) +
                                            "'; it exports: " + join_names(names));
}

}  // namespace sandflow::flow
