// The Boost.Asio implementation of rpc/event_loop.hpp, for the translation units that own an
// io_context (the WebSocket transport, LoopThread). Others include rpc/event_loop.hpp only.
#pragma once

#include <memory>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "rpc/event_loop.hpp"

namespace sandflow::rpc {

// An EventLoop over `contexts` (at least one), each run by its own thread(s). A strand
// lives on one context: the one whose thread calls make_strand(), so work for it stays on
// that thread; from any other thread, the next context in turn. It keeps references: the
// contexts must outlive the loop, its strands and their watches.
std::shared_ptr<EventLoop> make_event_loop(std::vector<boost::asio::io_context*> contexts);

}  // namespace sandflow::rpc
