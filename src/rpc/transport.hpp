// What the WebSocket transport gives the layers above it, without any Boost.Asio/Beast in
// sight: a connection to send text messages on, and small pure helpers (listen addresses,
// loopback detection, constant-time token comparison, URL parsing) that are unit-tested.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/error.hpp"

namespace sandflow::rpc {

// One open WebSocket connection. Thread-safe: any thread may send or close.
class Connection {
  public:
    virtual ~Connection() = default;
    virtual std::uint64_t id() const = 0;
    // Queues one text message. Messages are written in the order send() was called, one
    // write in flight at a time. Returns false when the connection is closing or closed,
    // or when this message would push the unsent bytes over the connection's limit: the
    // peer is then too slow a reader and is disconnected at once.
    virtual bool send(std::string text) = 0;
    // Closes after the queued messages are written (WebSocket close 1001 + reason).
    virtual void close(std::string_view reason) = 0;
    virtual bool is_open() const = 0;
    virtual std::string remote() const = 0;
};

struct HttpResponse {
    int status = 200;
    std::string content_type = "application/json";
    std::string body;
};

struct HostPort {
    std::string host;  // numeric address, without brackets, or "localhost"
    std::uint16_t port = 0;
};

// "127.0.0.1:7777", "[::1]:7777", "localhost:7777", ":7777" (= 127.0.0.1). Port 0 asks the
// system for a free port.
Result<HostPort> parse_listen(std::string_view text);
// True for 127.0.0.0/8, ::1, ::ffff:127.x and "localhost".
bool is_loopback_host(std::string_view host);
// Compares in time that depends only on the lengths, not on where the texts differ.
bool constant_time_equal(std::string_view a, std::string_view b);
// The value of `name` in the query of a request target ("/path?a=1&token=x%2By"),
// percent-decoded ("+" stays "+", as in a path); nullopt when absent or badly encoded.
std::optional<std::string> query_param(std::string_view target, std::string_view name);

struct WsUrl {
    std::string host;
    std::uint16_t port = 80;
    std::string target = "/";
};
// ws://host[:port][/target]; wss is not supported (put a TLS proxy in front).
Result<WsUrl> parse_ws_url(std::string_view url);

}  // namespace sandflow::rpc
