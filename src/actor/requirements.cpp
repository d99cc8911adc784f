#include "actor/requirements.hpp"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <system_error>

namespace sandflow::actor {

namespace fs = std::filesystem;

namespace {

constexpr std::size_t kMaxNpmNameBytes = 214;  // npm's own limit on a package name

bool is_digit(char c) {
    return c >= '0' && c <= '9';
}
bool is_space(char c) {
    return c == ' ' || c == '\t';
}
std::string_view trim(std::string_view s) {
    while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
    while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
    return s;
}
std::string lower(std::string_view s) {
    std::string out(s);
    for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

Error bad_requirement(std::string_view text, Language lang, std::string_view what) {
    const std::string forms =
        lang == Language::python
            ? "name, name>=1.24, name>=1,<2, name==1.2.*, name~=1.4 or name!=1.3"
            : "name, @scope/name, name@^4.17, name@~1.2, name@>=4 <5 or name@4.x";
    return Error(Errc::invalid_argument,
                 "requirement \"" + std::string(text) + "\": " + std::string(what) +
                     "; write it as one of: " + forms,
                 {{"requirement", std::string(text)}});
}

bool valid_python_name(std::string_view n) {
    if (n.empty() || !std::isalnum(static_cast<unsigned char>(n.front())) ||
        !std::isalnum(static_cast<unsigned char>(n.back())))
        return false;
    return std::all_of(n.begin(), n.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
    });
}

// npm's rules, loosely: lowercase URL-safe characters, an optional @scope/ prefix.
bool valid_js_name(std::string_view n) {
    if (n.empty() || n.size() > kMaxNpmNameBytes) return false;
    auto part_ok = [](std::string_view p) {
        return !p.empty() && p.front() != '.' && p.front() != '_' &&
               std::all_of(p.begin(), p.end(), [](char c) {
                   return (c >= 'a' && c <= 'z') || is_digit(c) || c == '-' || c == '.' ||
                          c == '_' || c == '~';
               });
    };
    if (n.front() == '@') {
        const auto slash = n.find('/');
        if (slash == std::string_view::npos) return false;
        return part_ok(n.substr(1, slash - 1)) && part_ok(n.substr(slash + 1));
    }
    return part_ok(n);
}

// One comparator as written: an operator ("" for none) and a version.
struct Comparator {
    std::string op;
    std::string version;
};

std::optional<Comparator> split_comparator(std::string_view s) {
    static constexpr std::string_view kOps[] = {
        "~=", "==", "!=", ">=", "<=", ">", "<", "^", "~", "="};
    for (std::string_view op : kOps)
        if (s.starts_with(op))
            return Comparator{std::string(op), std::string(trim(s.substr(op.size())))};
    if (!s.empty() && is_digit(s.front())) return Comparator{"", std::string(s)};
    return std::nullopt;
}

// "1.2.*" / "1.2.x" -> "1.2" and true.
std::pair<std::string, bool> strip_wildcard(std::string v) {
    for (std::string_view w : {".*", ".x", ".X"})
        if (v.size() > w.size() && std::string_view(v).ends_with(w))
            return {v.substr(0, v.size() - w.size()), true};
    return {v, false};
}

Result<VersionClause> make_clause(std::string_view text, Language lang, const Comparator& c) {
    auto [version_text, wildcard] = strip_wildcard(c.version);
    // npm's bare * or x: any version.
    if (c.op.empty() && (version_text == "*" || version_text == "x"))
        return VersionClause{VersionOp::ge, *Version::parse("0")};
    auto v = Version::parse(version_text);
    if (!v)
        return tl::unexpected(
            bad_requirement(text, lang, "\"" + c.version + "\" is not a version"));
    VersionClause clause;
    clause.version = *v;
    const std::string& op = c.op;
    if (wildcard) {
        if (op != "" && op != "==" && op != "=")
            return tl::unexpected(bad_requirement(text, lang, "a wildcard goes with == only"));
        clause.op = VersionOp::prefix;
        return clause;
    }
    if (op == "==" || op == "=" || op.empty())
        clause.op = VersionOp::eq;
    else if (op == "!=")
        clause.op = VersionOp::ne;
    else if (op == ">=")
        clause.op = VersionOp::ge;
    else if (op == "<=")
        clause.op = VersionOp::le;
    else if (op == ">")
        clause.op = VersionOp::gt;
    else if (op == "<")
        clause.op = VersionOp::lt;
    else if (op == "~=")
        clause.op = VersionOp::compatible;
    else if (op == "~")
        clause.op = VersionOp::tilde;
    else
        clause.op = VersionOp::caret;
    if (lang == Language::python && (op == "^" || op == "~" || op == "=" || op.empty()))
        return tl::unexpected(
            bad_requirement(text, lang, "\"" + op + "\" is not a Python version operator"));
    if (lang == Language::javascript && (op == "~=" || op == "=="))
        return tl::unexpected(
            bad_requirement(text, lang, "\"" + op + "\" is not an npm range operator"));
    if (op == "~=" && clause.version.release.size() < 2)
        return tl::unexpected(
            bad_requirement(text, lang, "~= needs at least two version segments"));
    return clause;
}

// The header value of `key` ("Name", "Version") in an RFC 822-style metadata file, read
// up to the first blank line and at most limits::kMaxPackageMetadataBytes.
std::map<std::string, std::string> read_headers(const fs::path& file) {
    std::map<std::string, std::string> out;
    std::ifstream in(file, std::ios::binary);
    std::string line;
    std::size_t read = 0;
    while (read < limits::kMaxPackageMetadataBytes && std::getline(in, line)) {
        read += line.size() + 1;
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.empty()) break;
        const auto colon = line.find(':');
        if (colon == std::string::npos || line.front() == ' ') continue;
        const std::string key = line.substr(0, colon);
        if (key == "Name" || key == "Version")
            out.emplace(key, std::string(trim(std::string_view(line).substr(colon + 1))));
    }
    return out;
}

std::vector<std::string> read_lines(const fs::path& file) {
    std::vector<std::string> out;
    std::ifstream in(file, std::ios::binary);
    std::string line;
    std::size_t read = 0;
    while (read < limits::kMaxPackageMetadataBytes && std::getline(in, line)) {
        read += line.size() + 1;
        const std::string_view t = trim(line);
        if (!t.empty()) out.emplace_back(t);
    }
    return out;
}

// A package.json's "name" and "version", found by text (the file may be large; both come
// early). Values are plain strings in practice.
std::map<std::string, std::string> read_package_json(const fs::path& file) {
    std::map<std::string, std::string> out;
    std::ifstream in(file, std::ios::binary);
    std::string text(limits::kMaxPackageMetadataBytes, '\0');
    in.read(text.data(), static_cast<std::streamsize>(text.size()));
    text.resize(static_cast<std::size_t>(in.gcount()));
    for (const char* key : {"name", "version"}) {
        const std::string quoted = std::string("\"") + key + "\"";
        std::size_t at = text.find(quoted);
        if (at == std::string::npos) continue;
        at = text.find(':', at + quoted.size());
        if (at == std::string::npos) continue;
        at = text.find('"', at);
        if (at == std::string::npos) continue;
        const auto end = text.find('"', at + 1);
        if (end == std::string::npos) continue;
        out.emplace(key, text.substr(at + 1, end - at - 1));
    }
    return out;
}

std::string version_of_dir_name(std::string_view stem) {
    // "PyYAML-6.0" -> "6.0"; "cryptography" -> "".
    const auto dash = stem.find('-');
    return dash == std::string_view::npos ? "" : std::string(stem.substr(dash + 1));
}

}  // namespace

std::optional<Version> Version::parse(std::string_view s) {
    s = trim(s);
    if (!s.empty() && (s.front() == 'v' || s.front() == 'V')) s.remove_prefix(1);
    if (s.empty() || !is_digit(s.front())) return std::nullopt;
    Version v;
    v.text = std::string(s);
    std::size_t i = 0;
    while (i < s.size() && is_digit(s[i])) {
        std::uint64_t n = 0;
        std::size_t digits = 0;
        while (i < s.size() && is_digit(s[i])) {
            if (++digits > 18) return std::nullopt;
            n = n * 10 + static_cast<std::uint64_t>(s[i] - '0');
            ++i;
        }
        v.release.push_back(n);
        if (v.release.size() > limits::kMaxVersionSegments) return std::nullopt;
        if (i + 1 < s.size() && s[i] == '.' && is_digit(s[i + 1])) {
            ++i;
            continue;
        }
        break;
    }
    std::string_view rest = s.substr(i);
    // A local tag (+ubuntu1) or build metadata (+build.5) does not order versions.
    if (const auto plus = rest.find('+'); plus != std::string_view::npos)
        rest = rest.substr(0, plus);
    while (!rest.empty() && (rest.front() == '-' || rest.front() == '.' || rest.front() == '_'))
        rest.remove_prefix(1);
    // A post-release (1.0.post1) orders with its release, not before it.
    if (rest.starts_with("post")) rest = {};
    v.pre = lower(rest);
    return v;
}

int Version::compare(const Version& o) const {
    const std::size_t n = std::max(release.size(), o.release.size());
    for (std::size_t i = 0; i < n; ++i) {
        const std::uint64_t a = i < release.size() ? release[i] : 0;
        const std::uint64_t b = i < o.release.size() ? o.release[i] : 0;
        if (a != b) return a < b ? -1 : 1;
    }
    if (pre == o.pre) return 0;
    if (pre.empty()) return 1;  // a release after its pre-releases
    if (o.pre.empty()) return -1;
    return pre < o.pre ? -1 : 1;
}

bool VersionClause::matches(const Version& v) const {
    const int c = v.compare(version);
    switch (op) {
        case VersionOp::eq:
            return c == 0;
        case VersionOp::ne:
            return c != 0;
        case VersionOp::ge:
            return c >= 0;
        case VersionOp::le:
            return c <= 0;
        case VersionOp::gt:
            return c > 0;
        case VersionOp::lt:
            return c < 0;
        case VersionOp::prefix:
            for (std::size_t i = 0; i < version.release.size(); ++i)
                if ((i < v.release.size() ? v.release[i] : 0) != version.release[i]) return false;
            return true;
        case VersionOp::compatible:
        case VersionOp::tilde:
        case VersionOp::caret: {
            if (c < 0) return false;
            // How many leading segments must stay as written. PEP 440's ~=1.4.2: 1.4
            // (all but the last); npm's ~1.4.2 and ~1.4: 1.4, ~1: 1; npm's ^1.4: 1,
            // ^0.4: 0.4, ^0.0.4: 0.0.4 (up to the first segment that is not 0).
            const std::size_t n = version.release.size();
            std::size_t fixed = 1;
            if (op == VersionOp::compatible) {
                fixed = n - 1;
            } else if (op == VersionOp::tilde) {
                fixed = std::min<std::size_t>(n, 2);
            } else {
                for (std::size_t i = 0; i + 1 < n && version.release[i] == 0; ++i) fixed = i + 2;
            }
            for (std::size_t i = 0; i < fixed; ++i)
                if ((i < v.release.size() ? v.release[i] : 0) != version.release[i]) return false;
            return true;
        }
    }
    return false;
}

bool Requirement::matches(const Version& v) const {
    return std::all_of(clauses.begin(), clauses.end(),
                       [&](const VersionClause& c) { return c.matches(v); });
}

std::string normalize_python_name(std::string_view name) {
    std::string out;
    for (char c : name) {
        if (c == '-' || c == '_' || c == '.') {
            if (out.empty() || out.back() != '-') out.push_back('-');
        } else {
            out.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
        }
    }
    return out;
}

Result<Requirement> parse_requirement(std::string_view text, Language lang) {
    if (text.size() > limits::kMaxRequirementBytes)
        return tl::unexpected(bad_requirement(text.substr(0, 40), lang,
                                              "longer than " +
                                                  std::to_string(limits::kMaxRequirementBytes) +
                                                  " bytes (limits::kMaxRequirementBytes)"));
    const std::string_view t = trim(text);
    Requirement r;
    r.text = std::string(t);
    std::string_view spec;
    if (lang == Language::python) {
        const auto op = t.find_first_of("=!<>~ ");
        r.name = std::string(trim(t.substr(0, op)));
        if (op != std::string_view::npos) spec = trim(t.substr(op));
        if (!valid_python_name(r.name))
            return tl::unexpected(
                bad_requirement(t, lang, "\"" + r.name + "\" is not a package name"));
        std::size_t start = 0;
        while (start <= spec.size() && !spec.empty()) {
            const auto comma = spec.find(',', start);
            const std::string_view part = trim(
                spec.substr(start, comma == std::string_view::npos ? spec.npos : comma - start));
            if (part.empty())
                return tl::unexpected(bad_requirement(t, lang, "an empty version clause"));
            auto c = split_comparator(part);
            if (!c || c->op.empty())
                return tl::unexpected(bad_requirement(
                    t, lang, "\"" + std::string(part) + "\" has no version operator"));
            auto clause = make_clause(t, lang, *c);
            if (!clause) return tl::unexpected(clause.error());
            r.clauses.push_back(std::move(*clause));
            if (comma == std::string_view::npos) break;
            start = comma + 1;
        }
    } else {
        const auto at = t.find('@', t.starts_with("@") ? 1 : 0);
        r.name = std::string(t.substr(0, at));
        if (at != std::string_view::npos) spec = trim(t.substr(at + 1));
        if (!valid_js_name(r.name))
            return tl::unexpected(
                bad_requirement(t, lang, "\"" + r.name + "\" is not an npm package name"));
        if (at != std::string_view::npos && spec.empty())
            return tl::unexpected(bad_requirement(t, lang, "nothing after '@'"));
        std::size_t i = 0;
        while (i < spec.size()) {
            while (i < spec.size() && is_space(spec[i])) ++i;
            if (i >= spec.size()) break;
            std::size_t j = i;
            // An operator, then (after optional spaces) its version, up to the next space.
            while (j < spec.size() &&
                   std::string_view("<>=^~").find(spec[j]) != std::string_view::npos)
                ++j;
            while (j < spec.size() && is_space(spec[j])) ++j;
            while (j < spec.size() && !is_space(spec[j])) ++j;
            const std::string_view part = trim(spec.substr(i, j - i));
            auto c = split_comparator(part);
            if (!c && part != "*" && part != "x")
                return tl::unexpected(bad_requirement(
                    t, lang, "\"" + std::string(part) + "\" is not a version range"));
            auto clause = make_clause(t, lang, c ? *c : Comparator{"", std::string(part)});
            if (!clause) return tl::unexpected(clause.error());
            r.clauses.push_back(std::move(*clause));
            i = j;
        }
    }
    return r;
}

const InstalledPackage* PackageIndex::find(std::string_view name) const {
    const auto it = by_name_.find(set_.language == Language::python ? normalize_python_name(name)
                                                                    : std::string(name));
    return it == by_name_.end() ? nullptr : &it->second;
}

Result<PackageIndex> PackageIndex::build(const PackageSet& set) {
    PackageIndex idx;
    idx.set_ = set;
    std::error_code ec;
    fs::directory_iterator it(set.path, ec);
    if (ec)
        return fail(Errc::invalid_argument,
                    "package set '" + set.name + "': cannot read " + set.path.string() + ": " +
                        ec.message() + "; give a folder that exists and the runtime can read",
                    {{"set", set.name}, {"path", set.path.string()}});
    std::size_t entries = 0;
    auto too_many = [&] {
        return fail(Errc::invalid_argument,
                    "package set '" + set.name + "': " + set.path.string() + " holds more than " +
                        std::to_string(limits::kMaxPackageSetEntries) +
                        " entries (limits::kMaxPackageSetEntries); give the folder of the "
                        "packages themselves",
                    {{"set", set.name}, {"path", set.path.string()}});
    };
    if (set.language == Language::javascript) {
        auto add = [&](const fs::path& dir, const std::string& name) {
            auto meta = read_package_json(dir / "package.json");
            if (meta.empty() && !fs::exists(dir / "package.json", ec)) return;
            idx.by_name_.emplace(name, InstalledPackage{meta.count("name") ? meta["name"] : name,
                                                        meta["version"], dir});
        };
        for (; it != fs::directory_iterator(); it.increment(ec)) {
            if (ec || ++entries > limits::kMaxPackageSetEntries) break;
            const std::string name = it->path().filename().string();
            if (name.starts_with(".")) continue;
            if (name.starts_with("@")) {
                for (fs::directory_iterator scoped(it->path(), ec);
                     !ec && scoped != fs::directory_iterator(); scoped.increment(ec)) {
                    if (++entries > limits::kMaxPackageSetEntries) return too_many();
                    add(scoped->path(), name + "/" + scoped->path().filename().string());
                }
            } else if (it->is_directory(ec)) {
                add(it->path(), name);
            }
        }
        if (entries > limits::kMaxPackageSetEntries) return too_many();
        return idx;
    }
    // Python: metadata folders first; plain modules fill the names no metadata claimed.
    std::vector<std::pair<std::string, fs::path>> bare;
    for (; it != fs::directory_iterator(); it.increment(ec)) {
        if (ec) break;
        if (++entries > limits::kMaxPackageSetEntries) return too_many();
        const fs::path p = it->path();
        const std::string file = p.filename().string();
        const std::string ext = p.extension().string();
        if (ext == ".dist-info" || ext == ".egg-info") {
            const fs::path meta_file = ext == ".dist-info"       ? p / "METADATA"
                                       : fs::is_directory(p, ec) ? p / "PKG-INFO"
                                                                 : p;
            auto meta = read_headers(meta_file);
            const std::string stem = p.stem().string();
            const std::string name =
                meta.count("Name") ? meta["Name"] : stem.substr(0, stem.find('-'));
            const std::string version =
                meta.count("Version") ? meta["Version"] : version_of_dir_name(stem);
            InstalledPackage pkg{name, version, p};
            idx.by_name_.insert_or_assign(normalize_python_name(name), pkg);
            if (fs::is_directory(p, ec))
                for (const auto& top : read_lines(p / "top_level.txt"))
                    idx.by_name_.emplace(normalize_python_name(top), pkg);
            continue;
        }
        if (file.starts_with(".") || file.starts_with("__")) continue;
        if (fs::is_directory(p, ec)) {
            if (fs::exists(p / "__init__.py", ec)) bare.emplace_back(file, p);
        } else if (ext == ".py") {
            bare.emplace_back(p.stem().string(), p);
        } else if (ext == ".so") {
            bare.emplace_back(file.substr(0, file.find('.')), p);
        }
    }
    for (auto& [name, path] : bare)
        idx.by_name_.emplace(normalize_python_name(name), InstalledPackage{name, "", path});
    return idx;
}

json::object Resolution::to_json() const {
    return {{"requirement", requirement},
            {"package", package},
            {"version", version},
            {"set", set},
            {"path", path}};
}

Result<std::vector<Resolution>> resolve_requirements(const std::vector<Requirement>& reqs,
                                                     const std::vector<const PackageIndex*>& sets,
                                                     Language lang) {
    std::vector<Resolution> out;
    for (const Requirement& r : reqs) {
        std::vector<std::string> searched;
        std::string found;  // "6.0 in set 'system' (/usr/...)" for a mismatch
        bool resolved = false;
        for (const PackageIndex* idx : sets) {
            if (idx->set().language != lang) continue;
            searched.push_back("'" + idx->set().name + "' (" + idx->set().path.string() + ")");
            const InstalledPackage* p = idx->find(r.name);
            if (!p) continue;
            const auto v = Version::parse(p->version);
            const bool ok = r.clauses.empty() || (v && r.matches(*v));
            if (ok) {
                out.push_back({r.text, p->name, p->version, idx->set().name, p->where.string()});
                resolved = true;
                break;
            }
            if (found.empty())
                found = (p->version.empty() ? std::string("a version without metadata")
                                            : "version " + p->version) +
                        " of " + p->name + " in set '" + idx->set().name + "' (" +
                        p->where.string() + ")";
        }
        if (resolved) continue;
        std::string list;
        for (const auto& s : searched) list += (list.empty() ? "" : ", ") + s;
        const std::string give =
            "give the runtime a set that has it: --packages NAME=PATH" +
            std::string(lang == Language::python
                            ? " (a site-packages folder), or --packages system for Debian's "
                              "python3-* packages"
                            : " (a node_modules folder)");
        const std::string how =
            searched.empty() ? give
            : lang == Language::python
                ? "install it into one of those folders (pip install --target, or a Debian "
                  "python3-* package for the 'system' set), or " +
                      give
                : "install it into one of those node_modules folders (npm install --prefix), "
                  "or " +
                      give;
        Error e(Errc::requirement,
                "the actor requires " + r.text +
                    (found.empty() ? ", which is not installed" : ", but found " + found) +
                    "; searched " +
                    (list.empty() ? "no package set (the runtime has none)" : list) + ": " + how,
                {{"requirement", r.text}, {"package", r.name}});
        json::array s;
        for (const auto& x : searched) s.emplace_back(x);
        e.data["searched"] = std::move(s);
        if (!found.empty()) e.data["found"] = found;
        return tl::unexpected(std::move(e));
    }
    return out;
}

}  // namespace sandflow::actor
