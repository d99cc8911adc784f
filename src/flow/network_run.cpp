// Running a network (flow/network.hpp): scheduling activations on the native pool and the
// script nodes' threads, queues and back-pressure, timers, errors, completion and the report.
// Asio appears only in the network files (and remote.cpp): the native thread pool, one
// single-thread pool per script node that makes one call at a time, and the timers of
// send_after.
#include <algorithm>

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include "core/log.hpp"
#include "flow/flow_limits.hpp"
#include "flow/network_impl.hpp"

namespace sandflow::flow {

Network::Impl::~Impl() {
    shutdown();
}

void Network::Impl::shutdown() {
    stop_all();
    if (pool) pool->join();
    for (auto& n : nodes)
        if (n->serial) n->serial->join();
}

void Network::Impl::stop_all() {
    stopped = true;
    { std::lock_guard l(room_mu); }
    room_cv.notify_all();
    if (pool) pool->stop();
    for (auto& n : nodes)
        if (n->serial) n->serial->stop();
}

void Network::Impl::fail_run(Error e) {
    {
        std::lock_guard l(done_mu);
        if (!failure) failure = std::move(e);
        stopped = true;
    }
    { std::lock_guard l(room_mu); }
    room_cv.notify_all();
    done_cv.notify_all();
}

void Network::Impl::log(const RtNode& n, std::string_view text) {
    if (opt.on_log) {
        std::lock_guard l(output_mu);
        opt.on_log(n.id, text);
    } else {
        spdlog::info("[{}] {}", n.id, text);
    }
}

void Network::Impl::release_busy(std::int64_t k) {
    if (busy.fetch_sub(k) == k) {
        { std::lock_guard l(done_mu); }
        done_cv.notify_all();
    }
}

bool Network::Impl::runnable(RtNode& n) const {
    if (stopped || !started || n.scheduled || n.in_flight >= n.window) return false;
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

bool Network::Impl::gate_open(const RtNode& n) const {
    for (const auto& op : n.out)
        for (const auto& e : op.edges)
            if (e.gated && e.queue->fill.load() >= cap) return false;
    return true;
}

void Network::Impl::post(RtNode& n) {
    busy.fetch_add(1);
    running.fetch_add(1);
    auto job = [this, &n] {
        if (!n.script)
            activate_native(n);
        else if (n.window > 1)
            activate_calls(n);
        else
            activate_script(n);
    };
    if (n.executor)
        n.executor(std::move(job));
    else
        asio::post(n.serial ? *n.serial : *pool, std::move(job));
}

void Network::Impl::try_schedule(RtNode& n) {
    {
        std::lock_guard l(n.mu);
        if (!runnable(n)) return;
        n.scheduled = true;
    }
    post(n);
}

void Network::Impl::wake_producers(RtNode& n) {
    if (room_waiters.load() > 0) {
        { std::lock_guard l(room_mu); }
        room_cv.notify_all();
    }
    for (RtNode* p : n.producers) try_schedule(*p);
}

void Network::Impl::trace(const RtNode& from, const OutPort& op, const RtNode* to,
                          std::string_view to_port, const json::value& v) {
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

void Network::Impl::export_out(const RtNode& n, const OutPort& op, const json::value& v) {
    for (const auto& name : op.exports) {
        trace(n, op, nullptr, name, v);
        outputs.fetch_add(1);
        if (opt.on_output) {
            std::lock_guard l(output_mu);
            opt.on_output(name, v);
        }
    }
}

void Network::Impl::enqueue(Edge& e, json::value* first, json::value* last) {
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

void Network::Impl::wait_for_room(const Edge& e) {
    if (!e.gated || e.queue->fill.load() < cap) return;
    room_waiters.fetch_add(1);
    {
        std::unique_lock l(room_mu);
        room_cv.wait(l, [&] { return stopped.load() || e.queue->fill.load() < cap; });
    }
    room_waiters.fetch_sub(1);
}

void Network::Impl::push(RtNode& n, std::uint32_t port, json::value v, bool block) {
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

void Network::Impl::deliver_staged(RtNode& n,
                                   std::vector<std::pair<std::uint32_t, json::value>>& staged) {
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
            if (!stopped) enqueue(e, e.staging.data(), e.staging.data() + e.staging.size());
            e.staging.clear();
        }
}

void Network::Impl::send_after(RtNode& n, std::uint32_t port, json::value v,
                               std::chrono::milliseconds d) {
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
                if (!stopped) push(n, due.mapped().first, std::move(due.mapped().second), false);
            }
        }
        release_busy();
    });
}

Error Network::Impl::node_error(const RtNode& n, std::string_view port, const Error& cause) {
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

std::optional<json::value> Network::Impl::route_error(RtNode& n, std::string_view port,
                                                      const Error& cause) {
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

bool Network::Impl::pop(RtNode& n, std::size_t max, std::vector<json::object>* sets) {
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

void Network::Impl::finish(RtNode& n, std::optional<Clock::time_point> start) {
    if (start)
        n.busy_us.fetch_add(static_cast<std::uint64_t>(
            std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - *start).count()));
    {
        std::lock_guard l(n.mu);
        n.scheduled = false;
    }
    try_schedule(n);
    running.fetch_sub(1);
    release_busy();
}

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

json::object Network::Impl::pop_call(RtNode& n, std::string& port, bool& crossed) {
    std::vector<json::object> sets;
    crossed = pop(n, 1, &sets);
    json::object inputs;
    if (!n.batch.empty()) {
        port = n.in[n.batch[0].first].name;
        inputs[port] = std::move(n.batch[0].second);
        n.batch.clear();
    } else if (!sets.empty()) {
        inputs = std::move(sets[0]);
    }
    return inputs;
}

void Network::Impl::deliver_result(RtNode& n, const std::string& port, Result<json::object> r,
                                   bool block) {
    if (!r) {
        if (auto pkt = route_error(n, port, r.error()))
            push(n, n.error_port, std::move(*pkt), block);
        return;
    }
    // A returned object's keys become outputs; keys that are not outports (Reflow scripts
    // return {"status": "completed"}) are not messages.
    for (auto& [key, v] : *r)
        if (auto idx = n.find_out(key)) push(n, *idx, std::move(v), block);
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
        json::object inputs;
        std::string port;
        bool crossed = false;
        {
            std::lock_guard l(n.mu);
            if (k > 0 && !gate_open(n)) break;
            inputs = pop_call(n, port, crossed);
        }
        if (crossed) wake_producers(n);
        if (inputs.empty()) break;
        n.calls.fetch_add(1);
        calls.fetch_add(1);
        deliver_result(n, port, n.runner->call(std::move(inputs), n.config, sink), true);
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
        // Nothing new starts. Calls in flight on runners that can stop them (a runtime
        // server's) are cancelled; the others finish (an embedded call cannot be
        // interrupted safely from here).
        for (auto& n : nodes)
            if (n->runner) n->runner->cancel_all();
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
            s.in_flight_high_water = n.in_flight_high_water;
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
                                  {"queue_high_water", n.queue_high_water},
                                  {"in_flight_high_water", n.in_flight_high_water}});
    return {{"elapsed_us", elapsed.count()},
            {"packets", packets},
            {"outputs", outputs},
            {"nodes", std::move(ns)}};
}

Result<RunReport> Network::run() {
    return impl_->run();
}
RunReport Network::report() const {
    return impl_->report();
}

}  // namespace sandflow::flow
