#include "actor/sdk.hpp"

namespace sandflow::actor::sdk {

std::vector<std::string> worker_argv(Language lang, int channel_fd) {
    const std::string fd = std::to_string(channel_fd);
    if (lang == Language::python) {
        // -I: isolated (no user site, no PYTHON* variables, no script dir on sys.path);
        // -S: no site module, which also saves start-up time.
        return {std::string(kPythonInterpreter), "-I", "-S", "-c", std::string(kPythonWorker), fd};
    }
    return {std::string(kNodeInterpreter), "-e", std::string(kJsWorker), fd};
}

}  // namespace sandflow::actor::sdk
