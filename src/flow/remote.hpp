// Script nodes on remote Sandflow runtime servers, through the C++ client
// (include/sandflow/client.hpp). Each node gets its own instance (instance_id = the node
// id), loaded from the script's source sent inline, so the servers need no access to the
// graph's files.
// With one server, the nodes share one connection (as many as the server's limit of calls
// in flight per connection allows: limits::kMaxCallsPerConnection / calls_in_flight) and
// its I/O thread, and each node keeps up to `calls_in_flight` calls there: the
// server runs them one at a time in the order sent, so its worker finds the next call
// waiting instead of a round trip away. The network starts them on the I/O thread
// (ScriptRunner::executor), where their outputs arrive too; it must not block there
// (other nodes' answers come through it), so it bounds them by starting calls only
// while their consumers have room. A lost connection fails the calls
// in flight.
// With several servers (on one shared state store), each node's instance goes to one of
// them and moves to another when that one is lost, its unanswered call sent again with
// the same call_id (client::FailoverClient); there a node makes one call at a time (the
// store remembers a node's last call only), so each message's state update is applied
// once, and a node's streamed outputs block its own connection for back-pressure.
#pragma once

#include <memory>
#include <string>

#include "flow/script.hpp"

namespace sandflow::flow {

inline constexpr std::size_t kDefaultRemoteCallsInFlight = 8;
inline constexpr std::size_t kMaxRemoteCallsInFlight = 64;

struct RemoteOptions {
    std::string url;    // ws://HOST:PORT, or several separated by commas
    std::string token;  // sent as a bearer token when not empty
    // Wall clock per call; 0: the one each actor declares (limits.timeout_ms), else the
    // server's default.
    std::chrono::milliseconds call_timeout{0};
    // Calls in flight per node with one server (1 to kMaxRemoteCallsInFlight).
    std::size_t calls_in_flight = kDefaultRemoteCallsInFlight;
};

std::unique_ptr<ScriptHost> remote_host(RemoteOptions options);

}  // namespace sandflow::flow
