#include "sandbox/namespace/namespaces.hpp"

#include <unistd.h>

namespace sandflow::sandbox::ns {

using namespace mech;

ChildFailure enter_cgroup_namespace() {
    if (::unshare(CLONE_NEWCGROUP) != 0) return failed_at(kStepCgroupNamespace);
    return {};
}

ChildFailure set_hostname(const std::string& name) {
    if (::sethostname(name.data(), name.size()) != 0) return failed_at(kStepHostname);
    if (::setdomainname("", 0) != 0) return failed_at(kStepHostname);
    return {};
}

}  // namespace sandflow::sandbox::ns
