// Where the runtime server keeps each instance's committed state (DESIGN §7).
//
// runtime::Instance holds the working copy and commits it only when a call succeeds; the
// server then puts the committed state here, and reads it back when an instance is
// created (a load, a reload, a server restart with a durable store). The in-memory store
// is the default; durable stores implement the same interface.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "core/error.hpp"
#include "core/json.hpp"

namespace sandflow::server {

class StateStore {
  public:
    virtual ~StateStore() = default;
    virtual std::string_view name() const = 0;
    // nullopt when nothing is stored under the key.
    virtual Result<std::optional<json::object>> get(const std::string& key) = 0;
    virtual Result<void> put(const std::string& key, const json::object& state) = 0;
    virtual Result<void> erase(const std::string& key) = 0;
    virtual std::size_t size() const = 0;
};

// Thread-safe, process-lifetime store.
class MemoryStateStore final : public StateStore {
  public:
    std::string_view name() const override { return "memory"; }
    Result<std::optional<json::object>> get(const std::string& key) override;
    Result<void> put(const std::string& key, const json::object& state) override;
    Result<void> erase(const std::string& key) override;
    std::size_t size() const override;

  private:
    mutable std::mutex mu_;
    std::map<std::string, json::object> states_;
};

std::unique_ptr<StateStore> make_memory_store();

}  // namespace sandflow::server
