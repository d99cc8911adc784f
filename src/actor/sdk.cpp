#include "actor/sdk.hpp"

namespace sandflow::actor::sdk {

namespace {

constexpr std::string_view kTimelineArg = "timeline";

}  // namespace

std::vector<std::string> worker_argv(Language lang, int channel_fd, bool timeline) {
    std::vector<std::string> argv;
    if (lang == Language::python) {
        // -I: isolated (no user site, no PYTHON* variables, no script dir on sys.path);
        // -S: no site module, which also saves start-up time.
        argv = {std::string(kPythonInterpreter), "-I", "-S", "-c", std::string(kPythonWorker)};
    } else {
        argv = {std::string(kNodeInterpreter), "-e", std::string(kJsWorker)};
    }
    if (timeline) argv.emplace_back(kTimelineArg);
    argv.push_back(std::to_string(channel_fd));
    return argv;
}

namespace {

// Reads exactly one frame from the channel (python_code_frame) and runs the shim as __main__,
// in that module's own namespace (so sys.modules["__main__"] is the shim, as when it runs from
// source): the marshalled code when this interpreter's bytecode magic is the one it was
// compiled for, else the source, compiled here. `time` is loaded at every interpreter's
// start-up, so the clock reading for a timeline costs no import. A closed channel before the
// frame arrives ends the worker quietly.
constexpr std::string_view kPythonBootstrap =
    "import marshal,sys,time\n"
    "_T0=time.monotonic_ns()\n"
    "def _r(f,n):\n"
    "    b=b''\n"
    "    while len(b)<n:\n"
    "        c=__import__('posix').read(f,n-len(b))\n"
    "        if not c: raise SystemExit(0)\n"
    "        b+=c\n"
    "    return b\n"
    "_f=int(sys.argv[-1])\n"
    "_b=_r(_f,int.from_bytes(_r(_f,4),'big'))\n"
    "_n=8+int.from_bytes(_b[4:8],'big')\n"
    "_BOOTSTRAPPED=_n>8 and _b[:4]==sys.modules['_frozen_importlib_external'].MAGIC_NUMBER\n"
    "_c=marshal.loads(_b[8:_n]) if _BOOTSTRAPPED else "
    "compile(_b[_n:].decode(),'<sandflow_worker>','exec',dont_inherit=True)\n"
    "del _r,_f,_b,_n\n"
    "exec(_c,globals())\n";

void put_u32(std::string& out, std::size_t n) {
    for (int shift = 24; shift >= 0; shift -= 8)
        out.push_back(static_cast<char>((n >> shift) & 0xff));
}

}  // namespace

std::vector<std::string> python_bootstrap_argv(int channel_fd, bool timeline) {
    std::vector<std::string> argv = {std::string(kPythonInterpreter), "-I", "-S", "-c",
                                     std::string(kPythonBootstrap)};
    if (timeline) argv.emplace_back(kTimelineArg);
    argv.push_back(std::to_string(channel_fd));
    return argv;
}

std::string python_code_frame(std::string_view magic, std::string_view code) {
    std::string frame;
    const bool usable = magic.size() == 4 && !code.empty();
    frame.reserve(8 + (usable ? code.size() : 0) + kPythonWorker.size());
    frame.append(usable ? magic : std::string_view("\0\0\0\0", 4));
    put_u32(frame, usable ? code.size() : 0);
    if (usable) frame.append(code);
    frame.append(kPythonWorker);
    return frame;
}

}  // namespace sandflow::actor::sdk
