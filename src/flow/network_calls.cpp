// Script nodes that keep several calls in flight (ScriptRunner::max_in_flight above 1: a
// runtime server's runner; flow/network.hpp): calls start in the order of their inputs,
// while fewer than the node's window are in flight and its consumers have room; they end
// on the runner's thread, in any order, and their outputs leave in the order of the calls.
#include <algorithm>

#include "flow/network_impl.hpp"

namespace sandflow::flow {

void Network::Impl::activate_calls(RtNode& n) {
    // One activation of a node at a time, so its calls start in the order their inputs
    // were taken (the runner runs them in the order started).
    for (;;) {
        json::object inputs;
        std::string port;
        bool crossed = false;
        {
            std::lock_guard l(n.mu);
            if (stopped || n.in_flight >= n.window || !gate_open(n)) break;
            inputs = pop_call(n, port, crossed);
            if (!inputs.empty()) {
                if (n.in_flight++ == 0) n.active_since = Clock::now();
                n.in_flight_high_water = std::max(n.in_flight_high_water, n.in_flight);
            }
        }
        if (crossed) wake_producers(n);
        if (inputs.empty()) break;
        std::uint64_t seq = 0;
        {
            std::lock_guard l(n.deliver_mu);
            seq = n.calls_started++;
            n.calls_in_flight.push_back({seq, port, std::nullopt, {}});
        }
        busy.fetch_add(1);
        running.fetch_add(1);
        n.calls.fetch_add(1);
        calls.fetch_add(1);
        n.runner->start(
            std::move(inputs), n.config,
            [this, &n, seq](std::string_view out_port, json::value v) {
                streamed(n, seq, out_port, std::move(v));
            },
            [this, &n, seq](Result<json::object> r) { call_ended(n, seq, std::move(r)); });
    }
    finish(n, std::nullopt);
}

void Network::Impl::streamed(RtNode& n, std::uint64_t seq, std::string_view port, json::value v) {
    auto idx = n.find_out(port);
    if (!idx) {
        log(n, "output on undeclared outport '" + std::string(port) + "' dropped");
        return;
    }
    std::lock_guard l(n.deliver_mu);
    if (n.calls_in_flight.front().seq == seq) {  // no older call is left: on at once
        push(n, *idx, std::move(v), false);
        return;
    }
    for (auto& c : n.calls_in_flight)
        if (c.seq == seq) {
            c.streamed.emplace_back(*idx, std::move(v));
            return;
        }
}

void Network::Impl::call_ended(RtNode& n, std::uint64_t seq, Result<json::object> r) {
    {
        std::lock_guard l(n.deliver_mu);
        for (auto& c : n.calls_in_flight)
            if (c.seq == seq) {
                c.result = std::move(r);
                break;
            }
        // The oldest calls that have ended leave, each after what it streamed; the call
        // that is oldest then sends what it streamed so far.
        while (!n.calls_in_flight.empty() && n.calls_in_flight.front().result) {
            RtNode::Call c = std::move(n.calls_in_flight.front());
            n.calls_in_flight.pop_front();
            deliver_result(n, c.port, std::move(*c.result), false);
            if (n.calls_in_flight.empty()) break;
            auto& next = n.calls_in_flight.front();
            for (auto& [out_port, v] : next.streamed) push(n, out_port, std::move(v), false);
            next.streamed.clear();
        }
    }
    {
        std::lock_guard l(n.mu);
        if (--n.in_flight == 0)
            n.busy_us.fetch_add(static_cast<std::uint64_t>(
                std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - n.active_since)
                    .count()));
    }
    try_schedule(n);
    running.fetch_sub(1);
    release_busy();
}

}  // namespace sandflow::flow
