#include "rpc/transport.hpp"

#include <arpa/inet.h>

#include <charconv>
#include <cstring>

namespace sandflow::rpc {

namespace {

Result<std::uint16_t> parse_port(std::string_view text, std::string_view whole) {
    unsigned v = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (text.empty() || ec != std::errc() || end != text.data() + text.size() || v > 65535)
        return fail(Errc::invalid_argument,
                    "bad port in '" + std::string(whole) + "': expected 0..65535");
    return static_cast<std::uint16_t>(v);
}

}  // namespace

Result<HostPort> parse_listen(std::string_view text) {
    HostPort hp;
    std::string_view port;
    if (!text.empty() && text.front() == '[') {
        const auto close = text.find(']');
        if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
            return fail(Errc::invalid_argument,
                        "bad listen address '" + std::string(text) + "': use [::1]:7777");
        hp.host = std::string(text.substr(1, close - 1));
        port = text.substr(close + 2);
    } else {
        const auto colon = text.rfind(':');
        if (colon == std::string_view::npos)
            return fail(Errc::invalid_argument, "bad listen address '" + std::string(text) +
                                                    "': use HOST:PORT, like 127.0.0.1:7777");
        hp.host = std::string(text.substr(0, colon));
        if (hp.host.find(':') != std::string::npos)
            return fail(Errc::invalid_argument, "bad listen address '" + std::string(text) +
                                                    "': write IPv6 addresses in brackets, "
                                                    "like [::1]:7777");
        port = text.substr(colon + 1);
    }
    if (hp.host.empty()) hp.host = "127.0.0.1";
    auto p = parse_port(port, text);
    if (!p) return tl::unexpected(p.error());
    hp.port = *p;
    if (hp.host != "localhost") {
        unsigned char buf[sizeof(in6_addr)];
        if (::inet_pton(AF_INET, hp.host.c_str(), buf) != 1 &&
            ::inet_pton(AF_INET6, hp.host.c_str(), buf) != 1)
            return fail(Errc::invalid_argument, "bad listen address '" + std::string(text) +
                                                    "': the host must be a numeric IP address "
                                                    "or localhost");
    }
    return hp;
}

bool is_loopback_host(std::string_view host) {
    if (host == "localhost") return true;
    const std::string h(host);
    in_addr a4{};
    if (::inet_pton(AF_INET, h.c_str(), &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127;
    in6_addr a6{};
    if (::inet_pton(AF_INET6, h.c_str(), &a6) == 1) {
        if (IN6_IS_ADDR_LOOPBACK(&a6)) return true;
        if (IN6_IS_ADDR_V4MAPPED(&a6)) return a6.s6_addr[12] == 127;
    }
    return false;
}

bool constant_time_equal(std::string_view a, std::string_view b) {
    // Walk the longer length so the time reveals the lengths only.
    const std::size_t n = a.size() > b.size() ? a.size() : b.size();
    unsigned diff = a.size() == b.size() ? 0u : 1u;
    for (std::size_t i = 0; i < n; ++i) {
        const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
        const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
        diff |= static_cast<unsigned>(x ^ y);
    }
    return diff == 0;
}

std::optional<std::string> query_param(std::string_view target, std::string_view name) {
    const auto q = target.find('?');
    if (q == std::string_view::npos) return std::nullopt;
    std::string_view rest = target.substr(q + 1);
    for (;;) {
        const auto amp = rest.find('&');
        const std::string_view item = rest.substr(0, amp);
        if (item.size() > name.size() && item.substr(0, name.size()) == name &&
            item[name.size()] == '=') {
            const std::string_view raw = item.substr(name.size() + 1);
            std::string out;
            for (std::size_t i = 0; i < raw.size(); ++i) {
                if (raw[i] != '%') {
                    out += raw[i];
                    continue;
                }
                auto hex = [](char c) {
                    return c >= '0' && c <= '9'   ? c - '0'
                           : c >= 'a' && c <= 'f' ? c - 'a' + 10
                           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                                  : -1;
                };
                if (i + 2 >= raw.size()) return std::nullopt;
                const int hi = hex(raw[i + 1]), lo = hex(raw[i + 2]);
                if (hi < 0 || lo < 0) return std::nullopt;
                out += static_cast<char>(hi * 16 + lo);
                i += 2;
            }
            return out;
        }
        if (amp == std::string_view::npos) return std::nullopt;
        rest = rest.substr(amp + 1);
    }
}

Result<WsUrl> parse_ws_url(std::string_view url) {
    constexpr std::string_view kScheme = "ws://";
    if (url.substr(0, kScheme.size()) != kScheme)
        return fail(Errc::invalid_argument,
                    "bad URL '" + std::string(url) + "': expected ws://HOST:PORT");
    std::string_view rest = url.substr(kScheme.size());
    WsUrl u;
    const auto slash = rest.find('/');
    if (slash != std::string_view::npos) {
        u.target = std::string(rest.substr(slash));
        rest = rest.substr(0, slash);
    }
    if (!rest.empty() && rest.front() == '[') {
        const auto close = rest.find(']');
        if (close == std::string_view::npos)
            return fail(Errc::invalid_argument, "bad URL '" + std::string(url) + "'");
        u.host = std::string(rest.substr(1, close - 1));
        rest = rest.substr(close + 1);
        if (!rest.empty()) {
            if (rest.front() != ':')
                return fail(Errc::invalid_argument, "bad URL '" + std::string(url) + "'");
            auto p = parse_port(rest.substr(1), url);
            if (!p) return tl::unexpected(p.error());
            u.port = *p;
        }
    } else {
        const auto colon = rest.rfind(':');
        u.host = std::string(rest.substr(0, colon));
        if (colon != std::string_view::npos) {
            auto p = parse_port(rest.substr(colon + 1), url);
            if (!p) return tl::unexpected(p.error());
            u.port = *p;
        }
    }
    if (u.host.empty())
        return fail(Errc::invalid_argument, "bad URL '" + std::string(url) + "': no host");
    return u;
}

}  // namespace sandflow::rpc
