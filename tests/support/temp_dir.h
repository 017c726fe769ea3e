// temp_dir.h — a fresh directory under the system temp directory, removed with its contents when
// the object goes (tests that need real files: SQLite databases, sockets, key files).
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <string>
#include <system_error>

#include "choreo/assert.h"

namespace choreo::testing_support {

class TempDir {
public:
    explicit TempDir(std::string_view prefix = "choreo-test") {
        std::string pattern = (std::filesystem::temp_directory_path() / (std::string(prefix) + "-XXXXXX")).string();
        const char* made = ::mkdtemp(pattern.data());
        CHOREO_ASSERT(made != nullptr);
        path_ = made;
    }
    ~TempDir() {
        std::error_code ignored;
        std::filesystem::remove_all(path_, ignored);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;

    const std::filesystem::path& path() const { return path_; }
    std::string file(std::string_view name) const { return (path_ / name).string(); }

private:
    std::filesystem::path path_;
};

}  // namespace choreo::testing_support
