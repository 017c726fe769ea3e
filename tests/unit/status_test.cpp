// Status, Result<T>, CHOREO_RETURN_IF_ERROR and CHOREO_ASSERT (choreo/status.h, choreo/assert.h).
#include "choreo/status.h"

#include <gtest/gtest.h>

#include <csignal>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace choreo {
namespace {

// --- Status -------------------------------------------------------------------------------------

TEST(StatusTest, DefaultIsOk) {
    const Status status;
    EXPECT_TRUE(status.ok());
    EXPECT_EQ(status.code(), StatusCode::ok);
    EXPECT_TRUE(status.reason().empty());
    EXPECT_TRUE(status.message().empty());
    EXPECT_EQ(status.to_string(), "ok");
}

TEST(StatusTest, OkStatusEqualsDefault) {
    EXPECT_TRUE(Status::ok_status().ok());
    EXPECT_EQ(Status::ok_status(), Status{});
}

TEST(StatusTest, ConstructorKeepsCodeReasonAndMessage) {
    const Status status{StatusCode::aborted, "conflict", "row changed under us"};
    EXPECT_FALSE(status.ok());
    EXPECT_EQ(status.code(), StatusCode::aborted);
    EXPECT_EQ(status.reason(), "conflict");
    EXPECT_EQ(status.message(), "row changed under us");
}

TEST(StatusTest, HelpersSetTheirCodes) {
    EXPECT_EQ(transient_error("busy").code(), StatusCode::transient);
    EXPECT_EQ(aborted_error("conflict").code(), StatusCode::aborted);
    EXPECT_EQ(precondition_error("not_open").code(), StatusCode::failed_precondition);
    EXPECT_EQ(invalid_argument_error("missing_key").code(), StatusCode::invalid_argument);
    EXPECT_EQ(not_found_error("no_row").code(), StatusCode::not_found);
    EXPECT_EQ(closed_error().code(), StatusCode::closed);
}

TEST(StatusTest, HelpersKeepReasonAndMessage) {
    const Status status = not_found_error("no_row", "execution 7");
    EXPECT_EQ(status.reason(), "no_row");
    EXPECT_EQ(status.message(), "execution 7");
    EXPECT_FALSE(status.ok());
}

TEST(StatusTest, ClosedErrorHasADefaultReason) {
    EXPECT_EQ(closed_error().reason(), "closed");
    EXPECT_EQ(closed_error("stopped").reason(), "stopped");
}

TEST(StatusTest, CodeNames) {
    EXPECT_EQ(status_code_name(StatusCode::ok), "ok");
    EXPECT_EQ(status_code_name(StatusCode::transient), "transient");
    EXPECT_EQ(status_code_name(StatusCode::aborted), "aborted");
    EXPECT_EQ(status_code_name(StatusCode::failed_precondition), "failed_precondition");
    EXPECT_EQ(status_code_name(StatusCode::invalid_argument), "invalid_argument");
    EXPECT_EQ(status_code_name(StatusCode::not_found), "not_found");
    EXPECT_EQ(status_code_name(StatusCode::closed), "closed");
}

TEST(StatusTest, ToStringWithMessage) {
    const Status status = invalid_argument_error("missing_key", "no key 'id'");
    EXPECT_EQ(status.to_string(), "invalid_argument/missing_key: no key 'id'");
}

TEST(StatusTest, ToStringWithoutMessage) {
    EXPECT_EQ(transient_error("busy").to_string(), "transient/busy");
    EXPECT_EQ(precondition_error("not_open").to_string(), "failed_precondition/not_open");
}

TEST(StatusTest, EqualityComparesCodeAndReasonNotMessage) {
    EXPECT_EQ(invalid_argument_error("truncated", "one"),
              invalid_argument_error("truncated", "two"));
    EXPECT_NE(invalid_argument_error("truncated"), invalid_argument_error("wrong_type"));
    EXPECT_NE(invalid_argument_error("busy"), transient_error("busy"));
    EXPECT_NE(Status{}, transient_error("busy"));
}

TEST(StatusTest, CopiesAreEqual) {
    const Status original = aborted_error("conflict", "details");
    const Status copy = original;  // NOLINT(performance-unnecessary-copy-initialization)
    EXPECT_EQ(copy, original);
    EXPECT_EQ(copy.message(), "details");
}

// --- Result<T> ----------------------------------------------------------------------------------

TEST(ResultTest, HoldsAValue) {
    const Result<int> result = 42;
    ASSERT_TRUE(result.ok());
    EXPECT_EQ(result.value(), 42);
    EXPECT_EQ(*result, 42);
    EXPECT_TRUE(result.status().ok());
}

TEST(ResultTest, HoldsAStatus) {
    const Result<int> result = invalid_argument_error("wrong_type", "expected a map");
    ASSERT_FALSE(result.ok());
    EXPECT_EQ(result.status().code(), StatusCode::invalid_argument);
    EXPECT_EQ(result.status().reason(), "wrong_type");
    EXPECT_EQ(result.status().message(), "expected a map");
}

TEST(ResultTest, ArrowReachesMembers) {
    Result<std::string> result = std::string("choreo");
    ASSERT_TRUE(result.ok());
    EXPECT_EQ(result->size(), 6u);
    result->append("!");
    EXPECT_EQ(result.value(), "choreo!");
}

TEST(ResultTest, ValueIsMutableThroughLvalue) {
    Result<std::vector<int>> result = std::vector<int>{1, 2};
    result.value().push_back(3);
    (*result).push_back(4);
    EXPECT_EQ(result.value(), (std::vector<int>{1, 2, 3, 4}));
}

TEST(ResultTest, RvalueValueMovesOut) {
    Result<std::unique_ptr<int>> result = std::make_unique<int>(7);
    std::unique_ptr<int> taken = std::move(result).value();
    ASSERT_NE(taken, nullptr);
    EXPECT_EQ(*taken, 7);
}

// --- CHOREO_RETURN_IF_ERROR ---------------------------------------------------------------------

struct Calls {
    int evaluated = 0;
    int reached_end = 0;
};

Status step(Calls& calls, Status result) {
    calls.evaluated++;
    return result;
}

Status run_two_steps(Calls& calls, Status first, Status second) {
    CHOREO_RETURN_IF_ERROR(step(calls, std::move(first)));
    CHOREO_RETURN_IF_ERROR(step(calls, std::move(second)));
    calls.reached_end++;
    return Status{};
}

TEST(ReturnIfErrorTest, ContinuesWhenOk) {
    Calls calls;
    EXPECT_TRUE(run_two_steps(calls, Status{}, Status{}).ok());
    EXPECT_EQ(calls.evaluated, 2);
    EXPECT_EQ(calls.reached_end, 1);
}

TEST(ReturnIfErrorTest, ReturnsTheFirstError) {
    Calls calls;
    const Status status = run_two_steps(calls, transient_error("busy"), aborted_error("conflict"));
    EXPECT_EQ(status, transient_error("busy"));
    EXPECT_EQ(calls.evaluated, 1);  // the second step never ran, and the first ran only once
    EXPECT_EQ(calls.reached_end, 0);
}

TEST(ReturnIfErrorTest, ReturnsALaterError) {
    Calls calls;
    const Status status = run_two_steps(calls, Status{}, not_found_error("no_row", "m"));
    EXPECT_EQ(status, not_found_error("no_row"));
    EXPECT_EQ(status.message(), "m");
    EXPECT_EQ(calls.evaluated, 2);
    EXPECT_EQ(calls.reached_end, 0);
}

Result<int> parse_positive(Calls& calls, int value) {
    CHOREO_RETURN_IF_ERROR(step(calls, value > 0 ? Status{} : invalid_argument_error("negative")));
    return value;
}

TEST(ReturnIfErrorTest, WorksInFunctionsReturningResult) {
    Calls calls;
    const Result<int> good = parse_positive(calls, 5);
    const Result<int> bad = parse_positive(calls, -5);
    ASSERT_TRUE(good.ok());
    EXPECT_EQ(*good, 5);
    ASSERT_FALSE(bad.ok());
    EXPECT_EQ(bad.status().reason(), "negative");
    EXPECT_EQ(calls.evaluated, 2);
}

// --- Death tests: assertions stay on and say where they failed ----------------------------------

std::string escaped(const std::string& text) {  // for a POSIX extended regex
    std::string out;
    for (char c : text) {
        if (std::string_view("\\.^$|()[]{}*+?").find(c) != std::string_view::npos) out += '\\';
        out += c;
    }
    return out;
}

std::string assert_pattern(const std::string& expression, int line) {
    return escaped("choreo: assertion failed: " + expression + " (") +
           ".*status_test\\.cpp:" + std::to_string(line) + "\\)";
}

int answer = 42;
constexpr int failing_assert_line = __LINE__ + 1;
void fail_an_assert() { CHOREO_ASSERT(answer == 43); }

constexpr int unreachable_line = __LINE__ + 1;
void reach_the_unreachable() { CHOREO_UNREACHABLE(); }

void make_result_from_ok_status() {
    const Result<int> result{Status{}};
    (void)result;
}

class AssertDeathTest : public ::testing::Test {
protected:
    void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

TEST_F(AssertDeathTest, FalseAssertAbortsWithFileLineAndExpression) {
    EXPECT_DEATH(fail_an_assert(), assert_pattern("answer == 43", failing_assert_line));
}

TEST_F(AssertDeathTest, LiteralFalseAborts) {
    EXPECT_DEATH(CHOREO_ASSERT(false),
                 "choreo: assertion failed: false \\(.*status_test\\.cpp:[0-9]+\\)");
}

TEST_F(AssertDeathTest, AbortsBySignal) {
    EXPECT_EXIT(fail_an_assert(), ::testing::KilledBySignal(SIGABRT), "assertion failed");
}

TEST_F(AssertDeathTest, TrueAssertDoesNothing) {
    int evaluated = 0;
    CHOREO_ASSERT(++evaluated == 1);
    EXPECT_EQ(evaluated, 1);  // the expression is evaluated exactly once
}

TEST_F(AssertDeathTest, UnreachableAborts) {
    EXPECT_DEATH(reach_the_unreachable(), assert_pattern("unreachable", unreachable_line));
}

TEST_F(AssertDeathTest, ResultValueOnErrorAborts) {
    const Result<int> result = invalid_argument_error("wrong_type");
    EXPECT_DEATH((void)result.value(), "assertion failed: ok\\(\\)");
}

TEST_F(AssertDeathTest, ResultDereferenceOnErrorAborts) {
    Result<std::string> result = transient_error("busy");
    EXPECT_DEATH((void)result->size(), "assertion failed: ok\\(\\)");
}

TEST_F(AssertDeathTest, ResultFromOkStatusAborts) {
    // A Result holds a value or a failure, never an ok Status without a value.
    EXPECT_DEATH(make_result_from_ok_status(), "assertion failed: !std::get<1>");
}

TEST_F(AssertDeathTest, FailedStatusNeedsAReason) {
    EXPECT_DEATH((void)Status(StatusCode::aborted, ""), "assertion failed: !reason_\\.empty\\(\\)");
}

TEST_F(AssertDeathTest, OkStatusTakesNoReason) {
    EXPECT_DEATH((void)Status(StatusCode::ok, "why"), "assertion failed: reason_\\.empty\\(\\)");
}

}  // namespace
}  // namespace choreo
