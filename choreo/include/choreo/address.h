// choreo/address.h — where a message goes: `service` (anycast) or `service/instance` (unicast).
//
// Names use letters, digits, '.', '_' and '-', at most 64 bytes each part.
//
//   Result<Address> to = Address::parse("orders/2");
//   to->service();   // "orders"
//   to->instance();  // "2"
//   Address::anycast("orders").to_string();   // "orders"
#pragma once

#include <compare>
#include <string>
#include <string_view>

#include "choreo/status.h"

namespace choreo {

class Address {
public:
    static constexpr std::size_t name_bytes_max = 64;

    Address() = default;  // empty: "no address" (an anonymous sender)
    static Result<Address> parse(std::string_view text);
    // Asserts the names are valid; for names the program itself chose.
    static Address anycast(std::string_view service);
    static Address unicast(std::string_view service, std::string_view instance);

    bool empty() const { return service_.empty(); }
    bool is_unicast() const { return !instance_.empty(); }
    // Whether a message to this address is for `instance` (a unicast address): it names the
    // instance's service, or exactly the instance.
    bool reaches(const Address& instance) const {
        return service_ == instance.service_ && (!is_unicast() || instance_ == instance.instance_);
    }
    const std::string& service() const { return service_; }
    const std::string& instance() const { return instance_; }
    Address service_address() const { return anycast(service_); }
    std::string to_string() const;

    static bool valid_name(std::string_view name);

    friend auto operator<=>(const Address&, const Address&) = default;

private:
    std::string service_;
    std::string instance_;
};

}  // namespace choreo
