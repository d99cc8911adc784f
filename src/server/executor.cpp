#include "server/executor.hpp"

#include <atomic>

#include "core/log.hpp"

namespace sandflow::server {

ThreadPool::ThreadPool(std::size_t threads) {
    if (threads == 0) threads = 1;
    threads_.reserve(threads);
    for (std::size_t i = 0; i < threads; ++i) threads_.emplace_back([this] { loop(); });
}

ThreadPool::~ThreadPool() {
    {
        std::lock_guard lk(mu_);
        stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
}

void ThreadPool::submit(std::function<void()> job) {
    {
        std::lock_guard lk(mu_);
        jobs_.push_back(std::move(job));
    }
    cv_.notify_one();
}

std::size_t ThreadPool::queued() const {
    std::lock_guard lk(mu_);
    return jobs_.size();
}

std::size_t ThreadPool::busy() const {
    std::lock_guard lk(mu_);
    return busy_;
}

void ThreadPool::loop() {
    for (;;) {
        std::function<void()> job;
        {
            std::unique_lock lk(mu_);
            cv_.wait(lk, [this] { return stop_ || !jobs_.empty(); });
            if (jobs_.empty()) return;  // stop_ and nothing left
            job = std::move(jobs_.front());
            jobs_.pop_front();
            ++busy_;
        }
        try {
            job();
        } catch (const std::exception& e) {
            // Jobs report errors as values; an exception here is a bug, not a reason to
            // lose a pool thread.
            spdlog::error("internal error in a server job: {}", e.what());
        }
        std::lock_guard lk(mu_);
        --busy_;
    }
}

void SerialQueue::post(std::function<void()> job) {
    push(Job{[job = std::move(job)](const Done& done) {
                 job();
                 done();
             },
             false});
}

void SerialQueue::post_async(std::function<void(Done)> job) {
    push(Job{std::move(job), strand_ != nullptr});
}

void SerialQueue::push(Job job) {
    bool on_strand;
    {
        std::lock_guard lk(mu_);
        jobs_.push_back(std::move(job));
        if (running_) return;
        running_ = true;
        on_strand = jobs_.front().on_strand;
    }
    // An idle queue's first job: from an I/O thread it starts right here when the strand
    // is free, with no hand-off to another thread (the lock is released: it may end at once).
    start(on_strand, true);
}

void SerialQueue::start(bool on_strand, bool may_run_here) {
    auto run = [self = shared_from_this()] { self->run_front(); };
    if (!on_strand) {
        pool_.submit(std::move(run));
    } else if (may_run_here) {
        strand_->dispatch(std::move(run));
    } else {
        strand_->post(std::move(run));
    }
}

std::size_t SerialQueue::pending() const {
    std::lock_guard lk(mu_);
    return jobs_.size();
}

void SerialQueue::run_front() {
    Job job;
    {
        std::lock_guard lk(mu_);
        job = std::move(jobs_.front());
        jobs_.pop_front();
    }
    auto finished = std::make_shared<std::atomic<bool>>(false);
    Done done = [self = shared_from_this(), finished] {
        if (!finished->exchange(true)) self->job_done();
    };
    try {
        job.run(done);
    } catch (const std::exception& e) {
        // Jobs report errors as values; an exception here is a bug, not a reason to stop
        // the instance's queue.
        spdlog::error("internal error in an instance job: {}", e.what());
        done();
    }
}

// One job per turn, then back of the line: a busy instance cannot starve others. Posted,
// never run here: a job that ends at once must not start the next one on its own stack.
void SerialQueue::job_done() {
    bool on_strand;
    {
        std::lock_guard lk(mu_);
        if (jobs_.empty()) {
            running_ = false;
            return;
        }
        on_strand = jobs_.front().on_strand;
    }
    start(on_strand, false);
}

}  // namespace sandflow::server
