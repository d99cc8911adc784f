// QEMU's monitor (QMP), as the microvm backend's snapshots use it (snapshot.cpp): the
// capabilities, a migration out (taking a snapshot) or in (restoring one), stop and cont.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "core/error.hpp"
#include "core/json.hpp"

namespace sandflow::sandbox::microvm {

// x-ignore-shared: the RAM, a shared file, stays out of the migration stream.
extern const std::string kMigrateCaps;

// QEMU's monitor on a socketpair: one command at a time, its answer awaited; events in
// between are skipped. Each call gives up at `deadline` (kQmpTimeout after the first).
class Qmp {
  public:
    using Clock = std::chrono::steady_clock;
    explicit Qmp(int fd) : fd_(fd) {}

    // Reads the greeting and enters command mode.
    Result<void> open(Clock::time_point deadline);
    // Sends one command (with `pass_fd` attached, for getfd) and returns its "return".
    Result<json::value> run(std::string_view command, Clock::time_point deadline, int pass_fd = -1);
    // Polls query-migrate until the migration ends; an error when it failed.
    Result<void> wait_migrated(Clock::time_point deadline);

  private:
    // The next message, a line of JSON (at most kMaxQmpLine bytes).
    Result<json::value> next(Clock::time_point deadline);

    int fd_;
    std::string buf_;
};

}  // namespace sandflow::sandbox::microvm
