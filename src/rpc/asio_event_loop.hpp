// The Boost.Asio implementation of rpc/event_loop.hpp, for the translation units that own an
// io_context (the WebSocket transport, LoopThread). Others include rpc/event_loop.hpp only.
#pragma once

#include <memory>

#include <boost/asio/io_context.hpp>

#include "rpc/event_loop.hpp"

namespace sandflow::rpc {

// An EventLoop over `ioc`, whose strands run on the threads that run `ioc`. It keeps a
// reference: `ioc` must outlive the loop, its strands and their watches.
std::shared_ptr<EventLoop> make_event_loop(boost::asio::io_context& ioc);

}  // namespace sandflow::rpc
