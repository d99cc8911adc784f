#include "core/frame.hpp"
#include "core/limits.hpp"

#include <cstdint>

namespace sandflow {

namespace {
void put_header(std::string& out) {
    const auto n = static_cast<std::uint32_t>(out.size() - limits::kFrameHeaderBytes);
    out[0] = static_cast<char>((n >> 24) & 0xff);
    out[1] = static_cast<char>((n >> 16) & 0xff);
    out[2] = static_cast<char>((n >> 8) & 0xff);
    out[3] = static_cast<char>(n & 0xff);
}
}  // namespace

std::string encode_frame(const json::value& message) {
    std::string out(limits::kFrameHeaderBytes, '\0');
    append_json(message, out);
    put_header(out);
    return out;
}

std::string encode_raw_frame(std::string_view payload) {
    std::string out(limits::kFrameHeaderBytes, '\0');
    out += payload;
    put_header(out);
    return out;
}

std::optional<Result<json::object>> FrameDecoder::next() {
    if (failed_) return tl::unexpected(*failed_);
    if (buf_.size() - pos_ < limits::kFrameHeaderBytes) return std::nullopt;
    const auto* p = reinterpret_cast<const unsigned char*>(buf_.data() + pos_);
    const std::size_t n = (std::size_t{p[0]} << 24) | (std::size_t{p[1]} << 16) |
                          (std::size_t{p[2]} << 8) | std::size_t{p[3]};
    if (n > max_) {
        failed_ =
            Error(Errc::limit_exceeded,
                  "frame of " + std::to_string(n) + " bytes exceeds the frame size limit of " +
                      std::to_string(max_) + " bytes",
                  {{"limit", "frame_bytes"}, {"value", max_}});
        return tl::unexpected(*failed_);
    }
    if (buf_.size() - pos_ < limits::kFrameHeaderBytes + n) return std::nullopt;
    std::string_view payload(buf_.data() + pos_ + limits::kFrameHeaderBytes, n);
    pos_ += limits::kFrameHeaderBytes + n;
    last_ = n;
    auto v = parse_json(payload, "frame");
    // Compact once the consumed prefix dominates, so the buffer does not grow unbounded.
    if (pos_ == buf_.size()) {
        buf_.clear();
        pos_ = 0;
    } else if (pos_ > 4096 && pos_ * 2 > buf_.size()) {
        buf_.erase(0, pos_);
        pos_ = 0;
    }
    if (!v) {
        failed_ = Error(Errc::worker_crashed, "malformed frame: " + v.error().message);
        return tl::unexpected(*failed_);
    }
    if (!v->is_object()) {
        failed_ = Error(Errc::worker_crashed, "malformed frame: payload is not a JSON object");
        return tl::unexpected(*failed_);
    }
    return std::move(v->as_object());
}

}  // namespace sandflow
