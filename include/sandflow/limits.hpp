// Limits of the runtime protocol that a client sees (docs/protocol.md): the server enforces
// them, the client sizes its messages, calls and retries by them. Part of the public API.
#pragma once

#include <chrono>
#include <cstddef>

namespace sandflow::limits {
inline constexpr std::size_t kMaxRpcMessageBytes = 16u << 20;  // one message, decompressed
inline constexpr std::size_t kMaxCallIdBytes = 128;            // length of a process call_id
inline constexpr std::size_t kMaxCallsPerConnection = 256;     // calls in flight, one socket
inline constexpr unsigned kDefaultPort = 7777;                 // `serve` and `call` default
// The C++ client over several servers (client::FailoverClient, `--runtime A,B`).
inline constexpr std::size_t kMaxRuntimeEndpoints = 64;  // servers in one list
// Tries of one call over the servers (each try after a lost server or a conflict).
inline constexpr int kMaxFailoverAttempts = 8;
// A server that was lost is not tried again for this long while another one is up.
inline constexpr std::chrono::milliseconds kFailoverRetryAfter{2'000};
}  // namespace sandflow::limits
