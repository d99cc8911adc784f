// Named limits of the flow engine (docs/flow.md). A graph file is untrusted input: every
// count is checked before the engine allocates for it.
#pragma once

#include <cstddef>
#include <cstdint>

namespace sandflow::limits {
inline constexpr std::size_t kMaxGraphBytes = 16u << 20;        // graph file size
inline constexpr std::size_t kMaxGraphNodes = 10'000;           // processes
inline constexpr std::size_t kMaxGraphConnections = 100'000;    // connections + initial packets
inline constexpr std::size_t kMaxGraphExports = 1'000;          // exported inports + outports
inline constexpr std::size_t kMaxGraphGroups = 1'000;           // groups
inline constexpr std::size_t kMaxGraphIdBytes = 256;            // a node id, port or component name
inline constexpr std::size_t kMaxScriptNodes = 256;             // sandboxed nodes in one graph
inline constexpr std::size_t kDefaultFlowQueueCapacity = 64;    // packets queued per inport
inline constexpr std::size_t kMaxFlowQueueCapacity = 1u << 20;  // --queue-capacity
inline constexpr std::size_t kMaxFlowBatch = 64;                // packets per native activation
// Configuration of the standard components (core/Join, core/Delay, core/Timer).
inline constexpr std::int64_t kMaxComponentWaitMs = 3'600'000;  // delay ms, timer interval
inline constexpr std::int64_t kMaxComponentCount = 1'000'000;   // join size, timer count
}  // namespace sandflow::limits
