#include "sandbox/mechanisms/periodic_scan.hpp"

#include <unistd.h>

#include <thread>

namespace sandflow::sandbox::mech {

PeriodicScanner& PeriodicScanner::of_this_process(std::atomic<PeriodicScanner*>& slot,
                                                  std::chrono::milliseconds interval) {
    PeriodicScanner* s = slot.load();
    if (!s || s->pid_ != ::getpid()) {
        auto* fresh = new PeriodicScanner(interval);
        if (slot.compare_exchange_strong(s, fresh))
            s = fresh;
        else
            delete fresh;
    }
    return *s;
}

PeriodicScanner::PeriodicScanner(std::chrono::milliseconds interval)
    : interval_(interval), pid_(::getpid()) {}

void PeriodicScanner::add(std::shared_ptr<ScanEntry> entry) {
    std::lock_guard lock(m_);
    if (!started_) {
        started_ = true;
        std::thread([this] { run(); }).detach();
    }
    entries_.push_back({std::move(entry), false});
    cv_.notify_one();
}

void PeriodicScanner::remove(const ScanEntry* entry) {
    std::lock_guard lock(m_);
    for (auto it = entries_.begin(); it != entries_.end(); ++it) {
        if (it->entry.get() == entry) {
            *it = std::move(entries_.back());
            entries_.pop_back();
            return;
        }
    }
}

void PeriodicScanner::run() {
    std::unique_lock lock(m_);
    for (;;) {
        cv_.wait(lock, [this] { return !entries_.empty(); });
        for (auto& w : entries_)
            if (!w.done) w.done = w.entry->scan();
        lock.unlock();
        std::this_thread::sleep_for(interval_);
        lock.lock();
    }
}

}  // namespace sandflow::sandbox::mech
