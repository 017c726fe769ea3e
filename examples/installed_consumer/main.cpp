// Builds against an installed choreo and applies one message, end to end, on an SQLite store:
// the service sends it to itself over ZeroMQ on loopback.
#include <stdlib.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include "choreo/durability/sqlite_store.h"
#include "choreo/service.h"
#include "choreo/transport/zmq_transport.h"

int main() {
    std::string dir = (std::filesystem::temp_directory_path() / "choreo-consumer-XXXXXX").string();
    if (::mkdtemp(dir.data()) == nullptr) return 1;
    bool greeted = false;
    {
        auto store = choreo::SqliteStore::open({.path = dir + "/greeter.db"});
        if (!store.ok()) {
            std::fprintf(stderr, "%s\n", store.status().to_string().c_str());
            return 1;
        }
        auto transport = choreo::zmq_transport::ZmqTransport::open(
            {.self = choreo::Address::unicast("greeter", "1"),
             .directory = std::make_shared<choreo::zmq_transport::Directory>(),
             .bind = "tcp://127.0.0.1:*"});  // a free port, added to the directory
        if (!transport.ok()) {
            std::fprintf(stderr, "%s\n", transport.status().to_string().c_str());
            return 1;
        }
        choreo::Service greeter{{.name = "greeter"}, **transport, **store};
        greeter.on("greet", [&](choreo::Context& ctx, const std::string& name) {
            ctx.save("last", name);
            greeted = true;
        });
        if (!greeter.post("greeter", "greet", std::string("world")).ok()) return 1;
        for (int round = 0; round < 500 && !greeted; round++) {
            if (!greeter.run_once(10'000).ok()) return 1;
        }
    }
    std::filesystem::remove_all(dir);
    std::printf("consumer: %s\n", greeted ? "greeted" : "not greeted");
    return greeted ? 0 : 1;
}
