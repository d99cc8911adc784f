// The Boost.Asio implementation of rpc/event_loop.hpp, for the translation units that own an
// io_context (the WebSocket transport, the client library, LoopThread). Others include
// rpc/event_loop.hpp only.
#pragma once

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include "rpc/event_loop.hpp"

namespace sandflow::rpc {

// An EventLoop over `contexts` (at least one), each run by its own thread(s). A strand
// lives on one context: the one whose thread calls make_strand(), so work for it stays on
// that thread; from any other thread, the next context in turn. It keeps references: the
// contexts must outlive the loop, its strands and their watches.
std::shared_ptr<EventLoop> make_event_loop(std::vector<boost::asio::io_context*> contexts);

// io_contexts, each run by one thread of its own once start() is called (the transport's
// I/O threads, the client library's IoThreads, LoopThread). stop(), or destruction, stops
// them and joins the threads; not from one of those threads. Destroying the pool destroys
// the handlers that have not run.
class ContextPool {
  public:
    explicit ContextPool(int threads);  // at least one
    ~ContextPool();
    ContextPool(const ContextPool&) = delete;
    ContextPool& operator=(const ContextPool&) = delete;

    void start();
    void stop();
    bool running() const { return !threads_.empty(); }
    boost::asio::io_context& next();  // each context in turn
    boost::asio::io_context& front() { return *contexts_.front(); }
    std::vector<boost::asio::io_context*> contexts() const;

  private:
    using Work = boost::asio::executor_work_guard<boost::asio::io_context::executor_type>;
    std::vector<std::unique_ptr<boost::asio::io_context>> contexts_;
    std::vector<Work> work_;
    std::vector<std::thread> threads_;
    std::atomic<std::size_t> turn_{0};
};

}  // namespace sandflow::rpc
