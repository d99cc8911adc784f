// Sandflow's value model: Reflow's message kinds and their plain-JSON mapping
// (docs/values.md).
//
// On every wire (host <-> server, server <-> worker) values are plain JSON: integers stay
// integers, null is Optional(None), objects and arrays are as they are. The kinds JSON has
// no literal for use a reserved single-key object:
//   Bytes  <-> {"$bytes": "<standard base64, padded>"}
//   Flow   <-> {"$flow": true}
//   Error  <-> {"$error": "<message>"}
// Event, Any and Optional(Some(v)) are transparent: they encode as their payload, and
// decoding never produces them (decoding is lossy in the same places as Reflow's).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <boost/json/value.hpp>
#include <tl/expected.hpp>

namespace sandflow {

enum class MessageKind {
    flow,
    event,
    boolean,
    integer,
    floating,
    string,
    object,
    array,
    bytes,
    optional,
    any,
    error
};

std::string_view message_kind_name(MessageKind kind);  // "Flow", "Event", ... as Reflow names them

class Message {
  public:
    struct Flow {};
    struct Event {
        boost::json::value payload;
    };
    struct Optional {
        std::shared_ptr<const boost::json::value> value;
    };  // null = None
    struct Any {
        boost::json::value payload;
    };
    struct ErrorText {
        std::string text;
    };
    using Bytes = std::vector<std::uint8_t>;

    Message() : v_(Optional{}) {}  // Optional(None)

    static Message flow() { return Message(Flow{}); }
    static Message event(boost::json::value v) { return Message(Event{std::move(v)}); }
    static Message boolean(bool b) { return Message(b); }
    static Message integer(std::int64_t i) { return Message(i); }
    static Message floating(double d) { return Message(d); }
    static Message string(std::string s) { return Message(std::move(s)); }
    static Message object(boost::json::object o) { return Message(std::move(o)); }
    static Message array(boost::json::array a) { return Message(std::move(a)); }
    static Message bytes(Bytes b) { return Message(std::move(b)); }
    static Message none() { return Message(); }
    static Message some(boost::json::value v);
    static Message any(boost::json::value v) { return Message(Any{std::move(v)}); }
    static Message error(std::string text) { return Message(ErrorText{std::move(text)}); }

    MessageKind kind() const;

    // Plain-JSON encoding described above.
    boost::json::value to_json() const;
    // Decoding; a reserved key with a malformed payload (bad base64) is an error message.
    static tl::expected<Message, std::string> from_json(const boost::json::value& v);

    bool operator==(const Message& other) const { return to_json() == other.to_json(); }

    const auto& variant() const { return v_; }

  private:
    using Variant =
        std::variant<Flow, Event, bool, std::int64_t, double, std::string, boost::json::object,
                     boost::json::array, Bytes, Optional, Any, ErrorText>;
    template <class T>
    explicit Message(T&& v) : v_(std::forward<T>(v)) {}
    Variant v_;
};

// Standard base64 (RFC 4648 §4) with padding.
std::string base64_encode(const std::uint8_t* data, std::size_t size);
tl::expected<Message::Bytes, std::string> base64_decode(std::string_view text);

}  // namespace sandflow
