// Builds against an installed choreo and applies one message, end to end.
#include <cstdio>

#include "choreo/durability/memory_store.h"
#include "choreo/service.h"
#include "choreo/transport/memory_transport.h"

int main() {
    choreo::MemoryNetwork network;
    choreo::MemoryTransport transport{network, choreo::Address::unicast("greeter", "1")};
    choreo::MemoryStore store;
    choreo::Service greeter{{.name = "greeter"}, transport, store};
    bool greeted = false;
    greeter.on("greet", [&](choreo::Context& ctx, const std::string& name) {
        ctx.save("last", name);
        greeted = true;
    });
    if (!greeter.post("greeter", "greet", std::string("world")).ok()) return 1;
    for (int round = 0; round < 100 && !greeted; round++) {
        if (!greeter.run_once(10'000).ok()) return 1;
    }
    std::printf("consumer: %s\n", greeted ? "greeted" : "not greeted");
    return greeted ? 0 : 1;
}
