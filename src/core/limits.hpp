// Named limits of the core layer's own readers (frames, JSON). Every reader checks its
// limit before allocating. Each layer names its own limits beside its code:
// actor/script_limits.hpp, runtime/runtime_limits.hpp, runtime/state/store_limits.hpp,
// rpc/rpc_limits.hpp, server/server_limits.hpp, flow/flow_limits.hpp, and the protocol
// limits a client sees in include/sandflow/limits.hpp.
#pragma once

#include <cstddef>

namespace sandflow::limits {

// Host <-> worker frame protocol (docs/worker-protocol.md).
inline constexpr std::size_t kMaxFrameBytes = 16u << 20;  // one frame's JSON payload
inline constexpr std::size_t kFrameHeaderBytes = 4;       // big-endian payload length

// Nesting of any JSON document Sandflow parses (frames, CLI arguments).
inline constexpr std::size_t kMaxJsonDepth = 256;

}  // namespace sandflow::limits
