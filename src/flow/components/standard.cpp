// The standard native components (docs/flow.md lists them with their ports and config).
#include <charconv>
#include <fstream>

#include "core/limits.hpp"
#include "flow/components/json_path.hpp"
#include "flow/flow_limits.hpp"
#include "sandflow/flow.hpp"

namespace sandflow::flow {

Result<JsonPath> JsonPath::parse(std::string_view text) {
    JsonPath p;
    if (text.starts_with("$")) text.remove_prefix(1);
    std::string cur;
    auto push = [&] {
        if (!cur.empty()) p.steps.push_back(std::move(cur));
        cur.clear();
    };
    for (char c : text) {
        if (c == '.' || c == '/' || c == '[' || c == ']') {
            push();
        } else {
            cur += c;
        }
        if (p.steps.size() > limits::kMaxJsonDepth)
            return fail(Errc::invalid_argument,
                        "JSON path '" + std::string(text) + "' has more than " +
                            std::to_string(limits::kMaxJsonDepth) + " steps");
    }
    push();
    return p;
}

const json::value* JsonPath::find(const json::value& root) const {
    const json::value* v = &root;
    for (const auto& s : steps) {
        if (v->is_object()) {
            v = v->get_object().if_contains(s);
        } else if (v->is_array()) {
            std::size_t i = 0;
            auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), i);
            if (ec != std::errc() || end != s.data() + s.size()) return nullptr;
            v = v->get_array().if_contains(i);
        } else {
            return nullptr;
        }
        if (!v) return nullptr;
    }
    return v;
}

namespace {

using Make = std::function<Result<std::unique_ptr<Component>>(const json::object&)>;

Error config_error(std::string_view component, std::string_view what) {
    return Error(Errc::invalid_argument,
                 "config of " + std::string(component) + ": " + std::string(what));
}

Result<std::int64_t> config_int(const json::object& c, std::string_view component,
                                std::string_view key, std::int64_t fallback, std::int64_t min,
                                std::int64_t max) {
    const auto* v = c.if_contains(key);
    if (!v || v->is_null()) return fallback;
    if (!v->is_int64() && !v->is_uint64())
        return tl::unexpected(config_error(component, std::string(key) + " must be an integer"));
    const auto n = v->to_number<std::int64_t>();
    if (n < min || n > max)
        return tl::unexpected(config_error(component, std::string(key) + " must be between " +
                                                          std::to_string(min) + " and " +
                                                          std::to_string(max)));
    return n;
}

template <class F>
class Lambda final : public Component {
  public:
    explicit Lambda(F f) : f_(std::move(f)) {}
    Result<void> process(Context& ctx) override { return f_(ctx); }

  private:
    F f_;
};

template <class F>
std::unique_ptr<Component> lambda(F f) {
    return std::make_unique<Lambda<F>>(std::move(f));
}

// passthrough: in -> out, unchanged.
ComponentSpec passthrough() {
    return {"passthrough",
            "Forwards every packet unchanged",
            {{"in"}},
            {{"out"}},
            false,
            [](const json::object&) -> Result<std::unique_ptr<Component>> {
                return lambda([](Context& ctx) { return ctx.send("out", std::move(ctx.value())); });
            }};
}

// log: writes each packet to stderr as "[node] prefix JSON", then forwards it.
ComponentSpec log_component() {
    return {"log",
            "Logs each packet on stderr (config: prefix) and forwards it",
            {{"in"}},
            {{"out"}},
            false,
            [](const json::object& c) -> Result<std::unique_ptr<Component>> {
                std::string prefix;
                if (const auto* p = c.if_contains("prefix"); p && p->is_string())
                    prefix = std::string(p->get_string());
                return lambda([prefix](Context& ctx) {
                    ctx.log(prefix + to_json_string(ctx.value()));
                    return ctx.send("out", std::move(ctx.value()));
                });
            }};
}

// collect: appends each packet as one JSON line to config.path; sends the running count.
class Collect final : public Component {
  public:
    explicit Collect(std::string path) : path_(std::move(path)) {}
    Result<void> process(Context& ctx) override {
        if (!out_.is_open()) {
            out_.open(path_, std::ios::trunc);
            if (!out_) return fail(Errc::io, "collect: cannot open '" + path_ + "' for writing");
        }
        out_ << to_json_string(ctx.value()) << '\n';
        if (!out_) return fail(Errc::io, "collect: cannot write to '" + path_ + "'");
        return ctx.send("count", ++count_);
    }
    Result<void> flush(Context&) override {
        if (out_.is_open()) out_.flush();
        return {};
    }

  private:
    std::string path_;
    std::ofstream out_;
    std::int64_t count_ = 0;
};

ComponentSpec collect() {
    return {"collect",
            "Appends each packet as a JSON line to config.path; sends the count",
            {{"in"}},
            {{"count", "integer"}},
            false,
            [](const json::object& c) -> Result<std::unique_ptr<Component>> {
                const auto* p = c.if_contains("path");
                if (!p || !p->is_string() || p->get_string().empty())
                    return tl::unexpected(config_error("collect", "path must name a file"));
                return std::make_unique<Collect>(std::string(p->get_string()));
            }};
}

// split: an array in, one packet per element out; anything else passes as it is.
ComponentSpec split() {
    return {"split",
            "Sends each element of an array as its own packet",
            {{"in", "array"}},
            {{"out"}},
            false,
            [](const json::object&) -> Result<std::unique_ptr<Component>> {
                return lambda([](Context& ctx) -> Result<void> {
                    auto& v = ctx.value();
                    if (!v.is_array()) return ctx.send("out", std::move(v));
                    for (auto& item : v.get_array())
                        if (auto ok = ctx.send("out", std::move(item)); !ok) return ok;
                    return {};
                });
            }};
}

// join: gathers config.size packets into one array (0: everything, sent when the network
// is otherwise idle); a partial array is sent when the network is idle.
class Join final : public Component {
  public:
    explicit Join(std::size_t size) : size_(size) {}
    Result<void> process(Context& ctx) override {
        buf_.push_back(std::move(ctx.value()));
        if (size_ > 0 && buf_.size() >= size_) return send(ctx);
        return {};
    }
    Result<void> flush(Context& ctx) override { return buf_.empty() ? Result<void>{} : send(ctx); }

  private:
    Result<void> send(Context& ctx) {
        json::array out = std::move(buf_);
        buf_ = {};
        return ctx.send("out", std::move(out));
    }
    std::size_t size_;
    json::array buf_;
};

ComponentSpec join() {
    return {"join",
            "Gathers config.size packets into an array (0: all of them)",
            {{"in"}},
            {{"out", "array"}},
            false,
            [](const json::object& c) -> Result<std::unique_ptr<Component>> {
                auto n = config_int(c, "join", "size", 0, 0, limits::kMaxComponentCount);
                if (!n) return tl::unexpected(n.error());
                return std::make_unique<Join>(static_cast<std::size_t>(*n));
            }};
}

// counter: counts packets; sends the count after each and forwards the packet.
ComponentSpec counter() {
    return {"counter",
            "Counts packets: sends the running count on count, the packet on out",
            {{"in"}},
            {{"count", "integer"}, {"out"}},
            false,
            [](const json::object&) -> Result<std::unique_ptr<Component>> {
                return lambda([n = std::int64_t{0}](Context& ctx) mutable -> Result<void> {
                    if (auto ok = ctx.send("out", std::move(ctx.value())); !ok) return ok;
                    return ctx.send("count", ++n);
                });
            }};
}

// delay: forwards each packet after config.ms milliseconds.
ComponentSpec delay() {
    return {"delay",
            "Forwards each packet after config.ms milliseconds",
            {{"in"}},
            {{"out"}},
            false,
            [](const json::object& c) -> Result<std::unique_ptr<Component>> {
                auto ms = config_int(c, "delay", "ms", 0, 0, limits::kMaxComponentWaitMs);
                if (!ms) return tl::unexpected(ms.error());
                return lambda([ms = *ms](Context& ctx) {
                    return ctx.send_after("out", std::move(ctx.value()),
                                          std::chrono::milliseconds(ms));
                });
            }};
}

// timer: on a packet on start, sends config.count ticks (0, 1, ...) config.interval ms apart.
ComponentSpec timer() {
    return {"timer",
            "On start, sends config.count ticks config.interval ms apart",
            {{"start"}},
            {{"tick", "integer"}},
            false,
            [](const json::object& c) -> Result<std::unique_ptr<Component>> {
                auto interval =
                    config_int(c, "timer", "interval", 100, 0, limits::kMaxComponentWaitMs);
                if (!interval) return tl::unexpected(interval.error());
                auto count = config_int(c, "timer", "count", 1, 0, limits::kMaxComponentCount);
                if (!count) return tl::unexpected(count.error());
                return lambda([iv = *interval, n = *count](Context& ctx) -> Result<void> {
                    for (std::int64_t i = 0; i < n; ++i)
                        if (auto ok =
                                ctx.send_after("tick", i, std::chrono::milliseconds(iv * (i + 1)));
                            !ok)
                            return ok;
                    return {};
                });
            }};
}

// filter: sends a packet on out when the value at config.path passes the test, otherwise
// on rejected. Tests: equals, not_equals, gt, gte, lt, lte (numbers), exists; with none
// of them, the value must be truthy (not null, false, 0 or "").
class Filter final : public Component {
  public:
    Filter(JsonPath path, std::string op, json::value operand)
        : path_(std::move(path)), op_(std::move(op)), operand_(std::move(operand)) {}
    Result<void> process(Context& ctx) override {
        const bool pass = test(path_.find(ctx.value()));
        return ctx.send(pass ? "out" : "rejected", std::move(ctx.value()));
    }

  private:
    bool test(const json::value* v) const {
        if (op_ == "exists") return (v != nullptr) == (!operand_.is_bool() || operand_.get_bool());
        if (!v) return false;
        if (op_ == "equals") return *v == operand_;
        if (op_ == "not_equals") return *v != operand_;
        if (op_ == "truthy") {
            if (v->is_null()) return false;
            if (v->is_bool()) return v->get_bool();
            if (v->is_number()) return v->to_number<double>() != 0;
            if (v->is_string()) return !v->get_string().empty();
            return true;
        }
        if (!v->is_number() || !operand_.is_number()) return false;
        const double a = v->to_number<double>(), b = operand_.to_number<double>();
        if (op_ == "gt") return a > b;
        if (op_ == "gte") return a >= b;
        if (op_ == "lt") return a < b;
        return a <= b;  // lte
    }
    JsonPath path_;
    std::string op_;
    json::value operand_;
};

ComponentSpec filter() {
    return {
        "filter",
        "Sends a packet on out when the value at config.path passes the test (equals, "
        "not_equals, gt, gte, lt, lte, exists; default truthy), else on rejected",
        {{"in"}},
        {{"out"}, {"rejected"}},
        false,
        [](const json::object& c) -> Result<std::unique_ptr<Component>> {
            std::string path_text;
            if (const auto* p = c.if_contains("path")) {
                if (!p->is_string())
                    return tl::unexpected(config_error("filter", "path must be a string"));
                path_text = std::string(p->get_string());
            }
            auto path = JsonPath::parse(path_text);
            if (!path) return tl::unexpected(path.error());
            std::string op = "truthy";
            json::value operand;
            int tests = 0;
            for (const char* k : {"equals", "not_equals", "gt", "gte", "lt", "lte", "exists"}) {
                if (const auto* v = c.if_contains(k)) {
                    op = k;
                    operand = *v;
                    ++tests;
                }
            }
            if (tests > 1) return tl::unexpected(config_error("filter", "give at most one test"));
            if ((op == "gt" || op == "gte" || op == "lt" || op == "lte") && !operand.is_number())
                return tl::unexpected(config_error("filter", op + " needs a number"));
            return std::make_unique<Filter>(std::move(*path), std::move(op), std::move(operand));
        }};
}

// merge: whatever arrives on any inport leaves on out, in arrival order.
ComponentSpec merge() {
    return {"merge",
            "Forwards packets from in, in1 .. in4 on out, in arrival order",
            {{"in"}, {"in1"}, {"in2"}, {"in3"}, {"in4"}},
            {{"out"}},
            false,
            [](const json::object&) -> Result<std::unique_ptr<Component>> {
                return lambda([](Context& ctx) { return ctx.send("out", std::move(ctx.value())); });
            }};
}

// zip: waits for one packet on each connected inport and sends them as one object.
ComponentSpec zip() {
    return {
        "zip",
        "Waits for one packet on each connected inport (a, b, c, d); sends {port: v}",
        {{"a"}, {"b"}, {"c"}, {"d"}},
        {{"out", "object"}},
        true,
        [](const json::object&) -> Result<std::unique_ptr<Component>> {
            return lambda([](Context& ctx) { return ctx.send("out", std::move(ctx.inputs())); });
        }};
}

// range: on a packet on start, sends integers [config.from, config.from + count) where
// count is the packet when it is an integer, else config.count. Sends in slices so that
// back-pressure from its consumers paces it.
class Range final : public Component {
  public:
    Range(std::int64_t from, std::int64_t count) : from_(from), count_(count) {}
    Result<void> process(Context& ctx) override {
        if (!ctx.port().empty()) {
            const auto& v = ctx.value();
            const std::int64_t n = v.is_int64() ? v.get_int64() : count_;
            if (n < 0) return fail(Errc::invalid_argument, "range: the count must not be negative");
            next_ = from_;
            end_ = from_ + n;
        }
        const std::int64_t stop =
            std::min<std::int64_t>(end_, next_ + static_cast<std::int64_t>(limits::kMaxFlowBatch));
        for (; next_ < stop; ++next_)
            if (auto ok = ctx.send("out", next_); !ok) return ok;
        if (next_ < end_) ctx.again();
        return {};
    }

  private:
    std::int64_t from_, count_, next_ = 0, end_ = 0;
};

ComponentSpec range() {
    return {"range",
            "On start, sends the integers from config.from; how many: the start packet when "
            "it is an integer, else config.count",
            {{"start"}},
            {{"out", "integer"}},
            false,
            [](const json::object& c) -> Result<std::unique_ptr<Component>> {
                auto from = config_int(c, "range", "from", 0, -(std::int64_t{1} << 52),
                                       std::int64_t{1} << 52);
                if (!from) return tl::unexpected(from.error());
                auto count = config_int(c, "range", "count", 0, 0, std::int64_t{1} << 40);
                if (!count) return tl::unexpected(count.error());
                return std::make_unique<Range>(*from, *count);
            }};
}

}  // namespace

Registry Registry::standard() {
    Registry r;
    for (auto spec : {passthrough(), log_component(), collect(), split(), join(), counter(),
                      delay(), timer(), filter(), merge(), zip(), range()})
        r.add(std::move(spec));
    return r;
}

void Registry::add(ComponentSpec spec) {
    std::string name = spec.name;
    specs_.insert_or_assign(std::move(name), std::move(spec));
}

const ComponentSpec* Registry::find(std::string_view name) const {
    auto it = specs_.find(name);
    return it == specs_.end() ? nullptr : &it->second;
}

std::vector<std::string> Registry::names() const {
    std::vector<std::string> out;
    for (const auto& [k, v] : specs_) out.push_back(k);
    return out;
}

}  // namespace sandflow::flow
