#include <cli/transport/ssh_session.hpp>

#include <doctest/doctest.h>
#include <libssh2.h>

#include <string>

TEST_CASE("ssh_failure: a socket error says the server went away, whatever libssh2's last text") {
    REQUIRE(libssh2_init(0) == 0);
    LIBSSH2_SESSION* session = libssh2_session_init();
    REQUIRE(session != nullptr);
    for (int rc : {LIBSSH2_ERROR_SOCKET_SEND, LIBSSH2_ERROR_SOCKET_RECV,
                   LIBSSH2_ERROR_SOCKET_DISCONNECT, LIBSSH2_ERROR_SOCKET_TIMEOUT})
        CHECK(cli::transport::ssh_failure(session, rc) == cli::transport::k_ssh_server_gone);
    // Not the session's last error: the code, not a stale text ("would block").
    CHECK(cli::transport::ssh_failure(session, LIBSSH2_ERROR_KEX_FAILURE) == "libssh2 error -5");
    // The session's last error: its text.
    CHECK(libssh2_session_methods(session, 99) == nullptr); // sets LIBSSH2_ERROR_INVAL
    CHECK(cli::transport::ssh_failure(session, LIBSSH2_ERROR_INVAL) ==
          cli::transport::ssh_error_message(session));
    CHECK(cli::transport::ssh_failure(session, LIBSSH2_ERROR_INVAL) != "libssh2 error -34");
    libssh2_session_free(session);
}
