// The exit status of every sandflow subcommand, one per Errc. Header-only so that the
// test of docs/errors.md's table checks it without the CLI.
#pragma once

#include "core/error.hpp"

namespace sandflow::cli {

// Exit statuses: each Errc has one (docs/errors.md's table; rpc_test checks it).
enum ExitStatus : int {
    kExitOk = 0,
    kExitScriptError = 1,   // the actor script raised
    kExitUsage = 2,         // bad command line or input, a metadata error, an unknown name
    kExitSandbox = 3,       // the sandbox, worker, state store or a limit failed
    kExitCancelled = 4,     // the call was cancelled
    kExitUnavailable = 5,   // the server is overloaded or shutting down: retry later
    kExitUnauthorized = 6,  // the server refused the token or the origin
};

// The line `--help` shows for the statuses above.
inline constexpr const char* kExitStatusHelp =
    "Exit statuses: 0 ok; 1 the actor script raised; 2 usage, input or metadata error;\n"
    "3 sandbox, worker, state store or limit error (timeout, crash, limit); 4 cancelled;\n"
    "5 the server is overloaded or shutting down; 6 unauthorized (docs/errors.md).";

// The status that matches an error's code.
constexpr int exit_status_for(Errc code) {
    switch (code) {
        case Errc::script:
            return kExitScriptError;
        case Errc::invalid_argument:
        case Errc::metadata:
        case Errc::requirement:
        case Errc::not_found:
        case Errc::method_not_found:
            return kExitUsage;
        case Errc::worker_crashed:
        case Errc::timeout:
        case Errc::limit_exceeded:
        case Errc::sandbox_unavailable:
        case Errc::io:
        case Errc::state_store:
        case Errc::state_conflict:
        case Errc::internal:
            return kExitSandbox;
        case Errc::cancelled:
            return kExitCancelled;
        case Errc::overloaded:
        case Errc::shutting_down:
            return kExitUnavailable;
        case Errc::unauthorized:
            return kExitUnauthorized;
    }
    return kExitSandbox;
}
inline int exit_status_for(const Error& e) {
    return exit_status_for(e.code);
}

}  // namespace sandflow::cli
