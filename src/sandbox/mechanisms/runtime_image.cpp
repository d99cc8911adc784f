#include "sandbox/mechanisms/runtime_image.hpp"

#include <sys/prctl.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

namespace sandflow::sandbox::mech {

RuntimeImage read_runtime_image() {
    RuntimeImage img;
    std::ifstream in("/proc/self/stat");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    // Fields after the command name, which may hold spaces and ends at the last ')'.
    const auto close = text.rfind(')');
    if (close == std::string::npos) return img;
    std::istringstream fields(text.substr(close + 2));
    std::string f;
    for (int field = 3; fields >> f; ++field) {
        // proc(5): 48 arg_start, 49 arg_end, 50 env_start, 51 env_end
        unsigned long v = std::strtoul(f.c_str(), nullptr, 10);
        if (field == 48) img.arg_start = v;
        if (field == 49) img.arg_end = v;
        if (field == 50) img.env_start = v;
        if (field == 51) img.env_end = v;
    }
    return img;
}

void hide_runtime_memory(const RuntimeImage& image) {
    ::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    ::prctl(PR_SET_NAME, "sandflow-init", 0, 0, 0);
    auto wipe = [](unsigned long start, unsigned long end) {
        if (start == 0 || end <= start) return;
        std::memset(reinterpret_cast<void*>(start), 0, end - start);
    };
    wipe(image.arg_start, image.arg_end);
    wipe(image.env_start, image.env_end);
    if (image.arg_end - image.arg_start > 13)
        std::memcpy(reinterpret_cast<void*>(image.arg_start), "sandflow-init", 13);
}

}  // namespace sandflow::sandbox::mech
