// example_store.h — where the examples keep their data: one SQLite file per service instance in
// a directory (--data DIR, default a fresh temporary one, removed at exit), or --memory for the
// in-memory store.
#pragma once

#include <stdlib.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>

#include "choreo/durability/memory_store.h"
#include "choreo/durability/sqlite_store.h"

namespace example {

class DataDirectory {
public:
    DataDirectory(int argc, char** argv) {
        for (int index = 1; index < argc; index++) {
            if (std::strcmp(argv[index], "--memory") == 0) memory_ = true;
            if (std::strcmp(argv[index], "--data") == 0 && index + 1 < argc) path_ = argv[index + 1];
        }
        if (memory_ || !path_.empty()) return;
        std::string pattern = (std::filesystem::temp_directory_path() / "choreo-example-XXXXXX").string();
        if (::mkdtemp(pattern.data()) == nullptr) std::abort();
        path_ = pattern;
        owned_ = true;
    }
    ~DataDirectory() {
        std::error_code ignored;
        if (owned_) std::filesystem::remove_all(path_, ignored);
    }
    DataDirectory(const DataDirectory&) = delete;
    DataDirectory& operator=(const DataDirectory&) = delete;

    // The store of one service instance: `<dir>/<name>.db`, or a memory store with --memory.
    // Exits with the store's error when it cannot be opened (not a choreo file, read-only, ...).
    std::unique_ptr<choreo::Store> open(const std::string& name) const {
        if (memory_) return std::make_unique<choreo::MemoryStore>();
        std::filesystem::create_directories(path_);
        const std::string file = (std::filesystem::path(path_) / (name + ".db")).string();
        auto opened = choreo::SqliteStore::open({.path = file});
        if (!opened.ok()) {
            std::fprintf(stderr, "cannot open %s: %s\n", file.c_str(), opened.status().to_string().c_str());
            std::exit(2);
        }
        return std::move(opened).value();
    }
    std::string describe() const { return memory_ ? "the in-memory store" : "SQLite files in " + path_; }

private:
    bool memory_ = false;
    bool owned_ = false;
    std::string path_;
};

}  // namespace example
