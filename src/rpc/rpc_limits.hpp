// Named limits of the JSON-RPC / WebSocket layer (docs/protocol.md). Everything a WebSocket
// peer sends is bounded here; the limits a client sees too are in include/sandflow/limits.hpp.
#pragma once

#include <chrono>
#include <cstddef>

#include "sandflow/limits.hpp"

namespace sandflow::limits {
inline constexpr std::size_t kMaxRpcDepth = 64;                // JSON nesting in one message
inline constexpr std::size_t kMaxRpcBatch = 256;               // requests in one batch
inline constexpr std::size_t kMaxRpcMethodBytes = 64;          // length of a method name
inline constexpr std::size_t kMaxRpcIdBytes = 256;             // length of a string id
inline constexpr std::size_t kMaxHttpHeaderBytes = 16u << 10;  // HTTP request head
inline constexpr std::size_t kMaxConnections = 1024;           // open sockets
inline constexpr std::size_t kMaxSendQueueBytes = 64u << 20;   // unsent bytes per socket
inline constexpr std::chrono::milliseconds kHandshakeTimeout{10'000};
inline constexpr std::chrono::milliseconds kIdleTimeout{60'000};  // no traffic, no pong
// A call that lost a compare-and-set to another server is run again on the reloaded
// state this many times at most (only while nothing of it was streamed).
inline constexpr int kMaxConflictRetries = 3;
}  // namespace sandflow::limits
