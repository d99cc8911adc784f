// Named limits of the runtime server (docs/protocol.md): what one server holds and what the
// params of its methods may carry. The transport's own limits are in rpc/rpc_limits.hpp.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

#include "rpc/rpc_limits.hpp"

namespace sandflow::limits {
inline constexpr std::size_t kMaxCallsTotal = 8192;              // calls in flight, all sockets
inline constexpr std::size_t kMaxActors = 4096;                  // registered components
inline constexpr std::size_t kMaxInstances = 1024;               // live instances (sandboxes)
inline constexpr std::size_t kMaxInstanceIdBytes = 128;          // length of an instance_id
inline constexpr std::size_t kMaxActorIdBytes = 256;             // length of an actor_id
inline constexpr std::size_t kMaxFilePathBytes = 4096;           // load: file_path
inline constexpr std::size_t kMaxFilenameBytes = 256;            // load: filename of a source
inline constexpr std::size_t kMaxLanguageBytes = 32;             // load: language of a source
inline constexpr std::int64_t kMaxTimeoutMs = 3'600'000;         // process: params.timeout_ms
inline constexpr std::chrono::milliseconds kDrainGrace{10'000};  // SIGTERM: finish calls
inline constexpr std::size_t kDefaultBlockingThreads = 8;        // start, load, unload
// Two, so that a large message being parsed or encoded for one connection (calls run on
// these threads) leaves another thread for the rest.
inline constexpr int kDefaultIoThreads = 2;
}  // namespace sandflow::limits
