#include "server/state_store.hpp"

namespace sandflow::server {

Result<std::optional<json::object>> MemoryStateStore::get(const std::string& key) {
    std::lock_guard lk(mu_);
    auto it = states_.find(key);
    if (it == states_.end()) return std::optional<json::object>();
    return std::optional<json::object>(it->second);
}

Result<void> MemoryStateStore::put(const std::string& key, const json::object& state) {
    std::lock_guard lk(mu_);
    states_[key] = state;
    return {};
}

Result<void> MemoryStateStore::erase(const std::string& key) {
    std::lock_guard lk(mu_);
    states_.erase(key);
    return {};
}

std::size_t MemoryStateStore::size() const {
    std::lock_guard lk(mu_);
    return states_.size();
}

std::unique_ptr<StateStore> make_memory_store() {
    return std::make_unique<MemoryStateStore>();
}

}  // namespace sandflow::server
