// Boost.Asio implementation of rpc/event_loop.hpp (see asio_event_loop.hpp).
//
// Readiness when armed: Asio's epoll reactor registers descriptors edge-triggered, but it
// starts each async_wait with EPOLL_CTL_MOD, which makes the kernel report the descriptor
// at once if it is ready then; a wait reused while pending was armed after the last event
// it would have seen. So FdWatch::wait() misses nothing that arrived before it
// (event_loop_test checks this against the Asio in use).
//
// A watch owns a duplicate of the caller's descriptor in a posix::stream_descriptor and one
// steady_timer, both bound to the strand, so their completions run there. Each wait costs
// about one reactor operation: the descriptor's async_wait and the timer are left pending
// across waits and cancels and reused by the next wait (a completion serves whichever wait
// is pending when it runs, or nobody), and the timer is re-armed only for a new deadline or
// after it has fired; a wait without a deadline leaves it alone.
#include "rpc/asio_event_loop.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

namespace sandflow::rpc {

namespace net = boost::asio;
using StrandExecutor = net::strand<net::io_context::executor_type>;
using Clock = std::chrono::steady_clock;
using Callback = std::function<void(bool expired)>;

namespace {

// Everything a watch's completions touch. Handlers hold it by shared_ptr, so it outlives the
// FdWatch while operations are pending. `mu` guards every member and every call on the two
// Asio objects (the FdWatch may be destroyed on any thread while the strand runs handlers).
struct WatchState {
    explicit WatchState(const StrandExecutor& strand) : descriptor(strand), timer(strand) {}

    std::mutex mu;
    net::posix::stream_descriptor descriptor;
    net::steady_timer timer;
    // The pending wait's callback; empty when no wait is pending. A replaced or cancelled
    // wait's callback is destroyed at once, so it can never run.
    Callback ready;
    bool read_pending = false;   // a descriptor async_wait is outstanding
    bool timer_pending = false;  // the current timer arm has not completed yet
    Clock::time_point armed_deadline;
    // Bumped on each arm of the timer: a completion of an earlier arm (cancelled by
    // expires_at, or fired just before the re-arm) is stale and ignored.
    std::uint64_t timer_generation = 0;
    bool closed = false;  // the FdWatch is being or has been destroyed
    // The thread running a callback taken out of `ready`, if any (at most one: the strand).
    std::optional<std::thread::id> running_on;
    std::condition_variable callback_done;

    // Takes the pending callback (under `mu`) and runs it outside the lock.
    void deliver(std::unique_lock<std::mutex>& lk, bool expired) {
        if (closed || !ready) return;
        Callback cb = std::exchange(ready, nullptr);
        running_on = std::this_thread::get_id();
        lk.unlock();
        // Runs even if the callback throws, so a destructor waiting on it cannot hang. The
        // callback and what it captured are destroyed first, outside the lock: a destructor
        // waiting on another thread returns only after that.
        struct Done {
            WatchState* s;
            Callback& cb;
            ~Done() {
                cb = nullptr;
                std::lock_guard relock(s->mu);
                s->running_on.reset();
                s->callback_done.notify_all();
            }
        } done{this, cb};
        cb(expired);
    }
};

class AsioFdWatch final : public FdWatch {
  public:
    explicit AsioFdWatch(std::shared_ptr<WatchState> state) : state_(std::move(state)) {}

    ~AsioFdWatch() override {
        Callback dropped;
        auto& s = *state_;
        std::unique_lock lk(s.mu);
        s.closed = true;
        dropped = std::exchange(s.ready, nullptr);
        boost::system::error_code ignored;
        s.descriptor.close(ignored);  // completes a pending async_wait with operation_aborted
        s.timer.cancel();
        // A callback already taken out may be running on the strand's thread. Off that thread,
        // wait for it to return so nothing it captured is used after the owner goes; on that
        // thread (the callback destroying its own watch) it is this very call stack.
        const auto self = std::this_thread::get_id();
        s.callback_done.wait(lk, [&] { return !s.running_on || *s.running_on == self; });
        lk.unlock();
        // `dropped` is destroyed outside the lock: its captures may destroy other watches.
    }

    void wait(Clock::time_point deadline, Callback ready) override {
        Callback replaced;
        {
            auto& s = *state_;
            std::lock_guard lk(s.mu);
            if (s.closed) return;
            replaced = std::exchange(s.ready, std::move(ready));
            if (!s.read_pending) {
                s.read_pending = true;
                s.descriptor.async_wait(
                    net::posix::stream_descriptor::wait_read,
                    [st = state_](const boost::system::error_code& ec) { on_readable(st, ec); });
            }
            if (deadline == Clock::time_point::max()) {
                // No deadline: a pending arm is left to run out, its completion ignored,
                // rather than cancelled and re-armed (a server watches every idle worker
                // this way between its calls).
                ++s.timer_generation;
                s.armed_deadline = deadline;
            } else if (!s.timer_pending || s.armed_deadline != deadline) {
                // expires_at cancels the earlier arm, if pending; its completion is stale.
                s.timer.expires_at(deadline);
                s.armed_deadline = deadline;
                s.timer_pending = true;
                const auto generation = ++s.timer_generation;
                s.timer.async_wait([st = state_, generation](const boost::system::error_code& ec) {
                    on_timer(st, generation, ec);
                });
            }
        }
        // `replaced` is destroyed here, outside the lock.
    }

    void cancel() override {
        Callback dropped;
        std::lock_guard lk(state_->mu);
        dropped = std::exchange(state_->ready, nullptr);
        // The lock is released before `dropped` is destroyed (reverse declaration order).
    }

  private:
    static void on_readable(const std::shared_ptr<WatchState>& st,
                            const boost::system::error_code& ec) {
        std::unique_lock lk(st->mu);
        st->read_pending = false;
        if (ec == net::error::operation_aborted) return;
        // Any other error (a descriptor epoll cannot watch reports operation_not_supported)
        // also completes the wait as readable: the caller's read then reports what is wrong,
        // as poll() would.
        st->deliver(lk, false);
    }

    static void on_timer(const std::shared_ptr<WatchState>& st, std::uint64_t generation,
                         const boost::system::error_code& ec) {
        std::unique_lock lk(st->mu);
        if (generation != st->timer_generation) return;
        st->timer_pending = false;
        if (ec) return;
        st->deliver(lk, true);
    }

    std::shared_ptr<WatchState> state_;
};

class AsioStrand final : public Strand {
  public:
    explicit AsioStrand(StrandExecutor strand) : strand_(std::move(strand)) {}

    void post(std::function<void()> fn) override { net::post(strand_, std::move(fn)); }
    // An idle strand dispatches its queue on the io_context's executor, which runs it at
    // once on a thread that runs the io_context.
    void dispatch(std::function<void()> fn) override { net::dispatch(strand_, std::move(fn)); }

    Result<std::unique_ptr<FdWatch>> watch(int fd) override {
        const std::string what = "cannot watch descriptor " + std::to_string(fd);
        // Close-on-exec: workers are spawned from other threads while watches exist.
        const int copy = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
        if (copy < 0) return tl::unexpected(system_error(what + ": cannot duplicate it", errno));
        auto state = std::make_shared<WatchState>(strand_);
        boost::system::error_code ec;
        state->descriptor.assign(copy, ec);  // on success the descriptor owns and closes `copy`
        if (ec) {
            ::close(copy);
            return fail(Errc::io,
                        what + ": cannot register it with the event loop: " + ec.message(),
                        {{"errno", ec.value()}});
        }
        return std::unique_ptr<FdWatch>(std::make_unique<AsioFdWatch>(std::move(state)));
    }

  private:
    StrandExecutor strand_;
};

class AsioEventLoop final : public EventLoop {
  public:
    explicit AsioEventLoop(std::vector<net::io_context*> contexts)
        : contexts_(std::move(contexts)) {}

    std::shared_ptr<Strand> make_strand() override {
        for (auto* ioc : contexts_)
            if (ioc->get_executor().running_in_this_thread())
                return std::make_shared<AsioStrand>(net::make_strand(*ioc));
        const std::size_t i = next_++ % contexts_.size();
        return std::make_shared<AsioStrand>(net::make_strand(*contexts_[i]));
    }

  private:
    const std::vector<net::io_context*> contexts_;
    std::atomic<std::size_t> next_{0};
};

class AsioLoopThread final : public LoopThread {
  public:
    AsioLoopThread() { pool_.start(); }
    // The pool (the last member to go) destroys the handlers that have not run, and the
    // watch state they hold. Watches, strands and loops handed out must be gone by then:
    // they refer to the io_context.
    ~AsioLoopThread() override { pool_.stop(); }

    std::shared_ptr<EventLoop> loop() override { return loop_; }

  private:
    ContextPool pool_{1};
    std::shared_ptr<EventLoop> loop_ = make_event_loop(pool_.contexts());
};

}  // namespace

std::shared_ptr<EventLoop> make_event_loop(std::vector<net::io_context*> contexts) {
    return std::make_shared<AsioEventLoop>(std::move(contexts));
}

std::unique_ptr<LoopThread> LoopThread::start() {
    return std::make_unique<AsioLoopThread>();
}

ContextPool::ContextPool(int threads) {
    for (int i = 0; i < std::max(1, threads); ++i)
        contexts_.push_back(std::make_unique<net::io_context>(1));  // hint: one thread runs it
}

ContextPool::~ContextPool() {
    stop();
}

void ContextPool::start() {
    for (auto& c : contexts_) work_.emplace_back(c->get_executor());
    for (auto& c : contexts_) threads_.emplace_back([ioc = c.get()] { ioc->run(); });
}

void ContextPool::stop() {
    work_.clear();
    for (auto& c : contexts_) c->stop();
    for (auto& t : threads_)
        if (t.joinable()) t.join();
    threads_.clear();
}

net::io_context& ContextPool::next() {
    return *contexts_[turn_++ % contexts_.size()];
}

std::vector<net::io_context*> ContextPool::contexts() const {
    std::vector<net::io_context*> v;
    for (const auto& c : contexts_) v.push_back(c.get());
    return v;
}

}  // namespace sandflow::rpc
