#include "runtime/actor_limits.hpp"
#include "core/limits.hpp"

#include <algorithm>
#include <charconv>
#include <string>

namespace sandflow::runtime {

namespace {

using Field = std::optional<std::uint64_t> LimitOverrides::*;

struct Named {
    std::string_view name;
    Field field;
};

constexpr Named kNames[] = {
    {"timeout_ms", &LimitOverrides::timeout_ms},
    {"memory_bytes", &LimitOverrides::memory_bytes},
    {"pids", &LimitOverrides::pids},
    {"cpu_milli", &LimitOverrides::cpu_milli},
    {"tmpfs_bytes", &LimitOverrides::tmpfs_bytes},
    {"output_bytes", &LimitOverrides::output_bytes},
    {"frame_bytes", &LimitOverrides::frame_bytes},
};

std::string known_names() {
    std::string out;
    for (const auto& n : kNames) out += (out.empty() ? "" : ", ") + std::string(n.name);
    return out;
}

const Named* find(std::string_view name) {
    for (const auto& n : kNames)
        if (n.name == name) return &n;
    return nullptr;
}

Error unknown(std::string_view name, std::string_view where) {
    return Error(Errc::invalid_argument,
                 std::string(where) + ": unknown limit '" + std::string(name) +
                     "'; known limits: " + known_names(),
                 {{"limit", std::string(name)}});
}

}  // namespace

json::object ActorLimits::to_json() const {
    return {{"timeout_ms", timeout.count()},
            {"memory_bytes", sandbox.memory_bytes},
            {"pids", sandbox.pids},
            {"cpu_milli", sandbox.cpu_milli},
            {"tmpfs_bytes", sandbox.tmpfs_bytes},
            {"output_bytes", output_bytes},
            {"frame_bytes", frame_bytes}};
}

ActorLimits default_maxima() {
    ActorLimits m;
    m.timeout = limits::kMaxTimeout;
    m.output_bytes = limits::kMaxOutputBytes;
    m.frame_bytes = limits::kMaxFrameBytes;
    m.sandbox.memory_bytes = limits::kMaxMemoryBytes;
    m.sandbox.pids = limits::kMaxPids;
    m.sandbox.cpu_milli = limits::kMaxCpuMilli;
    m.sandbox.tmpfs_bytes = limits::kMaxTmpfsBytes;
    return m;
}

ActorLimits default_limits(const sandbox::Backend& backend) {
    ActorLimits l;
    l.sandbox = backend.default_limits();
    return l;
}

bool LimitOverrides::empty() const {
    for (const auto& n : kNames)
        if ((this->*n.field).has_value()) return false;
    return true;
}

Result<LimitOverrides> parse_limits(const json::value& v, std::string_view where) {
    LimitOverrides out;
    if (v.is_null()) return out;
    if (!v.is_object())
        return fail(Errc::invalid_argument,
                    std::string(where) + " must be an object of named limits, such as " +
                        "{\"memory_bytes\": 134217728, \"timeout_ms\": 5000}",
                    {{"param", std::string(where)}});
    for (const auto& [key, value] : v.get_object()) {
        const Named* n = find(key);
        if (!n) return tl::unexpected(unknown(key, where));
        const bool positive = (value.is_int64() && value.get_int64() > 0) ||
                              (value.is_uint64() && value.get_uint64() > 0);
        if (!positive)
            return fail(Errc::invalid_argument,
                        std::string(where) + "." + std::string(key) +
                            " must be a positive integer, got " + to_json_string(value),
                        {{"limit", std::string(key)}});
        out.*(n->field) =
            value.is_uint64() ? value.get_uint64() : static_cast<std::uint64_t>(value.get_int64());
    }
    return out;
}

Result<ActorLimits> apply_limits(ActorLimits base, const LimitOverrides& o,
                                 const ActorLimits& maxima, std::string_view where) {
    const json::object max = maxima.to_json();
    static constexpr std::pair<std::string_view, std::uint64_t> kMinima[] = {
        {"timeout_ms", 1},
        {"memory_bytes", limits::kMinMemoryBytes},
        {"pids", limits::kMinPids},
        {"cpu_milli", 1},
        {"tmpfs_bytes", 1},
        {"output_bytes", 1},
        {"frame_bytes", limits::kMinFrameBytes},
    };
    for (const auto& n : kNames) {
        const auto& value = o.*(n.field);
        if (!value) continue;
        const std::uint64_t hi = max.at(n.name).to_number<std::uint64_t>();
        std::uint64_t lo = 1;
        for (const auto& [name, m] : kMinima)
            if (name == n.name) lo = m;
        if (*value > hi)
            return fail(Errc::invalid_argument,
                        std::string(where) + ": limit " + std::string(n.name) + " = " +
                            std::to_string(*value) + " is above this runtime's maximum of " +
                            std::to_string(hi) +
                            "; ask for less, or start the runtime with a higher maximum "
                            "(serve --max-limit " +
                            std::string(n.name) + "=VALUE)",
                        {{"limit", std::string(n.name)}, {"value", *value}, {"max", hi}});
        if (*value < lo)
            return fail(Errc::invalid_argument,
                        std::string(where) + ": limit " + std::string(n.name) + " = " +
                            std::to_string(*value) + " is below the minimum of " +
                            std::to_string(lo) + " that a sandboxed interpreter needs",
                        {{"limit", std::string(n.name)}, {"value", *value}, {"min", lo}});
    }
    if (o.timeout_ms) base.timeout = std::chrono::milliseconds(*o.timeout_ms);
    if (o.memory_bytes) base.sandbox.memory_bytes = *o.memory_bytes;
    if (o.pids) base.sandbox.pids = static_cast<std::uint32_t>(*o.pids);
    if (o.cpu_milli) base.sandbox.cpu_milli = static_cast<std::uint32_t>(*o.cpu_milli);
    if (o.tmpfs_bytes) base.sandbox.tmpfs_bytes = *o.tmpfs_bytes;
    if (o.output_bytes) base.output_bytes = *o.output_bytes;
    if (o.frame_bytes) base.frame_bytes = *o.frame_bytes;
    return base;
}

Result<ActorLimits> limits_for(const actor::ActorMetadata& metadata, const ActorLimits& defaults,
                               const ActorLimits& maxima) {
    const auto* declared = metadata.raw.if_contains("limits");
    if (!declared) return defaults;
    const std::string where = "the \"limits\" of actor '" + metadata.component + "'";
    auto o = parse_limits(*declared, where);
    if (!o) return tl::unexpected(o.error());
    return apply_limits(defaults, *o, maxima, where);
}

Result<void> parse_limit_assignment(std::string_view text, LimitOverrides& overrides) {
    const auto eq = text.find('=');
    const std::string_view name = text.substr(0, eq);
    const Named* n = eq == std::string_view::npos ? nullptr : find(name);
    if (!n) {
        if (eq == std::string_view::npos)
            return fail(
                Errc::invalid_argument,
                "'" + std::string(text) + "' is not NAME=VALUE; known limits: " + known_names());
        return tl::unexpected(unknown(name, "--limit"));
    }
    std::string_view digits = text.substr(eq + 1);
    // Sizes may carry a binary suffix: 256M, 1G, 64K.
    std::uint64_t scale = 1;
    if (!digits.empty()) {
        switch (digits.back()) {
            case 'K':
            case 'k':
                scale = 1ull << 10;
                break;
            case 'M':
                scale = 1ull << 20;
                break;
            case 'G':
                scale = 1ull << 30;
                break;
            default:
                break;
        }
        if (scale != 1) digits.remove_suffix(1);
    }
    std::uint64_t value = 0;
    const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
    if (ec != std::errc() || end != digits.data() + digits.size() || digits.empty() || value == 0 ||
        value > UINT64_MAX / scale)
        return fail(Errc::invalid_argument,
                    "limit " + std::string(name) + ": '" + std::string(text.substr(eq + 1)) +
                        "' is not a positive integer (sizes may end in K, M or G)",
                    {{"limit", std::string(name)}});
    overrides.*(n->field) = value * scale;
    return {};
}

Result<LimitPolicy> limit_policy(const std::vector<std::string>& defaults,
                                 const std::vector<std::string>& maxima) {
    LimitOverrides d, m;
    for (const auto& a : defaults)
        if (auto r = parse_limit_assignment(a, d); !r) return tl::unexpected(r.error());
    for (const auto& a : maxima)
        if (auto r = parse_limit_assignment(a, m); !r) return tl::unexpected(r.error());
    // What the counters and the frame protocol can hold at all.
    ActorLimits ceiling;
    ceiling.timeout = std::chrono::hours(24 * 7);
    ceiling.output_bytes = UINT64_MAX;
    ceiling.frame_bytes = limits::kMaxFrameBytes;
    ceiling.sandbox.memory_bytes = UINT64_MAX;
    ceiling.sandbox.pids = UINT32_MAX;
    ceiling.sandbox.cpu_milli = UINT32_MAX;
    ceiling.sandbox.tmpfs_bytes = UINT64_MAX;
    LimitPolicy p;
    auto max = apply_limits(default_maxima(), m, ceiling, "--max-limit");
    if (!max) return tl::unexpected(max.error());
    p.maxima = *max;
    auto def = apply_limits({}, d, p.maxima, "--limit");
    if (!def) return tl::unexpected(def.error());
    p.defaults = *def;
    // A maximum below the built-in default lowers the default with it.
    auto clamp = [](auto& v, auto hi) { v = std::min(v, hi); };
    clamp(p.defaults.timeout, p.maxima.timeout);
    clamp(p.defaults.output_bytes, p.maxima.output_bytes);
    clamp(p.defaults.frame_bytes, p.maxima.frame_bytes);
    clamp(p.defaults.sandbox.memory_bytes, p.maxima.sandbox.memory_bytes);
    clamp(p.defaults.sandbox.pids, p.maxima.sandbox.pids);
    clamp(p.defaults.sandbox.cpu_milli, p.maxima.sandbox.cpu_milli);
    clamp(p.defaults.sandbox.tmpfs_bytes, p.maxima.sandbox.tmpfs_bytes);
    return p;
}

}  // namespace sandflow::runtime
