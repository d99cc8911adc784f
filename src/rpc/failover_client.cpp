// client::FailoverClient (include/sandflow/client.hpp): one Client per server, an order
// of servers per instance by rendezvous hashing, and a call sent again with its call_id
// to the next server up when its own is lost. No Asio here: it only uses Client.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <thread>

#include "rpc/rpc_limits.hpp"
#include "sandflow/client.hpp"

namespace sandflow::client {

namespace {

using Clock = std::chrono::steady_clock;

// No server answers: one may be starting again (a restart takes a few hundred ms), so the
// call waits this long before each of its remaining tries.
constexpr std::chrono::milliseconds kNoneUpPause{100};

std::uint64_t mix(std::uint64_t x) {  // splitmix64's finaliser
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

std::uint64_t fnv1a(std::string_view a, std::string_view b, std::string_view c) {
    std::uint64_t h = 0xcbf29ce484222325ULL;
    auto add = [&](std::string_view s) {
        for (unsigned char ch : s) {
            h ^= ch;
            h *= 0x100000001b3ULL;
        }
        h ^= 0xff;  // a separator no byte of UTF-8 text is
        h *= 0x100000001b3ULL;
    };
    add(a);
    add(b);
    add(c);
    return mix(h);
}

std::string key_of(std::string_view component, std::string_view instance_id) {
    std::string k(component);
    k += '\0';
    k += instance_id.empty() ? std::string_view("default") : instance_id;
    return k;
}

// The server is gone or going: what was sent may be sent to another one. A call that
// failed this way either never ran, was stopped with nothing committed, or committed
// (then the store answers the call_id again). A server that refused the connection as
// full (HTTP 503) has run nothing either; one that refused a call as overloaded has
// answered, and the caller decides. An HTTP refusal of the token (401, 403) is the
// server's answer, not its absence.
bool server_lost(const Error& e) {
    if (e.code == Errc::shutting_down || e.code == Errc::io) return true;
    return e.code == Errc::overloaded && e.data.contains("http_status");
}

// 128 random bits, so that no other client's call, in this run or an earlier one on the
// same store, has the same id.
std::string random_prefix() {
    std::random_device rd;
    static constexpr char kHex[] = "0123456789abcdef";
    std::string s;
    for (int i = 0; i < 4; ++i) {
        std::uint32_t v = rd();
        for (int j = 0; j < 8; ++j, v >>= 4) s += kHex[v & 0xf];
    }
    return s;
}

}  // namespace

struct FailoverClient::Impl {
    struct Endpoint {
        std::string url;
        std::shared_ptr<Client> client;  // empty while down
        Clock::time_point retry_at{};    // down: not tried again before this while others are up
        std::string why_down;
        std::set<std::string> loaded;  // instances this client loaded over `client`
    };
    struct Loaded {
        std::string source, language, filename;
    };

    Options opts;
    std::mutex mu;  // everything below
    std::vector<Endpoint> eps;
    std::map<std::string, Loaded> loads;  // by instance key
    const std::string prefix = random_prefix();
    std::atomic<std::uint64_t> next_call{1};
    std::atomic<std::uint64_t> failovers{0};

    // Servers by preference for the instance: highest hash first.
    std::vector<std::size_t> order(const std::string& key) const {
        std::vector<std::pair<std::uint64_t, std::size_t>> by;
        for (std::size_t i = 0; i < eps.size(); ++i) by.emplace_back(fnv1a(eps[i].url, key, ""), i);
        std::sort(by.begin(), by.end(),
                  [](const auto& a, const auto& b) { return a.first > b.first; });
        std::vector<std::size_t> out;
        for (const auto& [h, i] : by) out.push_back(i);
        return out;
    }

    Result<std::shared_ptr<Client>> dial(const std::string& url) {
        Options o = opts;
        // A lost connection must show, so that the call goes to another server at once;
        // this class reconnects, on its own schedule.
        o.reconnect = false;
        auto c = Client::connect(url, o);
        if (!c) return tl::unexpected(c.error());
        return std::shared_ptr<Client>(std::move(*c));
    }

    // Under mu: the endpoint's connection is gone.
    void mark_down(std::size_t i, const std::shared_ptr<Client>& seen, const std::string& why) {
        Endpoint& e = eps[i];
        if (e.client != seen) return;  // already replaced by another thread
        e.client.reset();
        e.loaded.clear();
        e.why_down = why;
        e.retry_at = Clock::now() + limits::kFailoverRetryAfter;
    }

    struct Pick {
        std::size_t index;
        std::shared_ptr<Client> client;
    };

    // The first server up in the instance's order. A server down whose time to be tried
    // again has come (or any, when none is up) is dialled on the way, without the lock.
    Result<Pick> pick(const std::string& key) {
        std::unique_lock lk(mu);
        const auto ord = order(key);
        bool any_up = false;
        for (const auto& e : eps) any_up = any_up || e.client != nullptr;
        for (std::size_t i : ord) {
            if (eps[i].client) return Pick{i, eps[i].client};
            if (any_up && Clock::now() < eps[i].retry_at) continue;
            const std::string url = eps[i].url;
            eps[i].retry_at = Clock::now() + limits::kFailoverRetryAfter;  // one dialler at a time
            lk.unlock();
            auto c = dial(url);
            lk.lock();
            if (!c) {
                eps[i].why_down = c.error().message;
                continue;
            }
            if (!eps[i].client) {
                eps[i].client = std::move(*c);
                eps[i].loaded.clear();
            }
            return Pick{i, eps[i].client};
        }
        std::string why;
        for (const auto& e : eps) why += (why.empty() ? "" : "; ") + e.url + ": " + e.why_down;
        return fail(Errc::io, "no runtime server is up (" + why + ")",
                    {{"reason", "connection_lost"}});
    }

    // pick() for one try of a call: when no server is up, the error goes to `last` and the
    // try ends after kNoneUpPause (nullopt), so that the next try may find one started again.
    std::optional<Pick> pick_or_pause(const std::string& key, Error& last) {
        auto p = pick(key);
        if (p) return std::move(*p);
        last = p.error();
        std::this_thread::sleep_for(kNoneUpPause);
        return std::nullopt;
    }

    // The picked server's connection was lost during a call: `why` is the call's error.
    void lost(const Pick& p, const std::string& why) {
        std::lock_guard lk(mu);
        mark_down(p.index, p.client, why);
    }

    // The script this client loaded for the instance, on the picked server when it is not
    // loaded there over this connection yet.
    Result<void> ensure_loaded(const Pick& p, const std::string& key,
                               std::string_view instance_id) {
        Loaded l;
        {
            std::lock_guard lk(mu);
            auto it = loads.find(key);
            if (it == loads.end() || eps[p.index].client != p.client ||
                eps[p.index].loaded.contains(key))
                return {};
            l = it->second;
        }
        auto r = p.client->load_source(l.source, l.language, instance_id, l.filename);
        if (!r) return tl::unexpected(r.error());
        if (!r->success)
            return fail(Errc::script, "the runtime at " + eps[p.index].url +
                                          " could not load the script again: " + r->error);
        std::lock_guard lk(mu);
        if (eps[p.index].client == p.client) eps[p.index].loaded.insert(key);
        return {};
    }
};

FailoverClient::FailoverClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
FailoverClient::~FailoverClient() {
    close();
}

Result<std::vector<std::string>> FailoverClient::split_urls(std::string_view list) {
    std::vector<std::string> out;
    std::size_t start = 0;
    while (true) {
        const auto comma = list.find(',', start);
        auto item = list.substr(start, comma == std::string_view::npos ? list.npos : comma - start);
        while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
        while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
        if (item.empty())
            return fail(Errc::invalid_argument,
                        "'" + std::string(list) +
                            "' has an empty item: give ws://HOST:PORT URLs separated by commas");
        out.emplace_back(item);
        if (out.size() > limits::kMaxRuntimeEndpoints)
            return fail(Errc::limit_exceeded,
                        "more than " + std::to_string(limits::kMaxRuntimeEndpoints) +
                            " runtime servers in one list",
                        {{"limit", "kMaxRuntimeEndpoints"}, {"value", out.size()}});
        if (comma == std::string_view::npos) break;
        start = comma + 1;
    }
    return out;
}

Result<std::unique_ptr<FailoverClient>> FailoverClient::connect(std::vector<std::string> urls,
                                                                Options options) {
    if (urls.empty())
        return fail(Errc::invalid_argument, "no runtime server given (ws://HOST:PORT)");
    if (urls.size() > limits::kMaxRuntimeEndpoints)
        return fail(
            Errc::limit_exceeded,
            "more than " + std::to_string(limits::kMaxRuntimeEndpoints) + " runtime servers",
            {{"limit", "kMaxRuntimeEndpoints"}, {"value", urls.size()}});
    // One I/O thread for all its servers unless the caller shares some: a call is on one
    // server at a time.
    if (!options.io) options.io = IoThreads::start(1);
    auto impl = std::make_unique<Impl>();
    impl->opts = std::move(options);
    std::string why;
    bool any = false;
    for (auto& u : urls) {
        Impl::Endpoint e;
        e.url = u;
        for (const auto& other : impl->eps)
            if (other.url == u)
                return fail(Errc::invalid_argument, "runtime server " + u + " is listed twice");
        auto c = impl->dial(u);
        if (c) {
            e.client = std::move(*c);
            any = true;
        } else {
            e.why_down = c.error().message;
            e.retry_at = Clock::now() + limits::kFailoverRetryAfter;
            why += (why.empty() ? "" : "; ") + c.error().message;
        }
        impl->eps.push_back(std::move(e));
    }
    if (!any) return fail(Errc::io, "no runtime server answers: " + why);
    return std::unique_ptr<FailoverClient>(new FailoverClient(std::move(impl)));
}

Result<LoadResult> FailoverClient::load_source(std::string_view component, std::string_view source,
                                               std::string_view language,
                                               std::string_view instance_id,
                                               std::string_view filename) {
    const std::string key = key_of(component, instance_id);
    {
        std::lock_guard lk(impl_->mu);
        impl_->loads[key] = {std::string(source), std::string(language), std::string(filename)};
        for (auto& e : impl_->eps) e.loaded.erase(key);  // this (maybe new) code everywhere
    }
    Error last;
    for (int attempt = 0; attempt < limits::kMaxFailoverAttempts; ++attempt) {
        auto p = impl_->pick_or_pause(key, last);
        if (!p) continue;
        auto r = p->client->load_source(source, language, instance_id, filename);
        if (r) {
            if (r->success) {
                std::lock_guard lk(impl_->mu);
                if (impl_->eps[p->index].client == p->client)
                    impl_->eps[p->index].loaded.insert(key);
            }
            return r;
        }
        if (!server_lost(r.error())) return r;
        last = r.error();
        impl_->lost(*p, r.error().message);
    }
    return tl::unexpected(last);
}

Result<ProcessResult> FailoverClient::process(std::string_view actor_id, json::object payload,
                                              OutputCallback on_output,
                                              const ProcessOptions& opts) {
    ProcessOptions o = opts;
    if (o.call_id.empty()) o.call_id = impl_->prefix + "-" + std::to_string(impl_->next_call++);
    const std::string key = key_of(actor_id, o.instance_id);
    Error last;
    int conflicts = 0;
    for (int attempt = 0; attempt < limits::kMaxFailoverAttempts; ++attempt) {
        auto p = impl_->pick_or_pause(key, last);
        if (!p) continue;
        auto loaded = impl_->ensure_loaded(*p, key, o.instance_id);
        Result<ProcessResult> r = loaded ? p->client->process(actor_id, payload, on_output, o)
                                         : Result<ProcessResult>(tl::unexpected(loaded.error()));
        if (r) return r;
        last = r.error();
        if (server_lost(r.error())) {
            if (attempt > 0 || conflicts > 0) {
                // The same call lost a second server: give the rest a moment.
                std::this_thread::sleep_for(std::chrono::milliseconds(50));
            }
            impl_->failovers++;
            impl_->lost(*p, r.error().message);
            continue;
        }
        // The server ran the call on a copy older than the store's, and streamed part of
        // it before the commit was refused: run it again there, on the reloaded state.
        if (r.error().code == Errc::state_conflict && ++conflicts <= limits::kMaxConflictRetries)
            continue;
        return r;
    }
    return tl::unexpected(last);
}

Result<json::object> FailoverClient::unload(std::string_view actor_id,
                                            std::string_view instance_id) {
    const std::string key = key_of(actor_id, instance_id);
    {
        std::lock_guard lk(impl_->mu);
        impl_->loads.erase(key);
    }
    auto p = impl_->pick(key);
    if (!p) return tl::unexpected(p.error());
    auto r = p->client->unload(actor_id, instance_id);
    std::lock_guard lk(impl_->mu);
    impl_->eps[p->index].loaded.erase(key);
    return r;
}

std::string FailoverClient::server_for(std::string_view actor_id, std::string_view instance_id) {
    std::lock_guard lk(impl_->mu);
    for (std::size_t i : impl_->order(key_of(actor_id, instance_id)))
        if (impl_->eps[i].client) return impl_->eps[i].url;
    return {};
}

std::uint64_t FailoverClient::failovers() const {
    return impl_->failovers.load();
}

void FailoverClient::close() {
    std::vector<std::shared_ptr<Client>> all;
    {
        std::lock_guard lk(impl_->mu);
        for (auto& e : impl_->eps)
            if (e.client) all.push_back(std::move(e.client));
    }
    for (auto& c : all) c->close();
}

}  // namespace sandflow::client
