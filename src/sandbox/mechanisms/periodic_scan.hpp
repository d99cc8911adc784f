// A thread that looks at every registered entry once per interval: how the runtime watches
// what the kernel does not announce (a pids group's refused forks, cgroups.hpp; a landlock
// sandbox's work folder, landlock/work_dir.hpp).
//
// One thread per scanner and runtime process, started with the first entry, asleep while
// there is none. A pass holds the scanner's lock, so that once remove() returns no pass uses
// that entry (or the descriptors it holds) any more.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <vector>

namespace sandflow::sandbox::mech {

class ScanEntry {
  public:
    virtual ~ScanEntry() = default;
    // Once per interval, under the scanner's lock, until it returns true (done: it has
    // signalled what it watches for).
    virtual bool scan() = 0;
};

class PeriodicScanner {
  public:
    // The scanner of this process kept in `slot` (one per kind of entry). Never destroyed:
    // its detached thread may be mid-pass when the process exits. A process forked from
    // the one that made it has no scanning thread and may have copied the lock held: it
    // gets a scanner of its own.
    static PeriodicScanner& of_this_process(std::atomic<PeriodicScanner*>& slot,
                                            std::chrono::milliseconds interval);

    void add(std::shared_ptr<ScanEntry> entry);
    void remove(const ScanEntry* entry);

  private:
    explicit PeriodicScanner(std::chrono::milliseconds interval);
    void run();

    struct Watched {
        std::shared_ptr<ScanEntry> entry;
        bool done = false;
    };
    const std::chrono::milliseconds interval_;
    const pid_t pid_;
    std::mutex m_;
    std::condition_variable cv_;
    std::vector<Watched> entries_;
    bool started_ = false;
};

}  // namespace sandflow::sandbox::mech
