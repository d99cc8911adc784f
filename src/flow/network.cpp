// The network executor (flow/network.hpp). Asio appears only in this file: the native
// thread pool, one single-thread pool per script node, and the timers of send_after.
#include "flow/network.hpp"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <set>

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>

#include "core/log.hpp"

namespace sandflow::flow {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

namespace {

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
    std::unique_ptr<asio::thread_pool> serial;  // a script node's own thread
    std::unique_ptr<NativeCtx> ctx;
    std::vector<std::pair<std::uint32_t, json::value>> batch;  // popped, being processed

    std::mutex mu;  // guards queues' items, scheduled, again, high_water
    bool scheduled = false;
    bool again = false;
    std::size_t high_water = 0;

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

bool type_compatible(std::string_view a, std::string_view b) {
    return a == "any" || b == "any" || a == b;
}

bool value_has_type(const json::value& v, std::string_view type) {
    if (type == "integer") return v.is_int64() || v.is_uint64();
    if (type == "float") return v.is_number();
    if (type == "boolean") return v.is_bool();
    if (type == "string") return v.is_string();
    if (type == "object") return v.is_object();
    if (type == "array") return v.is_array();
    return true;
}

std::string join_names(const std::vector<std::string>& names, std::size_t max = 20) {
    std::string s;
    for (std::size_t i = 0; i < names.size() && i < max; ++i) s += (i ? ", " : "") + names[i];
    if (names.size() > max) s += ", ...";
    return s.empty() ? "(none)" : s;
}

}  // namespace

struct Network::Impl {
    std::string file;
    NetworkOptions opt;
    std::size_t cap = limits::kDefaultFlowQueueCapacity;
    std::vector<std::unique_ptr<RtNode>> nodes;
    std::vector<std::pair<std::string, std::pair<RtNode*, std::uint32_t>>> exported_in;

    std::atomic<bool> started{false}, stopped{false};
    // Activations posted or running, plus timers: zero means nothing can happen any more.
    std::atomic<std::int64_t> busy{0};
    std::atomic<std::int64_t> running{0};  // activations only
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

    ~Impl() { shutdown(); }

    void shutdown() {
        stop_all();
        if (pool) pool->join();
        for (auto& n : nodes)
            if (n->serial) n->serial->join();
    }

    void stop_all() {
        stopped = true;
        { std::lock_guard l(room_mu); }
        room_cv.notify_all();
        if (pool) pool->stop();
        for (auto& n : nodes)
            if (n->serial) n->serial->stop();
    }

    void fail_run(Error e) {
        {
            std::lock_guard l(done_mu);
            if (!failure) failure = std::move(e);
            stopped = true;
        }
        { std::lock_guard l(room_mu); }
        room_cv.notify_all();
        done_cv.notify_all();
    }

    void log(const RtNode& n, std::string_view text) {
        if (opt.on_log) {
            std::lock_guard l(output_mu);
            opt.on_log(n.id, text);
        } else {
            spdlog::info("[{}] {}", n.id, text);
        }
    }

    void release_busy(std::int64_t k = 1) {
        if (busy.fetch_sub(k) == k) {
            { std::lock_guard l(done_mu); }
            done_cv.notify_all();
        }
    }

    // Under n.mu.
    bool runnable(RtNode& n) const {
        if (stopped || !started || n.scheduled) return false;
        bool has = n.again;
        if (!has) {
            if (!n.await_all) {
                has = !n.queues[0]->items.empty();
            } else {
                bool any = false;
                has = true;
                for (std::size_t i = 0; i < n.in.size(); ++i) {
                    if (!n.in[i].connected) continue;
                    any = true;
                    if (n.queues[i]->items.empty()) has = false;
                }
                has = has && any;
            }
        }
        return has && gate_open(n);
    }

    // No queue that n feeds (outside a cycle) is full.
    bool gate_open(const RtNode& n) const {
        for (const auto& op : n.out)
            for (const auto& e : op.edges)
                if (e.gated && e.queue->fill.load() >= cap) return false;
        return true;
    }

    void post(RtNode& n) {
        busy.fetch_add(1);
        running.fetch_add(1);
        auto& ex = n.script ? *n.serial : *pool;
        asio::post(ex, [this, &n] {
            if (n.script)
                activate_script(n);
            else
                activate_native(n);
        });
    }

    void try_schedule(RtNode& n) {
        {
            std::lock_guard l(n.mu);
            if (!runnable(n)) return;
            n.scheduled = true;
        }
        post(n);
    }

    void wake_producers(RtNode& n) {
        if (room_waiters.load() > 0) {
            { std::lock_guard l(room_mu); }
            room_cv.notify_all();
        }
        for (RtNode* p : n.producers) try_schedule(*p);
    }

    void trace(const RtNode& from, const OutPort& op, const RtNode* to, std::string_view to_port,
               const json::value& v) {
        if (!opt.on_trace) return;
        TraceEvent ev;
        ev.time = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0);
        ev.from_node = from.id;
        ev.from_port = op.name;
        ev.to_node = to ? std::string_view(to->id) : std::string_view();
        ev.to_port = to_port;
        ev.size = to_json_string(v).size();
        std::lock_guard l(output_mu);
        opt.on_trace(ev);
    }

    void export_out(const RtNode& n, const OutPort& op, const json::value& v) {
        for (const auto& name : op.exports) {
            trace(n, op, nullptr, name, v);
            outputs.fetch_add(1);
            if (opt.on_output) {
                std::lock_guard l(output_mu);
                opt.on_output(name, v);
            }
        }
    }

    // Appends packets to an edge's queue and schedules its node.
    template <class It>
    void enqueue(Edge& e, It first, It last) {
        RtNode& t = *e.target;
        const auto k = static_cast<std::size_t>(std::distance(first, last));
        if (k == 0) return;
        packets.fetch_add(k);
        {
            std::lock_guard l(t.mu);
            for (auto it = first; it != last; ++it)
                e.queue->items.emplace_back(e.inport, std::move(*it));
            const std::size_t f = e.queue->items.size();
            e.queue->fill.store(f);
            t.high_water = std::max(t.high_water, f);
            if (!runnable(t)) return;
            t.scheduled = true;
        }
        post(t);
    }

    void wait_for_room(const Edge& e) {
        if (!e.gated || e.queue->fill.load() < cap) return;
        room_waiters.fetch_add(1);
        {
            std::unique_lock l(room_mu);
            room_cv.wait(l, [&] { return stopped.load() || e.queue->fill.load() < cap; });
        }
        room_waiters.fetch_sub(1);
    }

    // One packet from node n's outport: a copy per connection, the last one moved.
    // `block`: wait for room on gated connections first (script outputs).
    void push(RtNode& n, std::uint32_t port, json::value v, bool block) {
        if (stopped) return;
        OutPort& op = n.out[port];
        n.packets_out.fetch_add(1);
        export_out(n, op, v);
        for (std::size_t i = 0; i < op.edges.size(); ++i) {
            Edge& e = op.edges[i];
            if (block) wait_for_room(e);
            if (stopped) return;
            json::value copy = i + 1 == op.edges.size() ? std::move(v) : json::value(v);
            trace(n, op, e.target, e.target->in[e.inport].name, copy);
            json::value* p = &copy;
            enqueue(e, p, p + 1);
        }
    }

    // A native activation's staged outputs, grouped per connection.
    void deliver_staged(RtNode& n, std::vector<std::pair<std::uint32_t, json::value>>& staged) {
        if (staged.empty()) return;
        for (auto& [port, v] : staged) {
            OutPort& op = n.out[port];
            n.packets_out.fetch_add(1);
            export_out(n, op, v);
            for (std::size_t i = 0; i < op.edges.size(); ++i) {
                Edge& e = op.edges[i];
                trace(n, op, e.target, e.target->in[e.inport].name, v);
                e.staging.push_back(i + 1 == op.edges.size() ? std::move(v) : json::value(v));
            }
        }
        staged.clear();
        for (auto& op : n.out)
            for (auto& e : op.edges) {
                if (e.staging.empty()) continue;
                if (!stopped) enqueue(e, e.staging.begin(), e.staging.end());
                e.staging.clear();
            }
    }

    // Timers due together complete together, and their handlers may then run at once on
    // several pool threads; so a handler does not send its own packet but, under timer_mu,
    // every packet of the node due up to its own, in (due time, order sent). A packet never
    // overtakes one sent earlier with the same or an earlier due time: a delay node keeps
    // the order of its input, a timer's ticks come in order.
    void send_after(RtNode& n, std::uint32_t port, json::value v, std::chrono::milliseconds d) {
        busy.fetch_add(1);
        RtNode::TimerKey key{Clock::now() + d, 0};
        {
            std::lock_guard l(n.timer_mu);
            key.second = n.timers_set++;
            n.timed.emplace(key, std::pair{port, std::move(v)});
        }
        auto t = std::make_shared<asio::steady_timer>(*pool, key.first);
        t->async_wait([this, t, &n, key](const boost::system::error_code&) {
            {
                std::lock_guard l(n.timer_mu);
                while (!n.timed.empty() && n.timed.begin()->first <= key) {
                    auto due = n.timed.extract(n.timed.begin());
                    if (!stopped)
                        push(n, due.mapped().first, std::move(due.mapped().second), false);
                }
            }
            release_busy();
        });
    }

    Error node_error(const RtNode& n, std::string_view port, const Error& cause) {
        std::string msg = "node '" + n.id + "' (" + n.component + ")";
        if (!port.empty())
            msg += " failed on inport '" + std::string(port) + "'";
        else
            msg += " failed";
        msg += ": " + cause.message;
        return Error(cause.code, std::move(msg),
                     {{"node", n.id},
                      {"component", n.component},
                      {"port", std::string(port)},
                      {"cause", cause.to_json()}});
    }

    // An error goes to the node's `error` outport when anything listens there; else the run
    // stops. Returns the packet to send, if any.
    std::optional<json::value> route_error(RtNode& n, std::string_view port, const Error& cause) {
        n.errors.fetch_add(1);
        const OutPort& ep = n.out[n.error_port];
        if (ep.edges.empty() && ep.exports.empty()) {
            fail_run(node_error(n, port, cause));
            return std::nullopt;
        }
        return json::value(json::object{{"node", n.id},
                                        {"component", n.component},
                                        {"port", std::string(port)},
                                        {"error", cause.to_json()}});
    }

    // Takes what one activation consumes: up to `max` packets, or up to `max` full sets
    // with await_all. Under n.mu. Returns true when a queue crossed below capacity.
    bool pop(RtNode& n, std::size_t max, std::vector<json::object>* sets) {
        bool crossed = false;
        if (!n.await_all) {
            Queue& q = *n.queues[0];
            const std::size_t before = q.items.size();
            const std::size_t k = std::min(max, before);
            for (std::size_t i = 0; i < k; ++i) {
                n.batch.push_back(std::move(q.items.front()));
                q.items.pop_front();
            }
            q.fill.store(q.items.size());
            crossed = before >= cap && q.items.size() < cap;
            n.packets_in.fetch_add(k);
            return crossed;
        }
        for (std::size_t s = 0; s < max; ++s) {
            bool full = true;
            for (std::size_t i = 0; i < n.in.size(); ++i)
                if (n.in[i].connected && n.queues[i]->items.empty()) full = false;
            if (!full) break;
            json::object set;
            for (std::size_t i = 0; i < n.in.size(); ++i) {
                if (!n.in[i].connected) continue;
                Queue& q = *n.queues[i];
                const std::size_t before = q.items.size();
                set[n.in[i].name] = std::move(q.items.front().second);
                q.items.pop_front();
                q.fill.store(q.items.size());
                crossed = crossed || (before >= cap && q.items.size() < cap);
                n.packets_in.fetch_add(1);
            }
            sets->push_back(std::move(set));
        }
        return crossed;
    }

    void finish(RtNode& n, Clock::time_point start) {
        n.busy_us.fetch_add(static_cast<std::uint64_t>(
            std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count()));
        {
            std::lock_guard l(n.mu);
            n.scheduled = false;
        }
        try_schedule(n);
        running.fetch_sub(1);
        release_busy();
    }

    void activate_native(RtNode& n);
    void activate_script(RtNode& n);
    bool flush_natives();
    Result<RunReport> run();
    RunReport report() const;
};

namespace {

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

}  // namespace

void Network::Impl::activate_native(RtNode& n) {
    const auto start = Clock::now();
    bool again = false, crossed = false;
    std::vector<json::object> sets;
    {
        std::lock_guard l(n.mu);
        again = n.again;
        n.again = false;
        crossed = pop(n, limits::kMaxFlowBatch, &sets);
    }
    if (crossed) wake_producers(n);
    NativeCtx& ctx = *n.ctx;
    auto run_one = [&](std::string_view port) {
        n.calls.fetch_add(1);
        calls.fetch_add(1);
        auto r = n.native->process(ctx);
        if (!r) {
            if (auto pkt = route_error(n, port, r.error()))
                ctx.out.emplace_back(n.error_port, std::move(*pkt));
        }
    };
    if (!stopped) {
        if (again) {
            ctx.reset({}, nullptr);
            run_one({});
        }
        for (auto& [port, v] : n.batch) {
            if (stopped) break;
            ctx.reset(n.in[port].name, std::move(v));
            run_one(n.in[port].name);
        }
        for (auto& set : sets) {
            if (stopped) break;
            ctx.reset({}, nullptr);
            ctx.inputs_ = std::move(set);
            run_one({});
        }
        ctx.inputs_.clear();
        ctx.reset({}, nullptr);
        deliver_staged(n, ctx.out);
    }
    ctx.out.clear();
    n.batch.clear();
    if (ctx.again_) {
        ctx.again_ = false;
        std::lock_guard l(n.mu);
        n.again = true;
    }
    finish(n, start);
}

void Network::Impl::activate_script(RtNode& n) {
    const auto start = Clock::now();
    auto sink = [this, &n](std::string_view out_port, json::value v) {
        auto idx = n.find_out(out_port);
        if (!idx) {
            log(n, "output on undeclared outport '" + std::string(out_port) + "' dropped");
            return;
        }
        push(n, *idx, std::move(v), true);
    };
    // Calls go on while input is waiting and the consumers have room (up to a batch), so
    // that a busy node's thread does not sleep and wake between calls.
    for (std::size_t k = 0; k < limits::kMaxFlowBatch && !stopped; ++k) {
        std::vector<json::object> sets;
        bool crossed = false;
        {
            std::lock_guard l(n.mu);
            if (k > 0 && !gate_open(n)) break;
            crossed = pop(n, 1, &sets);
        }
        if (crossed) wake_producers(n);
        json::object inputs;
        std::string port;
        if (!n.batch.empty()) {
            port = n.in[n.batch[0].first].name;
            inputs[port] = std::move(n.batch[0].second);
            n.batch.clear();
        } else if (!sets.empty()) {
            inputs = std::move(sets[0]);
        }
        if (inputs.empty()) break;
        n.calls.fetch_add(1);
        calls.fetch_add(1);
        auto r = n.runner->call(std::move(inputs), n.config, sink);
        if (!r) {
            if (auto pkt = route_error(n, port, r.error()))
                push(n, n.error_port, std::move(*pkt), true);
        } else {
            // A returned object's keys become outputs; keys that are not outports (Reflow
            // scripts return {"status": "completed"}) are not messages.
            for (auto& [key, v] : *r)
                if (auto idx = n.find_out(key)) push(n, *idx, std::move(v), true);
        }
    }
    finish(n, start);
}

// True when a flush sent a packet, set a timer or asked to be called again: then the
// network is not idle any more.
bool Network::Impl::flush_natives() {
    // Nothing runs now: stop scheduling while the components flush, so that no activation
    // of a node overlaps its flush.
    started = false;
    const std::uint64_t packets_before = packets.load(), outputs_before = outputs.load();
    bool woke = false;
    for (auto& np : nodes) {
        RtNode& n = *np;
        if (!n.native || stopped) continue;
        NativeCtx& ctx = *n.ctx;
        ctx.reset({}, nullptr);
        auto r = n.native->flush(ctx);
        if (!r) {
            if (auto pkt = route_error(n, {}, r.error()))
                ctx.out.emplace_back(n.error_port, std::move(*pkt));
        }
        deliver_staged(n, ctx.out);
        ctx.out.clear();
        if (ctx.again_) {
            ctx.again_ = false;
            woke = true;
            std::lock_guard l(n.mu);
            n.again = true;
        }
    }
    woke = woke || packets.load() != packets_before || outputs.load() != outputs_before ||
           busy.load() != 0;
    started = true;
    for (auto& n : nodes) try_schedule(*n);
    return woke;
}

Result<RunReport> Network::Impl::run() {
    if (ran) return fail(Errc::invalid_argument, "a network runs once");
    ran = true;
    t0 = Clock::now();
    started = true;
    for (auto& n : nodes) try_schedule(*n);
    auto last_progress = t0;
    for (;;) {
        {
            std::unique_lock l(done_mu);
            done_cv.wait_for(l, opt.progress_interval,
                             [&] { return stopped.load() || busy.load() == 0; });
        }
        if (stopped) break;
        if (busy.load() != 0) {
            const auto now = Clock::now();
            if (opt.on_progress && now - last_progress >= opt.progress_interval) {
                last_progress = now;
                Progress p;
                p.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(now - t0);
                p.packets = packets.load();
                p.calls = calls.load();
                for (const auto& n : nodes)
                    for (const auto& q : n->queues) p.queued += q->fill.load();
                opt.on_progress(p);
            }
            continue;
        }
        // Quiescent: let components that hold packets back send them. What they send can
        // reach another component that holds packets back (join into join), so the run goes
        // on until a whole pass of flushes sends nothing. That is judged by what the pass
        // sent, not by `busy` afterwards: the activations it started may be over already.
        if (flush_natives() || busy.load() != 0 || stopped) continue;
        // Still idle. Packets left now can never be taken: an await_all node is missing a
        // packet on another inport.
        for (auto& np : nodes) {
            RtNode& n = *np;
            std::lock_guard l(n.mu);
            for (std::size_t i = 0; i < n.queues.size(); ++i) {
                const std::size_t left = n.queues[i]->items.size();
                if (left == 0) continue;
                spdlog::warn(
                    "node '{}': {} packet(s) on inport '{}' never formed a full set of "
                    "inputs (await_all_inports) and were dropped",
                    n.id, left, n.await_all ? n.in[i].name : std::string("*"));
                n.queues[i]->items.clear();
                n.queues[i]->fill.store(0);
            }
        }
        // A generator that was paced by those queues has room again: let it finish.
        bool pending_again = false;
        for (auto& np : nodes) {
            std::lock_guard l(np->mu);
            pending_again = pending_again || np->again;
        }
        if (!pending_again) break;
        for (auto& n : nodes) try_schedule(*n);
    }
    if (stopped) {
        // Calls in flight finish (a script call cannot be interrupted safely from here);
        // nothing new starts.
        std::unique_lock l(done_mu);
        done_cv.wait(l, [&] { return running.load() == 0; });
    }
    stop_all();
    if (pool) pool->join();
    for (auto& n : nodes)
        if (n->serial) n->serial->join();
    std::lock_guard l(done_mu);
    if (failure) return tl::unexpected(*failure);
    return report();
}

RunReport Network::Impl::report() const {
    RunReport r;
    r.elapsed = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0);
    r.packets = packets.load();
    r.outputs = outputs.load();
    for (const auto& np : nodes) {
        const RtNode& n = *np;
        NodeStats s;
        s.id = n.id;
        s.component = n.component;
        s.kind = n.script ? "script" : "native";
        s.calls = n.calls.load();
        s.errors = n.errors.load();
        s.packets_in = n.packets_in.load();
        s.packets_out = n.packets_out.load();
        s.busy = std::chrono::microseconds(n.busy_us.load());
        {
            std::lock_guard l(const_cast<RtNode&>(n).mu);
            s.queue_high_water = n.high_water;
        }
        r.nodes.push_back(std::move(s));
    }
    return r;
}

json::object RunReport::to_json() const {
    json::array ns;
    for (const auto& n : nodes)
        ns.push_back(json::object{{"node", n.id},
                                  {"component", n.component},
                                  {"kind", n.kind},
                                  {"calls", n.calls},
                                  {"errors", n.errors},
                                  {"in", n.packets_in},
                                  {"out", n.packets_out},
                                  {"busy_us", n.busy.count()},
                                  {"queue_high_water", n.queue_high_water}});
    return {{"elapsed_us", elapsed.count()},
            {"packets", packets},
            {"outputs", outputs},
            {"nodes", std::move(ns)}};
}

namespace {

struct Builder {
    const Graph& g;
    const Registry& registry;
    const ScriptCatalog* scripts;
    ScriptHost* host;
    Network::Impl& net;

    Error err(std::string_view where, std::string_view what) const {
        return graph_error(g.file, where, what);
    }

    // Index of the port called `name` (compared as the graph says: caseSensitive) in `ports`.
    template <class Port>
    std::optional<std::uint32_t> find_port(const std::vector<Port>& ports,
                                           std::string_view name) const {
        for (std::uint32_t i = 0; i < ports.size(); ++i)
            if (same_port(g, ports[i].name, name)) return i;
        return std::nullopt;
    }
    template <class Port>
    static std::string port_names(const std::vector<Port>& ps) {
        std::vector<std::string> v;
        for (const auto& p : ps) v.push_back(p.name);
        return join_names(v);
    }

    // The port of node n that `ref` names among `ports`, checked against the type the graph
    // declares for it. `kind`: "inport" or "outport"; `verb`: what such a port does with
    // packets of its type ("takes", "sends").
    template <class Port>
    Result<std::uint32_t> port(const RtNode& n, const std::vector<Port>& ports, const PortRef& ref,
                               const std::string& where, const std::string& kind,
                               const std::string& verb) {
        auto i = find_port(ports, ref.port);
        if (!i)
            return tl::unexpected(err(where + ".portName", "node '" + n.id + "' (" + n.component +
                                                               ") has no " + kind + " '" +
                                                               ref.port + "'; its " + kind +
                                                               "s: " + port_names(ports)));
        const auto& declared = ports[*i].type;
        if (!type_compatible(ref.type, declared))
            return tl::unexpected(
                err(where + ".portType", "port types do not match: the graph declares '" +
                                             ref.type + "' but " + kind + " '" + n.id + "." +
                                             ports[*i].name + "' " + verb + " '" + declared + "'"));
        return *i;
    }
    Result<std::uint32_t> in_port(const RtNode& n, const PortRef& ref, const std::string& where) {
        return port(n, n.in, ref, where, "inport", "takes");
    }
    Result<std::uint32_t> out_port(const RtNode& n, const PortRef& ref, const std::string& where) {
        return port(n, n.out, ref, where, "outport", "sends");
    }

    Result<void> make_nodes() {
        std::size_t script_nodes = 0;
        net.nodes.reserve(g.nodes.size());
        for (const auto& gn : g.nodes) {
            auto n = std::make_unique<RtNode>();
            n->id = gn.id;
            n->component = gn.component;
            n->config = gn.config;
            const std::string where = "processes." + gn.id;
            if (const auto* spec = registry.find(gn.component)) {
                for (const auto& p : spec->inports) n->in.push_back({p.name, p.type, false});
                for (const auto& p : spec->outports) n->out.push_back({p.name, p.type, {}, {}});
                n->await_all = spec->await_all_inports;
                auto c = spec->make(gn.config);
                if (!c)
                    return tl::unexpected(
                        err(where + ".metadata",
                            "node '" + gn.id + "' (" + gn.component + "): " + c.error().message));
                n->native = std::move(*c);
            } else if (const ScriptActor* a = scripts ? scripts->find(gn.component) : nullptr) {
                if (!host)
                    return tl::unexpected(err(
                        where + ".component",
                        "script actor '" + gn.component + "' needs a runtime (none was given)"));
                if (++script_nodes > limits::kMaxScriptNodes)
                    return tl::unexpected(graph_error(g.file, where,
                                                      "more than " +
                                                          std::to_string(limits::kMaxScriptNodes) +
                                                          " script nodes (one sandbox each)",
                                                      Errc::limit_exceeded));
                n->script = true;
                n->await_all = a->metadata.await_all_inports;
                for (const auto& p : a->metadata.inports) n->in.push_back({p.name, p.type, false});
                for (const auto& p : a->metadata.outports)
                    n->out.push_back({p.name, p.type, {}, {}});
            } else {
                std::string what = "unknown component '" + gn.component +
                                   "'; native components: " + join_names(registry.names());
                if (scripts) {
                    std::vector<std::string> dirs;
                    for (const auto& d : scripts->dirs()) dirs.push_back(d.string());
                    what += "; script actors under " + join_names(dirs) + ": " +
                            join_names(scripts->names());
                }
                return tl::unexpected(err(where + ".component", what));
            }
            if (n->in.size() > limits::kMaxPorts || n->out.size() > limits::kMaxPorts)
                return tl::unexpected(err(where, "has too many ports"));
            // Every node has an `error` outport: where its failures go when connected.
            auto ep = find_port(n->out, "error");
            if (!ep) {
                n->out.push_back({"error", "object", {}, {}});
                ep = static_cast<std::uint32_t>(n->out.size() - 1);
            }
            n->error_port = *ep;
            net.nodes.push_back(std::move(n));
        }
        return {};
    }

    RtNode* node(std::string_view id) {
        for (auto& n : net.nodes)
            if (n->id == id) return n.get();
        return nullptr;
    }

    struct Initial {
        RtNode* node;
        std::uint32_t port;
        json::value data;
    };

    Result<std::vector<Initial>> connect() {
        std::vector<Initial> initial;
        for (const auto& c : g.connections) {
            const std::string where = "connections[" + std::to_string(c.index) + "]";
            RtNode* to = node(c.to.node);
            auto ti = in_port(*to, c.to, where + ".to");
            if (!ti) return tl::unexpected(ti.error());
            to->in[*ti].connected = true;
            if (!c.from) {
                const auto& type = to->in[*ti].type;
                const auto& want = type == "any" ? c.to.type : type;
                if (!value_has_type(*c.data, want))
                    return tl::unexpected(err(where + ".data", "initial packet is not of type '" +
                                                                   want + "' that inport '" +
                                                                   to->id + "." + to->in[*ti].name +
                                                                   "' takes"));
                initial.push_back({to, *ti, *c.data});
                continue;
            }
            RtNode* from = node(c.from->node);
            auto fo = out_port(*from, *c.from, where + ".from");
            if (!fo) return tl::unexpected(fo.error());
            const auto& ft = c.from->type != "any" ? c.from->type : from->out[*fo].type;
            const auto& tt = c.to.type != "any" ? c.to.type : to->in[*ti].type;
            if (!type_compatible(ft, tt))
                return tl::unexpected(err(where, "port types do not match: '" + from->id + "." +
                                                     from->out[*fo].name + "' sends '" + ft +
                                                     "' but '" + to->id + "." + to->in[*ti].name +
                                                     "' takes '" + tt + "'"));
            Edge e;
            e.target = to;
            e.inport = *ti;
            from->out[*fo].edges.push_back(std::move(e));
        }
        for (const auto& ex : g.inports) {
            const std::string where = "inports." + ex.name;
            RtNode* n = node(ex.target.node);
            auto i = in_port(*n, ex.target, where);
            if (!i) return tl::unexpected(i.error());
            n->in[*i].connected = true;
            net.exported_in.push_back({ex.name, {n, *i}});
        }
        for (const auto& ex : g.outports) {
            const std::string where = "outports." + ex.name;
            RtNode* n = node(ex.target.node);
            auto o = out_port(*n, ex.target, where);
            if (!o) return tl::unexpected(o.error());
            n->out[*o].exports.push_back(ex.name);
        }
        return initial;
    }

    // Connections inside a strongly connected component (a cycle) are not gated.
    void mark_cycles() {
        const std::size_t N = net.nodes.size();
        std::vector<std::size_t> index_of_node;
        auto idx = [&](const RtNode* p) {
            for (std::size_t i = 0; i < N; ++i)
                if (net.nodes[i].get() == p) return i;
            return N;
        };
        std::vector<std::vector<std::size_t>> adj(N), radj(N);
        for (std::size_t i = 0; i < N; ++i)
            for (const auto& op : net.nodes[i]->out)
                for (const auto& e : op.edges) {
                    const std::size_t j = idx(e.target);
                    adj[i].push_back(j);
                    radj[j].push_back(i);
                }
        // Kosaraju, iteratively: finishing order on adj, then components on radj.
        std::vector<std::size_t> order;
        std::vector<char> seen(N, 0);
        for (std::size_t s = 0; s < N; ++s) {
            if (seen[s]) continue;
            std::vector<std::pair<std::size_t, std::size_t>> stack{{s, 0}};
            seen[s] = 1;
            while (!stack.empty()) {
                auto& [v, k] = stack.back();
                if (k < adj[v].size()) {
                    const std::size_t w = adj[v][k++];
                    if (!seen[w]) {
                        seen[w] = 1;
                        stack.push_back({w, 0});
                    }
                } else {
                    order.push_back(v);
                    stack.pop_back();
                }
            }
        }
        std::vector<std::size_t> comp(N, N);
        std::size_t c = 0;
        for (auto it = order.rbegin(); it != order.rend(); ++it) {
            if (comp[*it] != N) continue;
            std::vector<std::size_t> stack{*it};
            comp[*it] = c;
            while (!stack.empty()) {
                const std::size_t v = stack.back();
                stack.pop_back();
                for (std::size_t w : radj[v])
                    if (comp[w] == N) {
                        comp[w] = c;
                        stack.push_back(w);
                    }
            }
            ++c;
        }
        for (std::size_t i = 0; i < N; ++i)
            for (auto& op : net.nodes[i]->out)
                for (auto& e : op.edges) e.gated = comp[i] != comp[idx(e.target)];
    }

    void make_queues() {
        for (auto& n : net.nodes) {
            const std::size_t k = n->await_all ? std::max<std::size_t>(n->in.size(), 1) : 1;
            for (std::size_t i = 0; i < k; ++i) n->queues.push_back(std::make_unique<Queue>());
        }
        for (auto& n : net.nodes)
            for (auto& op : n->out)
                for (auto& e : op.edges) {
                    e.queue = &e.target->queue_for(e.inport);
                    auto& ps = e.target->producers;
                    if (e.gated && std::find(ps.begin(), ps.end(), n.get()) == ps.end())
                        ps.push_back(n.get());
                }
    }

    Result<void> open_scripts() {
        for (auto& n : net.nodes) {
            if (!n->script) continue;
            const ScriptActor* a = scripts->find(n->component);
            RtNode* np = n.get();
            Network::Impl* impl = &net;
            auto r =
                host->open(*a, n->id, [impl, np](std::string_view text) { impl->log(*np, text); });
            if (!r)
                return tl::unexpected(err("processes." + n->id,
                                          "node '" + n->id + "' (" + n->component +
                                              "): cannot start the script: " + r.error().message));
            n->runner = std::move(*r);
            n->serial = std::make_unique<asio::thread_pool>(1);
        }
        return {};
    }
};

}  // namespace

Network::Network(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Network::~Network() = default;

Result<std::unique_ptr<Network>> Network::build(const Graph& graph, const Registry& registry,
                                                const ScriptCatalog* scripts, ScriptHost* host,
                                                NetworkOptions options) {
    auto impl = std::make_unique<Impl>();
    impl->file = graph.file;
    impl->opt = std::move(options);
    if (impl->opt.queue_capacity == 0 || impl->opt.queue_capacity > limits::kMaxFlowQueueCapacity)
        return fail(Errc::invalid_argument, "queue capacity must be between 1 and " +
                                                std::to_string(limits::kMaxFlowQueueCapacity));
    impl->cap = impl->opt.queue_capacity;
    Builder b{graph, registry, scripts, host, *impl};
    if (auto ok = b.make_nodes(); !ok) return tl::unexpected(ok.error());
    auto initial = b.connect();
    if (!initial) return tl::unexpected(initial.error());
    b.mark_cycles();
    b.make_queues();
    for (auto& n : impl->nodes)
        if (n->native) n->ctx = std::make_unique<NativeCtx>(*impl, *n);
    if (auto ok = b.open_scripts(); !ok) return tl::unexpected(ok.error());
    std::size_t threads = impl->opt.threads;
    if (threads == 0) threads = std::max(2u, std::thread::hardware_concurrency());
    impl->pool = std::make_unique<asio::thread_pool>(threads);
    for (auto& ip : *initial) {
        Edge e;
        e.target = ip.node;
        e.inport = ip.port;
        e.queue = &ip.node->queue_for(ip.port);
        json::value* p = &ip.data;
        impl->enqueue(e, p, p + 1);
    }
    return std::unique_ptr<Network>(new Network(std::move(impl)));
}

Result<void> Network::send(std::string_view exported_inport, json::value data) {
    for (auto& [name, target] : impl_->exported_in) {
        if (name != exported_inport) continue;
        Edge e;
        e.target = target.first;
        e.inport = target.second;
        e.queue = &target.first->queue_for(target.second);
        json::value* p = &data;
        impl_->enqueue(e, p, p + 1);
        return {};
    }
    std::vector<std::string> names;
    for (const auto& [name, t] : impl_->exported_in) names.push_back(name);
    return fail(Errc::invalid_argument, "the graph exports no inport '" +
                                            std::string(exported_inport) +
                                            "'; it exports: " + join_names(names));
}

Result<RunReport> Network::run() {
    return impl_->run();
}
RunReport Network::report() const {
    return impl_->report();
}

}  // namespace sandflow::flow
