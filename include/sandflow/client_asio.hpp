// Boost.Asio forms of the client's calls (include/sandflow/client.hpp), for C++20
// coroutines and any other completion token:
//
//   asio::awaitable<void> run(sandflow::client::Client* c) {  // parameters by value
//       const std::string actor = "double";
//       const sandflow::client::OutputCallback on_output = [](const auto& o) { ... };
//       const sandflow::client::ProcessOptions opts;
//       json::object payload{{"input", 21}};
//       auto r = co_await sandflow::client::async_process(
//           *c, actor, std::move(payload), on_output, opts, asio::use_awaitable);
//       // r: Result<ProcessResult>
//   }
//   asio::co_spawn(client->io_context(), run(client.get()), asio::detached);
//
// The completion runs on the handler's associated executor (for a coroutine, the one it
// runs on), after the call's streamed outputs. A coroutine that runs on the client's own
// io_context() resumes on the I/O thread with no thread switch; elsewhere it costs one
// post. The client must outlive its operations. Errors are values (Result), never
// exceptions; there is no client-side timeout (use ProcessOptions::timeout or cancel()).
// GCC 12: inside a co_await expression, pass named variables, not temporaries (a lambda,
// `{}`, a string literal): that compiler destroys some of them twice or rejects them.
// Kept out of client.hpp so that its users do not compile Asio.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include "sandflow/client.hpp"

namespace sandflow::client {

namespace detail {

// Wraps a (possibly move-only) completion handler into a DoneCallback that delivers the
// result on the handler's executor, keeping that executor busy until then.
template <class T, class Handler>
DoneCallback<T> deliver_to(Client& c, Handler&& handler) {
    using H = std::decay_t<Handler>;
    auto ex = boost::asio::get_associated_executor(handler, c.io_context().get_executor());
    auto state = std::make_shared<std::pair<H, decltype(boost::asio::make_work_guard(ex))>>(
        std::forward<Handler>(handler), boost::asio::make_work_guard(ex));
    return [state](Result<T> r) {
        auto ex2 = state->second.get_executor();
        boost::asio::dispatch(ex2, [state, r = std::move(r)]() mutable {
            auto h = std::move(state->first);
            state->second.reset();
            std::move(h)(std::move(r));
        });
    };
}

// The arguments of one call, moved to the heap at once: the initiation then carries one
// pointer, which any token stores or moves cheaply.
struct CallArgs {
    std::string method;
    json::value params;
    NotificationCallback on_notification;
};
struct ProcessArgs {
    std::string actor_id;
    json::object payload;
    OutputCallback on_output;
    ProcessOptions opts;
};

}  // namespace detail

// Any method: completes with Result<json::value>, like Client::call.
template <class CompletionToken>
auto async_call(Client& c, std::string_view method, json::value params,
                NotificationCallback on_notification, CompletionToken&& token) {
    auto args = std::make_shared<detail::CallArgs>(
        detail::CallArgs{std::string(method), std::move(params), std::move(on_notification)});
    return boost::asio::async_initiate<CompletionToken, void(Result<json::value>)>(
        [cp = &c](auto handler, std::shared_ptr<detail::CallArgs> a) {
            cp->start_call(a->method, std::move(a->params), std::move(a->on_notification),
                           detail::deliver_to<json::value>(*cp, std::move(handler)));
        },
        token, std::move(args));
}

// `process`: completes with Result<ProcessResult>, like Client::process; outputs reach
// `on_output` on the client's I/O thread first.
template <class CompletionToken>
auto async_process(Client& c, std::string_view actor_id, json::object payload,
                   OutputCallback on_output, ProcessOptions opts, CompletionToken&& token) {
    auto args = std::make_shared<detail::ProcessArgs>(detail::ProcessArgs{
        std::string(actor_id), std::move(payload), std::move(on_output), std::move(opts)});
    return boost::asio::async_initiate<CompletionToken, void(Result<ProcessResult>)>(
        [cp = &c](auto handler, std::shared_ptr<detail::ProcessArgs> a) {
            cp->start_process(a->actor_id, std::move(a->payload), std::move(a->on_output), a->opts,
                              detail::deliver_to<ProcessResult>(*cp, std::move(handler)));
        },
        token, std::move(args));
}

}  // namespace sandflow::client
