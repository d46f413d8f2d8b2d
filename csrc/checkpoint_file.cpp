// Checkpoint files on disk: an atomic write (temporary file, fsync, rename, fsync of the
// directory) and a read of regular files only, which never blocks.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

#include "medscore/checkpoint.hpp"

namespace medscore {
namespace {

[[noreturn]] void file_error(const std::string& what, const std::string& path, int error_number) {
    throw FileError(what, path, error_number);
}

void write_all(int fd, const std::vector<uint8_t>& bytes, const std::string& path) {
    size_t done = 0;
    while (done < bytes.size()) {
        const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) file_error("cannot write", path, errno);
        done += static_cast<size_t>(n);
    }
}

/// Writes `bytes` to a new temporary file next to `path` and fsyncs it; returns its name.
/// On failure the temporary file is removed.
std::string write_temporary(const std::string& dir, const std::string& name, const std::vector<uint8_t>& bytes) {
    std::string tmp = dir + "/." + name + ".XXXXXX";
    const int fd = ::mkstemp(&tmp[0]);
    if (fd < 0) file_error("cannot create a temporary file in", dir, errno);
    try {
        write_all(fd, bytes, tmp);
        if (::fsync(fd) != 0) file_error("cannot fsync", tmp, errno);
    } catch (...) {
        ::close(fd);
        ::unlink(tmp.c_str());
        throw;
    }
    if (::close(fd) != 0) {
        const int saved = errno;
        ::unlink(tmp.c_str());
        file_error("cannot close", tmp, saved);
    }
    return tmp;
}

/// Makes the rename in `dir` durable.
void sync_directory(const std::string& dir) {
    const int fd = ::open(dir.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) file_error("cannot open the directory", dir, errno);
    const int synced = ::fsync(fd);
    const int saved = errno;
    ::close(fd);
    if (synced != 0) file_error("cannot fsync the directory", dir, saved);
}

}  // namespace

void write_checkpoint(const std::string& path, const CheckpointState& state) {
    const std::vector<uint8_t> bytes = serialize_checkpoint(state);  // before touching the disk
    const size_t slash = path.find_last_of('/');
    const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
    const std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
    const std::string tmp = write_temporary(dir, name, bytes);
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        const int saved = errno;
        ::unlink(tmp.c_str());
        file_error("cannot rename the checkpoint onto", path, saved);
    }
    sync_directory(dir);
}

std::vector<uint8_t> read_checkpoint_bytes(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) file_error("cannot open", path, errno);
    struct stat info {};
    if (::fstat(fd, &info) != 0) {
        const int saved = errno;
        ::close(fd);
        file_error("cannot stat", path, saved);
    }
    if (!S_ISREG(info.st_mode)) {
        ::close(fd);
        throw CheckpointError("'" + path + "' is not a regular file (a checkpoint is read only from one)");
    }
    std::vector<uint8_t> bytes(static_cast<size_t>(info.st_size));
    for (size_t done = 0; done < bytes.size();) {
        const ssize_t n = ::read(fd, bytes.data() + done, bytes.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            const int saved = n < 0 ? errno : EIO;
            ::close(fd);
            file_error(n < 0 ? "cannot read" : "the file shrank while it was read:", path, saved);
        }
        done += static_cast<size_t>(n);
    }
    ::close(fd);
    return bytes;
}

CheckpointState read_checkpoint(const std::string& path) {
    const std::vector<uint8_t> bytes = read_checkpoint_bytes(path);
    return deserialize_checkpoint(bytes.data(), bytes.size(), path);
}

}  // namespace medscore
