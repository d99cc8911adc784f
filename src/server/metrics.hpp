// The server's counters (calls by method and outcome, workers killed for a call or lost
// between calls, where `process` calls ran) and the call latency histogram. `stats` and
// GET /metrics read them (metrics.cpp writes both from the server's state).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>

#include "core/error.hpp"

namespace sandflow::server {

// A Prometheus label value: backslash, quote and newline escaped, so that no value can end
// its line (values come from error data, some of it worked out from what workers sent).
std::string label_value(std::string_view v);

// Prometheus histogram of call latency, seconds.
class Histogram {
  public:
    static constexpr std::array<double, 16> kBounds = {
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
        0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10};
    void observe(double s);
    void write(std::string& out, std::string_view name) const;

  private:
    mutable std::mutex mu_;
    std::array<std::uint64_t, kBounds.size()> counts_{};
    std::uint64_t count_ = 0;
    double sum_ = 0;
};

class Metrics {
  public:
    // A request's outcome: "ok", or why it failed. Methods outside the protocol count as
    // "unknown", so that the labels stay bounded.
    void count(std::string_view method, std::string outcome);
    // An error's outcome is its data.reason ("internal" without one).
    void count_error(std::string_view method, const Error& e);
    // A call that cost its worker: for a limit (named), its deadline, a cancel or a
    // shutdown. A worker that crashed on its own is not a kill.
    void count_kill(const Error& e, bool cancelled, bool aborted);
    // A worker lost between calls, and why (its limit, its reason, or "crashed").
    void count_idle_loss(const Error& e);

    std::uint64_t calls_total() const;
    std::uint64_t workers_lost_between_calls() const;
    // The counters kept by label, in Prometheus' text format.
    void write_labelled(std::string& out) const;

    std::atomic<std::uint64_t> connections_total{0};
    // Looks at idle workers that polled readable (check_idle_worker).
    std::atomic<std::uint64_t> idle_checks{0};
    // `process` calls that ran on the event loop, and those that blocked a pool thread.
    std::atomic<std::uint64_t> process_on_loop{0}, process_on_pool{0};
    std::atomic<std::uint64_t> conflict_retries{0};  // calls run again after a state_conflict
    Histogram latency;

  private:
    mutable std::mutex mu_;
    std::map<std::pair<std::string_view, std::string>, std::uint64_t> calls_by_;
    std::map<std::string, std::uint64_t> limit_kills_;
    std::map<std::string, std::uint64_t> idle_losses_;  // by reason
};

}  // namespace sandflow::server
