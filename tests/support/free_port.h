// free_port.h — a loopback TCP endpoint nobody listens on right now, for tests that bind real
// sockets ("a fresh port per test"). The kernel picks the port; another process could take it
// before the test binds it, which on a test machine is rare enough to accept.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "choreo/assert.h"

namespace choreo::testing_support {

inline int free_tcp_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    CHOREO_ASSERT(fd >= 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = 0;
    CHOREO_ASSERT(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
    socklen_t length = sizeof address;
    CHOREO_ASSERT(::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0);
    ::close(fd);
    return ntohs(address.sin_port);
}

inline std::string free_tcp_endpoint() { return "tcp://127.0.0.1:" + std::to_string(free_tcp_port()); }

}  // namespace choreo::testing_support
