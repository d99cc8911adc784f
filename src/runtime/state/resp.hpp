// A small client of Redis's protocol (RESP2) over a blocking socket, TCP or unix, with a
// deadline on every read and write: what the redis store needs (commands, pipelining,
// replies bounded by limits::kMaxRedisReplyBytes and kMaxRedisReplyDepth before anything
// is allocated for them), nothing more.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "core/error.hpp"

namespace sandflow::runtime {

struct RespValue {
    enum class Type { nil, string, error, integer, array } type = Type::nil;
    std::string str;  // string, error (status replies are strings)
    std::int64_t integer = 0;
    std::vector<RespValue> array;
};

struct RedisTarget {
    std::string host;  // TCP, or
    int port = 6379;
    std::string unix_path;  // a unix socket when set
    int db = 0;
    std::string name() const {
        return unix_path.empty() ? host + ":" + std::to_string(port) : "unix:" + unix_path;
    }
};

class RespConnection {
  public:
    RespConnection() = default;
    ~RespConnection();
    RespConnection(const RespConnection&) = delete;
    RespConnection& operator=(const RespConnection&) = delete;

    // Connects (and SELECTs the target's db) unless connected. Errc::state_store.
    Result<void> ensure(const RedisTarget& target, std::chrono::milliseconds timeout);
    bool connected() const { return fd_ >= 0; }
    void close();
    // Sends the commands in one write, then reads one reply each. Any I/O or protocol
    // error closes the connection (the next ensure() reconnects).
    Result<std::vector<RespValue>> pipeline(const std::vector<std::vector<std::string>>& cmds);
    Result<RespValue> command(const std::vector<std::string>& cmd);

  private:
    Result<void> write_all(const std::string& data);
    Result<void> fill(std::size_t need);
    Result<std::string> line();
    Result<RespValue> read_value(std::size_t depth);
    Error broken(const std::string& what);

    int fd_ = -1;
    std::string where_;
    std::string buf_;
    std::size_t pos_ = 0;
};

}  // namespace sandflow::runtime
