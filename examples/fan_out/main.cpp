// fan_out — a Merkle hash of a directory tree: one durable call per directory, spread across two
// worker instances, one of which crashes mid-run and restarts on its store. Each instance keeps
// its data in its own SQLite file; the crash closes it as a killed process would, leaving the
// WAL for the restart to recover.
//
// Each "merkle" execution lists its directory and hashes its files in a step (I/O belongs in
// steps), calls "merkle" for every subdirectory at once (call_async + all), and combines the
// results. The worker instances keep separate stores, so each call is pinned to the instance it
// first went to. After the run, the hash is checked against a plain recursive computation.
//
//   ./fan_out [DIRECTORY] [--data DIR | --memory]   (default: a generated tree of 85 directories)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "choreo/client.h"
#include "choreo/detail/sha256.h"
#include "common/example_store.h"
#include "choreo/service.h"
#include "choreo/transport/memory_transport.h"

namespace fs = std::filesystem;

namespace {

std::string hex(const choreo::detail::Sha256::Digest& digest) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string text;
    for (std::uint8_t byte : digest) {
        text += digits[byte >> 4];
        text += digits[byte & 0xF];
    }
    return text;
}

std::string hash_text(const std::string& text) { return hex(choreo::detail::sha256(choreo::bytes_of(text))); }

struct Listing {
    std::vector<std::string> files;    // "name hash", sorted by name
    std::vector<std::string> subdirs;  // sorted
    MSGPACK_DEFINE_MAP(files, subdirs);
};

Listing list_directory(const std::string& path) {
    Listing listing;
    std::vector<fs::directory_entry> entries{fs::directory_iterator(path), fs::directory_iterator()};
    std::sort(entries.begin(), entries.end());
    for (const fs::directory_entry& entry : entries) {
        const std::string name = entry.path().filename().string();
        if (entry.is_directory()) {
            listing.subdirs.push_back(name);
        } else if (entry.is_regular_file()) {
            std::ifstream file{entry.path(), std::ios::binary};
            const std::string content{std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>()};
            listing.files.push_back(name + " " + hash_text(content));
        }
    }
    return listing;
}

std::string combine(const Listing& listing, const std::vector<std::string>& subdir_hashes) {
    std::string text;
    for (const std::string& file : listing.files) text += "f " + file + "\n";
    for (std::size_t index = 0; index < listing.subdirs.size(); index++) {
        text += "d " + listing.subdirs[index] + " " + subdir_hashes[index] + "\n";
    }
    return hash_text(text);
}

std::string direct_merkle(const std::string& path) {
    const Listing listing = list_directory(path);
    std::vector<std::string> hashes;
    for (const std::string& subdir : listing.subdirs) hashes.push_back(direct_merkle(path + "/" + subdir));
    return combine(listing, hashes);
}

void register_merkle(choreo::Service& svc) {
    svc.function("merkle", [](choreo::DurableContext& ctx, std::string path) -> choreo::Task<std::string> {
        // The lambda is named before the co_await: GCC 12 destroys a capturing lambda that is made
        // inside a co_await expression twice (a compiler bug; clang and newer GCC are fine).
        auto list = [path] { return list_directory(path); };
        const Listing listing = co_await ctx.step<Listing>("list", list);
        std::vector<choreo::Future<std::string>> children;
        for (const std::string& subdir : listing.subdirs) {
            children.push_back(ctx.call_async<std::string>("hasher", "merkle", path + "/" + subdir));
        }
        std::vector<std::string> hashes = co_await ctx.all(std::move(children));
        co_return combine(listing, hashes);
    });
}

// A worker instance whose process can crash and come back on the same store.
struct Worker {
    Worker(choreo::MemoryNetwork& network, const example::DataDirectory& data, std::string instance)
        : network_(network), data_(data), instance_(std::move(instance)) {
        start();
    }
    void start() {
        service.reset();
        transport.reset();
        // The restarted process opens its store again: only what committed is there. A memory
        // store lives in this process, so it is the same object, recovered.
        if (auto* memory = dynamic_cast<choreo::MemoryStore*>(store.get())) {
            memory->recover();
        } else {
            store.reset();
            store = data_.open("hasher-" + instance_);
        }
        transport = std::make_unique<choreo::MemoryTransport>(network_, choreo::Address::unicast("hasher", instance_));
        service = std::make_unique<choreo::Service>(
            choreo::ServiceOptions{.name = "hasher", .instance = instance_, .step_workers_max = 2}, *transport, *store);
        register_merkle(*service);
    }
    // The process dies between two batches: its store is closed without the clean close's
    // checkpoint (SQLite), or crashes after its next commit (memory); the next batch fails.
    void crash() {
        if (auto* sqlite = dynamic_cast<choreo::SqliteStore*>(store.get())) sqlite->abandon();
        if (auto* memory = dynamic_cast<choreo::MemoryStore*>(store.get())) {
            memory->inject_crash(choreo::MemoryStore::CrashPoint::after_commit);
        }
    }
    choreo::MemoryNetwork& network_;
    const example::DataDirectory& data_;
    std::string instance_;
    std::unique_ptr<choreo::Store> store;
    std::unique_ptr<choreo::MemoryTransport> transport;
    std::unique_ptr<choreo::Service> service;
};

fs::path make_tree(int depth, int fan_out) {
    const fs::path root = fs::temp_directory_path() / ("choreo-fan-out-" + std::to_string(::getpid()));
    fs::remove_all(root);
    std::vector<std::pair<fs::path, int>> pending{{root, 0}};
    while (!pending.empty()) {
        auto [dir, level] = pending.back();
        pending.pop_back();
        fs::create_directories(dir);
        std::ofstream{dir / "README"} << "directory " << dir.filename().string() << " at level " << level << "\n";
        if (level == depth) continue;
        for (int child = 0; child < fan_out; child++) pending.emplace_back(dir / ("d" + std::to_string(child)), level + 1);
    }
    return root;
}

}  // namespace

int main(int argc, char** argv) {
    std::string directory;
    for (int index = 1; index < argc; index++) {
        if (std::strcmp(argv[index], "--data") == 0) {
            index++;
        } else if (std::strncmp(argv[index], "--", 2) != 0) {
            directory = argv[index];
        }
    }
    const bool generated = directory.empty();
    const fs::path root = generated ? make_tree(3, 4) : fs::path(directory);
    const example::DataDirectory data{argc, argv};
    std::printf("fan_out: %s\n", data.describe().c_str());
    choreo::MemoryNetwork network;
    Worker first{network, data, "1"};
    Worker second{network, data, "2"};
    choreo::MemoryTransport app_transport{network, choreo::Address::unicast("app", "1")};
    std::unique_ptr<choreo::Store> app_store = data.open("app-1");
    choreo::Service app{{.name = "app"}, app_transport, *app_store};
    choreo::Client client{app};
    // One execution per tree: with --data, running again on the same tree finds the execution
    // already done and returns its result without hashing anything.
    const std::string execution = "merkle-" + hash_text(root.string()).substr(0, 16);
    if (!client.start("hasher", "merkle", execution, root.string()).ok()) return 1;

    bool crashed = false;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    while (client.poll(execution).ok() && std::chrono::steady_clock::now() < deadline) {
        auto row = client.poll(execution);
        if (row->has_value() && (*row)->state != choreo::PromiseState::pending) break;
        if (!crashed && second.service->stats().executions_started >= 5) {
            second.crash();  // mid-run
            crashed = true;
        }
        if (!app.run_once(200).ok()) return 1;
        for (Worker* worker : {&first, &second}) {
            choreo::Result<bool> worked = worker->service->run_once(200);
            if (worked.ok()) continue;
            std::printf("hasher/%s crashed (%s) after %llu executions; restarting on its store\n",
                        worker->instance_.c_str(), worked.status().to_string().c_str(),
                        static_cast<unsigned long long>(worker->service->stats().executions_started));
            worker->start();
        }
    }
    choreo::Result<std::string> durable = client.wait<std::string>(execution, 0);
    const std::string direct = direct_merkle(root.string());
    std::printf("tree:    %s\n", root.string().c_str());
    std::printf("durable: %s\n", durable.ok() ? durable->c_str() : durable.status().to_string().c_str());
    std::printf("direct:  %s\n", direct.c_str());
    std::printf("executions: hasher/1 %llu, hasher/2 %llu (since its restart)\n",
                static_cast<unsigned long long>(first.service->stats().executions_completed),
                static_cast<unsigned long long>(second.service->stats().executions_completed));
    if (generated) fs::remove_all(root);
    const bool same = durable.ok() && *durable == direct;
    std::printf("%s\n", !same ? "MISMATCH" : crashed ? "match: the crash changed nothing" : "match");
    return same ? 0 : 1;
}
