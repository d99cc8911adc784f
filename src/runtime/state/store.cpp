#include "runtime/state/store.hpp"

#include <chrono>
#include <cstdlib>
#include <future>
#include <mutex>

namespace sandflow::runtime {

Result<std::uint64_t> StateStore::commit_wait(StateCommit c) {
    std::promise<Result<std::uint64_t>> p;
    auto f = p.get_future();
    commit(std::move(c), [&p](Result<std::uint64_t> r) { p.set_value(std::move(r)); });
    return f.get();
}

Result<void> StateStore::erase_wait(InstanceRef ref) {
    std::promise<Result<std::uint64_t>> p;
    auto f = p.get_future();
    erase(std::move(ref), [&p](Result<std::uint64_t> r) { p.set_value(std::move(r)); });
    auto r = f.get();
    if (!r) return tl::unexpected(r.error());
    return {};
}

std::int64_t wall_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

void drop_expired(json::object& state, StateExpiry& expires, std::int64_t now_ms) {
    for (auto it = expires.begin(); it != expires.end();) {
        if (it->second <= now_ms) {
            state.erase(it->first);
            it = expires.erase(it);
        } else if (!state.contains(it->first)) {
            it = expires.erase(it);  // a time for a key that is gone
        } else {
            ++it;
        }
    }
}

json::object expiry_to_json(const StateExpiry& e) {
    json::object o;
    for (const auto& [k, t] : e) o[k] = t;
    return o;
}

Result<StateExpiry> expiry_from_json(const json::value& v, std::string_view what) {
    StateExpiry out;
    if (v.is_null()) return out;
    if (!v.is_object())
        return fail(Errc::invalid_argument,
                    std::string(what) + ": expiry times must be an object {key: ms}");
    for (const auto& [k, t] : v.get_object()) {
        if (!t.is_int64())
            return fail(Errc::invalid_argument, std::string(what) + ": the expiry time of '" +
                                                    std::string(k) +
                                                    "' must be an integer (ms since the epoch)");
        out.emplace(std::string(k), t.get_int64());
    }
    return out;
}

namespace {

// Process-lifetime store: what `exec`, the embedded flow runtime and tests use.
class MemoryStore final : public StateStore {
  public:
    std::string_view kind() const override { return "memory"; }
    std::string describe() const override { return "memory"; }
    bool commits_inline() const override { return true; }

    Result<std::optional<StoredState>> load(const InstanceRef& ref) override {
        std::lock_guard lk(mu_);
        auto it = states_.find(ref.text());
        if (it == states_.end()) return std::optional<StoredState>();
        return std::optional<StoredState>(it->second);
    }

    void commit(StateCommit c, Done done) override {
        Result<std::uint64_t> r;
        {
            std::lock_guard lk(mu_);
            StoredState& s = states_[c.ref.text()];
            if (s.version != c.base_version) {
                r = fail(Errc::state_conflict,
                         "the state of " + c.ref.text() + " was committed elsewhere (version " +
                             std::to_string(s.version) + ", this call ran on " +
                             std::to_string(c.base_version) + "); the call was not committed",
                         {{"store", "memory"}, {"version", s.version}});
            } else {
                s.state = std::move(c.state);
                s.expires = std::move(c.expires);
                s.version = c.base_version + 1;
                s.last_call = std::move(c.call_id);
                s.last_outputs = std::move(c.outputs);
                r = s.version;
            }
        }
        done(std::move(r));
    }

    void erase(InstanceRef ref, Done done) override {
        {
            std::lock_guard lk(mu_);
            states_.erase(ref.text());
        }
        done(std::uint64_t{0});
    }

  private:
    std::mutex mu_;
    std::map<std::string, StoredState> states_;
};

}  // namespace

std::unique_ptr<StateStore> make_memory_store() {
    return std::make_unique<MemoryStore>();
}

std::string default_state_path() {
    auto env = [](const char* name) -> std::string {
        const char* v = std::getenv(name);
        return v && *v ? std::string(v) : std::string();
    };
    if (auto d = env("SANDFLOW_DATA_DIR"); !d.empty()) return d + "/state.sqlite";
    if (auto d = env("XDG_STATE_HOME"); !d.empty()) return d + "/sandflow/state.sqlite";
    if (auto d = env("HOME"); !d.empty()) return d + "/.local/state/sandflow/state.sqlite";
    return ".sandflow/state.sqlite";
}

Result<std::unique_ptr<StateStore>> open_state_store(std::string_view spec, StoreOptions o) {
    if (spec == "memory") return make_memory_store();
    if (spec.starts_with("sqlite:")) {
        std::string path(spec.substr(7));
        if (path.empty()) path = default_state_path();
        return open_sqlite_store(path, o);
    }
    if (spec.starts_with("redis://") || spec.starts_with("redis+unix://"))
        return open_redis_store(spec, o);
    return fail(Errc::invalid_argument,
                "--state '" + std::string(spec) +
                    "' is not a state store; use memory, sqlite:PATH (sqlite: alone for the "
                    "default file " +
                    default_state_path() + "), redis://HOST:PORT/DB or redis+unix:///PATH?db=N");
}

}  // namespace sandflow::runtime
