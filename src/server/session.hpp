// One connection's side of the runtime server: the session of Beast's examples, over the
// transport's own (rpc/ws_server.cpp holds the socket, its one write in flight and its
// timeouts; this holds what the server keeps per connection). A session knows its calls in
// flight, for `cancel` and for the per-connection limit; a Reply says where a request's
// answer goes. What every session shares is the server's state (shared_state.hpp).
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/error.hpp"
#include "core/json.hpp"
#include "rpc/jsonrpc.hpp"
#include "rpc/transport.hpp"

namespace sandflow::server {

// A call that may be cancelled: by id on its connection, or by a shutdown.
struct CallState {
    std::mutex mu;
    bool running = false;
    bool cancelled = false;
    bool aborted = false;
    pid_t pid = -1;                   // the worker serving the running call
    std::uint64_t worker_serial = 0;  // its Worker::serial, to tell whether the call cost it

    // Kills the worker of a running call. The pid is only read while the call runs, and a
    // worker is reaped only by its own call, so the pid cannot have been reused yet.
    void kill_locked();
};

struct Session {
    std::shared_ptr<rpc::Connection> conn;
    std::mutex mu;
    std::map<std::string, std::shared_ptr<CallState>> calls;  // by encoded request id
    std::atomic<std::size_t> inflight{0};

    // Registers a call for `cancel` under its request id; "" when it cannot be cancelled
    // (a notification, or an id already in flight on this connection).
    std::string track(const json::value& id, bool notification,
                      const std::shared_ptr<CallState>& call);
    void untrack(const std::string& key);
    // The call in flight under this request id, or null.
    std::shared_ptr<CallState> find(const json::value& id);
    // The connection closed: its queued calls are not run (nobody would see their
    // results); running ones finish and commit their state.
    void cancel_queued();
    void append_calls(std::vector<std::shared_ptr<CallState>>& out);
};

// The responses of one JSON-RPC batch, sent together once the last is in.
struct Batch {
    std::mutex mu;
    json::array responses;
    std::size_t remaining = 0;
};

// Where a request's answer goes: the connection, a batch, or nowhere (a notification).
struct Reply {
    std::shared_ptr<Session> session;
    json::value id;
    bool notification = false;
    std::shared_ptr<Batch> batch;

    void send(json::object message) const;
    void ok(json::value result) const { send(rpc::make_result(id, std::move(result))); }
    void err(const Error& e) const { send(rpc::make_error(id, rpc::to_rpc_error(e))); }
    void err(const rpc::RpcError& e) const { send(rpc::make_error(id, e)); }
};

// The open sessions, by connection id.
class Sessions {
  public:
    void open(const std::shared_ptr<rpc::Connection>& conn);
    std::shared_ptr<Session> find(std::uint64_t conn_id) const;
    // Removes the session and returns it; null when it was not open.
    std::shared_ptr<Session> close(std::uint64_t conn_id);
    std::vector<std::shared_ptr<Session>> all() const;
    std::size_t size() const;
    // Lets go of the transport's connections.
    void clear();

  private:
    mutable std::mutex mu_;
    std::unordered_map<std::uint64_t, std::shared_ptr<Session>> by_id_;
};

}  // namespace sandflow::server
