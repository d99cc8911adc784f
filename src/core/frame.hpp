// The length-prefixed frame codec of the host <-> worker channel (docs/worker-protocol.md).
//
// A frame is a 4-byte big-endian payload length followed by that many bytes of UTF-8 JSON
// (one object). The length is checked against a limit before any allocation.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "core/json.hpp"
#include "core/limits.hpp"

namespace sandflow {

// Header + payload, ready to write.
std::string encode_frame(const json::value& message);
// A frame around raw bytes (used once, for the Python worker's code; see actor/sdk.hpp).
std::string encode_raw_frame(std::string_view payload);

// Incremental decoder: feed() whatever read() returned, then call next() until it yields
// nothing. After an error the decoder stays failed (the peer broke the protocol).
class FrameDecoder {
  public:
    explicit FrameDecoder(std::size_t max_frame = limits::kMaxFrameBytes) : max_(max_frame) {}

    void feed(std::string_view bytes) { buf_.append(bytes); }

    // A complete frame's JSON object, nullopt when more bytes are needed, or an error
    // (oversized frame, malformed JSON, payload not an object).
    std::optional<Result<json::object>> next();

    std::size_t buffered() const { return buf_.size() - pos_; }
    // The limit for frames not yet decoded (a call's own frame_bytes).
    void set_max(std::size_t max_frame) { max_ = max_frame; }
    // The payload size of the frame next() returned last.
    std::size_t last_frame_bytes() const { return last_; }

  private:
    std::size_t max_;
    std::string buf_;
    std::size_t pos_ = 0;
    std::size_t last_ = 0;
    std::optional<Error> failed_;
};

}  // namespace sandflow
