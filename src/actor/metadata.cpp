// Validation and normalisation of a declaration into ActorMetadata, and the file entry points.
#include "actor/metadata.hpp"

#include <algorithm>
#include <array>
#include <fstream>
#include <set>
#include <system_error>

#include "actor/extract_detail.hpp"
#include "actor/script_limits.hpp"

namespace sandflow::actor {

namespace {

using detail::Declaration;
using detail::SourcePos;

constexpr std::array<std::string_view, 11> kPortTypes = {"any",    "flow",   "boolean", "integer",
                                                         "float",  "string", "object",  "array",
                                                         "stream", "option", "bytes"};

std::string port_type_list() {
    std::string s;
    for (std::string_view t : kPortTypes) s += (s.empty() ? "" : ", ") + std::string(t);
    return s;
}

std::string in_quotes(std::string_view s) {
    return "\"" + std::string(s) + "\"";
}

// Checks the JSON of one declaration against the metadata schema (docs/metadata.md). Errors
// point at the key they concern when its place is known, else at the declaration.
class Validator {
  public:
    Validator(const Declaration& decl, std::string_view file, Language lang)
        : decl_(decl), file_(file), lang_(lang), python_(lang == Language::python) {}

    Result<ActorMetadata> run() const {
        ActorMetadata md;
        md.language = lang_;
        md.line = decl_.pos.line;
        md.column = decl_.pos.column;

        const std::string_view component_key = raw().contains("component") ? "component" : "name";
        const json::value* component = raw().if_contains(component_key);
        if (component == nullptr) {
            return tl::unexpected(detail::error_at(
                file_, decl_.pos,
                python_ ? "missing \"component\": add \"component\": \"my_actor\" to the "
                          "declaration (or name=\"my_actor\" in the keyword form)"
                        : "missing component: add component: \"my_actor\" to the metadata"));
        }
        if (!component->is_string() || component->get_string().empty()) {
            return fail_at(component_key, in_quotes(component_key) +
                                              " must be a non-empty string naming the "
                                              "actor, found " +
                                              describe(*component));
        }
        md.component = component->get_string();

        for (auto [key, out] :
             {std::pair{"description", &md.description}, std::pair{"version", &md.version},
              std::pair{"category", &md.category}}) {
            if (auto ok = optional_string(key, *out); !ok) return tl::unexpected(ok.error());
        }
        if (auto ok = tags(md.tags); !ok) return tl::unexpected(ok.error());
        if (auto ok = ports("inports", md.inports); !ok) return tl::unexpected(ok.error());
        if (auto ok = ports("outports", md.outports); !ok) return tl::unexpected(ok.error());
        if (const json::value* schema = raw().if_contains("config_schema")) {
            md.config_schema = *schema;
        }
        if (const json::value* all = raw().if_contains("await_all_inports")) {
            if (!all->is_bool()) {
                return fail_at("await_all_inports", "\"await_all_inports\" must be " +
                                                        bool_words() + ", found " + describe(*all));
            }
            md.await_all_inports = all->get_bool();
        }
        if (auto ok = requirements(md.requirements); !ok) return tl::unexpected(ok.error());
        if (auto ok = package_sets(md.package_sets); !ok) return tl::unexpected(ok.error());
        md.raw = decl_.raw;
        return md;
    }

  private:
    const json::object& raw() const { return decl_.raw; }

    std::string describe(const json::value& v) const {
        return std::string(detail::kind_name(v, python_));
    }
    std::string bool_words() const { return python_ ? "True or False" : "true or false"; }

    Error error(std::string_view key, std::string_view what) const {
        const auto it = decl_.keys.find(key);
        return detail::error_at(file_, it != decl_.keys.end() ? it->second : decl_.pos, what);
    }
    tl::unexpected<Error> fail_at(std::string_view key, std::string_view what) const {
        return tl::unexpected(error(key, what));
    }

    Result<void> optional_string(std::string_view key, std::string& out) const {
        const json::value* v = raw().if_contains(key);
        if (v == nullptr) return {};
        if (!v->is_string()) {
            return fail_at(key, in_quotes(key) + " must be a string, found " + describe(*v) +
                                    ": put the value in quotes");
        }
        out = v->get_string();
        return {};
    }

    Result<void> tags(std::vector<std::string>& out) const {
        const json::value* v = raw().if_contains("tags");
        if (v == nullptr) return {};
        if (!v->is_array()) {
            return fail_at("tags", "\"tags\" must be a list of strings, found " + describe(*v));
        }
        for (const json::value& tag : v->get_array()) {
            if (!tag.is_string()) {
                return fail_at("tags", "\"tags\" must hold only strings, found " + describe(tag));
            }
            out.emplace_back(tag.get_string());
        }
        return {};
    }

    // "requires": a list of requirement strings, at most limits::kMaxRequirements.
    Result<void> requirements(std::vector<Requirement>& out) const {
        const json::value* v = raw().if_contains("requires");
        if (v == nullptr) return {};
        if (!v->is_array())
            return fail_at("requires",
                           "\"requires\" must be a list of package names, found " + describe(*v));
        if (v->get_array().size() > limits::kMaxRequirements)
            return fail_at("requires",
                           "\"requires\" lists " + std::to_string(v->get_array().size()) +
                               " packages; at most " + std::to_string(limits::kMaxRequirements) +
                               " (limits::kMaxRequirements)");
        for (const json::value& item : v->get_array()) {
            if (!item.is_string())
                return fail_at("requires",
                               "\"requires\" must hold only strings, found " + describe(item));
            auto r = parse_requirement(item.get_string(), lang_);
            if (!r) return fail_at("requires", r.error().message);
            out.push_back(std::move(*r));
        }
        return {};
    }

    // "packages": a set name or a list of them.
    Result<void> package_sets(std::vector<std::string>& out) const {
        const json::value* v = raw().if_contains("packages");
        if (v == nullptr) return {};
        auto bad = [&](const json::value& what) {
            return fail_at("packages",
                           "\"packages\" must name package sets (a string or a list of strings), "
                           "found " +
                               describe(what));
        };
        if (v->is_string()) {
            out.emplace_back(v->get_string());
            return {};
        }
        if (!v->is_array()) return bad(*v);
        for (const json::value& item : v->get_array()) {
            if (!item.is_string() || item.get_string().empty()) return bad(item);
            out.emplace_back(item.get_string());
        }
        return {};
    }

    Result<void> ports(std::string_view key, std::vector<Port>& out) const {
        const json::value* v = raw().if_contains(key);
        if (v == nullptr) return {};
        const std::string k(key);
        if (!v->is_array()) {
            return fail_at(key, in_quotes(key) +
                                    " must be a list of port names or port objects, "
                                    "found " +
                                    describe(*v));
        }
        const json::array& items = v->get_array();
        if (items.size() > limits::kMaxPorts) {
            Error e = error(key, in_quotes(key) + " declares " + std::to_string(items.size()) +
                                     " ports; at most " + std::to_string(limits::kMaxPorts) +
                                     " are allowed (limits::kMaxPorts)");
            e.data["limit"] = "max_ports";
            return tl::unexpected(std::move(e));
        }
        std::set<std::string, std::less<>> names;
        for (std::size_t i = 0; i < items.size(); ++i) {
            const std::string label = k + "[" + std::to_string(i) + "]";
            auto port = parse_port(key, label, items[i]);
            if (!port) return tl::unexpected(port.error());
            if (!names.insert(port->name).second) {
                return fail_at(key, "duplicate port name " + in_quotes(port->name) + " in " + k +
                                        ": port names must be unique");
            }
            out.push_back(std::move(*port));
        }
        return {};
    }

    Result<Port> parse_port(std::string_view key, const std::string& label,
                            const json::value& item) const {
        Port port;
        if (item.is_string()) {
            port.name = item.get_string();
        } else if (item.is_object()) {
            const json::object& o = item.get_object();
            const json::value* name = o.if_contains("name");
            if (name == nullptr || !name->is_string()) {
                return fail_at(key, label + " needs a \"name\" string, e.g. {\"name\": \"input\"}");
            }
            port.name = name->get_string();
            if (const json::value* type = o.if_contains("type")) {
                const bool known =
                    type->is_string() && std::find(kPortTypes.begin(), kPortTypes.end(),
                                                   type->get_string()) != kPortTypes.end();
                if (!known) {
                    return fail_at(key, label + ": unknown port type" +
                                            (type->is_string() ? " " + in_quotes(type->get_string())
                                                               : " (" + describe(*type) + ")") +
                                            ": use one of " + port_type_list());
                }
                port.type = type->get_string();
            }
            if (const json::value* required = o.if_contains("required")) {
                if (!required->is_bool()) {
                    return fail_at(key, label + ": \"required\" must be " + bool_words() +
                                            ", found " + describe(*required));
                }
                port.required = required->get_bool();
            }
            if (const json::value* description = o.if_contains("description")) {
                if (!description->is_string()) {
                    return fail_at(key, label + ": \"description\" must be a string, found " +
                                            describe(*description));
                }
                port.description = description->get_string();
            }
            if (const json::value* def = o.if_contains("default")) port.default_value = *def;
        } else {
            return fail_at(key, label +
                                    " must be a port name or a port object {\"name\": ...}, "
                                    "found " +
                                    describe(item));
        }
        if (port.name.empty()) return fail_at(key, label + ": the port name must not be empty");
        return port;
    }

    const Declaration& decl_;
    std::string_view file_;
    Language lang_;
    bool python_;
};

json::object port_json(const Port& p) {
    json::object o{{"name", p.name},
                   {"type", p.type},
                   {"required", p.required},
                   {"description", p.description}};
    if (p.default_value) o["default"] = *p.default_value;
    return o;
}

json::array ports_json(const std::vector<Port>& ports) {
    json::array a;
    for (const Port& p : ports) a.push_back(port_json(p));
    return a;
}

}  // namespace

Error script_too_large(std::string_view file, std::size_t size) {
    return Error(Errc::limit_exceeded,
                 std::string(file) + ": the script is " + std::to_string(size) +
                     " bytes; the limit is " + std::to_string(limits::kMaxScriptBytes) +
                     " (limits::kMaxScriptBytes)",
                 {{"limit", "max_script_bytes"},
                  {"max", limits::kMaxScriptBytes},
                  {"actual", size},
                  {"file", file}});
}

std::string_view language_name(Language lang) {
    return lang == Language::python ? "python" : "javascript";
}

std::optional<Language> language_from_path(const std::filesystem::path& path) {
    const std::string ext = path.extension().string();
    if (ext == ".py") return Language::python;
    if (ext == ".js" || ext == ".cjs") return Language::javascript;
    return std::nullopt;
}

std::optional<Language> language_from_name(std::string_view name) {
    std::string lower(name);
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; });
    if (lower == "python" || lower == "py") return Language::python;
    if (lower == "javascript" || lower == "js" || lower == "node") return Language::javascript;
    return std::nullopt;
}

json::object ActorMetadata::to_json() const {
    json::array tag_array;
    for (const std::string& t : tags) tag_array.emplace_back(t);
    json::array reqs, sets;
    for (const Requirement& r : requirements) reqs.emplace_back(r.text);
    for (const std::string& s : package_sets) sets.emplace_back(s);
    return {{"component", component},
            {"description", description},
            {"version", version},
            {"category", category},
            {"tags", std::move(tag_array)},
            {"inports", ports_json(inports)},
            {"outports", ports_json(outports)},
            {"config_schema", config_schema},
            {"await_all_inports", await_all_inports},
            {"requires", std::move(reqs)},
            {"packages", std::move(sets)}};
}

bool ActorMetadata::has_outport(std::string_view name) const {
    return std::any_of(outports.begin(), outports.end(),
                       [name](const Port& p) { return p.name == name; });
}

Error metadata_error(std::string_view file, int line, int column, std::string_view what) {
    std::string message = std::string(file) + ":" + std::to_string(line) + ":" +
                          std::to_string(column) + ": " + std::string(what);
    return Error(Errc::metadata, std::move(message),
                 {{"file", file}, {"line", line}, {"column", column}});
}

// Oversized text is Errc::limit_exceeded (nothing was read for metadata); everything about the
// declaration itself is Errc::metadata with a place.
Result<ActorMetadata> extract_metadata(std::string_view source, std::string_view filename,
                                       Language lang) {
    if (source.size() > limits::kMaxScriptBytes) {
        return tl::unexpected(script_too_large(filename, source.size()));
    }
    if (const auto bad = detail::find_invalid_utf8(source)) {
        static constexpr char kHex[] = "0123456789ABCDEF";
        const auto byte = static_cast<unsigned char>(source[*bad]);
        const SourcePos pos = detail::position_at(source, *bad);
        return tl::unexpected(detail::error_at(filename, pos,
                                               std::string("invalid UTF-8 (byte 0x") +
                                                   kHex[byte >> 4] + kHex[byte & 15] +
                                                   "): save the script as UTF-8"));
    }
    auto decl = lang == Language::python ? detail::extract_python(source, filename)
                                         : detail::extract_javascript(source, filename);
    if (!decl) return tl::unexpected(decl.error());
    return Validator(*decl, filename, lang).run();
}

Result<ActorMetadata> inspect_file(const std::filesystem::path& path, std::string* source_out) {
    const std::string file = path.string();
    const auto lang = language_from_path(path);
    if (!lang) {
        return fail(Errc::invalid_argument,
                    file + ": unknown script type '" + path.extension().string() +
                        "': actor scripts are Python (.py) or JavaScript (.js, .cjs) files",
                    {{"file", file}});
    }
    std::error_code ec;
    const auto status = std::filesystem::status(path, ec);
    if (ec == std::errc::no_such_file_or_directory ||
        status.type() == std::filesystem::file_type::not_found)
        return fail(Errc::invalid_argument, file + " does not exist: check the path",
                    {{"file", file}});
    if (ec) return fail(Errc::io, "cannot read " + file + ": " + ec.message(), {{"file", file}});
    if (!std::filesystem::is_regular_file(status)) {
        return fail(Errc::invalid_argument, file + " is not a regular file", {{"file", file}});
    }
    const auto size = std::filesystem::file_size(path, ec);
    if (ec) return fail(Errc::io, "cannot read " + file + ": " + ec.message(), {{"file", file}});
    if (size > limits::kMaxScriptBytes) return tl::unexpected(script_too_large(file, size));

    std::ifstream in(path, std::ios::binary);
    if (!in) return fail(Errc::io, "cannot open " + file, {{"file", file}});
    std::string source;
    source.reserve(size);
    std::array<char, 64 * 1024> buf;
    // The file may have grown since it was measured: read no more than the limit allows.
    while (in.read(buf.data(), buf.size()) || in.gcount() > 0) {
        source.append(buf.data(), static_cast<std::size_t>(in.gcount()));
        if (source.size() > limits::kMaxScriptBytes) {
            return tl::unexpected(script_too_large(file, source.size()));
        }
    }
    if (in.bad()) return fail(Errc::io, "cannot read " + file, {{"file", file}});
    if (source_out != nullptr) *source_out = source;
    return extract_metadata(source, file, *lang);
}

}  // namespace sandflow::actor
