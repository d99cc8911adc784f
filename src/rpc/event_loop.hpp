// What the layers above the transport use to wait on descriptors on the transport's own
// I/O threads, without Asio in their headers. The server drives a worker call there: the
// request arrives, the worker's descriptor is watched, and the response leaves, all on one
// thread with no hand-off to another (docs/decisions.md, "Calls on the I/O thread").
//
// Serialisation: work for one Strand (its posts and its watches' callbacks) runs one piece
// at a time, in order, however many threads run the loop. Different strands run in
// parallel. FdWatch::wait() and cancel() must be called on the watch's strand (from a
// posted function or a callback); destroying a watch is safe anywhere (elsewhere than on
// its strand, it waits for a callback of that watch that is running to return).
#pragma once

#include <chrono>
#include <functional>
#include <memory>

#include "core/error.hpp"

namespace sandflow::rpc {

// Watches one descriptor for reading, with a deadline.
class FdWatch {
  public:
    virtual ~FdWatch() = default;
    // Calls `ready` once, on the watch's strand, when the descriptor polls readable
    // (ready(false)) or when `deadline` has passed (ready(true)), whichever comes first.
    // A wait replaces the one pending, whose callback then never runs. A descriptor that
    // is readable when wait() is called completes it at once (readiness is checked when
    // the wait is armed, so nothing that arrived before is missed); a wait may also
    // complete with nothing to read (the caller then reads EAGAIN and waits again).
    virtual void wait(std::chrono::steady_clock::time_point deadline,
                      std::function<void(bool expired)> ready) = 0;
    // Drops the pending wait: its callback never runs.
    virtual void cancel() = 0;
};

class Strand {
  public:
    virtual ~Strand() = default;
    // Runs `fn` on this strand, later (never inside post()).
    virtual void post(std::function<void()> fn) = 0;
    // Runs `fn` on this strand: inside this call when it is made on the thread that runs
    // this strand and the strand has nothing queued or running (no hand-off to another
    // thread), else later, as post(). The caller must hold no lock that `fn` takes.
    virtual void dispatch(std::function<void()> fn) = 0;
    // Watches a duplicate of `fd`, so the caller may close its own at any time; the
    // callbacks run on this strand. Errors: Errc::io when the descriptor cannot be
    // duplicated or registered.
    virtual Result<std::unique_ptr<FdWatch>> watch(int fd) = 0;
};

class EventLoop {
  public:
    virtual ~EventLoop() = default;
    // A strand that runs on the calling thread when that is one of the loop's threads
    // (work made for a connection stays on its thread), else on one the loop picks.
    virtual std::shared_ptr<Strand> make_strand() = 0;
};

// A loop of its own: one thread running an event loop until destroyed (which stops the
// loop, dropping what has not run, and joins the thread). For embedders without a
// transport, and for tests.
class LoopThread {
  public:
    static std::unique_ptr<LoopThread> start();
    virtual ~LoopThread() = default;
    virtual std::shared_ptr<EventLoop> loop() = 0;
};

}  // namespace sandflow::rpc
