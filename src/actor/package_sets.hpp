// The package sets an operator gives a runtime, and which of them one actor draws from
// (docs/actors.md#packages).
//
// A set is named on the command line as NAME=PATH (--packages, repeatable): a folder named
// `node_modules` is a JavaScript set, any other folder a Python one (a virtualenv's
// site-packages, a folder made with `pip install --target`). `--packages system` enables
// the host's own packages: Debian's /usr/lib/python3/dist-packages for Python, and for
// JavaScript Debian's /usr/share/nodejs or else npm's global /usr/lib/node_modules. With
// --local-packages, a folder beside an actor's script is a set named `local` for that actor
// alone, searched first: `node_modules` beside a JavaScript actor; beside a Python actor
// `__pypackages__/X.Y/lib` (PEP 582) or the site-packages of a virtualenv named `.venv`.
//
// An actor draws from the sets its metadata names ("packages"), or from every set of its
// language when it names none; its "requires" must resolve in those sets, in their order.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "actor/metadata.hpp"
#include "actor/requirements.hpp"

namespace sandflow::limits {
inline constexpr std::size_t kMaxPackageSets = 16;  // given to one runtime
inline constexpr std::size_t kMaxPackageSetNameBytes = 32;
}  // namespace sandflow::limits

namespace sandflow::actor {

inline constexpr std::string_view kSystemSet = "system";
inline constexpr std::string_view kLocalSet = "local";

// What one actor gets: its sets, in the order they are searched, and where each of its
// requirements resolved.
struct ActorPackages {
    std::vector<PackageSet> sets;  // paths canonical
    std::vector<Resolution> resolutions;
    // {"sets": [{name, path}], "resolved": [Resolution::to_json()]}
    json::object to_json() const;
};

class PackageCatalog {
  public:
    // From --packages arguments ("NAME=PATH" or "system"); every set's folder is read now.
    // Errors (Errc::invalid_argument) name the argument and how to fix it.
    static Result<std::shared_ptr<const PackageCatalog>> create(
        const std::vector<std::string>& args, bool local_sets);

    const std::vector<PackageSet>& sets() const { return sets_; }
    bool local_sets() const { return local_sets_; }

    // The sets an actor written in `lang`, whose script is `script` on the host (empty for
    // a script given inline: it has no folder, so no local set), draws from, with its
    // requirements resolved. Errc::requirement for a set the runtime lacks or a requirement
    // no set meets; the message names the package, what was found, where it looked and how
    // to add it.
    Result<ActorPackages> for_actor(const ActorMetadata& metadata, Language lang,
                                    const std::filesystem::path& script) const;

  private:
    std::vector<PackageSet> sets_;
    std::vector<PackageIndex> indexes_;  // one per set, in the same order
    bool local_sets_ = false;
};

// for_actor() of a runtime that has no package sets: an actor that requires nothing
// resolves to nothing, one that requires a package fails naming --packages.
Result<ActorPackages> packages_without_sets(const ActorMetadata& metadata, Language lang);

}  // namespace sandflow::actor
