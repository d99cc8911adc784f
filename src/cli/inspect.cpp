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
        "is missing or malformed.");
    auto script = std::make_shared<std::string>();
    cmd->add_option("SCRIPT", *script, "Actor script (.py or .js)")->required();
    cmd->callback([script, &status] {
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
        std::printf("%s\n", to_pretty_json(out).c_str());
        status = kExitOk;
    });
}

}  // namespace sandflow::cli
