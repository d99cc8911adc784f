// Named limits on untrusted input. Every reader checks its limit before allocating.
#pragma once

#include <chrono>
#include <cstddef>

namespace sandflow::limits {

// Host <-> worker frame protocol (docs/worker-protocol.md).
inline constexpr std::size_t kMaxFrameBytes = 16u << 20;  // one frame's JSON payload
inline constexpr std::size_t kFrameHeaderBytes = 4;       // big-endian payload length

// Actor scripts.
inline constexpr std::size_t kMaxScriptBytes = 4u << 20;      // source file size
inline constexpr std::size_t kMaxLiteralDepth = 64;           // nesting inside a metadata literal
inline constexpr std::size_t kMaxMetadataBytes = 256u << 10;  // text of one metadata literal
inline constexpr std::size_t kMaxPorts = 256;                 // inports + outports each

// Worker output captured from the script's stdout/stderr.
inline constexpr std::size_t kMaxLogLineBytes = 8u << 10;     // longer lines are cut
inline constexpr std::size_t kMaxLogBytesPerCall = 1u << 20;  // further log text is dropped

// Wall-clock defaults.
inline constexpr std::chrono::milliseconds kDefaultCallTimeout{30'000};
inline constexpr std::chrono::milliseconds kWorkerStartTimeout{10'000};

// Traceback frames kept in a script error.
inline constexpr std::size_t kMaxTracebackFrames = 64;

}  // namespace sandflow::limits

namespace sandflow::limits {
// Nesting of any JSON document Sandflow parses (frames, CLI arguments).
inline constexpr std::size_t kMaxJsonDepth = 256;
}  // namespace sandflow::limits
