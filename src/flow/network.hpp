// The network executor: runs a graph whose nodes are native components or sandboxed
// script actors (docs/flow.md).
//
// - One component object or script instance per node.
// - Every connection gets its own copy of a packet: an outport with several connections
//   broadcasts (fan-out). Several connections into one inport merge.
// - Each node has a bounded inbound queue (one per inport with await_all_inports). A node
//   is not activated while a queue it feeds is full, and a script node's streamed output
//   waits (blocking the sandbox's output) until the queue it goes to has room: a slow
//   consumer slows its producers, end to end. The bound is soft by one activation's
//   output: a native activation takes at most limits::kMaxFlowBatch packets and its
//   outputs are queued whole. Connections inside a cycle are not bounded (a full cycle
//   would otherwise deadlock).
// - Native nodes run on a shared thread pool, one activation per node at a time. A script
//   node whose runner takes one call at a time (embedded) has its own thread, since a call
//   blocks. One whose runner takes several (a runtime server's) keeps up to that many in
//   flight while its consumers have room, started in input order on the runner's
//   executor (the client's I/O thread), else the pool; the server runs them one at a
//   time in that order, and their outputs leave in that order. Those outputs never block
//   (they arrive on a thread other nodes share), so such a node's consumer queue is soft
//   by its calls in flight times their outputs.
// - The run ends when every initial packet is consumed, every queue is empty, no call or
//   timer is in flight and flush() sent nothing more; or at the first error that no
//   `error` outport takes.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"
#include "core/json.hpp"
#include "flow/flow_limits.hpp"
#include "flow/graph.hpp"
#include "flow/script.hpp"
#include "sandflow/flow.hpp"

namespace sandflow::flow {

// One message hop, for --trace.
struct TraceEvent {
    std::chrono::microseconds time{0};  // since the run started
    std::string_view from_node, from_port;
    std::string_view to_node, to_port;  // to_node empty: an exported outport named to_port
    std::size_t size = 0;               // bytes of the packet as compact JSON
};

struct Progress {
    std::chrono::milliseconds elapsed{0};
    std::uint64_t packets = 0;  // delivered so far
    std::uint64_t calls = 0;    // activations and script calls so far
    std::size_t queued = 0;     // packets waiting now
};

struct NetworkOptions {
    std::size_t queue_capacity = limits::kDefaultFlowQueueCapacity;
    std::size_t threads = 0;  // native pool; 0: one per core, at least 2
    // A packet reached exported outport `port`. Called from any thread, one at a time.
    std::function<void(std::string_view port, const json::value& data)> on_output;
    // Every hop; null: no tracing (the packet size is then never computed).
    std::function<void(const TraceEvent&)> on_trace;
    // A node's log line (native log() or script output). Null: spdlog at info.
    std::function<void(std::string_view node, std::string_view text)> on_log;
    std::function<void(const Progress&)> on_progress;
    std::chrono::milliseconds progress_interval{2'000};
};

struct NodeStats {
    std::string id;
    std::string component;
    std::string kind;  // "native" or "script"
    std::uint64_t calls = 0;
    std::uint64_t errors = 0;
    std::uint64_t packets_in = 0;
    std::uint64_t packets_out = 0;
    std::chrono::microseconds busy{0};
    std::size_t queue_high_water = 0;      // most packets waiting in one of its queues at once
    std::size_t in_flight_high_water = 0;  // most script calls in flight at once
};

struct RunReport {
    std::vector<NodeStats> nodes;
    std::chrono::microseconds elapsed{0};
    std::uint64_t packets = 0;  // delivered on connections
    std::uint64_t outputs = 0;  // reached exported outports
    json::object to_json() const;
};

class Network {
  public:
    // Resolves every node (native registry first, then the script catalog), checks ports and
    // declared port types, makes native components and opens script instances. `scripts`
    // and `host` may be null when the graph has no script nodes. Errors name the graph
    // file and the place.
    static Result<std::unique_ptr<Network>> build(const Graph& graph, const Registry& registry,
                                                  const ScriptCatalog* scripts, ScriptHost* host,
                                                  NetworkOptions options);
    ~Network();
    Network(const Network&) = delete;
    Network& operator=(const Network&) = delete;

    // Queues a packet on an exported inport, before run().
    Result<void> send(std::string_view exported_inport, json::value data);
    // Runs to completion (see above). Call once.
    Result<RunReport> run();
    // Statistics so far (also after a failed run).
    RunReport report() const;

    struct Impl;

  private:
    explicit Network(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace sandflow::flow
