#include "sandflow/value.hpp"

#include <array>

#include <boost/json.hpp>

namespace sandflow {

namespace json = boost::json;

namespace {
template <class... F>
struct overloaded : F... {
    using F::operator()...;
};
template <class... F>
overloaded(F...) -> overloaded<F...>;

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
}  // namespace

std::string_view message_kind_name(MessageKind kind) {
    switch (kind) {
        case MessageKind::flow:
            return "Flow";
        case MessageKind::event:
            return "Event";
        case MessageKind::boolean:
            return "Boolean";
        case MessageKind::integer:
            return "Integer";
        case MessageKind::floating:
            return "Float";
        case MessageKind::string:
            return "String";
        case MessageKind::object:
            return "Object";
        case MessageKind::array:
            return "Array";
        case MessageKind::bytes:
            return "Bytes";
        case MessageKind::optional:
            return "Optional";
        case MessageKind::any:
            return "Any";
        case MessageKind::error:
            return "Error";
    }
    return "Any";
}

Message Message::some(json::value v) {
    return Message(Optional{std::make_shared<const json::value>(std::move(v))});
}

MessageKind Message::kind() const {
    return std::visit(overloaded{
                          [](const Flow&) { return MessageKind::flow; },
                          [](const Event&) { return MessageKind::event; },
                          [](bool) { return MessageKind::boolean; },
                          [](std::int64_t) { return MessageKind::integer; },
                          [](double) { return MessageKind::floating; },
                          [](const std::string&) { return MessageKind::string; },
                          [](const json::object&) { return MessageKind::object; },
                          [](const json::array&) { return MessageKind::array; },
                          [](const Bytes&) { return MessageKind::bytes; },
                          [](const Optional&) { return MessageKind::optional; },
                          [](const Any&) { return MessageKind::any; },
                          [](const ErrorText&) { return MessageKind::error; },
                      },
                      v_);
}

json::value Message::to_json() const {
    return std::visit(overloaded{
                          [](const Flow&) -> json::value {
                              return json::object{{"$flow", true}};
                          },
                          [](const Event& e) -> json::value { return e.payload; },
                          [](bool b) -> json::value { return b; },
                          [](std::int64_t i) -> json::value { return i; },
                          [](double d) -> json::value { return d; },
                          [](const std::string& s) -> json::value { return json::string(s); },
                          [](const json::object& o) -> json::value { return o; },
                          [](const json::array& a) -> json::value { return a; },
                          [](const Bytes& b) -> json::value {
                              return json::object{{"$bytes", base64_encode(b.data(), b.size())}};
                          },
                          [](const Optional& o) -> json::value {
                              return o.value ? *o.value : json::value(nullptr);
                          },
                          [](const Any& a) -> json::value { return a.payload; },
                          [](const ErrorText& e) -> json::value {
                              return json::object{{"$error", e.text}};
                          },
                      },
                      v_);
}

tl::expected<Message, std::string> Message::from_json(const json::value& v) {
    switch (v.kind()) {
        case json::kind::null:
            return Message::none();
        case json::kind::bool_:
            return Message::boolean(v.get_bool());
        case json::kind::int64:
            return Message::integer(v.get_int64());
        case json::kind::uint64: {
            // Beyond int64: keep the number, as a float, like Reflow's f64 fallback.
            const auto u = v.get_uint64();
            if (u <= static_cast<std::uint64_t>(INT64_MAX))
                return Message::integer(static_cast<std::int64_t>(u));
            return Message::floating(static_cast<double>(u));
        }
        case json::kind::double_:
            return Message::floating(v.get_double());
        case json::kind::string:
            return Message::string(std::string(v.get_string()));
        case json::kind::array:
            return Message::array(v.get_array());
        case json::kind::object: {
            const auto& o = v.get_object();
            if (o.size() == 1) {
                const auto& [key, val] = *o.begin();
                if (key == "$bytes") {
                    if (!val.is_string())
                        return tl::unexpected<std::string>("\"$bytes\" must hold a base64 string");
                    auto b = base64_decode(val.get_string());
                    if (!b) return tl::unexpected<std::string>("\"$bytes\": " + b.error());
                    return Message::bytes(std::move(*b));
                }
                if (key == "$flow") return Message::flow();
                if (key == "$error") {
                    if (!val.is_string())
                        return tl::unexpected<std::string>("\"$error\" must hold a string");
                    return Message::error(std::string(val.get_string()));
                }
            }
            return Message::object(o);
        }
    }
    return Message::none();
}

std::string base64_encode(const std::uint8_t* data, std::size_t size) {
    std::string out;
    out.reserve((size + 2) / 3 * 4);
    std::size_t i = 0;
    for (; i + 2 < size; i += 3) {
        const unsigned n = (unsigned{data[i]} << 16) | (unsigned{data[i + 1]} << 8) | data[i + 2];
        out += kAlphabet[(n >> 18) & 63];
        out += kAlphabet[(n >> 12) & 63];
        out += kAlphabet[(n >> 6) & 63];
        out += kAlphabet[n & 63];
    }
    if (i < size) {
        unsigned n = unsigned{data[i]} << 16;
        if (i + 1 < size) n |= unsigned{data[i + 1]} << 8;
        out += kAlphabet[(n >> 18) & 63];
        out += kAlphabet[(n >> 12) & 63];
        out += (i + 1 < size) ? kAlphabet[(n >> 6) & 63] : '=';
        out += '=';
    }
    return out;
}

tl::expected<Message::Bytes, std::string> base64_decode(std::string_view text) {
    static const std::array<int, 256> table = [] {
        std::array<int, 256> t{};
        t.fill(-1);
        for (int i = 0; i < 64; ++i) t[static_cast<unsigned char>(kAlphabet[i])] = i;
        return t;
    }();
    if (text.size() % 4 != 0)
        return tl::unexpected<std::string>(
            "base64 length " + std::to_string(text.size()) +
            " is not a multiple of 4 (padding with '=' is required)");
    Message::Bytes out;
    out.reserve(text.size() / 4 * 3);
    for (std::size_t i = 0; i < text.size(); i += 4) {
        int v[4];
        int pad = 0;
        for (int j = 0; j < 4; ++j) {
            const char c = text[i + j];
            if (c == '=' && i + 4 == text.size() && j >= 2) {
                v[j] = 0;
                ++pad;
                continue;
            }
            if (pad > 0)
                return tl::unexpected<std::string>("base64 padding in the middle at offset " +
                                                   std::to_string(i + j));
            v[j] = table[static_cast<unsigned char>(c)];
            if (v[j] < 0)
                return tl::unexpected<std::string>("invalid base64 character at offset " +
                                                   std::to_string(i + j));
        }
        const unsigned n = (unsigned(v[0]) << 18) | (unsigned(v[1]) << 12) | (unsigned(v[2]) << 6) |
                           unsigned(v[3]);
        out.push_back(static_cast<std::uint8_t>(n >> 16));
        if (pad < 2) out.push_back(static_cast<std::uint8_t>((n >> 8) & 0xff));
        if (pad < 1) out.push_back(static_cast<std::uint8_t>(n & 0xff));
    }
    return out;
}

}  // namespace sandflow
