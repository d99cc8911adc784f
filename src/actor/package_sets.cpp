#include "actor/package_sets.hpp"

#include <unistd.h>

#include <algorithm>
#include <climits>
#include <system_error>

namespace sandflow::actor {

namespace fs = std::filesystem;

namespace {

constexpr std::string_view kSystemPython = "/usr/lib/python3/dist-packages";
// Debian's node-* packages; npm's global folder where Node did not come from Debian.
constexpr std::string_view kSystemNode[] = {"/usr/share/nodejs", "/usr/lib/node_modules"};
constexpr std::string_view kSandboxPython = "/usr/bin/python3";

Error bad_argument(std::string_view arg, const std::string& why) {
    return Error(Errc::invalid_argument,
                 "--packages " + std::string(arg) + ": " + why +
                     "; give NAME=PATH (a site-packages folder, or a folder named node_modules) "
                     "or 'system'",
                 {{"param", "packages"}, {"value", std::string(arg)}});
}

bool valid_set_name(std::string_view n) {
    return !n.empty() && n.size() <= limits::kMaxPackageSetNameBytes && n != "." && n != ".." &&
           std::all_of(n.begin(), n.end(), [](char c) {
               return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '.' || c == '_' || c == '-';
           });
}

// "3.11", from the name /usr/bin/python3 links to; "" when it is not a link of that form.
std::string sandbox_python_version() {
    char buf[PATH_MAX];
    const ssize_t n = ::readlink(std::string(kSandboxPython).c_str(), buf, sizeof buf - 1);
    if (n <= 0) return {};
    const std::string target = fs::path(std::string(buf, static_cast<std::size_t>(n)))
                                   .filename()
                                   .string();  // "python3.11"
    return target.starts_with("python") ? target.substr(6) : std::string();
}

bool is_dir(const fs::path& p) {
    std::error_code ec;
    return fs::is_directory(p, ec);
}

// The folder beside `script` that is its local set, canonical and inside the script's own
// folder (a link out of it is not followed); empty when there is none.
fs::path local_folder(const fs::path& script, Language lang) {
    std::error_code ec;
    const fs::path dir = fs::canonical(script, ec).parent_path();
    if (ec || dir.empty()) return {};
    std::vector<fs::path> candidates;
    if (lang == Language::javascript) {
        candidates.push_back(dir / "node_modules");
    } else if (const std::string v = sandbox_python_version(); !v.empty()) {
        candidates.push_back(dir / "__pypackages__" / v / "lib");
        candidates.push_back(dir / ".venv" / "lib" / ("python" + v) / "site-packages");
    }
    for (const auto& c : candidates) {
        if (!is_dir(c)) continue;
        const fs::path real = fs::canonical(c, ec);
        if (ec) continue;
        const auto rel = real.lexically_relative(dir);
        if (rel.empty() || *rel.begin() == "..") continue;
        return real;
    }
    return {};
}

std::string names_of(const std::vector<PackageSet>& sets, Language lang) {
    std::string out;
    for (const auto& s : sets)
        if (s.language == lang) out += (out.empty() ? "'" : ", '") + s.name + "'";
    return out.empty() ? "none" : out;
}

}  // namespace

json::object ActorPackages::to_json() const {
    json::array s, r;
    for (const auto& set : sets)
        s.push_back(json::object{{"name", set.name}, {"path", set.path.string()}});
    for (const auto& res : resolutions) r.push_back(res.to_json());
    return {{"sets", std::move(s)}, {"resolved", std::move(r)}};
}

Result<std::shared_ptr<const PackageCatalog>> PackageCatalog::create(
    const std::vector<std::string>& args, bool local_sets) {
    auto c = std::make_shared<PackageCatalog>();
    c->local_sets_ = local_sets;
    if (args.size() > limits::kMaxPackageSets)
        return fail(Errc::invalid_argument,
                    std::to_string(args.size()) + " --packages sets; at most " +
                        std::to_string(limits::kMaxPackageSets) + " (limits::kMaxPackageSets)",
                    {{"param", "packages"}});
    for (const std::string& arg : args) {
        std::vector<PackageSet> adding;
        if (arg == kSystemSet) {
            if (is_dir(fs::path(kSystemPython)))
                adding.push_back(
                    {std::string(kSystemSet), fs::path(kSystemPython), Language::python});
            for (std::string_view node : kSystemNode)
                if (is_dir(fs::path(node))) {
                    adding.push_back(
                        {std::string(kSystemSet), fs::path(node), Language::javascript});
                    break;
                }
            if (adding.empty())
                return tl::unexpected(bad_argument(
                    arg, "this host has no system packages (" + std::string(kSystemPython) +
                             " and " + std::string(kSystemNode[0]) + " are missing)"));
        } else {
            const auto eq = arg.find('=');
            if (eq == std::string::npos)
                return tl::unexpected(bad_argument(arg, "no '=' between the name and the path"));
            const std::string name = arg.substr(0, eq);
            const std::string path = arg.substr(eq + 1);
            if (!valid_set_name(name))
                return tl::unexpected(
                    bad_argument(arg, "the set's name must be 1 to " +
                                          std::to_string(limits::kMaxPackageSetNameBytes) +
                                          " letters, digits, '.', '_' or '-'"));
            if (name == kSystemSet || name == kLocalSet)
                return tl::unexpected(bad_argument(
                    arg, "'" + name + "' is the name of a built-in set; choose another"));
            std::error_code ec;
            const fs::path real = fs::canonical(path, ec);
            if (path.empty() || ec || !is_dir(real))
                return tl::unexpected(bad_argument(
                    arg, "'" + path + "' is not a folder" + (ec ? " (" + ec.message() + ")" : "")));
            adding.push_back(
                {name, real,
                 real.filename() == "node_modules" ? Language::javascript : Language::python});
        }
        for (auto& s : adding) {
            for (const auto& have : c->sets_)
                if (have.name == s.name && have.language == s.language)
                    return tl::unexpected(
                        bad_argument(arg, "a " + std::string(language_name(s.language)) +
                                              " set named '" + s.name + "' is already given"));
            auto idx = PackageIndex::build(s);
            if (!idx) return tl::unexpected(bad_argument(arg, idx.error().message));
            c->sets_.push_back(std::move(s));
            c->indexes_.push_back(std::move(*idx));
        }
    }
    return std::shared_ptr<const PackageCatalog>(std::move(c));
}

Result<ActorPackages> PackageCatalog::for_actor(const ActorMetadata& m, Language lang,
                                                const fs::path& script) const {
    ActorPackages out;
    std::vector<const PackageIndex*> searched;
    std::optional<PackageIndex> local;
    const bool named = !m.package_sets.empty();
    auto wants = [&](std::string_view name) {
        return !named || std::find(m.package_sets.begin(), m.package_sets.end(), name) !=
                             m.package_sets.end();
    };
    if (local_sets_ && !script.empty() && wants(kLocalSet)) {
        if (const fs::path dir = local_folder(script, lang); !dir.empty()) {
            auto idx = PackageIndex::build({std::string(kLocalSet), dir, lang});
            if (!idx) return tl::unexpected(idx.error());
            local = std::move(*idx);
        }
    }
    if (local) searched.push_back(&*local);
    for (std::size_t i = 0; i < sets_.size(); ++i)
        if (sets_[i].language == lang && wants(sets_[i].name)) searched.push_back(&indexes_[i]);
    for (const std::string& want : m.package_sets) {
        const bool found = std::any_of(searched.begin(), searched.end(),
                                       [&](const auto* idx) { return idx->set().name == want; });
        if (found) continue;
        std::string how;
        if (want == kSystemSet)
            how = "the runtime was started without it: enable it with --packages system";
        else if (want == kLocalSet)
            how = local_sets_
                      ? "there is no package folder beside the script (" +
                            std::string(lang == Language::javascript ? "node_modules"
                                                                     : "__pypackages__ or .venv") +
                            ")"
                      : "the runtime was started without --local-packages";
        else
            how = "give the runtime one with --packages " + want + "=PATH";
        return fail(Errc::requirement,
                    "the actor draws from package set '" + want +
                        "', which this runtime has not "
                        "for " +
                        std::string(language_name(lang)) + " (its sets: " + names_of(sets_, lang) +
                        "); " + how,
                    {{"set", want}});
    }
    for (const auto* idx : searched) out.sets.push_back(idx->set());
    auto r = resolve_requirements(m.requirements, searched, lang);
    if (!r) return tl::unexpected(r.error());
    out.resolutions = std::move(*r);
    return out;
}

Result<ActorPackages> packages_without_sets(const ActorMetadata& metadata, Language lang) {
    static const auto none = PackageCatalog::create({}, false);
    return (*none)->for_actor(metadata, lang, {});
}

}  // namespace sandflow::actor
