// The one thread of a store that commits: what callers queue while it writes is taken as
// the next batch, so calls that finish together share a transaction (group commit) and
// none waits for another's fsync more than once. Used by the sqlite and redis stores,
// through QueuedStore.
#pragma once

#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "runtime/state/store.hpp"
#include "runtime/state/store_limits.hpp"

namespace sandflow::runtime {

struct QueuedWrite {
    std::optional<StateCommit> commit;  // a commit, or else
    InstanceRef erase;                  // an erase
    StateStore::Done done;
};

class CommitQueue {
  public:
    // `apply` runs on the queue's thread with up to limits::kMaxCommitBatch writes and
    // must call every write's `done`.
    using Apply = std::function<void(std::vector<QueuedWrite>&)>;

    explicit CommitQueue(Apply apply) : apply_(std::move(apply)), thread_([this] { loop(); }) {}
    // Applies what is queued, then joins.
    ~CommitQueue() {
        {
            std::lock_guard lk(mu_);
            stop_ = true;
        }
        cv_.notify_all();
        thread_.join();
    }
    CommitQueue(const CommitQueue&) = delete;
    CommitQueue& operator=(const CommitQueue&) = delete;

    void push(QueuedWrite w) {
        {
            std::lock_guard lk(mu_);
            queue_.push_back(std::move(w));
        }
        cv_.notify_one();
    }

  private:
    void loop() {
        std::vector<QueuedWrite> batch;
        for (;;) {
            {
                std::unique_lock lk(mu_);
                cv_.wait(lk, [this] { return stop_ || !queue_.empty(); });
                if (queue_.empty()) return;  // stopping, and nothing left
                while (!queue_.empty() && batch.size() < limits::kMaxCommitBatch) {
                    batch.push_back(std::move(queue_.front()));
                    queue_.pop_front();
                }
            }
            apply_(batch);
            batch.clear();
        }
    }

    Apply apply_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<QueuedWrite> queue_;
    bool stop_ = false;
    std::thread thread_;  // last: starts once the rest is made
};

// A store whose writes go through a CommitQueue: commit() and erase() queue them and the
// queue's thread hands each batch to apply(). A derived store calls start_queue() once it
// can apply, and stop_queue() first in its destructor: the thread calls apply(), which
// must not run once the derived store's members are gone.
class QueuedStore : public StateStore {
  public:
    void commit(StateCommit c, Done done) override {
        queue_->push(QueuedWrite{std::move(c), {}, std::move(done)});
    }
    void erase(InstanceRef ref, Done done) override {
        queue_->push(QueuedWrite{std::nullopt, std::move(ref), std::move(done)});
    }

  protected:
    // On the queue's thread, as CommitQueue::Apply.
    virtual void apply(std::vector<QueuedWrite>& batch) = 0;
    void start_queue() {
        queue_ = std::make_unique<CommitQueue>(
            [this](std::vector<QueuedWrite>& batch) { apply(batch); });
    }
    void stop_queue() { queue_.reset(); }

  private:
    std::unique_ptr<CommitQueue> queue_;
};

}  // namespace sandflow::runtime
