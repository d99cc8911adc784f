// The HTTP endpoints beside the WebSocket (GET /healthz, GET /metrics) and the backend's
// health that /healthz reports, which follows the sandboxes' starts.
#include "sandbox/backend.hpp"
#include "server/shared_state.hpp"

namespace sandflow::server {

void Server::Impl::set_health(bool ok, std::string hint) {
    std::lock_guard lk(health_mu);
    healthy = ok;
    health_hint = std::move(hint);
    unhealthy = !ok;
}

// /healthz follows sandbox starts: one that fails for want of a sandbox makes it 503
// with why, the next one that succeeds makes it 200 again. `e`: null on success; other
// errors (a script that does not load) say nothing about the backend.
void Server::Impl::note_sandbox_start(const Error* e) {
    if (!e) {
        if (unhealthy.load(std::memory_order_relaxed)) set_health(true, {});
    } else if (e->code == Errc::sandbox_unavailable) {
        set_health(false, e->message);
    }
}

rpc::HttpResponse Server::Impl::on_http(std::string_view target, bool authorized) {
    const std::string_view path = target.substr(0, target.find('?'));
    if (path == "/healthz") {
        bool ok;
        std::string hint;
        {
            std::lock_guard lk(health_mu);
            ok = healthy;
            hint = health_hint;
        }
        if (draining) {
            ok = false;
            hint = "the server is shutting down";
        }
        json::object o{{"status", ok ? "ok" : "unavailable"},
                       {"backend", backend.name()},
                       {"isolation", sandbox::level_name(backend.level())},
                       {"isolated", backend.isolates()},
                       {"calls_in_flight", inflight.load()}};
        if (!hint.empty()) o["hint"] = hint;
        return {ok ? 200 : 503, "application/json", to_json_string(o)};
    }
    if (path == "/metrics") {
        if (!authorized)
            return {401, "application/json",
                    R"({"error":"unauthorized: /metrics needs the server's token"})"};
        return {200, "text/plain; version=0.0.4", metrics_text()};
    }
    return {404, "application/json",
            R"({"error":"not found: WebSocket JSON-RPC on /, or GET /healthz, /metrics"})"};
}

void Server::set_backend_health(bool ok, std::string hint) {
    impl_->set_health(ok, std::move(hint));
}

rpc::HttpResponse Server::on_http(std::string_view target, bool authorized) {
    return impl_->on_http(target, authorized);
}

std::string Server::metrics_text() const {
    return impl_->metrics_text();
}

}  // namespace sandflow::server
