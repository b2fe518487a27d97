#include <common/result.hpp>

namespace common {

int exit_code(ErrorKind kind) {
    switch (kind) {
    case ErrorKind::failed:
        return 1;
    case ErrorKind::usage:
    case ErrorKind::config:
    case ErrorKind::bad_request:
    case ErrorKind::not_found:
        return 2;
    case ErrorKind::connection:
    case ErrorKind::auth:
        return 3;
    case ErrorKind::timeout:
        return 4;
    case ErrorKind::refused:
        return 5;
    case ErrorKind::disk_full:
        return 6;
    case ErrorKind::io:
    case ErrorKind::internal:
        return 1;
    }
    return 1;
}

const char* error_code(ErrorKind kind) {
    switch (kind) {
    case ErrorKind::usage:
        return "usage";
    case ErrorKind::config:
        return "config";
    case ErrorKind::connection:
        return "connection";
    case ErrorKind::auth:
        return "auth";
    case ErrorKind::timeout:
        return "timeout";
    case ErrorKind::refused:
        return "refused";
    case ErrorKind::failed:
        return "failed";
    case ErrorKind::not_found:
        return "not_found";
    case ErrorKind::bad_request:
        return "bad_request";
    case ErrorKind::io:
        return "io";
    case ErrorKind::disk_full:
        return "disk_full";
    case ErrorKind::internal:
        return "internal";
    }
    return "internal";
}

} // namespace common
