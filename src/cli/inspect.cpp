// sandflow inspect SCRIPT: the actor's metadata, read without running the script.
#include <cstdio>

#include "actor/metadata.hpp"
#include "cli/common.hpp"
#include "core/json.hpp"

namespace sandflow::cli {

void register_inspect(CLI::App& app, int& status) {
    auto* cmd = app.add_subcommand(
        "inspect",
        "Print an actor script's metadata as JSON, read statically (the script is not run).\n"
        "Exit status 2 with the error (file:line:col: what was expected) when the declaration\n"
        "is missing or malformed. With --packages, also where each of its requirements\n"
        "resolves (\"resolved\"), or the load error a runtime with those sets would give\n"
        "(\"unresolved\"; exit status 2).");
    auto script = std::make_shared<std::string>();
    auto packages = std::make_shared<PackageFlags>();
    cmd->add_option("SCRIPT", *script, "Actor script (.py or .js)")->required();
    add_package_flags(*cmd, *packages);
    cmd->callback([script, packages, &status] {
        auto meta = actor::inspect_file(*script);
        if (!meta) {
            status = report(meta.error());
            return;
        }
        json::object out = meta->to_json();
        out["language"] = actor::language_name(meta->language);
        out["file"] = *script;
        out["line"] = meta->line;
        out["column"] = meta->column;
        auto catalog = open_packages(*packages);
        if (!catalog) {
            status = report(catalog.error());
            return;
        }
        auto resolved = (*catalog)->for_actor(*meta, meta->language, *script);
        status = kExitOk;
        if (resolved) {
            out["packages"] = resolved->to_json();
        } else {
            out["unresolved"] = resolved.error().to_json();
            status = exit_status_for(resolved.error());
        }
        std::printf("%s\n", to_pretty_json(out).c_str());
    });
}

}  // namespace sandflow::cli
