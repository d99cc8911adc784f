// The Asio event loop (rpc/event_loop.hpp): descriptor watches with deadlines, strands.
// Pipes made here, no processes. Timeouts only keep a broken build from hanging; nothing
// asserts how long anything took.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include "rpc/asio_event_loop.hpp"
#include "rpc/event_loop.hpp"

using namespace sandflow;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

constexpr auto kGenerous = 10s;

// A non-blocking pipe, closed at the end of the test.
struct Pipe {
    int read_end = -1;
    int write_end = -1;
    Pipe() {
        int fds[2];
        EXPECT_EQ(::pipe2(fds, O_NONBLOCK | O_CLOEXEC), 0);
        read_end = fds[0];
        write_end = fds[1];
    }
    ~Pipe() {
        if (read_end >= 0) ::close(read_end);
        if (write_end >= 0) ::close(write_end);
    }
    void write_byte() const { EXPECT_EQ(::write(write_end, "x", 1), 1); }
    void close_read_end() {
        ::close(read_end);
        read_end = -1;
    }
};

// Runs `fn` on `strand` and waits until it has run.
template <class Fn>
void on_strand(rpc::Strand& strand, Fn fn) {
    std::promise<void> done;
    strand.post([&] {
        fn();
        done.set_value();
    });
    ASSERT_EQ(done.get_future().wait_for(kGenerous), std::future_status::ready);
}

// What the callbacks of one test reported: each expired flag, in order.
class Outcomes {
  public:
    std::function<void(bool)> callback() {
        return [this](bool expired) {
            std::lock_guard lk(mu_);
            got_.push_back(expired);
            cv_.notify_all();
        };
    }
    // Waits until `n` callbacks have run.
    std::vector<bool> wait_for(std::size_t n) {
        std::unique_lock lk(mu_);
        EXPECT_TRUE(cv_.wait_for(lk, kGenerous, [&] { return got_.size() >= n; }))
            << "only " << got_.size() << " of " << n << " callbacks ran";
        return got_;
    }
    std::vector<bool> now() {
        std::lock_guard lk(mu_);
        return got_;
    }

  private:
    std::mutex mu_;
    std::condition_variable cv_;
    std::vector<bool> got_;
};

// A callback that must never run; `alive` shows whether the watch still holds it.
struct Forbidden {
    std::shared_ptr<int> token = std::make_shared<int>(0);
    std::atomic<int> runs{0};
    std::function<void(bool)> callback() {
        return [this, t = token](bool) { ++runs; };
    }
    bool alive() const { return token.use_count() > 1; }
};

class EventLoopTest : public ::testing::Test {
  protected:
    std::unique_ptr<rpc::LoopThread> thread_ = rpc::LoopThread::start();
    std::shared_ptr<rpc::Strand> strand_ = thread_->loop()->make_strand();

    std::unique_ptr<rpc::FdWatch> watch(int fd) {
        auto w = strand_->watch(fd);
        EXPECT_TRUE(w.has_value()) << (w ? "" : w.error().message);
        return w ? std::move(*w) : nullptr;
    }
    // Starts a wait from the strand, as the watch's users must.
    void arm(rpc::FdWatch& w, Clock::time_point deadline, std::function<void(bool)> ready) {
        on_strand(*strand_, [&] { w.wait(deadline, std::move(ready)); });
    }
    // Lets what is already queued on the strand run.
    void drain() {
        on_strand(*strand_, [] {});
    }
};

TEST_F(EventLoopTest, ReadableCompletesTheWaitNotExpired) {
    Pipe p;
    auto w = watch(p.read_end);
    ASSERT_TRUE(w);
    Outcomes out;
    arm(*w, Clock::now() + 60s, out.callback());
    p.write_byte();
    EXPECT_EQ(out.wait_for(1), std::vector<bool>{false});
}

// The server relies on it: it arms a wait after the worker may already have answered.
TEST_F(EventLoopTest, ADescriptorReadableBeforeTheWaitCompletesIt) {
    Pipe p;
    auto w = watch(p.read_end);
    ASSERT_TRUE(w);
    Outcomes out;
    // Data before the first wait, then again between a wait that completed and the next.
    p.write_byte();
    arm(*w, Clock::now() + 60s, out.callback());
    EXPECT_EQ(out.wait_for(1), std::vector<bool>{false});
    char c;
    ASSERT_EQ(::read(p.read_end, &c, 1), 1);
    p.write_byte();
    drain();
    arm(*w, Clock::now() + 60s, out.callback());
    EXPECT_EQ(out.wait_for(2), (std::vector<bool>{false, false}));
    // Still unread: a third wait completes too (readiness, not a new event, decides).
    arm(*w, Clock::now() + 60s, out.callback());
    EXPECT_EQ(out.wait_for(3), (std::vector<bool>{false, false, false}));
}

TEST_F(EventLoopTest, DeadlineCompletesTheWaitExpired) {
    Pipe p;
    auto w = watch(p.read_end);
    ASSERT_TRUE(w);
    Outcomes out;
    arm(*w, Clock::now() + 20ms, out.callback());
    EXPECT_EQ(out.wait_for(1), std::vector<bool>{true});
}

TEST_F(EventLoopTest, RepeatedWaitsWithOneDeadline) {
    // One call's pattern: several readable waits under the same deadline, then the deadline;
    // a deadline that has fired fires again for the next wait with it.
    Pipe p;
    auto w = watch(p.read_end);
    ASSERT_TRUE(w);
    Outcomes out;
    const auto far = Clock::now() + 60s;
    for (std::size_t i = 1; i <= 3; ++i) {
        arm(*w, far, out.callback());
        p.write_byte();
        ASSERT_EQ(out.wait_for(i).size(), i);
        char buf[8];
        EXPECT_EQ(::read(p.read_end, buf, sizeof buf), 1);
    }
    const auto soon = Clock::now() + 20ms;
    arm(*w, soon, out.callback());
    out.wait_for(4);
    arm(*w, soon, out.callback());
    EXPECT_EQ(out.wait_for(5), (std::vector<bool>{false, false, false, true, true}));
}

TEST_F(EventLoopTest, AWaitWithoutDeadlineIsNotEndedByAnEarlierOne) {
    // The server's pattern: a call's wait (deadline D) ends readable, then the worker is
    // watched with no deadline until the next call. D passing must not end that wait.
    Pipe p;
    auto w = watch(p.read_end);
    ASSERT_TRUE(w);
    Outcomes out;
    arm(*w, Clock::now() + 50ms, out.callback());
    p.write_byte();
    ASSERT_EQ(out.wait_for(1), std::vector<bool>{false});
    char buf[8];
    EXPECT_EQ(::read(p.read_end, buf, sizeof buf), 1);
    arm(*w, Clock::time_point::max(), out.callback());
    std::this_thread::sleep_for(150ms);  // D has passed
    drain();
    EXPECT_EQ(out.now().size(), 1u);
    p.write_byte();
    EXPECT_EQ(out.wait_for(2), (std::vector<bool>{false, false}));
    EXPECT_EQ(::read(p.read_end, buf, sizeof buf), 1);
    // The next call's deadline still fires.
    arm(*w, Clock::now() + 20ms, out.callback());
    EXPECT_EQ(out.wait_for(3), (std::vector<bool>{false, false, true}));
}

TEST_F(EventLoopTest, AReplacedWaitNeverRuns) {
    Pipe p;
    auto w = watch(p.read_end);
    ASSERT_TRUE(w);
    Forbidden first;
    Outcomes out;
    on_strand(*strand_, [&] {
        // The first wait's deadline has passed: its timer completes at once, and must be
        // ignored because the second wait replaced it.
        w->wait(Clock::now() - 1s, first.callback());
        w->wait(Clock::now() + 60s, out.callback());
        EXPECT_FALSE(first.alive());
    });
    p.write_byte();
    EXPECT_EQ(out.wait_for(1), std::vector<bool>{false});
    drain();
    EXPECT_EQ(first.runs, 0);
}

TEST_F(EventLoopTest, ACancelledWaitNeverRuns) {
    Pipe p;
    auto w = watch(p.read_end);
    ASSERT_TRUE(w);
    Forbidden cancelled;
    on_strand(*strand_, [&] {
        w->wait(Clock::now() - 1s, cancelled.callback());
        w->cancel();
        EXPECT_FALSE(cancelled.alive());
    });
    p.write_byte();
    drain();
    // The watch still works after a cancel; the operations it left pending are reused.
    Outcomes out;
    arm(*w, Clock::now() - 1s, out.callback());
    EXPECT_EQ(out.wait_for(1).size(), 1u);
    drain();
    EXPECT_EQ(cancelled.runs, 0);
}

TEST_F(EventLoopTest, WatchesADuplicateTheCallerMayClose) {
    Pipe p;
    auto w = watch(p.read_end);
    ASSERT_TRUE(w);
    p.close_read_end();
    Outcomes out;
    arm(*w, Clock::now() + 60s, out.callback());
    p.write_byte();  // would fail with EPIPE if the watch held no read end
    EXPECT_EQ(out.wait_for(1), std::vector<bool>{false});
}

TEST_F(EventLoopTest, AnInvalidDescriptorIsAnIoError) {
    auto w = strand_->watch(-1);
    ASSERT_FALSE(w.has_value());
    EXPECT_EQ(w.error().code, Errc::io);
    EXPECT_NE(w.error().message.find("descriptor -1"), std::string::npos) << w.error().message;
}

TEST_F(EventLoopTest, DestroyingAWatchWithAWaitPendingNeverRunsIt) {
    Pipe p;
    Forbidden pending;
    // Off the strand, with a wait pending.
    {
        auto w = watch(p.read_end);
        ASSERT_TRUE(w);
        arm(*w, Clock::now() + 60s, pending.callback());
        w.reset();
        EXPECT_FALSE(pending.alive());
    }
    // On the strand, with both completions due (they cannot run before this function
    // returns): their handlers outlive the watch.
    {
        auto w = watch(p.read_end);
        ASSERT_TRUE(w);
        on_strand(*strand_, [&] {
            w->wait(Clock::now() - 1s, pending.callback());
            p.write_byte();
            w.reset();
        });
        EXPECT_FALSE(pending.alive());
    }
    drain();
    drain();
    EXPECT_EQ(pending.runs, 0);
}

TEST_F(EventLoopTest, ACallbackMayDestroyItsOwnWatch) {
    Pipe p;
    std::unique_ptr<rpc::FdWatch> w = watch(p.read_end);
    ASSERT_TRUE(w);
    std::promise<bool> done;
    on_strand(*strand_, [&] {
        w->wait(Clock::now() - 1s, [&](bool expired) {
            w.reset();
            done.set_value(expired);
        });
    });
    auto f = done.get_future();
    ASSERT_EQ(f.wait_for(kGenerous), std::future_status::ready);
    EXPECT_TRUE(f.get());
}

TEST_F(EventLoopTest, DestroyingOffTheStrandWaitsForARunningCallback) {
    Pipe p;
    auto w = watch(p.read_end);
    ASSERT_TRUE(w);
    std::promise<void> entered;
    std::promise<void> release;
    std::atomic<bool> finished{false};
    on_strand(*strand_, [&] {
        w->wait(Clock::now() - 1s, [&](bool) {
            entered.set_value();
            release.get_future().wait();
            finished = true;
        });
    });
    ASSERT_EQ(entered.get_future().wait_for(kGenerous), std::future_status::ready);
    bool finished_when_destroyed = false;
    std::thread destroyer([&] {
        w.reset();
        finished_when_destroyed = finished;
    });
    // Gives the destroyer a chance to block first; the test holds either way.
    std::this_thread::sleep_for(50ms);
    release.set_value();
    destroyer.join();
    EXPECT_TRUE(finished_when_destroyed);
}

TEST_F(EventLoopTest, PostsRunInOrderAndNeverInsidePost) {
    constexpr int kPosts = 200;
    std::vector<int> order;
    std::promise<void> done;
    on_strand(*strand_, [&] {
        for (int i = 0; i < kPosts; ++i) {
            strand_->post([&, i] {
                order.push_back(i);
                if (i == kPosts - 1) done.set_value();
            });
            EXPECT_TRUE(order.empty());  // nothing ran inside post()
        }
    });
    ASSERT_EQ(done.get_future().wait_for(kGenerous), std::future_status::ready);
    ASSERT_EQ(order.size(), static_cast<std::size_t>(kPosts));
    for (int i = 0; i < kPosts; ++i) EXPECT_EQ(order[static_cast<std::size_t>(i)], i);
}

// The server starts an idle instance's call this way from the connection's handler.
TEST_F(EventLoopTest, DispatchRunsAtOnceOnlyOnALoopThreadWithTheStrandIdle) {
    auto other = thread_->loop()->make_strand();
    // On a loop thread (inside another strand's work), the idle strand runs it inside.
    bool ran_inside = false;
    on_strand(*strand_, [&] {
        bool ran = false;
        other->dispatch([&] { ran = true; });
        ran_inside = ran;
    });
    EXPECT_TRUE(ran_inside);
    // Work already queued on the strand goes first: then it waits its turn.
    std::vector<int> order;
    on_strand(*strand_, [&] {
        other->post([&] { order.push_back(1); });
        other->dispatch([&] { order.push_back(2); });
        EXPECT_TRUE(order.empty());
    });
    on_strand(*other, [] {});
    EXPECT_EQ(order, (std::vector<int>{1, 2}));
    // Off the loop's threads it never runs inside.
    std::promise<std::thread::id> ran_on;
    other->dispatch([&] { ran_on.set_value(std::this_thread::get_id()); });
    auto f = ran_on.get_future();
    ASSERT_EQ(f.wait_for(kGenerous), std::future_status::ready);
    EXPECT_NE(f.get(), std::this_thread::get_id());
}

TEST(EventLoopStrand, PostsFromManyThreadsRunOneAtATime) {
    boost::asio::io_context ioc;
    auto work = boost::asio::make_work_guard(ioc);
    std::vector<std::thread> runners;
    for (int i = 0; i < 2; ++i) runners.emplace_back([&] { ioc.run(); });

    auto loop = rpc::make_event_loop({&ioc});
    auto strand = loop->make_strand();
    constexpr int kThreads = 4;
    constexpr int kPostsEach = 500;
    std::atomic<int> inside{0};
    std::atomic<int> overlaps{0};
    std::atomic<int> ran{0};
    std::promise<void> all_ran;
    std::vector<std::thread> posters;
    for (int t = 0; t < kThreads; ++t) {
        posters.emplace_back([&] {
            for (int i = 0; i < kPostsEach; ++i) {
                strand->post([&] {
                    if (inside.fetch_add(1) != 0) ++overlaps;
                    std::this_thread::yield();  // widens the window for an overlap
                    inside.fetch_sub(1);
                    if (ran.fetch_add(1) + 1 == kThreads * kPostsEach) all_ran.set_value();
                });
            }
        });
    }
    for (auto& t : posters) t.join();
    EXPECT_EQ(all_ran.get_future().wait_for(kGenerous), std::future_status::ready);
    work.reset();
    ioc.stop();
    for (auto& t : runners) t.join();
    EXPECT_EQ(overlaps, 0);
    EXPECT_EQ(ran, kThreads * kPostsEach);
}

}  // namespace

namespace {

// The thread `strand`'s work runs on.
std::thread::id thread_of(rpc::Strand& strand) {
    std::promise<std::thread::id> ran_on;
    strand.post([&] { ran_on.set_value(std::this_thread::get_id()); });
    auto f = ran_on.get_future();
    EXPECT_EQ(f.wait_for(kGenerous), std::future_status::ready);
    return f.get();
}

}  // namespace

// A loop over one context per thread (as the transport runs): a strand made on one of its
// threads stays there (the server makes an instance's strand on the thread of the
// connection that calls it first); strands made elsewhere go to the contexts in turn.
TEST(EventLoopContexts, AStrandLivesOnTheThreadThatMadeItOrOnTheContextsInTurn) {
    boost::asio::io_context a(1), b(1);
    auto work_a = boost::asio::make_work_guard(a);
    auto work_b = boost::asio::make_work_guard(b);
    std::thread run_a([&] { a.run(); });
    std::thread run_b([&] { b.run(); });
    auto loop = rpc::make_event_loop({&a, &b});

    const auto first = thread_of(*loop->make_strand());
    const auto second = thread_of(*loop->make_strand());
    EXPECT_NE(first, second);
    EXPECT_TRUE(first == run_a.get_id() || first == run_b.get_id());
    EXPECT_TRUE(second == run_a.get_id() || second == run_b.get_id());

    for (auto* ioc : {&a, &b}) {
        const auto runner = ioc == &a ? run_a.get_id() : run_b.get_id();
        for (int i = 0; i < 3; ++i) {  // whatever the turn
            std::promise<std::shared_ptr<rpc::Strand>> made;
            boost::asio::post(*ioc, [&] { made.set_value(loop->make_strand()); });
            auto strand = made.get_future().get();
            EXPECT_EQ(thread_of(*strand), runner);
            // And dispatch from its own thread runs inline.
            std::promise<bool> inline_run;
            boost::asio::post(*ioc, [&] {
                bool ran = false;
                strand->dispatch([&] { ran = true; });
                inline_run.set_value(ran);
            });
            EXPECT_TRUE(inline_run.get_future().get());
        }
    }
    work_a.reset();
    work_b.reset();
    a.stop();
    b.stop();
    run_a.join();
    run_b.join();
}
