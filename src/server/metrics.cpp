// The counters (metrics.hpp), and the two views of the server's state written from them:
// the `stats` method's object and GET /metrics' Prometheus text.
#include "server/metrics.hpp"

#include "core/log.hpp"
#include "rpc/ws_server.hpp"
#include "runtime/warm_pool.hpp"
#include "server/shared_state.hpp"

namespace sandflow::server {

namespace {

// The methods, for bounded metric labels.
constexpr std::array<std::string_view, 9> kMethods = {
    "list", "load", "process", "unload", "describe", "ping", "stats", "cancel", "unknown"};

std::string_view method_label(std::string_view m) {
    for (auto k : kMethods)
        if (k == m) return k;
    return "unknown";
}

// The string at data[key], or "".
std::string data_string(const Error& e, std::string_view key) {
    const auto* v = e.data.if_contains(key);
    return v && v->is_string() ? std::string(v->get_string()) : std::string();
}

}  // namespace

std::string label_value(std::string_view v) {
    std::string out;
    for (char c : v) {
        if (c == '\\' || c == '"') out += '\\';
        if (c == '\n') {
            out += "\\n";
            continue;
        }
        out += c;
    }
    return out;
}

void Histogram::observe(double s) {
    std::lock_guard lk(mu_);
    for (std::size_t i = 0; i < kBounds.size(); ++i)
        if (s <= kBounds[i]) ++counts_[i];
    ++count_;
    sum_ += s;
}

void Histogram::write(std::string& out, std::string_view name) const {
    std::lock_guard lk(mu_);
    for (std::size_t i = 0; i < kBounds.size(); ++i)
        out += fmt::format("{}_bucket{{le=\"{}\"}} {}\n", name, kBounds[i], counts_[i]);
    out += fmt::format("{}_bucket{{le=\"+Inf\"}} {}\n{}_sum {}\n{}_count {}\n", name, count_, name,
                       sum_, name, count_);
}

void Metrics::count(std::string_view method, std::string outcome) {
    std::lock_guard lk(mu_);
    ++calls_by_[{method_label(method), std::move(outcome)}];
}

void Metrics::count_error(std::string_view method, const Error& e) {
    const auto r = rpc::to_rpc_error(e);
    const auto* reason = r.data.if_contains("reason");
    std::string name =
        reason && reason->is_string() ? std::string(reason->get_string()) : "internal";
    count(method, std::move(name));
}

void Metrics::count_kill(const Error& e, bool cancelled, bool aborted) {
    std::string why;
    if (aborted) {
        why = "shutdown";
    } else if (cancelled) {
        why = "cancelled";
    } else if (e.code == Errc::timeout) {
        why = "timeout";
    } else if (e.code == Errc::limit_exceeded) {
        why = data_string(e, "limit");
        if (why.empty()) why = "limit";
    } else {
        return;
    }
    std::lock_guard lk(mu_);
    ++limit_kills_[why];
}

void Metrics::count_idle_loss(const Error& e) {
    std::string why = data_string(e, "limit");
    if (why.empty()) why = data_string(e, "reason");
    if (why.empty()) why = "crashed";
    std::lock_guard lk(mu_);
    ++idle_losses_[why];
}

std::uint64_t Metrics::calls_total() const {
    std::uint64_t total = 0;
    std::lock_guard lk(mu_);
    for (const auto& [k, n] : calls_by_) total += n;
    return total;
}

std::uint64_t Metrics::workers_lost_between_calls() const {
    std::uint64_t lost = 0;
    std::lock_guard lk(mu_);
    for (const auto& [k, n] : idle_losses_) lost += n;
    return lost;
}

void Metrics::write_labelled(std::string& out) const {
    std::lock_guard lk(mu_);
    out +=
        "# HELP sandflow_calls_total JSON-RPC requests by method and outcome.\n"
        "# TYPE sandflow_calls_total counter\n";
    for (const auto& [k, n] : calls_by_)
        out += fmt::format("sandflow_calls_total{{method=\"{}\",outcome=\"{}\"}} {}\n", k.first,
                           label_value(k.second), n);
    out +=
        "# HELP sandflow_limit_kills_total Calls that cost their worker: a limit (by name), "
        "the deadline, a cancel or a shutdown.\n# TYPE sandflow_limit_kills_total counter\n";
    for (const auto& [k, n] : limit_kills_)
        out += fmt::format("sandflow_limit_kills_total{{reason=\"{}\"}} {}\n", label_value(k), n);
    out +=
        "# HELP sandflow_workers_lost_between_calls_total Workers killed for what they did "
        "between calls (a limit, a frame) or found dead then.\n"
        "# TYPE sandflow_workers_lost_between_calls_total counter\n";
    for (const auto& [k, n] : idle_losses_)
        out += fmt::format("sandflow_workers_lost_between_calls_total{{reason=\"{}\"}} {}\n",
                           label_value(k), n);
}

json::object Server::Impl::stats_object() const {
    json::object o;
    const Registry::Counts n = registry.counts();
    o["actors"] = n.actors;
    o["instances"] = n.instances;
    o["connections"] = sessions.size();
    o["sandboxes"] = {
        {"busy", n.busy}, {"idle", n.idle}, {"starting", n.starting}, {"down", n.down}};
    o["calls_in_flight"] = inflight.load();
    o["process_driven"] = json::object{{"event_loop", metrics.process_on_loop.load()},
                                       {"pool", metrics.process_on_pool.load()}};
    o["between_calls"] = json::object{{"checks", metrics.idle_checks.load()},
                                      {"workers_lost", metrics.workers_lost_between_calls()}};
    o["pool_threads"] = pool.threads();
    o["pool_busy"] = pool.busy();
    o["pool_queued"] = pool.queued();
    if (opts.warm_pool) {
        const auto ws = opts.warm_pool->stats();
        auto lang = [](const runtime::PoolStats::Language& l) {
            return json::object{{"target", l.target}, {"idle", l.idle},       {"taken", l.taken},
                                {"missed", l.missed}, {"started", l.started}, {"failed", l.failed}};
        };
        o["warm_pool"] = {{"python", lang(ws.python)}, {"node", lang(ws.node)}};
    }
    o["backend"] = backend.name();
    o["isolation"] = sandbox::level_name(backend.level());
    o["isolated"] = backend.isolates();
    o["state_store"] = store->kind();
    o["state_store_at"] = store->describe();
    o["state_conflict_retries"] = metrics.conflict_retries.load();
    o["uptime_ms"] =
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count();
    o["draining"] = draining.load();
    o["calls_total"] = metrics.calls_total();
    return o;
}

std::string Server::Impl::metrics_text() const {
    const auto st = stats_object();
    std::string out;
    auto gauge = [&](std::string_view name, std::string_view help, auto value) {
        out += fmt::format("# HELP {0} {1}\n# TYPE {0} gauge\n{0} {2}\n", name, help, value);
    };
    gauge("sandflow_connections", "Open WebSocket connections.", st.at("connections").as_uint64());
    out += fmt::format(
        "# HELP sandflow_sandbox_backend_info The sandbox backend and the isolation level it "
        "provides (1).\n# TYPE sandflow_sandbox_backend_info gauge\n"
        "sandflow_sandbox_backend_info{{backend=\"{}\",isolation=\"{}\"}} 1\n",
        backend.name(), sandbox::level_name(backend.level()));
    out += fmt::format(
        "# HELP sandflow_connections_total WebSocket connections opened.\n"
        "# TYPE sandflow_connections_total counter\nsandflow_connections_total {}\n",
        metrics.connections_total.load());
    metrics.write_labelled(out);
    out +=
        "# HELP sandflow_call_duration_seconds process calls, request to response.\n"
        "# TYPE sandflow_call_duration_seconds histogram\n";
    metrics.latency.write(out, "sandflow_call_duration_seconds");
    out +=
        "# HELP sandflow_sandboxes Instances by the state of their sandbox.\n"
        "# TYPE sandflow_sandboxes gauge\n";
    for (const auto& [k, v] : st.at("sandboxes").as_object())
        out += fmt::format("sandflow_sandboxes{{state=\"{}\"}} {}\n", std::string_view(k),
                           v.as_uint64());
    gauge("sandflow_actors", "Registered actor components.", st.at("actors").as_uint64());
    gauge("sandflow_calls_in_flight", "Calls queued or running.",
          st.at("calls_in_flight").as_uint64());
    out +=
        "# HELP sandflow_process_driven_total process calls by where they ran: on the event "
        "loop (a running worker) or blocking a pool thread (a sandbox started first).\n"
        "# TYPE sandflow_process_driven_total counter\n";
    for (const auto& [k, v] : st.at("process_driven").as_object())
        out += fmt::format("sandflow_process_driven_total{{on=\"{}\"}} {}\n", std::string_view(k),
                           v.as_uint64());
    gauge("sandflow_pool_threads", "Threads that run calls.", st.at("pool_threads").as_uint64());
    gauge("sandflow_pool_busy", "Pool threads running a call now.", st.at("pool_busy").as_uint64());
    gauge("sandflow_pool_queued", "Instance turns waiting for a pool thread.",
          st.at("pool_queued").as_uint64());
    if (const auto* wp = st.if_contains("warm_pool")) {
        static constexpr std::pair<const char*, const char*> kWarm[] = {
            {"target", "gauge"},   {"idle", "gauge"},      {"taken", "counter"},
            {"missed", "counter"}, {"started", "counter"}, {"failed", "counter"}};
        for (const auto& [field, type] : kWarm) {
            const bool counter = std::string_view(type) == "counter";
            const std::string name =
                std::string("sandflow_warm_pool_") + field + (counter ? "_total" : "");
            out += fmt::format("# HELP {} Warm pool sandboxes per language: {}.\n# TYPE {} {}\n",
                               name, field, name, type);
            for (const auto& [lang, v] : wp->as_object())
                out += fmt::format("{}{{language=\"{}\"}} {}\n", name, std::string_view(lang),
                                   v.as_object().at(field).as_uint64());
        }
    }
    if (const auto* t = transport) {
        out +=
            "# HELP sandflow_transport_events_total Connection-level events.\n"
            "# TYPE sandflow_transport_events_total counter\n";
        for (const auto& [event, n] : {std::pair{"rejected_auth", t->rejected_auth.load()},
                                       std::pair{"rejected_origin", t->rejected_origin.load()},
                                       std::pair{"rejected_full", t->rejected_full.load()},
                                       std::pair{"slow_disconnect", t->slow_disconnects.load()},
                                       std::pair{"timeout", t->timeouts.load()}})
            out += fmt::format("sandflow_transport_events_total{{event=\"{}\"}} {}\n", event, n);
    }
    return out;
}

}  // namespace sandflow::server
