// Boost.Beast WebSocket + HTTP server (see ws_server.hpp). The listener / HTTP session /
// WebSocket session split follows Beast's "advanced server" example; every socket lives
// on its own strand.
#include "rpc/ws_server.hpp"

#include <deque>
#include <future>
#include <mutex>
#include <optional>
#include <unordered_map>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

#include "core/log.hpp"
#include "rpc/asio_event_loop.hpp"
#include "rpc/beast_names.hpp"
#include "rpc/rpc_limits.hpp"

namespace sandflow::rpc {

class WsSession;

struct WsServer::Impl {
    Impl(WsServerOptions o, WsHandler h) : opts(std::move(o)), handler(std::move(h)) {}

    // Declared before the context pool: its destruction destroys pending handlers, and
    // with them sessions whose destructors touch these.
    WsServerOptions opts;
    WsHandler handler;
    WsCounters counters;
    std::mutex mu;
    std::unordered_map<std::uint64_t, std::weak_ptr<WsSession>> sessions;
    std::atomic<std::uint64_t> next_id{1};

    // One io_context per I/O thread: a connection, and the strands made on its thread (the
    // instances it creates), stay on that thread, so serving a call hands nothing to
    // another thread (docs/decisions.md, "One event loop per I/O thread").
    ContextPool pool{opts.io_threads};
    tcp::acceptor acceptor{net::make_strand(pool.front())};
    net::steady_timer retry_timer{acceptor.get_executor()};
    std::shared_ptr<EventLoop> loop = make_event_loop(pool.contexts());

    void do_accept();
    void add(std::uint64_t id, const std::shared_ptr<WsSession>& s) {
        std::lock_guard lk(mu);
        sessions[id] = s;
    }
    void remove(std::uint64_t id) {
        std::lock_guard lk(mu);
        sessions.erase(id);
    }
};

namespace {

std::string endpoint_text(const tcp::socket& s) {
    beast::error_code ec;
    auto ep = s.remote_endpoint(ec);
    if (ec) return "?";
    const auto a = ep.address();
    return (a.is_v6() ? "[" + a.to_string() + "]" : a.to_string()) + ":" +
           std::to_string(ep.port());
}

}  // namespace

class WsSession : public Connection, public std::enable_shared_from_this<WsSession> {
  public:
    WsSession(WsServer::Impl& srv, beast::tcp_stream&& stream, std::uint64_t id, std::string remote)
        : srv_(srv), ws_(std::move(stream)), id_(id), remote_(std::move(remote)) {}

    void run(http::request<http::string_body> req) {
        ws_.set_option(websocket::stream_base::timeout{srv_.opts.handshake_timeout,
                                                       srv_.opts.idle_timeout, true});
        ws_.set_option(websocket::stream_base::decorator(
            [](websocket::response_type& res) { res.set(http::field::server, "sandflow"); }));
        if (srv_.opts.deflate) {
            websocket::permessage_deflate pmd;
            pmd.server_enable = true;
            pmd.msg_size_threshold = 1024;  // small messages cost more to deflate than to send
            ws_.set_option(pmd);
        }
        ws_.read_message_max(srv_.opts.max_message_bytes);
        ws_.async_accept(req, beast::bind_front_handler(&WsSession::on_accept, shared_from_this()));
    }

    std::uint64_t id() const override { return id_; }
    std::string remote() const override { return remote_; }
    bool is_open() const override {
        std::lock_guard lk(mu_);
        return open_ && !closing_;
    }

    bool send(std::string text) override {
        std::unique_lock lk(mu_);
        if (closing_ || !open_) return false;
        if (queued_bytes_ + text.size() > srv_.opts.max_send_queue_bytes) {
            closing_ = true;
            lk.unlock();
            srv_.counters.slow_disconnects++;
            spdlog::warn(
                "connection {} ({}): more than {} unsent bytes; disconnecting a slow "
                "reader",
                id_, remote_, srv_.opts.max_send_queue_bytes);
            net::post(ws_.get_executor(), [self = shared_from_this()] { self->hard_close(); });
            return false;
        }
        queued_bytes_ += text.size();
        queue_.push_back(std::move(text));
        if (!writing_) {
            writing_ = true;
            lk.unlock();
            // Called from inside this socket's strand (a reply sent from its own read
            // handler), the write starts at once; elsewhere it is queued on the strand, as
            // post() would.
            net::dispatch(ws_.get_executor(), [self = shared_from_this()] { self->do_write(); });
        }
        return true;
    }

    void close(std::string_view reason) override {
        std::lock_guard lk(mu_);
        if (closing_ || !open_) return;
        closing_ = true;
        close_reason_ = std::string(reason.substr(0, 120));  // a close frame holds 123 bytes
        if (!writing_)
            net::post(ws_.get_executor(), [self = shared_from_this()] { self->do_close(); });
        // else: on_write closes once the queue is empty.
    }

  private:
    void on_accept(beast::error_code ec) {
        if (ec) {
            if (ec == beast::error::timeout) srv_.counters.timeouts++;
            spdlog::debug("connection {} ({}): handshake failed: {}", id_, remote_, ec.message());
            return;
        }
        {
            std::lock_guard lk(mu_);
            open_ = true;
        }
        srv_.add(id_, shared_from_this());
        srv_.counters.accepted++;
        srv_.counters.open++;
        if (srv_.handler.on_open) srv_.handler.on_open(shared_from_this());
        do_read();
    }

    void do_read() {
        ws_.async_read(buffer_, beast::bind_front_handler(&WsSession::on_read, shared_from_this()));
    }

    void on_read(beast::error_code ec, std::size_t) {
        if (ec) {
            if (ec == beast::error::timeout) srv_.counters.timeouts++;
            if (ec == websocket::error::message_too_big)
                spdlog::info("connection {} ({}): message over {} bytes; closed (1009)", id_,
                             remote_, srv_.opts.max_message_bytes);
            finish();
            return;
        }
        // The message in place (a flat_buffer is contiguous): on_message reads it before
        // it returns, and nothing it calls touches the read buffer.
        const auto data = buffer_.data();
        const std::string_view text(static_cast<const char*>(data.data()), data.size());
        if (srv_.handler.on_message)
            srv_.handler.on_message(shared_from_this(), text, !ws_.got_text());
        buffer_.consume(buffer_.size());
        do_read();
    }

    void do_write() {
        const std::string* front;
        {
            std::lock_guard lk(mu_);
            if (queue_.empty()) {
                writing_ = false;
                return;
            }
            front = &queue_.front();  // deque: push_back keeps references to elements valid
        }
        ws_.text(true);
        ws_.async_write(net::buffer(*front),
                        beast::bind_front_handler(&WsSession::on_write, shared_from_this()));
    }

    void on_write(beast::error_code ec, std::size_t) {
        if (ec) {
            std::lock_guard lk(mu_);
            queue_.clear();
            queued_bytes_ = 0;
            writing_ = false;
            closing_ = true;
            return;  // the pending read fails too and finishes the session
        }
        bool more, close_now;
        {
            std::lock_guard lk(mu_);
            queued_bytes_ -= queue_.front().size();
            queue_.pop_front();
            more = !queue_.empty();
            writing_ = more;
            close_now = !more && closing_ && open_;
        }
        if (more) {
            do_write();
        } else if (close_now) {
            do_close();
        }
    }

    void do_close() {
        ws_.async_close(websocket::close_reason(websocket::close_code::going_away, close_reason_),
                        [self = shared_from_this()](beast::error_code) {
                            // The pending read completes with an error and finishes.
                            beast::error_code ignored;
                            beast::get_lowest_layer(self->ws_).socket().shutdown(
                                tcp::socket::shutdown_both, ignored);
                        });
    }

    void hard_close() {
        beast::error_code ignored;
        beast::get_lowest_layer(ws_).socket().shutdown(tcp::socket::shutdown_both, ignored);
        beast::get_lowest_layer(ws_).socket().close(ignored);
    }

    void finish() {
        bool was_open;
        {
            std::lock_guard lk(mu_);
            was_open = open_;
            open_ = false;
            closing_ = true;
            queue_.clear();
            queued_bytes_ = 0;
        }
        if (!was_open) return;
        srv_.counters.open--;
        srv_.remove(id_);
        if (srv_.handler.on_close) srv_.handler.on_close(shared_from_this());
    }

    WsServer::Impl& srv_;
    websocket::stream<beast::tcp_stream> ws_;
    beast::flat_buffer buffer_;
    const std::uint64_t id_;
    const std::string remote_;

    mutable std::mutex mu_;
    std::deque<std::string> queue_;
    std::size_t queued_bytes_ = 0;
    bool writing_ = false;
    bool open_ = false;
    bool closing_ = false;
    std::string close_reason_ = "server closing";
};

class HttpSession : public std::enable_shared_from_this<HttpSession> {
  public:
    HttpSession(WsServer::Impl& srv, tcp::socket&& socket)
        : srv_(srv), stream_(std::move(socket)), remote_(endpoint_text(stream_.socket())) {
        // A response follows its notifications at once: do not let Nagle hold it back.
        beast::error_code ignored;
        stream_.socket().set_option(tcp::no_delay(true), ignored);
    }

    void run() {
        net::dispatch(stream_.get_executor(),
                      beast::bind_front_handler(&HttpSession::do_read, shared_from_this()));
    }

  private:
    void do_read() {
        parser_.emplace();
        parser_->header_limit(static_cast<std::uint32_t>(limits::kMaxHttpHeaderBytes));
        parser_->body_limit(limits::kMaxHttpHeaderBytes);
        stream_.expires_after(srv_.opts.handshake_timeout);
        http::async_read(stream_, buffer_, *parser_,
                         beast::bind_front_handler(&HttpSession::on_read, shared_from_this()));
    }

    void on_read(beast::error_code ec, std::size_t) {
        if (ec == http::error::end_of_stream) return shutdown();
        if (ec) {
            if (ec == beast::error::timeout) srv_.counters.timeouts++;
            spdlog::debug("http {}: {}", remote_, ec.message());
            return;
        }
        http::request<http::string_body> req = parser_->release();
        const bool authorized = check_token(req);

        if (websocket::is_upgrade(req)) {
            if (!authorized) {
                srv_.counters.rejected_auth++;
                return respond(req, http::status::unauthorized,
                               R"({"error":{"code":-32008,"message":"unauthorized: send the )"
                               R"(server's token as 'Authorization: Bearer TOKEN'",)"
                               R"("data":{"reason":"unauthorized","errc":"unauthorized"}}})",
                               false);
            }
            if (!origin_allowed(req)) {
                srv_.counters.rejected_origin++;
                return respond(req, http::status::forbidden,
                               R"({"error":{"code":-32008,"message":"origin not allowed: start )"
                               R"(the server with --allowed-origin ORIGIN",)"
                               R"("data":{"reason":"unauthorized","errc":"unauthorized"}}})",
                               false);
            }
            if (srv_.counters.open.load() >= srv_.opts.max_connections) {
                srv_.counters.rejected_full++;
                return respond(req, http::status::service_unavailable,
                               R"({"error":{"code":-32006,"message":"too many connections",)"
                               R"("data":{"reason":"overloaded","errc":"overloaded",)"
                               R"("limit":"kMaxConnections"}}})",
                               false);
            }
            stream_.expires_never();
            std::make_shared<WsSession>(srv_, std::move(stream_), srv_.next_id++, remote_)
                ->run(std::move(req));
            return;
        }
        if (req.method() != http::verb::get && req.method() != http::verb::head)
            return respond(req, http::status::method_not_allowed,
                           R"({"error":"only GET, HEAD and WebSocket upgrades"})", false);
        HttpResponse r;
        if (srv_.handler.on_http) {
            r = srv_.handler.on_http(std::string_view(req.target().data(), req.target().size()),
                                     authorized);
        } else {
            r = {404, "application/json", R"({"error":"not found"})"};
        }
        respond(req, static_cast<http::status>(r.status), std::move(r.body), req.keep_alive(),
                r.content_type);
    }

    bool check_token(const http::request<http::string_body>& req) const {
        if (srv_.opts.token.empty()) return true;
        std::string given;
        const auto auth = req[http::field::authorization];
        constexpr std::string_view kBearer = "Bearer ";
        if (auth.size() > kBearer.size() && auth.substr(0, kBearer.size()) == kBearer) {
            given.assign(auth.data() + kBearer.size(), auth.size() - kBearer.size());
        } else if (auto q = query_param(std::string_view(req.target().data(), req.target().size()),
                                        "token")) {
            given = std::move(*q);
        }
        return !given.empty() && constant_time_equal(given, srv_.opts.token);
    }

    bool origin_allowed(const http::request<http::string_body>& req) const {
        const auto it = req.find(http::field::origin);
        if (it == req.end()) return true;  // not a browser
        const std::string_view origin(it->value().data(), it->value().size());
        for (const auto& o : srv_.opts.allowed_origins)
            if (o == "*" || o == origin) return true;
        return false;
    }

    void respond(const http::request<http::string_body>& req, http::status status, std::string body,
                 bool keep_alive, std::string_view content_type = "application/json") {
        auto res = std::make_shared<http::response<http::string_body>>(status, req.version());
        res->set(http::field::server, "sandflow");
        res->set(http::field::content_type, content_type);
        res->keep_alive(keep_alive);
        if (req.method() != http::verb::head) res->body() = std::move(body);
        res->prepare_payload();
        stream_.expires_after(srv_.opts.handshake_timeout);
        http::async_write(stream_, *res,
                          [self = shared_from_this(), res](beast::error_code ec, std::size_t) {
                              if (ec || !res->keep_alive()) return self->shutdown();
                              self->do_read();
                          });
    }

    void shutdown() {
        beast::error_code ignored;
        stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    }

    WsServer::Impl& srv_;
    beast::tcp_stream stream_;
    beast::flat_buffer buffer_;
    std::optional<http::request_parser<http::string_body>> parser_;
    std::string remote_;
};

void WsServer::Impl::do_accept() {
    // Each connection on the next I/O thread in turn.
    acceptor.async_accept(net::make_strand(pool.next()),
                          [this](beast::error_code ec, tcp::socket s) {
                              if (!acceptor.is_open()) return;
                              if (ec) {
                                  // EMFILE and friends: wait a little instead of spinning.
                                  spdlog::warn("accept failed: {}", ec.message());
                                  retry_timer.expires_after(std::chrono::milliseconds(50));
                                  retry_timer.async_wait([this](beast::error_code e) {
                                      if (!e && acceptor.is_open()) do_accept();
                                  });
                                  return;
                              }
                              std::make_shared<HttpSession>(*this, std::move(s))->run();
                              do_accept();
                          });
}

WsServer::WsServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

WsServer::~WsServer() {
    stop();
}

Result<std::unique_ptr<WsServer>> WsServer::listen(WsServerOptions options, WsHandler handler) {
    auto impl = std::make_unique<Impl>(std::move(options), std::move(handler));
    const std::string where = impl->opts.host + ":" + std::to_string(impl->opts.port);
    beast::error_code ec;
    const auto addr =
        net::ip::make_address(impl->opts.host == "localhost" ? "127.0.0.1" : impl->opts.host, ec);
    if (ec)
        return fail(Errc::invalid_argument, "bad listen address " + where + ": " + ec.message());
    const tcp::endpoint ep(addr, impl->opts.port);
    auto& a = impl->acceptor;
    a.open(ep.protocol(), ec);
    if (!ec) a.set_option(net::socket_base::reuse_address(true), ec);
    if (!ec) a.bind(ep, ec);
    if (!ec) a.listen(net::socket_base::max_listen_connections, ec);
    if (!ec) return std::unique_ptr<WsServer>(new WsServer(std::move(impl)));
    return fail(Errc::io, "cannot listen on " + where + ": " + ec.message(),
                {{"errno", ec.value()}});
}

std::uint16_t WsServer::port() const {
    beast::error_code ec;
    return impl_->acceptor.local_endpoint(ec).port();
}

void WsServer::start() {
    net::post(impl_->acceptor.get_executor(), [impl = impl_.get()] { impl->do_accept(); });
    impl_->pool.start();
}

void WsServer::stop_accepting() {
    std::promise<void> done;
    net::post(impl_->acceptor.get_executor(), [impl = impl_.get(), &done] {
        beast::error_code ignored;
        impl->acceptor.close(ignored);
        impl->retry_timer.cancel();
        done.set_value();
    });
    if (impl_->pool.running()) done.get_future().wait();
}

void WsServer::close_all(std::string_view reason) {
    std::vector<std::shared_ptr<WsSession>> open;
    {
        std::lock_guard lk(impl_->mu);
        for (auto& [id, w] : impl_->sessions)
            if (auto s = w.lock()) open.push_back(std::move(s));
    }
    for (auto& s : open) s->close(reason);
}

void WsServer::stop() {
    if (impl_) impl_->pool.stop();
}

const WsCounters& WsServer::counters() const {
    return impl_->counters;
}

std::shared_ptr<EventLoop> WsServer::event_loop() {
    return impl_->loop;
}

}  // namespace sandflow::rpc
