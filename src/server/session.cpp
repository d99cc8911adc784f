// Sessions (session.hpp) and the transport's entry points: a connection opens, sends
// messages (decoded here and handed to dispatch(), methods.cpp), and closes.
#include "server/session.hpp"

#include <signal.h>

#include <variant>

#include "server/shared_state.hpp"

namespace sandflow::server {

void CallState::kill_locked() {
    if (running && pid > 0) ::kill(pid, SIGKILL);
}

std::string Session::track(const json::value& id, bool notification,
                           const std::shared_ptr<CallState>& call) {
    if (notification) return {};
    std::string key = rpc::encode(id);
    std::lock_guard lk(mu);
    if (!calls.emplace(key, call).second) return {};
    return key;
}

void Session::untrack(const std::string& key) {
    if (key.empty()) return;
    std::lock_guard lk(mu);
    calls.erase(key);
}

std::shared_ptr<CallState> Session::find(const json::value& id) {
    std::lock_guard lk(mu);
    auto it = calls.find(rpc::encode(id));
    return it == calls.end() ? nullptr : it->second;
}

void Session::cancel_queued() {
    std::lock_guard lk(mu);
    for (const auto& [k, call] : calls) {
        std::lock_guard lk2(call->mu);
        if (!call->running) call->cancelled = true;
    }
}

void Session::append_calls(std::vector<std::shared_ptr<CallState>>& out) {
    std::lock_guard lk(mu);
    for (const auto& [k, call] : calls) out.push_back(call);
}

void Reply::send(json::object message) const {
    if (batch) {
        std::string out;
        {
            std::lock_guard lk(batch->mu);
            if (!notification) batch->responses.push_back(std::move(message));
            if (--batch->remaining != 0 || batch->responses.empty()) return;
            out = rpc::encode(batch->responses);
        }
        session->conn->send(std::move(out));
        return;
    }
    if (!notification) session->conn->send(rpc::encode(message));
}

void Sessions::open(const std::shared_ptr<rpc::Connection>& conn) {
    auto s = std::make_shared<Session>();
    s->conn = conn;
    std::lock_guard lk(mu_);
    by_id_[conn->id()] = std::move(s);
}

std::shared_ptr<Session> Sessions::find(std::uint64_t conn_id) const {
    std::lock_guard lk(mu_);
    auto it = by_id_.find(conn_id);
    return it == by_id_.end() ? nullptr : it->second;
}

std::shared_ptr<Session> Sessions::close(std::uint64_t conn_id) {
    std::lock_guard lk(mu_);
    auto it = by_id_.find(conn_id);
    if (it == by_id_.end()) return nullptr;
    auto s = std::move(it->second);
    by_id_.erase(it);
    return s;
}

std::vector<std::shared_ptr<Session>> Sessions::all() const {
    std::vector<std::shared_ptr<Session>> out;
    std::lock_guard lk(mu_);
    for (const auto& [id, s] : by_id_) out.push_back(s);
    return out;
}

std::size_t Sessions::size() const {
    std::lock_guard lk(mu_);
    return by_id_.size();
}

void Sessions::clear() {
    std::lock_guard lk(mu_);
    by_id_.clear();
}

void Server::on_open(const std::shared_ptr<rpc::Connection>& conn) {
    impl_->metrics.connections_total++;
    impl_->sessions.open(conn);
}

void Server::on_close(const std::shared_ptr<rpc::Connection>& conn) {
    if (auto s = impl_->sessions.close(conn->id())) s->cancel_queued();
}

void Server::on_message(const std::shared_ptr<rpc::Connection>& conn, std::string_view text,
                        bool binary) {
    auto session = impl_->sessions.find(conn->id());
    if (!session) return;
    if (binary) {
        impl_->metrics.count("unknown", "invalid_request");
        // The protocol's own code (-32600) rather than invalid_argument's -32602: the
        // message is not a request at all.
        const Error e(Errc::invalid_argument,
                      "binary frames are not accepted: send each JSON-RPC message as one text "
                      "frame",
                      {{"reason", "binary_frame"}});
        rpc::RpcError r = rpc::to_rpc_error(e);
        r.code = rpc::kInvalidRequest;
        conn->send(rpc::encode(rpc::make_error(nullptr, r)));
        return;
    }
    rpc::Decoded d = rpc::decode(text);
    std::shared_ptr<Batch> batch;
    if (d.batch) {
        batch = std::make_shared<Batch>();
        batch->remaining = d.entries.size();
    }
    for (auto& entry : d.entries) {
        if (auto* err = std::get_if<json::object>(&entry)) {
            impl_->metrics.count("unknown", "invalid_request");
            Reply{session, nullptr, false, batch}.send(std::move(*err));
            continue;
        }
        impl_->dispatch(session, std::move(std::get<rpc::Request>(entry)), batch);
    }
}

}  // namespace sandflow::server
