// The runtime server's transport: a Boost.Beast WebSocket server with plain HTTP on the
// same port. Beast stays inside ws_server.cpp (pimpl): including this header is cheap.
//
// - Upgrade requests need the bearer token when one is set (Authorization: Bearer T, or
//   ?token=T for browsers, which cannot set headers), compared in constant time; a request
//   with an Origin header needs that origin in allowed_origins (so a web page cannot drive
//   a server on the user's loopback).
// - Timeouts: the HTTP request and the WebSocket handshake must complete within
//   handshake_timeout; an open connection with no traffic is pinged at half idle_timeout
//   and closed when the peer stays silent for the rest.
// - One write in flight per socket; unsent bytes are capped per connection
//   (max_send_queue_bytes): a peer that reads too slowly is disconnected at once and holds
//   nobody else up.
// - permessage-deflate is offered; max_message_bytes applies to the decompressed size.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"
#include "rpc/event_loop.hpp"
#include "rpc/rpc_limits.hpp"
#include "rpc/transport.hpp"

namespace sandflow::rpc {

struct WsServerOptions {
    std::string host = "127.0.0.1";
    std::uint16_t port = limits::kDefaultPort;
    std::string token;                         // empty: no authentication
    std::vector<std::string> allowed_origins;  // "*" allows any
    std::size_t max_message_bytes = limits::kMaxRpcMessageBytes;
    std::size_t max_send_queue_bytes = limits::kMaxSendQueueBytes;
    std::size_t max_connections = limits::kMaxConnections;
    std::chrono::milliseconds handshake_timeout = limits::kHandshakeTimeout;
    std::chrono::milliseconds idle_timeout = limits::kIdleTimeout;
    bool deflate = true;
    // Threads serving connections, each with its own event loop; connections are spread
    // over them in turn as they are accepted.
    int io_threads = 1;
};

struct WsHandler {
    // Called on a transport thread; must not block (hand long work to other threads).
    std::function<void(const std::shared_ptr<Connection>&)> on_open;
    std::function<void(const std::shared_ptr<Connection>&, std::string_view text, bool binary)>
        on_message;
    std::function<void(const std::shared_ptr<Connection>&)> on_close;
    // GET and HEAD requests that are not upgrades. `authorized`: the token matched (or
    // none is set).
    std::function<HttpResponse(std::string_view target, bool authorized)> on_http;
};

struct WsCounters {
    std::atomic<std::uint64_t> accepted{0};          // WebSocket connections opened
    std::atomic<std::uint64_t> rejected_auth{0};     // 401 on upgrade
    std::atomic<std::uint64_t> rejected_origin{0};   // 403 on upgrade
    std::atomic<std::uint64_t> rejected_full{0};     // 503: max_connections reached
    std::atomic<std::uint64_t> slow_disconnects{0};  // send queue over its limit
    std::atomic<std::uint64_t> timeouts{0};          // handshake or idle timeout
    std::atomic<std::uint64_t> open{0};              // open WebSocket connections now
};

class WsServer {
  public:
    // Binds and listens at once (so the bound port is known and errors surface here), but
    // serves only after start().
    static Result<std::unique_ptr<WsServer>> listen(WsServerOptions options, WsHandler handler);
    ~WsServer();

    std::uint16_t port() const;
    void start();
    void stop_accepting();
    // Closes every open connection after its queued messages (close 1001 + reason).
    void close_all(std::string_view reason);
    // Stops the I/O threads (open sockets are dropped) and joins them.
    void stop();
    const WsCounters& counters() const;
    // The loop that runs on the server's I/O threads (the same one on every call), for work
    // that should stay on the thread of the connection it serves. It refers to the server:
    // its strands and watches must be gone before the server is destroyed.
    std::shared_ptr<EventLoop> event_loop();

    struct Impl;

  private:
    explicit WsServer(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace sandflow::rpc
