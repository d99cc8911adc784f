// Where an instance's jobs run. Each instance has a serial queue: its jobs run one at a
// time, in the order they were posted; jobs of different instances run in parallel. Jobs
// that block (starting a sandbox, a load) run on a fixed pool of threads, as many at once
// as there are pool threads; a call to a running worker runs on the transport's I/O
// thread without blocking it (server.hpp).
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

#include "rpc/event_loop.hpp"

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
//
// A job either blocks (post: it runs on the pool and is done when it returns) or does not
// (post_async: it starts on the queue's strand, on an I/O thread, and is done when it calls
// `done`, from any thread; the next job waits until then). Without a strand, non-blocking
// jobs start on the pool too.
class SerialQueue : public std::enable_shared_from_this<SerialQueue> {
  public:
    // Calling it more than once does nothing.
    using Done = std::function<void()>;

    explicit SerialQueue(ThreadPool& pool, std::shared_ptr<rpc::Strand> strand = nullptr)
        : pool_(pool), strand_(std::move(strand)) {}
    void post(std::function<void()> job);
    void post_async(std::function<void(Done)> job);
    std::size_t pending() const;
    ThreadPool& pool() { return pool_; }
    // Null when non-blocking jobs start on the pool.
    rpc::Strand* strand() const { return strand_.get(); }

  private:
    struct Job {
        std::function<void(Done)> run;
        bool on_strand = false;
    };
    void push(Job job);
    // Runs the front job on the pool or the strand; `may_run_here`: inside this call when
    // the strand allows (Strand::dispatch).
    void start(bool on_strand, bool may_run_here);
    void run_front();
    void job_done();
    ThreadPool& pool_;
    const std::shared_ptr<rpc::Strand> strand_;
    mutable std::mutex mu_;
    std::deque<Job> jobs_;
    bool running_ = false;
};

}  // namespace sandflow::server
