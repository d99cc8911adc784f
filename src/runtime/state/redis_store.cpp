// The store for several runtime servers: a real Redis. Keys follow the scheme of the
// system Sandflow replaces, so a host that reads Redis finds them there:
//
//   {namespace}:{actor_id}:{key}        one state key's value, as JSON (PXAT: its expiry)
//   {namespace}:__sandflow__:{actor_id} a hash: version, keys (JSON list), expires (JSON),
//                                       last_call, last_outputs
//
// where actor_id is the component for the instance "default" and component@instance_id
// otherwise. Commits and loads are Lua scripts, so each is atomic in Redis: a commit
// checks the version and writes the changed keys and the hash, or writes nothing. Commits
// are pipelined by one thread (commit_queue.hpp); loads use a connection of their own.
#include <mutex>

#include "core/log.hpp"
#include "runtime/state/commit_queue.hpp"
#include "runtime/state/resp.hpp"
#include "runtime/state/store.hpp"
#include "runtime/state/store_limits.hpp"

namespace sandflow::runtime {

namespace {

constexpr const char* kCommitScript = R"LUA(
local v = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if v ~= tonumber(ARGV[1]) then return {0, v} end
local prefix = ARGV[2]
local n = tonumber(ARGV[7])
for i = 8, 7 + n do redis.call('DEL', prefix .. ARGV[i]) end
local i = 8 + n
while i + 2 <= #ARGV do
  local px = tonumber(ARGV[i + 2])
  if px > 0 then
    redis.call('SET', prefix .. ARGV[i], ARGV[i + 1], 'PXAT', px)
  else
    redis.call('SET', prefix .. ARGV[i], ARGV[i + 1])
  end
  i = i + 3
end
redis.call('HSET', KEYS[1], 'version', v + 1, 'keys', ARGV[6], 'expires', ARGV[3],
           'last_call', ARGV[4], 'last_outputs', ARGV[5])
return {1, v + 1}
)LUA";

constexpr const char* kLoadScript = R"LUA(
local m = redis.call('HMGET', KEYS[1], 'version', 'keys', 'expires', 'last_call', 'last_outputs')
if not m[1] then return false end
local out = {m[1], m[2], m[3], m[4] or '', m[5] or '{}'}
for _, k in ipairs(cjson.decode(m[2])) do
  out[#out + 1] = k
  out[#out + 1] = redis.call('GET', ARGV[1] .. k)
end
return out
)LUA";

constexpr const char* kEraseScript = R"LUA(
local keys = redis.call('HGET', KEYS[1], 'keys')
if keys then
  for _, k in ipairs(cjson.decode(keys)) do redis.call('DEL', ARGV[1] .. k) end
end
redis.call('DEL', KEYS[1])
return 1
)LUA";

Result<RedisTarget> parse_url(std::string_view url, std::string& ns) {
    auto bad = [&](const std::string& why) {
        return fail(Errc::invalid_argument,
                    "--state " + std::string(url) + ": " + why +
                        "; use redis://HOST:PORT/DB or redis+unix:///PATH?db=N, with "
                        "&namespace=NS (default sandflow)");
    };
    RedisTarget t;
    ns = "sandflow";
    std::string rest;
    std::string query;
    const bool unix_socket = url.starts_with("redis+unix://");
    rest = std::string(url.substr(unix_socket ? 13 : 8));
    if (auto q = rest.find('?'); q != std::string::npos) {
        query = rest.substr(q + 1);
        rest = rest.substr(0, q);
    }
    auto parse_db = [&](const std::string& s) -> bool {
        if (s.empty() || s.size() > 2 || s.find_first_not_of("0123456789") != std::string::npos)
            return false;
        t.db = std::stoi(s);
        return true;
    };
    for (std::size_t start = 0; start < query.size();) {
        auto end = query.find('&', start);
        if (end == std::string::npos) end = query.size();
        const std::string kv = query.substr(start, end - start);
        start = end + 1;
        const auto eq = kv.find('=');
        const std::string k = kv.substr(0, eq),
                          v = eq == std::string::npos ? "" : kv.substr(eq + 1);
        if (k == "namespace" && !v.empty() && v.size() <= 64 && v.find(':') == std::string::npos)
            ns = v;
        else if (k == "db" && parse_db(v))
            continue;
        else
            return bad("'" + kv + "' is not namespace=NS (no ':') or db=N");
    }
    if (unix_socket) {
        if (rest.empty() || rest[0] != '/') return bad("the socket path must be absolute");
        t.unix_path = rest;
        return t;
    }
    if (auto slash = rest.find('/'); slash != std::string::npos) {
        const std::string db = rest.substr(slash + 1);
        rest = rest.substr(0, slash);
        if (!db.empty() && !parse_db(db)) return bad("the database must be a number 0..99");
    }
    if (auto colon = rest.rfind(':'); colon != std::string::npos) {
        const std::string port = rest.substr(colon + 1);
        if (port.empty() || port.size() > 5 ||
            port.find_first_not_of("0123456789") != std::string::npos || std::stoi(port) > 65535)
            return bad("the port must be a number 1..65535");
        t.port = std::stoi(port);
        rest = rest.substr(0, colon);
    }
    if (rest.empty()) return bad("no host");
    t.host = rest;
    return t;
}

class RedisStore final : public QueuedStore {
  public:
    static Result<std::unique_ptr<StateStore>> open(std::string_view url) {
        std::string ns;
        auto t = parse_url(url, ns);
        if (!t) return tl::unexpected(t.error());
        std::unique_ptr<RedisStore> s(new RedisStore(*t, ns, std::string(url)));
        // Fail at start, not at the first call, when Redis is not there.
        if (auto ok = s->reader_.ensure(s->target_, limits::kStoreTimeout); !ok)
            return tl::unexpected(ok.error());
        auto pong = s->reader_.command({"PING"});
        if (!pong) return tl::unexpected(pong.error());
        if (pong->type == RespValue::Type::error)
            return fail(Errc::state_store, "redis at " + t->name() + ": PING: " + pong->str,
                        {{"store", "redis"}});
        // The scripts are sent once and then named by their SHA1 (EVALSHA): a commit then
        // carries its data only, and Redis does not hash the script's text each time.
        for (auto* sc : {&s->commit_, &s->load_, &s->erase_}) {
            auto sha = s->reader_.command({"SCRIPT", "LOAD", sc->text});
            if (!sha) return tl::unexpected(sha.error());
            if (sha->type != RespValue::Type::string || sha->str.size() != 40)
                return fail(
                    Errc::state_store,
                    "redis at " + t->name() + ": SCRIPT LOAD: " +
                        (sha->type == RespValue::Type::error ? sha->str : "an unexpected answer"),
                    {{"store", "redis"}});
            sc->sha = sha->str;
        }
        s->start_queue();
        return std::unique_ptr<StateStore>(std::move(s));
    }
    ~RedisStore() override { stop_queue(); }

    std::string_view kind() const override { return "redis"; }
    std::string describe() const override { return url_; }

    Result<std::optional<StoredState>> load(const InstanceRef& ref) override {
        std::lock_guard lk(read_mu_);
        auto r = run(reader_, {"EVALSHA", load_.sha, "1", meta_key(ref), prefix(ref)});
        if (!r) return tl::unexpected(r.error());
        if (r->type == RespValue::Type::nil) return std::optional<StoredState>();
        auto bad = [&](const std::string& what) {
            return fail(Errc::state_store,
                        "redis at " + target_.name() + ": the state of " + ref.text() +
                            " is malformed (" + what +
                            "): something else wrote these keys; remove them to start afresh",
                        {{"store", "redis"}, {"key", meta_key(ref)}});
        };
        if (r->type != RespValue::Type::array || r->array.size() < 5 || r->array.size() % 2 == 0)
            return bad("the load script's answer");
        const auto& a = r->array;
        StoredState out;
        try {
            out.version = std::stoull(a[0].str);
        } catch (...) {
            return bad("version");
        }
        auto exp = parse_json(a[2].str, "expires");
        if (!exp) return bad("expires");
        auto times = expiry_from_json(*exp, "expires");
        if (!times) return bad("expires");
        out.expires = std::move(*times);
        out.last_call = a[3].str;
        auto outputs = parse_json(a[4].str, "last_outputs");
        if (!outputs || !outputs->is_object()) return bad("last_outputs");
        out.last_outputs = std::move(outputs->get_object());
        for (std::size_t i = 5; i + 1 < a.size(); i += 2) {
            if (a[i + 1].type == RespValue::Type::nil) continue;  // expired in Redis
            auto v = parse_json(a[i + 1].str, "a state value");
            if (!v) return bad("the value of '" + a[i].str + "'");
            out.state[a[i].str] = std::move(*v);
        }
        drop_expired(out.state, out.expires, wall_ms());
        return std::optional<StoredState>(std::move(out));
    }

  private:
    RedisStore(RedisTarget t, std::string ns, std::string url)
        : target_(std::move(t)), ns_(std::move(ns)), url_(std::move(url)) {}

    std::string actor_id(const InstanceRef& r) const {
        return r.instance_id == "default" ? r.component : r.component + "@" + r.instance_id;
    }
    std::string prefix(const InstanceRef& r) const { return ns_ + ":" + actor_id(r) + ":"; }
    std::string meta_key(const InstanceRef& r) const {
        return ns_ + ":__sandflow__:" + actor_id(r);
    }

    struct Script {
        const char* text;
        std::string sha;  // set by open()
    };

    // A Redis that lost its script cache (restarted, SCRIPT FLUSH) answers EVALSHA with
    // NOSCRIPT, having run nothing: the same command with the script's text (EVAL, which
    // caches it again).
    static bool no_script(const RespValue& v) {
        return v.type == RespValue::Type::error && v.str.starts_with("NOSCRIPT");
    }
    std::vector<std::string> as_eval(std::vector<std::string> cmd) const {
        for (const auto* sc : {&commit_, &load_, &erase_})
            if (cmd.size() > 1 && cmd[1] == sc->sha) {
                cmd[0] = "EVAL";
                cmd[1] = sc->text;
            }
        return cmd;
    }

    // One command on `conn`, reconnecting first when needed; a Redis error reply is an error.
    Result<RespValue> run(RespConnection& conn, const std::vector<std::string>& cmd) {
        if (auto ok = conn.ensure(target_, limits::kStoreTimeout); !ok)
            return tl::unexpected(ok.error());
        auto r = conn.command(cmd);
        if (r && no_script(*r)) r = conn.command(as_eval(cmd));
        if (!r) return r;
        if (r->type == RespValue::Type::error)
            return fail(Errc::state_store, "redis at " + target_.name() + ": " + r->str,
                        {{"store", "redis"}});
        return r;
    }

    std::vector<std::string> commit_command(const StateCommit& c) const {
        json::array keys;
        for (const auto& [k, v] : c.state) keys.emplace_back(k);
        std::vector<std::string> cmd = {"EVALSHA",
                                        commit_.sha,
                                        "1",
                                        meta_key(c.ref),
                                        std::to_string(c.base_version),
                                        prefix(c.ref),
                                        to_json_string(expiry_to_json(c.expires)),
                                        c.call_id,
                                        to_json_string(c.outputs),
                                        to_json_string(keys),
                                        std::to_string(c.removed.size())};
        for (const auto& k : c.removed) cmd.push_back(k);
        for (const auto& k : c.changed) {
            const auto* v = c.state.if_contains(k);
            if (!v) continue;  // removed after all
            cmd.push_back(k);
            cmd.push_back(to_json_string(*v));
            auto t = c.expires.find(k);
            cmd.push_back(std::to_string(t == c.expires.end() ? 0 : t->second));
        }
        return cmd;
    }

    // On the queue's thread: the batch as one pipeline; each commit is its own script.
    void apply(std::vector<QueuedWrite>& batch) override {
        std::vector<std::vector<std::string>> cmds;
        cmds.reserve(batch.size());
        for (const auto& w : batch) {
            if (w.commit)
                cmds.push_back(commit_command(*w.commit));
            else
                cmds.push_back({"EVALSHA", erase_.sha, "1", meta_key(w.erase), prefix(w.erase)});
        }
        Result<std::vector<RespValue>> replies =
            writer_.ensure(target_, limits::kStoreTimeout).and_then([&] {
                return writer_.pipeline(cmds);
            });
        // Each NOSCRIPT ran nothing: sent again with its text, in order.
        for (std::size_t i = 0; replies && i < cmds.size(); ++i) {
            if (!no_script((*replies)[i])) continue;
            auto again = writer_.command(as_eval(std::move(cmds[i])));
            if (!again) {
                replies = tl::unexpected(again.error());
                break;
            }
            (*replies)[i] = std::move(*again);
        }
        for (std::size_t i = 0; i < batch.size(); ++i) {
            Result<std::uint64_t> r = std::uint64_t{0};
            if (!replies) {
                r = tl::unexpected(replies.error());
            } else {
                const RespValue& v = (*replies)[i];
                const std::string what =
                    batch[i].commit ? batch[i].commit->ref.text() : batch[i].erase.text();
                if (v.type == RespValue::Type::error) {
                    r = fail(Errc::state_store, "redis at " + target_.name() + ": " + v.str,
                             {{"store", "redis"}});
                } else if (!batch[i].commit) {
                    r = std::uint64_t{0};
                } else if (v.type != RespValue::Type::array || v.array.size() != 2) {
                    r = fail(Errc::state_store,
                             "redis at " + target_.name() + ": an unexpected answer to a commit",
                             {{"store", "redis"}});
                } else if (v.array[0].integer != 1) {
                    r = fail(Errc::state_conflict,
                             "the state of " + what + " was committed by another server (version " +
                                 std::to_string(v.array[1].integer) + ", this call ran on " +
                                 std::to_string(batch[i].commit->base_version) +
                                 "); the call was not committed and the next one runs on the "
                                 "newer state",
                             {{"store", "redis"}, {"version", v.array[1].integer}});
                } else {
                    r = static_cast<std::uint64_t>(v.array[1].integer);
                }
            }
            if (!r) spdlog::warn("state store: {}", r.error().message);
            batch[i].done(std::move(r));
        }
    }

    const RedisTarget target_;
    const std::string ns_;
    const std::string url_;
    Script commit_{kCommitScript, {}}, load_{kLoadScript, {}}, erase_{kEraseScript, {}};
    std::mutex read_mu_;
    RespConnection reader_;  // under read_mu_
    RespConnection writer_;  // the queue's thread only
};

}  // namespace

Result<std::unique_ptr<StateStore>> open_redis_store(std::string_view url, StoreOptions) {
    return RedisStore::open(url);
}

}  // namespace sandflow::runtime
