// Named limits on untrusted input. Every reader checks its limit before allocating.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

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

namespace sandflow::limits {
// Runtime server (docs/protocol.md). Everything a WebSocket peer sends is bounded here.
inline constexpr std::size_t kMaxRpcMessageBytes = 16u << 20;  // one message, decompressed
inline constexpr std::size_t kMaxRpcDepth = 64;                // JSON nesting in one message
inline constexpr std::size_t kMaxRpcBatch = 256;               // requests in one batch
inline constexpr std::size_t kMaxRpcMethodBytes = 64;          // length of a method name
inline constexpr std::size_t kMaxRpcIdBytes = 256;             // length of a string id
inline constexpr std::size_t kMaxHttpHeaderBytes = 16u << 10;  // HTTP request head
inline constexpr std::size_t kMaxCallsPerConnection = 256;     // calls in flight, one socket
inline constexpr std::size_t kMaxCallsTotal = 8192;            // calls in flight, all sockets
inline constexpr std::size_t kMaxConnections = 1024;           // open sockets
inline constexpr std::size_t kMaxSendQueueBytes = 64u << 20;   // unsent bytes per socket
inline constexpr std::size_t kMaxActors = 4096;                // registered components
inline constexpr std::size_t kMaxInstances = 1024;             // live instances (sandboxes)
inline constexpr std::size_t kMaxInstanceIdBytes = 128;        // length of an instance_id
inline constexpr std::size_t kMaxCallIdBytes = 128;            // length of a process call_id
// A call that lost a compare-and-set to another server is run again on the reloaded
// state this many times at most (only while nothing of it was streamed).
inline constexpr int kMaxConflictRetries = 3;
// The C++ client over several servers (client::FailoverClient, `--runtime A,B`).
inline constexpr std::size_t kMaxRuntimeEndpoints = 64;  // servers in one list
// Tries of one call over the servers (each try after a lost server or a conflict).
inline constexpr int kMaxFailoverAttempts = 8;
// A server that was lost is not tried again for this long while another one is up.
inline constexpr std::chrono::milliseconds kFailoverRetryAfter{2'000};
inline constexpr std::size_t kMaxDiscoveredFiles = 10'000;  // files scanned under --actors
inline constexpr std::chrono::milliseconds kHandshakeTimeout{10'000};
inline constexpr std::chrono::milliseconds kIdleTimeout{60'000};  // no traffic, no pong
inline constexpr std::chrono::milliseconds kDrainGrace{10'000};   // SIGTERM: finish calls
}  // namespace sandflow::limits

namespace sandflow::limits {
// Flow engine (docs/flow.md). A graph file is untrusted input: every count is checked
// before the engine allocates for it.
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
}  // namespace sandflow::limits

namespace sandflow::limits {
// An instance's state (docs/actors.md#state). The worker checks them as the script writes,
// the host again before it commits (a worker is untrusted). The whole state travels in one
// frame to a new worker, so it stays well under kMaxFrameBytes.
inline constexpr std::size_t kMaxStateKeys = 10'000;                     // keys per instance
inline constexpr std::size_t kMaxStateKeyBytes = 256;                    // length of one key
inline constexpr std::size_t kMaxStateValueBytes = 1u << 20;             // one value, as JSON
inline constexpr std::size_t kMaxStateBytes = 8u << 20;                  // keys + values, as JSON
inline constexpr std::int64_t kMaxStateTtlMs = 10LL * 365 * 86'400'000;  // expire(): 10 years
// State stores (src/runtime/state/).
inline constexpr std::size_t kMaxCommitBatch = 256;               // commits in one group commit
inline constexpr std::chrono::milliseconds kStoreTimeout{2'000};  // a store's round trip
inline constexpr std::size_t kMaxRedisReplyBytes = 64u << 20;     // one reply from Redis
inline constexpr std::size_t kMaxRedisReplyDepth = 8;             // nesting of a reply
}  // namespace sandflow::limits
