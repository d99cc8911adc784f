// Where blocking calls run. runtime::Instance::call blocks for the whole call, so calls
// run on a fixed pool of threads, and each instance has a serial queue on that pool: jobs
// of one instance run one at a time, in the order they were posted; jobs of different
// instances run in parallel, as many at once as there are pool threads.
//
// The pool's threads live as long as the pool: workers are spawned from them with
// PR_SET_PDEATHSIG, which fires when the spawning *thread* ends.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace sandflow::server {

class ThreadPool {
  public:
    explicit ThreadPool(std::size_t threads);
    ~ThreadPool();  // runs what is queued, then joins
    void submit(std::function<void()> job);
    std::size_t threads() const { return threads_.size(); }
    std::size_t queued() const;
    std::size_t busy() const;

  private:
    void loop();
    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::deque<std::function<void()>> jobs_;
    std::size_t busy_ = 0;
    bool stop_ = false;
    std::vector<std::thread> threads_;
};

// FIFO of jobs for one instance; at most one of its jobs runs at a time. Jobs hold what
// they need by value (shared owners), never the queue's owner by reference.
class SerialQueue : public std::enable_shared_from_this<SerialQueue> {
  public:
    explicit SerialQueue(ThreadPool& pool) : pool_(pool) {}
    void post(std::function<void()> job);
    std::size_t pending() const;

  private:
    void run_one();
    ThreadPool& pool_;
    mutable std::mutex mu_;
    std::deque<std::function<void()>> jobs_;
    bool running_ = false;
};

}  // namespace sandflow::server
