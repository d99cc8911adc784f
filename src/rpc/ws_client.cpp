// The client library (include/sandflow/client.hpp) over Boost.Beast. An I/O thread (the
// client's own, or one of an IoThreads several clients share) owns the socket; callers'
// threads post to it and wait on futures, while calls started on the I/O thread itself
// (callbacks, coroutines there) write at once. Every handler of a client's operations holds
// a token, and closing waits until none is left: on a shared thread nothing of a closed
// client may run after it is gone. The protocol's methods as typed calls over it are in
// client_methods.cpp.
#include "sandflow/client.hpp"

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_map>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>

#include "core/json.hpp"
#include "rpc/asio_event_loop.hpp"
#include "rpc/beast_names.hpp"
#include "rpc/jsonrpc.hpp"
#include "rpc/transport.hpp"

namespace sandflow::client {

struct IoThreads::Impl {
    explicit Impl(int threads) : pool(threads) { pool.start(); }
    rpc::ContextPool pool;
};

IoThreads::IoThreads(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
IoThreads::~IoThreads() = default;

std::shared_ptr<IoThreads> IoThreads::start(int threads) {
    return std::shared_ptr<IoThreads>(new IoThreads(std::make_unique<Impl>(threads)));
}

struct Client::Impl {
    struct Pending {
        DoneCallback<json::value> done;
        NotificationCallback on_notification;
    };

    // Handlers still to run or be destroyed; a handler's token leaves with it.
    struct Outstanding {
        std::mutex mu;
        std::condition_variable none_left;
        int count = 0;
    };
    class Token {
      public:
        explicit Token(std::shared_ptr<Outstanding> o) : o_(std::move(o)) {
            std::lock_guard lk(o_->mu);
            ++o_->count;
        }
        Token(Token&&) = default;
        Token& operator=(Token&&) = delete;
        ~Token() {
            if (!o_) return;  // moved from
            std::lock_guard lk(o_->mu);
            if (--o_->count == 0) o_->none_left.notify_all();
        }

      private:
        std::shared_ptr<Outstanding> o_;
    };

    Impl(std::string u, rpc::WsUrl parsed, Options o)
        : url(std::move(u)),
          where(std::move(parsed)),
          opts(std::move(o)),
          io(opts.io ? opts.io : IoThreads::start(1)),
          ioc(io->impl_->pool.next()) {}
    ~Impl() { stop(); }

    const std::string url;
    const rpc::WsUrl where;
    const Options opts;
    // Before the socket: a private IoThreads is joined only after the socket is gone.
    const std::shared_ptr<IoThreads> io;
    net::io_context& ioc;
    const std::shared_ptr<Outstanding> outstanding = std::make_shared<Outstanding>();
    Token track() { return Token(outstanding); }
    std::atomic<bool> closing{false};  // close() began: no new connection, no new call

    std::mutex mu;  // pending, connected, global
    std::unordered_map<std::int64_t, std::shared_ptr<Pending>> pending;
    bool connected = false;
    NotificationCallback global;
    std::atomic<std::int64_t> next_id{1};
    std::atomic<std::uint64_t> unmatched{0};  // Client::unmatched_messages()
    std::mutex connect_mu;                    // one (re)connect at a time

    tcp::resolver resolver{ioc};
    std::unique_ptr<websocket::stream<beast::tcp_stream>> ws;  // I/O thread only
    beast::flat_buffer buffer;
    std::deque<std::string> outq;  // I/O thread only
    bool writing = false;
    // Bumped by every (re)connect: completions of an older stream's reads and writes
    // must not touch the current connection's state.
    std::uint64_t generation = 0;  // I/O thread only

    // Not on the I/O thread (it waits for that thread's handlers).
    void stop() {
        if (closing.exchange(true)) return;
        // A clean close handshake, briefly, unless a write is under way (a close frame is a
        // write, and Beast allows one at a time); then the socket is closed whatever its
        // state, which ends every operation still pending on it.
        auto closed = std::make_shared<std::promise<void>>();
        net::post(ioc, [this, closed, tok = track()] {
            if (ws && ws->is_open() && !writing) {
                beast::get_lowest_layer(*ws).expires_after(std::chrono::milliseconds(500));
                ws->async_close(
                    websocket::close_code::normal,
                    [closed, tok2 = track()](beast::error_code) { closed->set_value(); });
            } else {
                closed->set_value();
            }
        });
        closed->get_future().wait_for(std::chrono::seconds(1));
        net::post(ioc, [this, tok = track()] {
            beast::error_code ignored;
            if (ws) beast::get_lowest_layer(*ws).socket().close(ignored);
            resolver.cancel();
        });
        {
            std::unique_lock lk(outstanding->mu);
            outstanding->none_left.wait(lk, [&] { return outstanding->count == 0; });
        }
        fail_all("the client was closed");
    }

    void fail_all(const std::string& why) {
        std::unordered_map<std::int64_t, std::shared_ptr<Pending>> lost;
        {
            std::lock_guard lk(mu);
            connected = false;
            lost.swap(pending);
        }
        for (auto& [id, p] : lost) p->done(fail(Errc::io, why, {{"reason", "connection_lost"}}));
    }

    // On the I/O thread.
    void start_connect(std::shared_ptr<std::promise<Result<void>>> done) {
        ++generation;
        ws = std::make_unique<websocket::stream<beast::tcp_stream>>(ioc);
        buffer.clear();
        outq.clear();
        writing = false;
        resolver.async_resolve(
            where.host, std::to_string(where.port),
            [this, done, tok = track()](beast::error_code ec, tcp::resolver::results_type results) {
                if (ec)
                    return done->set_value(
                        fail(Errc::io, "cannot resolve " + where.host + ": " + ec.message()));
                beast::get_lowest_layer(*ws).expires_after(opts.connect_timeout);
                beast::get_lowest_layer(*ws).async_connect(
                    results,
                    [this, done, tok2 = track()](beast::error_code ec2, const tcp::endpoint&) {
                        if (ec2)
                            return done->set_value(
                                fail(Errc::io, "cannot connect to " + url + ": " + ec2.message()));
                        on_connected(done);
                    });
            });
    }

    void on_connected(std::shared_ptr<std::promise<Result<void>>> done) {
        beast::get_lowest_layer(*ws).socket().set_option(tcp::no_delay(true));
        beast::get_lowest_layer(*ws).expires_never();
        websocket::stream_base::timeout t{};
        t.handshake_timeout = opts.connect_timeout;
        t.idle_timeout = websocket::stream_base::none();
        t.keep_alive_pings = false;
        ws->set_option(t);
        const std::string token = opts.token;
        ws->set_option(websocket::stream_base::decorator([token](websocket::request_type& req) {
            req.set(http::field::user_agent, "sandflow-client");
            if (!token.empty()) req.set(http::field::authorization, "Bearer " + token);
        }));
        if (opts.deflate) {
            websocket::permessage_deflate pmd;
            pmd.client_enable = true;
            pmd.msg_size_threshold = 1024;
            ws->set_option(pmd);
        }
        ws->read_message_max(opts.max_message_bytes);
        const std::string host = where.host + ":" + std::to_string(where.port);
        auto res = std::make_shared<websocket::response_type>();
        ws->async_handshake(
            *res, host, where.target, [this, done, res, tok = track()](beast::error_code ec) {
                if (ec == websocket::error::upgrade_declined)
                    return done->set_value(tl::unexpected(declined(*res)));
                if (ec) {
                    return done->set_value(fail(
                        Errc::io, "WebSocket handshake with " + url + " failed: " + ec.message(),
                        {{"reason", "handshake_failed"}}));
                }
                {
                    std::lock_guard lk(mu);
                    connected = true;
                }
                done->set_value({});
                do_read();
            });
    }

    // The server answered the upgrade with an HTTP error: its status, and the error its
    // JSON body carries (docs/protocol.md), else the start of the body.
    Error declined(const websocket::response_type& res) const {
        const int status = static_cast<int>(res.result_int());
        std::string why(res.body().substr(0, 200));
        std::string reason = status == 401 || status == 403 ? "unauthorized"
                             : status == 503                ? "overloaded"
                                                            : "handshake_failed";
        if (auto body = parse_json(res.body(), "the server's refusal"); body && body->is_object()) {
            const auto* e = body->get_object().if_contains("error");
            if (e && e->is_object()) {
                if (const auto* m = e->get_object().if_contains("message"); m && m->is_string())
                    why = m->get_string();
                const auto* d = e->get_object().if_contains("data");
                const auto* r =
                    d && d->is_object() ? d->get_object().if_contains("reason") : nullptr;
                if (r && r->is_string()) reason = r->get_string();
            }
        }
        const Errc code = reason == "unauthorized" ? Errc::unauthorized
                          : reason == "overloaded" ? Errc::overloaded
                                                   : Errc::io;
        return Error(code,
                     "the server at " + url + " refused the WebSocket upgrade with HTTP " +
                         std::to_string(status) + (why.empty() ? "" : ": " + why),
                     {{"reason", reason}, {"http_status", status}});
    }

    void do_read() {
        ws->async_read(
            buffer, [this, gen = generation, tok = track()](beast::error_code ec, std::size_t) {
                if (gen != generation || closing) return;  // replaced by a reconnect, or closed
                if (ec) {
                    fail_all("connection to " + url + " lost: " + ec.message());
                    return;
                }
                // The message in place (a flat_buffer is contiguous): dispatch() parses it
                // first, and the callbacks it runs cannot touch the read buffer (a reconnect
                // is never started from this thread).
                const auto data = buffer.data();
                dispatch(std::string_view(static_cast<const char*>(data.data()), data.size()));
                buffer.consume(buffer.size());
                do_read();
            });
    }

    void dispatch(std::string_view text) {
        auto msgs = rpc::decode_incoming(text, opts.max_message_bytes);
        if (!msgs) {  // nothing to match it to; the server's problem
            unmatched++;
            return;
        }
        for (auto& m : *msgs) {
            if (auto* n = std::get_if<rpc::Notification>(&m)) {
                NotificationCallback cb;
                {
                    std::lock_guard lk(mu);
                    const json::value* cid = n->params.is_object()
                                                 ? n->params.get_object().if_contains("call_id")
                                                 : nullptr;
                    if (cid && cid->is_int64()) {
                        auto it = pending.find(cid->get_int64());
                        if (it != pending.end())
                            cb = it->second->on_notification;
                        else
                            unmatched++;
                    } else {
                        cb = global;
                    }
                }
                if (cb) cb(n->method, n->params);
                continue;
            }
            auto& r = std::get<rpc::Response>(m);
            if (!r.id.is_int64()) {
                unmatched++;
                continue;
            }
            std::shared_ptr<Pending> p;
            {
                std::lock_guard lk(mu);
                auto it = pending.find(r.id.get_int64());
                if (it == pending.end()) {  // timed out here already, or not ours
                    unmatched++;
                    continue;
                }
                p = std::move(it->second);
                pending.erase(it);
            }
            if (r.ok) {
                p->done(std::move(r.result));
            } else {
                p->done(tl::unexpected(rpc::from_rpc_error(r.error.code, std::move(r.error.message),
                                                           std::move(r.error.data))));
            }
        }
    }

    void do_write() {
        if (outq.empty() || !ws) {
            writing = false;
            return;
        }
        writing = true;
        ws->text(true);
        ws->async_write(net::buffer(outq.front()), [this, gen = generation, tok = track()](
                                                       beast::error_code ec, std::size_t) {
            if (gen != generation) return;  // a stream replaced by a reconnect
            if (ec) {
                outq.clear();
                writing = false;
                beast::error_code ignored;
                beast::get_lowest_layer(*ws).socket().close(ignored);  // the read fails all
                return;
            }
            outq.pop_front();
            do_write();
        });
    }

    Result<void> ensure_connected(bool first) {
        std::lock_guard lk(connect_mu);
        if (closing)
            return fail(Errc::io, "the client was closed", {{"reason", "connection_lost"}});
        {
            std::lock_guard lk2(mu);
            if (connected) return {};
        }
        if (!first && !opts.reconnect)
            return fail(Errc::io, "not connected to " + url + " (reconnect is off)",
                        {{"reason", "connection_lost"}});
        const int attempts = first ? 1 : std::max(1, opts.reconnect_attempts);
        Error last;
        for (int i = 0; i < attempts; ++i) {
            if (i > 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
            auto done = std::make_shared<std::promise<Result<void>>>();
            auto fut = done->get_future();
            net::post(ioc, [this, done, tok = track()] { start_connect(done); });
            if (fut.wait_for(opts.connect_timeout + std::chrono::seconds(1)) !=
                std::future_status::ready)
                return fail(Errc::timeout, "connecting to " + url + " timed out");
            auto r = fut.get();
            if (r) return {};
            last = r.error();
        }
        return tl::unexpected(last);
    }

    std::future<Result<json::value>> call_async(std::string_view method, json::value params,
                                                NotificationCallback cb, std::int64_t* id_out) {
        auto promise = std::make_shared<std::promise<Result<json::value>>>();
        auto fut = promise->get_future();
        start_call(
            method, std::move(params), std::move(cb),
            [promise](Result<json::value> r) { promise->set_value(std::move(r)); }, id_out);
        return fut;
    }

    void start_call(std::string_view method, json::value params, NotificationCallback cb,
                    DoneCallback<json::value> done, std::int64_t* id_out) {
        const bool on_io = ioc.get_executor().running_in_this_thread();
        if (on_io) {
            // Reconnecting blocks until the I/O thread completes it: not from that thread.
            bool up;
            {
                std::lock_guard lk(mu);
                up = connected;
            }
            if (!up)
                return done(
                    fail(Errc::io, "not connected to " + url, {{"reason", "connection_lost"}}));
        } else if (auto ok = ensure_connected(false); !ok) {
            return done(tl::unexpected(ok.error()));
        }
        const std::int64_t id = next_id++;
        if (id_out) *id_out = id;
        auto p = std::make_shared<Pending>();
        p->on_notification = std::move(cb);
        p->done = std::move(done);
        {
            std::lock_guard lk(mu);
            pending[id] = std::move(p);
        }
        std::string text = rpc::encode(rpc::make_request(id, method, std::move(params)));
        // On the I/O thread this writes at once; elsewhere it wakes the I/O thread.
        net::dispatch(ioc, [this, text = std::move(text), tok = track()]() mutable {
            outq.push_back(std::move(text));
            if (!writing) do_write();
        });
    }

    void forget(std::int64_t id) {
        std::lock_guard lk(mu);
        pending.erase(id);
    }
};

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Client::~Client() = default;

Result<std::unique_ptr<Client>> Client::connect(std::string url, Options options) {
    auto where = rpc::parse_ws_url(url);
    if (!where) return tl::unexpected(where.error());
    auto impl = std::make_unique<Impl>(std::move(url), std::move(*where), std::move(options));
    if (auto ok = impl->ensure_connected(true); !ok) return tl::unexpected(ok.error());
    return std::unique_ptr<Client>(new Client(std::move(impl)));
}

std::future<Result<json::value>> Client::call_async(std::string_view method, json::value params,
                                                    NotificationCallback on_notification,
                                                    std::int64_t* id_out) {
    return impl_->call_async(method, std::move(params), std::move(on_notification), id_out);
}

Result<json::value> Client::call(std::string_view method, json::value params,
                                 NotificationCallback on_notification,
                                 std::chrono::milliseconds timeout) {
    std::int64_t id = 0;
    auto fut = impl_->call_async(method, std::move(params), std::move(on_notification), &id);
    if (timeout.count() < 0) timeout = impl_->opts.call_timeout;
    if (timeout.count() > 0 && fut.wait_for(timeout) != std::future_status::ready) {
        // Forgetting drops the promise: the future must not be read after this.
        impl_->forget(id);
        // The server would go on with it: ask it to stop (on this connection only, where
        // the id means this call; the answer to either is not waited for).
        if (method != "cancel" && connected())
            impl_->start_call(
                "cancel", json::object{{"id", id}}, {}, [](Result<json::value>) {}, nullptr);
        return fail(Errc::timeout,
                    "no response to '" + std::string(method) + "' within " +
                        std::to_string(timeout.count()) + " ms",
                    {{"limit", "call_timeout"}, {"value_ms", timeout.count()}});
    }
    return fut.get();
}

void Client::start_call(std::string_view method, json::value params,
                        NotificationCallback on_notification, DoneCallback<json::value> on_done,
                        std::int64_t* id_out) {
    impl_->start_call(method, std::move(params), std::move(on_notification), std::move(on_done),
                      id_out);
}

boost::asio::io_context& Client::io_context() {
    return impl_->ioc;
}

void Client::on_notification(NotificationCallback cb) {
    std::lock_guard lk(impl_->mu);
    impl_->global = std::move(cb);
}

std::uint64_t Client::unmatched_messages() const {
    return impl_->unmatched.load();
}

bool Client::connected() const {
    std::lock_guard lk(impl_->mu);
    return impl_->connected;
}

void Client::close() {
    impl_->stop();
}

}  // namespace sandflow::client
