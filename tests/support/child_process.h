// child_process.h — a real child process for crash tests: spawned with posix_spawn, its stdout
// and stderr in files, killed with SIGKILL or asked to stop with SIGTERM, reaped exactly once.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "choreo/assert.h"

extern char** environ;

namespace choreo::testing_support {

inline double ms_since(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

inline std::string read_text(const std::string& path) {
    std::ifstream in{path};
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

class ChildProcess {
public:
    ChildProcess(const std::string& program, std::vector<std::string> args, std::string log_prefix)
        : out_path_(log_prefix + ".out"), err_path_(log_prefix + ".err") {
        args.insert(args.begin(), program);
        std::vector<char*> argv;
        for (std::string& arg : args) argv.push_back(arg.data());
        argv.push_back(nullptr);
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_addopen(&actions, 1, out_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        posix_spawn_file_actions_addopen(&actions, 2, err_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        const int spawned = posix_spawn(&pid_, program.c_str(), &actions, nullptr, argv.data(), environ);
        posix_spawn_file_actions_destroy(&actions);
        CHOREO_ASSERT(spawned == 0);
        started_ = std::chrono::steady_clock::now();
    }
    ~ChildProcess() {
        if (!reaped_) {  // a failed assertion left it running
            ::kill(pid_, SIGKILL);
            int status = 0;
            ::waitpid(pid_, &status, 0);
        }
    }
    ChildProcess(const ChildProcess&) = delete;
    ChildProcess& operator=(const ChildProcess&) = delete;

    // True once the process ended on its own (reaping it).
    bool exited() {
        if (reaped_) return true;
        const pid_t done = ::waitpid(pid_, &status_, WNOHANG);
        CHOREO_ASSERT(done == 0 || done == pid_);
        if (done == pid_) reaped_ = true;
        return reaped_;
    }
    // Waits up to timeout_ms (from its start) for the process to end; false on timeout.
    bool wait(double timeout_ms) {
        while (!exited()) {
            if (ms_since(started_) > timeout_ms) return false;
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
        }
        return true;
    }
    // SIGKILL; true when the signal ended the process (it had not exited before).
    bool kill() {
        if (exited()) return false;
        CHOREO_ASSERT(::kill(pid_, SIGKILL) == 0);
        CHOREO_ASSERT(::waitpid(pid_, &status_, 0) == pid_);
        reaped_ = true;
        return WIFSIGNALED(status_) && WTERMSIG(status_) == SIGKILL;
    }
    // Asks it to stop (SIGTERM); wait() for the end.
    void terminate() {
        if (!exited()) ::kill(pid_, SIGTERM);
    }
    int exit_code() const { return reaped_ && WIFEXITED(status_) ? WEXITSTATUS(status_) : -1; }
    std::string describe() const {
        std::string text = reaped_ ? (WIFEXITED(status_) ? "exit " + std::to_string(WEXITSTATUS(status_))
                                                         : "signal " + std::to_string(WTERMSIG(status_)))
                                   : std::string("running");
        return text + "\n--- stdout:\n" + out() + "--- stderr:\n" + err();
    }
    std::string out() const { return read_text(out_path_); }
    std::string err() const { return read_text(err_path_); }
    double age_ms() const { return ms_since(started_); }

private:
    std::string out_path_;
    std::string err_path_;
    pid_t pid_ = -1;
    int status_ = 0;
    bool reaped_ = false;
    std::chrono::steady_clock::time_point started_;
};

}  // namespace choreo::testing_support
