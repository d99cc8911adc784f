// The server's public face (server.hpp) over its shared state (shared_state.hpp), and its
// end: draining, stopping the calls that run, shutting down. What each other file holds:
// src/server/README.md.
#include "server/server.hpp"

#include <cstdlib>
#include <thread>

#include "server/shared_state.hpp"

namespace sandflow::server {

Server::Impl::Impl(sandbox::Backend& b, ServerOptions o, std::shared_ptr<runtime::StateStore> s)
    : backend(b),
      opts(std::move(o)),
      store(std::move(s)),
      registry(opts.max_actors, opts.max_instances),
      pool(opts.threads) {
#ifdef SANDFLOW_FAULT_HOOKS
    if (const char* n = std::getenv("SANDFLOW_TEST_CRASH_AFTER_COMMITS"))
        crash_after_commits = std::atoi(n);
#endif
}

// Calls queued fail as they come up (still_wanted()); calls running are stopped here,
// through their instance, whether or not anyone is left to answer.
void Server::Impl::stop_running_calls() {
    aborting = true;
    std::vector<std::shared_ptr<CallState>> running;
    for (const auto& s : registry.slots()) {
        std::lock_guard lk(s->run_mu);
        if (s->running) running.push_back(s->running);
    }
    // Sessions' calls too: one may not have reached its worker yet (a sandbox is
    // starting), and must not start it.
    for (const auto& session : sessions.all()) session->append_calls(running);
    for (const auto& call : running) {
        std::lock_guard lk(call->mu);
        call->aborted = true;
        call->kill_locked();
    }
}

void Server::Impl::shutdown() {
    if (shut.exchange(true)) return;
    draining = true;
    stop_running_calls();
    const auto all = registry.take_all_slots();
    for (const auto& s : all) drop_slot(s);
    // Wait (bounded by the calls' own deadlines, already cut short by stop_running_calls)
    // for the queues to run dry: every worker is then killed and reaped.
    for (const auto& s : all)
        while (!s->dropped) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    // Let go of the transport's connections while the transport still exists.
    sessions.clear();
}

Server::Server(sandbox::Backend& backend, ServerOptions options,
               std::shared_ptr<runtime::StateStore> store)
    : impl_(std::make_unique<Impl>(backend, std::move(options),
                                   store ? std::move(store) : runtime::make_memory_store())) {}

Server::~Server() {
    shutdown();
}

void Server::set_transport_counters(const rpc::WsCounters* counters) {
    impl_->transport = counters;
}

void Server::set_event_loop(std::shared_ptr<rpc::EventLoop> loop) {
    impl_->loop = std::move(loop);
}

void Server::begin_drain() {
    impl_->draining = true;
}

bool Server::wait_idle(Clock::time_point deadline) {
    std::unique_lock lk(impl_->idle_mu);
    return impl_->idle_cv.wait_until(lk, deadline, [this] { return impl_->inflight == 0; });
}

void Server::abort_calls() {
    impl_->stop_running_calls();
}

std::size_t Server::calls_in_flight() const {
    return impl_->inflight;
}

void Server::shutdown() {
    impl_->shutdown();
}

}  // namespace sandflow::server
