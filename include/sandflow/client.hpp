// C++ client of the Sandflow runtime server (docs/protocol.md).
//
//   auto c = sandflow::client::Client::connect("ws://127.0.0.1:7777");
//   (*c)->load_file("double.actor.py");
//   auto r = (*c)->process("double", {{"input", 21}},
//                          [](const sandflow::client::Output& o) { /* o.port, o.data */ });
//
// Thread-safe: any number of threads may call at once; each call waits for its own
// response. Streamed outputs reach the call's callback, in order, before the call
// returns. Callbacks run on the client's I/O thread: they must not make blocking calls on
// the client, nor on another client served by the same thread (start_call / start_process
// are fine there). Each client runs an I/O thread of its own unless Options::io names
// threads that several clients share.
// Without blocking a thread: start_call / start_process take a completion callback, and
// include/sandflow/client_asio.hpp turns them into Boost.Asio operations
// (co_await async_process(client, ..., asio::use_awaitable)).
// The library uses the JSON-RPC codec and the WebSocket transport only (no sandbox code).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include "core/error.hpp"
#include "sandflow/limits.hpp"

namespace boost::asio {
class io_context;
}

namespace sandflow::client {

namespace json = boost::json;

// I/O threads that several clients share: each client is served by one of them, dealt in
// turn as clients connect. A host with many connections then runs a few threads instead of
// one per connection, and responses that arrive together wake one thread, not one each.
// Clients hold it: it stops, and joins its threads, once the last of them is gone.
class IoThreads {
  public:
    static std::shared_ptr<IoThreads> start(int threads = 1);
    ~IoThreads();
    IoThreads(const IoThreads&) = delete;
    IoThreads& operator=(const IoThreads&) = delete;

    struct Impl;

  private:
    explicit IoThreads(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
    friend class Client;
};

struct Options {
    std::string token;  // sent as "Authorization: Bearer TOKEN"
    std::chrono::milliseconds connect_timeout{5'000};
    std::chrono::milliseconds call_timeout{60'000};  // per call unless given; 0 = none
    // After the connection is lost, the next call reconnects (up to this many attempts,
    // 100 ms apart). Calls in flight when it was lost fail with Errc::io.
    bool reconnect = true;
    int reconnect_attempts = 3;
    bool deflate = false;  // permessage-deflate (worth it for large messages only)
    std::size_t max_message_bytes = limits::kMaxRpcMessageBytes;
    std::shared_ptr<IoThreads> io;  // empty: the client runs an I/O thread of its own
};

// A streamed `script_output` notification.
struct Output {
    std::string actor_id;
    std::string instance_id;
    std::string port;
    json::value data;
    std::int64_t timestamp = 0;
};
using OutputCallback = std::function<void(const Output&)>;
// Any notification: method and params.
using NotificationCallback = std::function<void(std::string_view, const json::value&)>;
// The end of a call started without waiting: its result or its error.
template <class T>
using DoneCallback = std::function<void(Result<T>)>;

struct ProcessOptions {
    std::string instance_id;  // empty: "default"
    json::object config;
    std::optional<json::object> state;     // run this call on this state
    std::int64_t timestamp = 0;            // 0: none sent
    std::chrono::milliseconds timeout{0};  // server-side call timeout; 0: the server's
    // params.call_id (at most limits::kMaxCallIdBytes): the same call sent again after a
    // lost answer is answered from the state store and commits nothing twice.
    // FailoverClient makes one when it is empty.
    std::string call_id;
};

struct ProcessResult {
    json::object outputs;
    json::object state;  // committed state after the call
    std::int64_t duration_us = 0;
    bool replayed = false;  // answered from the store: the call_id had been committed already
};

struct LoadResult {
    bool success = false;
    std::string actor_id;
    std::string instance_id;
    std::string error;  // when !success
    json::object raw;   // the whole result
};

class Client {
  public:
    // Connects (ws://host:port[/path]) and completes the WebSocket handshake.
    static Result<std::unique_ptr<Client>> connect(std::string url, Options options = {});
    ~Client();
    Client(const Client&) = delete;
    Client& operator=(const Client&) = delete;

    // Any method. JSON-RPC errors come back as sandflow::Error: the Errc from the server's
    // data.errc, data.rpc_code the JSON-RPC code, data.reason the stable name. A call that
    // gets no response within `timeout` fails with Errc::timeout, and the client asks the
    // server to cancel it (on the same connection, without waiting for the answer).
    // Notifications tagged with this call's id (params.call_id) go to on_notification.
    Result<json::value> call(std::string_view method, json::value params,
                             NotificationCallback on_notification = {},
                             std::chrono::milliseconds timeout = std::chrono::milliseconds(-1));
    // The same, without waiting: the future is ready when the response arrives or the
    // connection is lost (no client-side timeout). `id_out` receives the request id (for
    // cancel()).
    std::future<Result<json::value>> call_async(std::string_view method, json::value params,
                                                NotificationCallback on_notification = {},
                                                std::int64_t* id_out = nullptr);
    // The same with a completion callback instead of a future: `on_done` runs once, on the
    // client's I/O thread, after the call's notifications (or on the thread that closes
    // the client, with an error). Called on the I/O thread itself (from a callback or a
    // coroutine running there), the request is written at once, with no thread switch;
    // a lost connection then fails the call instead of reconnecting (a reconnect blocks).
    void start_call(std::string_view method, json::value params,
                    NotificationCallback on_notification, DoneCallback<json::value> on_done,
                    std::int64_t* id_out = nullptr);
    void start_process(std::string_view actor_id, json::object payload, OutputCallback on_output,
                       const ProcessOptions& opts, DoneCallback<ProcessResult> on_done,
                       std::int64_t* id_out = nullptr);
    // The context the client's I/O thread runs (shared with the other clients of the same
    // IoThreads thread): run coroutines there (co_spawn) and their calls cost no thread
    // switch. The client must outlive what runs on it for it, and must not be destroyed
    // from that thread.
    boost::asio::io_context& io_context();

    Result<std::vector<std::string>> list();
    Result<LoadResult> load_file(std::string_view file_path, std::string_view instance_id = {});
    Result<LoadResult> load_source(std::string_view source, std::string_view language,
                                   std::string_view instance_id = {},
                                   std::string_view filename = {});
    Result<ProcessResult> process(std::string_view actor_id, json::object payload,
                                  OutputCallback on_output = {}, const ProcessOptions& opts = {});
    Result<json::object> unload(std::string_view actor_id, std::string_view instance_id = {});
    Result<json::object> describe(std::string_view actor_id);
    Result<json::object> ping();
    Result<json::object> stats();
    // Cancels a call in flight on this client's connection, by the id from call_async.
    // True when the server found the call (it then fails as cancelled unless it had
    // already finished).
    Result<bool> cancel(std::int64_t call_id);

    // Notifications that belong to no call.
    void on_notification(NotificationCallback cb);
    bool connected() const;
    // Messages from the server that matched nothing: a response, or a notification tagged
    // with a call id, for no call waiting here (a call that timed out here, a duplicate),
    // or text that is not JSON-RPC. They are dropped; this counts them. A server that
    // answers each call once, on calls that did not time out, leaves it at 0.
    std::uint64_t unmatched_messages() const;
    // Closes the connection; calls in flight fail, and later ones fail at once. When it
    // returns, nothing of this client runs or waits on its I/O thread.
    void close();

    struct Impl;

  private:
    explicit Client(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

// A client over several runtime servers that share one state store (`serve --state
// redis://...`): each instance (component, instance id) is sent to one server, the first
// up in an order fixed by hashing the instance with each server's URL (rendezvous
// hashing: losing a server moves only its own instances). When a call finds its server
// gone (the connection was lost, cannot be made, or the server is shutting down), the
// server is marked down and the call is sent again, with the same call_id, to the next
// server up in that order; the script is loaded there first when this client loaded it.
// The store answers a call_id already committed from what it holds (`replayed`), so a
// call that committed just before its server died is not applied twice; a call that had
// not committed runs again, and its streamed outputs may arrive twice (docs/protocol.md,
// "State stores and delivery"). A state_conflict is sent again to the same server.
// Exactly once holds per instance for one call in flight at a time (the store remembers
// the last committed call only), which is how the flow engine calls.
// A server marked down is tried again after limits::kFailoverRetryAfter, or at once when
// no server is up (a call that finds none up tries again 100 ms later, within its
// limits::kMaxFailoverAttempts tries: a restarting server is waited for briefly).
// Thread-safe; calls block. Its connections share one I/O thread (or Options::io).
class FailoverClient {
  public:
    // `urls`: at most limits::kMaxRuntimeEndpoints. Connects to each; fails only when none
    // answers.
    static Result<std::unique_ptr<FailoverClient>> connect(std::vector<std::string> urls,
                                                           Options options = {});
    // "ws://A,ws://B": the URLs of a comma-separated list (empty items are an error).
    static Result<std::vector<std::string>> split_urls(std::string_view list);
    ~FailoverClient();
    FailoverClient(const FailoverClient&) = delete;
    FailoverClient& operator=(const FailoverClient&) = delete;

    // Loads a script inline for (component, instance_id) on that instance's server, and
    // remembers it to load it again wherever the instance moves. `component` is what the
    // script declares (the server's answer names it too).
    Result<LoadResult> load_source(std::string_view component, std::string_view source,
                                   std::string_view language, std::string_view instance_id,
                                   std::string_view filename = {});
    // `process` on the instance's server, failing over as above. A call_id is made (random,
    // unique to this client and call) when opts.call_id is empty.
    Result<ProcessResult> process(std::string_view actor_id, json::object payload,
                                  OutputCallback on_output = {}, const ProcessOptions& opts = {});
    // Unloads the instance on its server (which erases its state from the store) and
    // forgets its script.
    Result<json::object> unload(std::string_view actor_id, std::string_view instance_id = {});
    // The URL of the server the instance goes to now ("" when none is up).
    std::string server_for(std::string_view actor_id, std::string_view instance_id = {});
    // Calls sent again to another server after theirs was lost.
    std::uint64_t failovers() const;
    void close();

    struct Impl;

  private:
    explicit FailoverClient(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace sandflow::client
