// Named limits of the state stores (src/runtime/state/, docs/actors.md#state): a store is a
// peer the runtime does not trust to be quick or small.
#pragma once

#include <chrono>
#include <cstddef>

namespace sandflow::limits {
inline constexpr std::size_t kMaxCommitBatch = 256;               // commits in one group commit
inline constexpr std::chrono::milliseconds kStoreTimeout{2'000};  // a store's round trip
inline constexpr std::size_t kMaxRedisReplyBytes = 64u << 20;     // one reply from Redis
inline constexpr std::size_t kMaxRedisReplyDepth = 8;             // nesting of a reply
}  // namespace sandflow::limits
