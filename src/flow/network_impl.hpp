// The network executor's inside (flow/network.hpp), shared by the two halves that build a
// network from a graph (network_build.cpp) and run it (network_run.cpp): the nodes, their
// queues and connections, and Network::Impl. Included by those files only.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <optional>

#include <boost/asio/thread_pool.hpp>

#include "flow/flow_limits.hpp"
#include "flow/network.hpp"

namespace sandflow::flow {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

struct RtNode;

// One inbound FIFO: (inport index, packet). `fill` mirrors items.size() for lock-free
// reads by producers deciding whether they may run.
struct Queue {
    std::deque<std::pair<std::uint32_t, json::value>> items;
    std::atomic<std::size_t> fill{0};
};

struct Edge {
    RtNode* target = nullptr;
    std::uint32_t inport = 0;
    Queue* queue = nullptr;
    bool gated = true;                 // false inside a cycle: never waits for room
    std::vector<json::value> staging;  // a native activation's outputs, pushed in one go
};

struct InPort {
    std::string name;
    std::string type = "any";
    bool connected = false;
};

struct OutPort {
    std::string name;
    std::string type = "any";
    std::vector<Edge> edges;
    std::vector<std::string> exports;  // graph outports fed by this port
};

class NativeCtx;

struct RtNode {
    std::string id, component;
    bool script = false;
    bool await_all = false;
    json::object config;
    std::vector<InPort> in;
    std::vector<OutPort> out;
    std::uint32_t error_port = 0;
    std::vector<std::unique_ptr<Queue>> queues;  // one, or one per inport with await_all
    std::vector<RtNode*> producers;              // nodes whose gated edges feed this one
    std::unique_ptr<Component> native;
    std::unique_ptr<ScriptRunner> runner;
    std::unique_ptr<asio::thread_pool> serial;  // a script node's own thread (window 1)
    // Calls a script node keeps in flight (ScriptRunner::max_in_flight). Above 1 the node
    // has no thread: its activations start calls on the runner's executor (else the native
    // pool), and each call's end comes back on the runner's thread (network_calls.cpp).
    std::size_t window = 1;
    ScriptRunner::Executor executor;  // where its activations run, when not on `serial`/the pool
    std::unique_ptr<NativeCtx> ctx;
    std::vector<std::pair<std::uint32_t, json::value>> batch;  // popped, being processed

    std::mutex mu;  // guards queues' items, scheduled, again, high_water, in_flight...
    bool scheduled = false;
    bool again = false;
    std::size_t high_water = 0;
    std::size_t in_flight = 0, in_flight_high_water = 0;  // calls started, not ended
    Clock::time_point active_since;                       // in_flight went above 0

    // The calls in flight, oldest first, with what they sent while an older one had not
    // ended: a node's outputs leave in the order of its calls. deliver_mu guards them and
    // is held while a call's outputs are pushed on, so that two ends do not interleave.
    struct Call {
        std::uint64_t seq = 0;
        std::string port;  // the inport, for an error
        std::optional<Result<json::object>> result;
        std::vector<std::pair<std::uint32_t, json::value>> streamed;
    };
    std::mutex deliver_mu;
    std::deque<Call> calls_in_flight;
    std::uint64_t calls_started = 0;  // under deliver_mu

    // send_after packets not yet delivered, by (due time, order sent): (outport, packet).
    // timer_mu guards them and is held while they are delivered, so that they leave in
    // that order although timer handlers run on any pool thread.
    using TimerKey = std::pair<Clock::time_point, std::uint64_t>;
    std::mutex timer_mu;
    std::map<TimerKey, std::pair<std::uint32_t, json::value>> timed;
    std::uint64_t timers_set = 0;

    std::atomic<std::uint64_t> calls{0}, errors{0}, packets_in{0}, packets_out{0}, busy_us{0};

    Queue& queue_for(std::uint32_t inport) { return await_all ? *queues[inport] : *queues[0]; }
    std::optional<std::uint32_t> find_out(std::string_view name) const {
        for (std::uint32_t i = 0; i < out.size(); ++i)
            if (out[i].name == name) return i;
        return std::nullopt;
    }
};

struct Network::Impl {
    std::string file;
    NetworkOptions opt;
    std::size_t cap = limits::kDefaultFlowQueueCapacity;
    std::vector<std::unique_ptr<RtNode>> nodes;
    std::vector<std::pair<std::string, std::pair<RtNode*, std::uint32_t>>> exported_in;

    std::atomic<bool> started{false}, stopped{false};
    // Activations posted or running, calls in flight (network_calls.cpp), plus timers:
    // zero means nothing can happen any more.
    std::atomic<std::int64_t> busy{0};
    std::atomic<std::int64_t> running{0};  // the same without the timers
    std::mutex done_mu;
    std::condition_variable done_cv;
    std::optional<Error> failure;  // under done_mu

    std::mutex room_mu;
    std::condition_variable room_cv;
    std::atomic<int> room_waiters{0};

    std::mutex output_mu;  // one on_output / on_trace / on_log at a time
    Clock::time_point t0 = Clock::now();
    std::atomic<std::uint64_t> packets{0}, outputs{0}, calls{0};
    bool ran = false;

    // Declared last: destroyed first, so no handler outlives what it refers to.
    std::unique_ptr<asio::thread_pool> pool;

    ~Impl();

    void shutdown();
    void stop_all();
    void fail_run(Error e);
    void log(const RtNode& n, std::string_view text);
    void release_busy(std::int64_t k = 1);
    // Under n.mu.
    bool runnable(RtNode& n) const;
    // No queue that n feeds (outside a cycle) is full.
    bool gate_open(const RtNode& n) const;
    void post(RtNode& n);
    void try_schedule(RtNode& n);
    void wake_producers(RtNode& n);
    void trace(const RtNode& from, const OutPort& op, const RtNode* to, std::string_view to_port,
               const json::value& v);
    void export_out(const RtNode& n, const OutPort& op, const json::value& v);
    // Appends packets to an edge's queue and schedules its node.
    void enqueue(Edge& e, json::value* first, json::value* last);
    void wait_for_room(const Edge& e);
    // One packet from node n's outport: a copy per connection, the last one moved.
    // `block`: wait for room on gated connections first (script outputs).
    void push(RtNode& n, std::uint32_t port, json::value v, bool block);
    // A native activation's staged outputs, grouped per connection.
    void deliver_staged(RtNode& n, std::vector<std::pair<std::uint32_t, json::value>>& staged);
    // Timers due together complete together, and their handlers may then run at once on
    // several pool threads; so a handler does not send its own packet but, under timer_mu,
    // every packet of the node due up to its own, in (due time, order sent). A packet never
    // overtakes one sent earlier with the same or an earlier due time: a delay node keeps
    // the order of its input, a timer's ticks come in order.
    void send_after(RtNode& n, std::uint32_t port, json::value v, std::chrono::milliseconds d);
    Error node_error(const RtNode& n, std::string_view port, const Error& cause);
    // An error goes to the node's `error` outport when anything listens there; else the run
    // stops. Returns the packet to send, if any.
    std::optional<json::value> route_error(RtNode& n, std::string_view port, const Error& cause);
    // Takes what one activation consumes: up to `max` packets, or up to `max` full sets
    // with await_all. Under n.mu. Returns true when a queue crossed below capacity.
    bool pop(RtNode& n, std::size_t max, std::vector<json::object>* sets);
    // Takes one call's inputs (the next packet, or full set with await_all): empty when
    // none is waiting. `port`: the inport it came on (none for a set); `crossed` as pop's.
    // Under n.mu.
    json::object pop_call(RtNode& n, std::string& port, bool& crossed);
    // The end of an activation: lets the node be scheduled again; `start` adds its time
    // to the node's busy time.
    void finish(RtNode& n, std::optional<Clock::time_point> start);
    // What a script call returned: its outputs pushed on, or its error routed.
    void deliver_result(RtNode& n, const std::string& port, Result<json::object> r, bool block);

    void activate_native(RtNode& n);
    void activate_script(RtNode& n);
    // A node with a window above 1 (network_calls.cpp): starts calls while it has input,
    // its consumers have room and fewer than `window` are in flight.
    void activate_calls(RtNode& n);
    void streamed(RtNode& n, std::uint64_t seq, std::string_view port, json::value v);
    void call_ended(RtNode& n, std::uint64_t seq, Result<json::object> r);
    bool flush_natives();
    Result<RunReport> run();
    RunReport report() const;
};

class NativeCtx final : public Context {
  public:
    NativeCtx(Network::Impl& net, RtNode& node) : net_(net), node_(node) {}

    std::string_view node_id() const override { return node_.id; }
    const json::object& config() const override { return node_.config; }
    std::string_view port() const override { return port_; }
    json::value& value() override { return value_; }
    json::object& inputs() override { return inputs_; }
    Result<void> send(std::string_view port, json::value v) override {
        auto idx = node_.find_out(port);
        if (!idx) return undeclared(port);
        out.emplace_back(*idx, std::move(v));
        return {};
    }
    Result<void> send_after(std::string_view port, json::value v,
                            std::chrono::milliseconds delay) override {
        auto idx = node_.find_out(port);
        if (!idx) return undeclared(port);
        net_.send_after(node_, *idx, std::move(v), delay);
        return {};
    }
    void again() override { again_ = true; }
    void log(std::string_view text) override { net_.log(node_, text); }

    void reset(std::string_view port, json::value v) {
        port_ = port;
        value_ = std::move(v);
    }

    std::vector<std::pair<std::uint32_t, json::value>> out;
    json::object inputs_;
    bool again_ = false;

  private:
    Result<void> undeclared(std::string_view port) const {
        return fail(Errc::invalid_argument, "component '" + node_.component +
                                                "' sent on outport '" + std::string(port) +
                                                "', which it does not declare");
    }
    Network::Impl& net_;
    RtNode& node_;
    std::string_view port_;
    json::value value_;
};

}  // namespace sandflow::flow
