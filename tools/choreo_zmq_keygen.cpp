// choreo-zmq-keygen — makes a CURVE key pair for the ZeroMQ transport.
//
//   choreo-zmq-keygen BASE     writes BASE.pub (the public key: share it, list it in the
//                              directory and in allow-lists) and BASE.key (the secret key, mode
//                              0600: keep it on the instance that owns it)
//
// Both files hold one Z85 key on one line after a '#' comment line; zmq_transport::load_keypair
// and load_allow_list read them. Refuses to overwrite an existing BASE.key.
#include <cstdio>
#include <filesystem>
#include <string>

#include "choreo/transport/zmq_transport.h"

int main(int argc, char** argv) {
    if (argc != 2 || std::string(argv[1]).empty() || argv[1][0] == '-') {
        std::fprintf(stderr, "usage: choreo-zmq-keygen BASE   (writes BASE.pub and BASE.key)\n");
        return 2;
    }
    const std::string base = argv[1];
    if (std::filesystem::exists(base + ".key")) {
        std::fprintf(stderr, "choreo-zmq-keygen: %s.key exists; not overwriting a secret key\n", base.c_str());
        return 1;
    }
    choreo::Result<choreo::zmq_transport::CurveKeyPair> pair = choreo::zmq_transport::generate_keypair();
    if (!pair.ok()) {
        std::fprintf(stderr, "choreo-zmq-keygen: %s\n", pair.status().to_string().c_str());
        return 1;
    }
    choreo::Status written = choreo::zmq_transport::write_keypair(*pair, base);
    if (!written.ok()) {
        std::fprintf(stderr, "choreo-zmq-keygen: %s\n", written.to_string().c_str());
        return 1;
    }
    std::printf("%s\n", pair->public_key.c_str());
    return 0;
}
