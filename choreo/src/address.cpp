#include "choreo/address.h"

namespace choreo {

bool Address::valid_name(std::string_view name) {
    if (name.empty() || name.size() > name_bytes_max) return false;
    for (char c : name) {
        const bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        const bool digit = c >= '0' && c <= '9';
        if (!letter && !digit && c != '.' && c != '_' && c != '-') return false;
    }
    return true;
}

Result<Address> Address::parse(std::string_view text) {
    const std::size_t slash = text.find('/');
    const std::string_view service = text.substr(0, slash);
    const std::string_view instance =
        slash == std::string_view::npos ? std::string_view{} : text.substr(slash + 1);
    if (!valid_name(service)) {
        return invalid_argument_error("invalid_address", "bad service name in '" +
                                                             std::string(text.substr(0, 80)) + "'");
    }
    if (slash != std::string_view::npos && !valid_name(instance)) {
        return invalid_argument_error("invalid_address", "bad instance name in '" +
                                                             std::string(text.substr(0, 80)) + "'");
    }
    Address address;
    address.service_ = service;
    address.instance_ = instance;
    return address;
}

Address Address::anycast(std::string_view service) {
    CHOREO_ASSERT(valid_name(service));
    Address address;
    address.service_ = service;
    return address;
}

Address Address::unicast(std::string_view service, std::string_view instance) {
    CHOREO_ASSERT(valid_name(service));
    CHOREO_ASSERT(valid_name(instance));
    Address address;
    address.service_ = service;
    address.instance_ = instance;
    return address;
}

std::string Address::to_string() const {
    if (instance_.empty()) return service_;
    return service_ + "/" + instance_;
}

}  // namespace choreo
