// sandflow: run untrusted Python and JavaScript actor scripts in sandboxes.
#include <cstdio>

#include "cli/common.hpp"
#include "core/log.hpp"

int main(int argc, char** argv) {
    CLI::App app{
        std::string("sandflow: run untrusted Python and JavaScript actor scripts, each in its "
                    "own sandbox.\n\n") +
            sandflow::cli::kExitStatusHelp,
        "sandflow"};
    app.set_version_flag("--version", "sandflow 0.1.0");
    std::string log_level = "warn";
    app.add_option("--log-level", log_level,
                   "Log level on stderr: trace, debug, info, warn, error, off")
        ->capture_default_str();
    app.require_subcommand(1);
    sandflow::init_logging(log_level);
    int status = 0;
    sandflow::cli::register_inspect(app, status);
    sandflow::cli::register_exec(app, status);
    sandflow::cli::register_doctor(app, status);
    sandflow::cli::register_serve(app, status);
    sandflow::cli::register_call(app, status);
    sandflow::cli::register_run(app, status);
    app.parse_complete_callback([&] { sandflow::init_logging(log_level); });
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        const int code = app.exit(e);
        return code == 0 ? 0 : sandflow::cli::kExitUsage;
    }
    return status;
}
