// Actor metadata, read statically from a script's declaration (docs/metadata.md).
//
// The script is never run to learn its metadata. Python declarations are `@actor({...})`,
// `@actor(name=..., ...)` or a module-level `__actor_metadata__ = {...}`; JavaScript ones
// are `const|let|var metadata = {...}` or `module.exports` forms. Exactly one declaration
// per script; anything missing or malformed is an Error (Errc::metadata) whose message
// starts with "file:line:col: " and whose data holds {file, line, column}.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "actor/language.hpp"
#include "actor/requirements.hpp"
#include "core/error.hpp"
#include "core/json.hpp"

namespace sandflow::actor {

struct Port {
    std::string name;
    std::string type = "any";  // Reflow port type tag: any, flow, boolean, integer, ...
    bool required = false;
    std::string description;
    std::optional<json::value> default_value;
};

struct ActorMetadata {
    Language language = Language::python;
    std::string component;  // from "component", or "name" when component is absent
    std::string description;
    std::string version;
    std::string category;
    std::vector<std::string> tags;
    std::vector<Port> inports;
    std::vector<Port> outports;
    json::value config_schema;  // null when absent
    bool await_all_inports = false;
    // "requires": the packages the script imports, each with an optional version range,
    // checked against its package sets at load (requirements.hpp).
    std::vector<Requirement> requirements;
    // "packages": the package sets it draws from, by name; empty: every set of its language.
    std::vector<std::string> package_sets;
    // The declaration exactly as written, as JSON (tuples become arrays, keyword form
    // becomes an object). The worker compares what it sees at run time with this.
    json::object raw;
    int line = 0;  // where the declaration starts (1-based)
    int column = 0;

    // Normalised view: {component, description, version, category, tags, inports:[{name,
    // type, required, description, default?}], outports, config_schema, await_all_inports}.
    json::object to_json() const;
    bool has_outport(std::string_view name) const;
};

// Extracts and validates the metadata of one script.
Result<ActorMetadata> extract_metadata(std::string_view source, std::string_view filename,
                                       Language lang);

// A script of `size` bytes is over limits::kMaxScriptBytes: Errc::limit_exceeded naming it.
Error script_too_large(std::string_view file, std::size_t size);

// Reads the file (size-capped by limits::kMaxScriptBytes, must be valid UTF-8), picks the
// language from its extension, and extracts. `source_out` receives the text when given.
Result<ActorMetadata> inspect_file(const std::filesystem::path& path,
                                   std::string* source_out = nullptr);

// Builds the metadata Error: message "file:line:col: what", data {file, line, column}.
Error metadata_error(std::string_view file, int line, int column, std::string_view what);

}  // namespace sandflow::actor
