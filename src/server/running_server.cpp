#include "server/running_server.hpp"

#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>

#include <csignal>
#include <thread>

#include "core/log.hpp"
#include "runtime/instance.hpp"
#include "sandbox/host_probe.hpp"

namespace sandflow::server {

namespace {

// How long calls still running after the grace period have, once their sandboxes were
// told to stop, and how long closing connections may take to flush.
constexpr auto kAbortWait = std::chrono::seconds(5);
constexpr auto kCloseWait = std::chrono::seconds(2);
constexpr auto kCloseWaitStep = std::chrono::milliseconds(10);

}  // namespace

Result<std::unique_ptr<RunningServer>> RunningServer::start(
    sandbox::Backend& backend, RunningServerOptions options,
    std::shared_ptr<runtime::StateStore> store) {
    std::unique_ptr<RunningServer> rs(new RunningServer());
    rs->host_ = options.transport.host;
    if (options.warm_pool) {
        // Pooled sandboxes get what an actor naming no package sets gets: every set.
        if (const auto& sets = options.server.packages) {
            options.warm_pool->python_packages =
                runtime::default_package_dirs(*sets, actor::Language::python);
            options.warm_pool->node_packages =
                runtime::default_package_dirs(*sets, actor::Language::javascript);
        }
        auto p = runtime::WarmPool::create(backend, *options.warm_pool);
        if (!p) return tl::unexpected(p.error());
        rs->warm_pool_ = std::move(*p);
        options.server.warm_pool = rs->warm_pool_.get();
    }
    rs->server_ = std::make_unique<Server>(backend, std::move(options.server), std::move(store));
    Server& srv = *rs->server_;
    if (auto ok = sandbox::probe_start(backend); !ok) {
        spdlog::warn("backend '{}' cannot start sandboxes: {}", backend.name(), ok.error().message);
        srv.set_backend_health(false, ok.error().message);
    }
    rpc::WsHandler h;
    h.on_open = [&srv](const auto& c) { srv.on_open(c); };
    h.on_message = [&srv](const auto& c, std::string_view text, bool binary) {
        srv.on_message(c, text, binary);
    };
    h.on_close = [&srv](const auto& c) { srv.on_close(c); };
    h.on_http = [&srv](std::string_view target, bool authorized) {
        return srv.on_http(target, authorized);
    };
    auto ws = rpc::WsServer::listen(std::move(options.transport), std::move(h));
    if (!ws) return tl::unexpected(ws.error());
    rs->ws_ = std::move(*ws);
    srv.set_transport_counters(&rs->ws_->counters());
    // Before discover(): the instances it starts drive their calls on the I/O threads.
    srv.set_event_loop(rs->ws_->event_loop());
    auto found = srv.discover();
    if (!found) return tl::unexpected(found.error());
    rs->actors_ = *found;
    rs->ws_->start();
    return rs;
}

RunningServer::~RunningServer() {
    stop();
}

std::uint16_t RunningServer::port() const {
    return ws_->port();
}

std::string RunningServer::url() const {
    const std::string host = host_.find(':') != std::string::npos ? "[" + host_ + "]" : host_;
    return "ws://" + host + ":" + std::to_string(port());
}

void RunningServer::drain_and_stop(std::chrono::microseconds grace) {
    ws_->stop_accepting();
    server_->begin_drain();
    if (!server_->wait_idle(std::chrono::steady_clock::now() + grace)) {
        spdlog::warn("{} calls still running after the grace period; stopping their sandboxes",
                     server_->calls_in_flight());
        server_->abort_calls();
        server_->wait_idle(std::chrono::steady_clock::now() + kAbortWait);
    }
    ws_->close_all("server shutting down");
    for (auto waited = std::chrono::milliseconds(0);
         waited < kCloseWait && ws_->counters().open.load() > 0; waited += kCloseWaitStep)
        std::this_thread::sleep_for(kCloseWaitStep);
    stop();
}

void RunningServer::stop() {
    // The server first: calls still on the I/O threads need them to end.
    if (server_) server_->shutdown();
    if (ws_) ws_->stop();
}

void prepare_process_for_serving() {
    // SIGPIPE is also blocked: sanitizer runtimes may swallow the SIG_IGN.
    std::signal(SIGPIPE, SIG_IGN);
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, nullptr);
    if (rlimit nofile{};
        ::getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
        nofile.rlim_cur = nofile.rlim_max;
        (void)::setrlimit(RLIMIT_NOFILE, &nofile);
    }
}

}  // namespace sandflow::server
