// Where an instance's committed state lives between calls and across restarts: the state
// store interface and the three stores (README.md beside this file, docs/actors.md#state).
//
// An instance is (component, instance id); its state is one JSON object with a version
// and the expiry times of some keys. A commit writes a new object and its version
// atomically, and only while the stored version is still the one the call ran on (a
// compare-and-set): two servers can never both commit from one version. A commit also
// records the call's id and outputs, so that a call replayed after a failover finds it
// was already committed.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"
#include "core/json.hpp"

namespace sandflow::runtime {

// Expiry times of state keys: ms since the Unix epoch. The wall clock, not a steady one:
// several servers and a restarted one read the same times.
using StateExpiry = std::map<std::string, std::int64_t, std::less<>>;

struct InstanceRef {
    std::string component;
    std::string instance_id;
    std::string text() const { return component + "/" + instance_id; }
};

struct StoredState {
    json::object state;
    StateExpiry expires;
    std::uint64_t version = 0;  // the number of commits so far
    std::string last_call;      // the id of the call that made this version ("": none given)
    json::object last_outputs;  // that call's outputs
};

struct StateCommit {
    InstanceRef ref;
    std::uint64_t base_version = 0;  // the version the call ran on; this commit makes base + 1
    json::object state;              // the whole new state
    StateExpiry expires;
    // The keys written and removed since base_version, for stores that keep a key apiece.
    std::vector<std::string> changed, removed;
    std::string call_id;
    json::object outputs;
};

class StateStore {
  public:
    // The commit's outcome: the new version, Errc::state_conflict when the stored version
    // is no longer base_version, Errc::state_store when the store failed (then whether the
    // commit landed may be unknown: the next load says).
    using Done = std::function<void(Result<std::uint64_t>)>;

    virtual ~StateStore() = default;
    // "memory", "sqlite" or "redis".
    virtual std::string_view kind() const = 0;
    // What and where, for logs and `serve`'s first line: "sqlite:/var/lib/x.db".
    virtual std::string describe() const = 0;
    // The stored state, nullopt when the instance has none. Blocks (one round trip).
    virtual Result<std::optional<StoredState>> load(const InstanceRef& ref) = 0;
    // Queues the commit; `done` runs once it is durable (as the store promises) or failed,
    // on the store's own thread or inside commit() (sqlite with NORMAL writes there when
    // its writer is free), always inside it when commits_inline().
    virtual void commit(StateCommit c, Done done) = 0;
    // Removes the instance's state; `done` as for commit(), with version 0.
    virtual void erase(InstanceRef ref, Done done) = 0;
    virtual bool commits_inline() const { return false; }

    // commit() and wait for it.
    Result<std::uint64_t> commit_wait(StateCommit c);
    Result<void> erase_wait(InstanceRef ref);
};

struct StoreOptions {
    // sqlite: PRAGMA synchronous. FULL: a commit survives a power cut; NORMAL: it survives
    // a crash of the server (kill -9) but the last commits may be lost with the machine.
    bool sqlite_full_sync = false;
};

std::unique_ptr<StateStore> make_memory_store();
// `path` is created with its folder when missing; a file that is not a Sandflow state
// database (another SQLite schema, not SQLite at all, damaged) is an error naming it.
Result<std::unique_ptr<StateStore>> open_sqlite_store(const std::string& path, StoreOptions o);

// redis://HOST:PORT/DB or redis+unix:///PATH?db=N, with &namespace=NS (default
// "sandflow"). Redis must answer at once (Errc::state_store); later it may come and go:
// calls fail while it is away, and the store reconnects.
Result<std::unique_ptr<StateStore>> open_redis_store(std::string_view url, StoreOptions o);

// `memory`, `sqlite:PATH` or a redis URL; an unknown spec is an error that lists these.
Result<std::unique_ptr<StateStore>> open_state_store(std::string_view spec, StoreOptions o);

// The default database of `serve`: $SANDFLOW_DATA_DIR/state.sqlite, else
// $XDG_STATE_HOME/sandflow/state.sqlite, else $HOME/.local/state/sandflow/state.sqlite.
std::string default_state_path();

// The state's JSON with expired keys dropped (at `now_ms`), and their expiry times too.
void drop_expired(json::object& state, StateExpiry& expires, std::int64_t now_ms);
std::int64_t wall_ms();

json::object expiry_to_json(const StateExpiry& e);
// From stored or received JSON: {key: integer ms}; anything else is an error naming `what`.
Result<StateExpiry> expiry_from_json(const json::value& v, std::string_view what);

}  // namespace sandflow::runtime
