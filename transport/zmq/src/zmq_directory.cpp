// The ZeroMQ directory (service/instance → endpoint) and CURVE key files.
#include <sys/stat.h>
#include <zmq.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <sstream>

#include "choreo/assert.h"
#include "choreo/transport/zmq_transport.h"

namespace choreo::zmq_transport {

namespace {

constexpr std::size_t z85_key_chars = 40;
constexpr std::size_t directory_lines_max = 100'000;
constexpr std::size_t key_file_bytes_max = 64 * 1024;

std::string_view trim(std::string_view text) {
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) text.remove_prefix(1);
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.remove_suffix(1);
    return text;
}

// A comment starts with '#' at the start of a line or after white space: Z85 keys contain '#'.
std::string_view strip_comment(std::string_view line) {
    for (std::size_t index = 0; index < line.size(); index++) {
        const bool starts_word = index == 0 || std::isspace(static_cast<unsigned char>(line[index - 1]));
        if (line[index] == '#' && starts_word) return trim(line.substr(0, index));
    }
    return trim(line);
}

std::vector<std::string_view> split_words(std::string_view line) {
    std::vector<std::string_view> words;
    while (!(line = trim(line)).empty()) {
        std::size_t end = 0;
        while (end < line.size() && !std::isspace(static_cast<unsigned char>(line[end]))) end++;
        words.push_back(line.substr(0, end));
        line.remove_prefix(end);
    }
    return words;
}

bool valid_z85_key(std::string_view key) {
    if (key.size() != z85_key_chars) return false;
    std::uint8_t decoded[32];
    const std::string text(key);
    return zmq_z85_decode(decoded, text.c_str()) != nullptr;
}

Result<std::string> read_small_file(const std::string& path) {
    std::ifstream in{path, std::ios::binary};
    if (!in) return invalid_argument_error("key_file_unreadable", "cannot read " + path);
    std::string text(key_file_bytes_max + 1, '\0');
    in.read(text.data(), static_cast<std::streamsize>(text.size()));
    text.resize(static_cast<std::size_t>(in.gcount()));
    if (text.size() > key_file_bytes_max) return invalid_argument_error("key_file_unreadable", path + " is too large");
    return text;
}

Result<std::vector<std::string>> keys_in(const std::string& path, std::size_t keys_max) {
    Result<std::string> text = read_small_file(path);
    if (!text.ok()) return text.status();
    std::vector<std::string> keys;
    std::istringstream lines{*text};
    std::string line;
    for (std::size_t number = 1; std::getline(lines, line); number++) {
        const std::string_view key = strip_comment(line);
        if (key.empty()) continue;
        if (!valid_z85_key(key)) {
            return invalid_argument_error("invalid_key", path + ":" + std::to_string(number) +
                                                             ": not a 40-character Z85 CURVE key");
        }
        if (keys.size() == keys_max) break;
        keys.emplace_back(key);
    }
    return keys;
}

Status parse_line(Directory& directory, std::string_view line, std::size_t number) {
    const std::vector<std::string_view> words = split_words(line);
    const std::string where = "line " + std::to_string(number) + ": ";
    Result<Address> address = Address::parse(words[0]);
    if (!address.ok()) return invalid_argument_error("invalid_directory", where + "bad address '" + std::string(words[0]) + "'");
    if (!address->is_unicast()) {
        if (words.size() != 2 || words[1] != "shared_store") {
            return invalid_argument_error("invalid_directory", where + "a service line takes only 'shared_store'");
        }
        directory.set_shared_store(address->service());
        return Status{};
    }
    if (words.size() < 2 || words.size() > 3) {
        return invalid_argument_error("invalid_directory", where + "want '<service/instance> <endpoint> [key=...|key-file=...]'");
    }
    Directory::Entry entry{std::string(words[1]), {}};
    if (words.size() == 3) {
        const std::string_view option = words[2];
        if (option.starts_with("key=")) {
            entry.public_key = std::string(option.substr(4));
        } else if (option.starts_with("key-file=")) {
            Result<std::string> key = load_key(std::string(option.substr(9)));
            if (!key.ok()) return key.status();
            entry.public_key = *key;
        } else {
            return invalid_argument_error("invalid_directory", where + "unknown option '" + std::string(option) + "'");
        }
        if (!valid_z85_key(entry.public_key)) return invalid_argument_error("invalid_directory", where + "invalid key");
    }
    return directory.add(*address, std::move(entry));
}

}  // namespace

// ---- keys ------------------------------------------------------------------------------------

Result<CurveKeyPair> generate_keypair() {
    char public_key[z85_key_chars + 1] = {};
    char secret_key[z85_key_chars + 1] = {};
    if (zmq_curve_keypair(public_key, secret_key) != 0) {
        return precondition_error("curve_unavailable", "libzmq was built without CURVE");
    }
    return CurveKeyPair{public_key, secret_key};
}

Result<std::string> load_key(const std::string& path) {
    Result<std::vector<std::string>> keys = keys_in(path, 1);
    if (!keys.ok()) return keys.status();
    if (keys->empty()) return invalid_argument_error("invalid_key", path + " holds no key");
    return keys->front();
}

Result<CurveKeyPair> load_keypair(const std::string& base) {
    Result<std::string> public_key = load_key(base + ".pub");
    if (!public_key.ok()) return public_key.status();
    Result<std::string> secret_key = load_key(base + ".key");
    if (!secret_key.ok()) return secret_key.status();
    char derived[z85_key_chars + 1] = {};
    if (zmq_curve_public(derived, secret_key->c_str()) != 0 || *public_key != derived) {
        return invalid_argument_error("invalid_key", base + ".pub does not belong to " + base + ".key");
    }
    return CurveKeyPair{*public_key, *secret_key};
}

Status write_keypair(const CurveKeyPair& pair, const std::string& base) {
    const std::string secret_path = base + ".key";
    {
        std::ofstream secret{secret_path, std::ios::trunc};
        if (!secret) return precondition_error("key_file_unwritable", "cannot write " + secret_path);
        ::chmod(secret_path.c_str(), 0600);
        secret << "# choreo CURVE secret key: keep it private\n" << pair.secret_key << "\n";
        if (!secret.flush()) return precondition_error("key_file_unwritable", "cannot write " + secret_path);
    }
    std::ofstream pub{base + ".pub", std::ios::trunc};
    pub << "# choreo CURVE public key\n" << pair.public_key << "\n";
    if (!pub.flush()) return precondition_error("key_file_unwritable", "cannot write " + base + ".pub");
    return Status{};
}

Result<std::vector<std::string>> load_allow_list(const std::string& path) {
    constexpr std::size_t allowed_keys_max = 10'000;
    return keys_in(path, allowed_keys_max);
}

// ---- Directory -------------------------------------------------------------------------------

Result<std::shared_ptr<Directory>> Directory::parse(std::string_view text) {
    auto directory = std::make_shared<Directory>();
    std::size_t number = 0;
    while (!text.empty()) {
        const std::size_t end = std::min(text.find('\n'), text.size());
        const std::string_view line = strip_comment(text.substr(0, end));
        text.remove_prefix(std::min(end + 1, text.size()));
        if (++number > directory_lines_max) return invalid_argument_error("invalid_directory", "too many lines");
        if (line.empty()) continue;
        CHOREO_RETURN_IF_ERROR(parse_line(*directory, line, number));
    }
    return directory;
}

Result<std::shared_ptr<Directory>> Directory::load(const std::string& path) {
    std::ifstream in{path};
    if (!in) return invalid_argument_error("directory_unreadable", "cannot read " + path);
    std::stringstream text;
    text << in.rdbuf();
    return parse(text.str());
}

Status Directory::add(const Address& unicast, Entry entry) {
    if (!unicast.is_unicast()) return invalid_argument_error("invalid_directory", "not service/instance: " + unicast.to_string());
    if (entry.endpoint.empty()) return invalid_argument_error("invalid_directory", "empty endpoint for " + unicast.to_string());
    std::lock_guard lock{mutex_};
    std::vector<std::string>& instances = instances_[unicast.service()];
    if (std::find(instances.begin(), instances.end(), unicast.instance()) == instances.end()) {
        instances.push_back(unicast.instance());
    }
    entries_.insert_or_assign(unicast.to_string(), std::move(entry));
    return Status{};
}

void Directory::set_shared_store(std::string_view service, bool shared) {
    std::lock_guard lock{mutex_};
    if (shared) {
        shared_.emplace(service);
    } else if (auto found = shared_.find(service); found != shared_.end()) {
        shared_.erase(found);
    }
}

void Directory::set_resolver(Resolver resolver) {
    std::lock_guard lock{mutex_};
    resolver_ = std::move(resolver);
}

std::optional<Directory::Entry> Directory::find(const Address& unicast) {
    CHOREO_ASSERT(unicast.is_unicast());
    Resolver resolver;
    {
        std::lock_guard lock{mutex_};
        if (auto found = entries_.find(unicast.to_string()); found != entries_.end()) return found->second;
        resolver = resolver_;
    }
    if (!resolver) return std::nullopt;
    std::optional<Entry> resolved = resolver(unicast);  // outside the lock: it may be slow
    if (resolved) add(unicast, *resolved).ignore();
    return resolved;
}

std::vector<std::string> Directory::instances(std::string_view service) const {
    std::lock_guard lock{mutex_};
    auto found = instances_.find(service);
    return found == instances_.end() ? std::vector<std::string>{} : found->second;
}

bool Directory::shares_store(std::string_view service) const {
    std::lock_guard lock{mutex_};
    return shared_.contains(service);
}

}  // namespace choreo::zmq_transport
