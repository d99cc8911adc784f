// Named limits on actor scripts (docs/actors.md): their source, the metadata read from it
// without running it, and the scripts found under a folder. Checked before allocating.
#pragma once

#include <cstddef>

namespace sandflow::limits {
inline constexpr std::size_t kMaxScriptBytes = 4u << 20;      // source file size
inline constexpr std::size_t kMaxLiteralDepth = 64;           // nesting inside a metadata literal
inline constexpr std::size_t kMaxMetadataBytes = 256u << 10;  // text of one metadata literal
inline constexpr std::size_t kMaxPorts = 256;                 // inports + outports each
// Traceback frames kept in a script error (the worker SDKs keep this many).
inline constexpr std::size_t kMaxTracebackFrames = 64;
inline constexpr std::size_t kMaxDiscoveredFiles = 10'000;  // files scanned under --actors
}  // namespace sandflow::limits
