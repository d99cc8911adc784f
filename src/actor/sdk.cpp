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

namespace {

// Reads exactly one frame of marshalled code from the channel and runs it as __main__.
// A closed channel before the code arrives ends the worker quietly.
constexpr std::string_view kPythonBootstrap =
    "import marshal,os,sys\n"
    "def _r(f,n):\n"
    "    b=b''\n"
    "    while len(b)<n:\n"
    "        c=os.read(f,n-len(b))\n"
    "        if not c: raise SystemExit(0)\n"
    "        b+=c\n"
    "    return b\n"
    "_f=int(sys.argv[1])\n"
    "_c=marshal.loads(_r(_f,int.from_bytes(_r(_f,4),'big')))\n"
    "del _r,_f\n"
    "exec(_c,{'__name__':'__main__','__builtins__':__builtins__,'_BOOTSTRAPPED':True})\n";

}  // namespace

std::vector<std::string> python_bootstrap_argv(int channel_fd) {
    return {std::string(kPythonInterpreter), "-I", "-S", "-c", std::string(kPythonBootstrap),
            std::to_string(channel_fd)};
}

}  // namespace sandflow::actor::sdk
