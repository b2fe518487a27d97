// The ClientHello parser of on-demand TLS (agent/proxy/client_hello.cpp): real
// ClientHellos made by OpenSSL in memory, hand-made ones with several
// extensions, and hostile bytes (truncations, lengths that lie, mutations).
#include <agent/proxy/client_hello.hpp>

#include <doctest/doctest.h>
#include <openssl/bio.h>
#include <openssl/ssl.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

using agent::proxy::ClientHello;
using agent::proxy::parse_client_hello;
using Status = ClientHello::Status;

namespace {

// The first flight of an OpenSSL client: its ClientHello record(s), as sent.
// `alpn` in wire format ("\x0a" "acme-tls/1"), empty for no ALPN.
std::string openssl_hello(const char* sni, std::string_view alpn = {},
                          int max_version = TLS1_3_VERSION) {
    SSL_CTX* context = SSL_CTX_new(TLS_client_method());
    REQUIRE(context != nullptr);
    SSL_CTX_set_max_proto_version(context, max_version);
    SSL* ssl = SSL_new(context);
    REQUIRE(ssl != nullptr);
    if (sni != nullptr)
        REQUIRE(SSL_set_tlsext_host_name(ssl, sni) == 1);
    if (!alpn.empty())
        REQUIRE(SSL_set_alpn_protos(ssl, reinterpret_cast<const unsigned char*>(alpn.data()),
                                    static_cast<unsigned>(alpn.size())) == 0);
    BIO* in = BIO_new(BIO_s_mem());
    BIO* out = BIO_new(BIO_s_mem());
    SSL_set_bio(ssl, in, out);
    SSL_set_connect_state(ssl);
    const int rc = SSL_do_handshake(ssl);
    REQUIRE(rc != 1);
    REQUIRE(SSL_get_error(ssl, rc) == SSL_ERROR_WANT_READ);
    char* data = nullptr;
    const long size = BIO_get_mem_data(out, &data);
    std::string bytes(data, static_cast<std::size_t>(size));
    SSL_free(ssl);
    SSL_CTX_free(context);
    REQUIRE(bytes.size() > 5);
    return bytes;
}

// Big-endian length prefixes and the pieces of a hand-made ClientHello.
std::string u8(std::size_t n) {
    return std::string(1, static_cast<char>(n & 0xff));
}
std::string u16(std::size_t n) {
    return u8(n >> 8) + u8(n);
}
std::string u24(std::size_t n) {
    return u8(n >> 16) + u16(n & 0xffff);
}
std::string extension(unsigned type, const std::string& data) {
    return u16(type) + u16(data.size()) + data;
}
// server_name with these (type, name) entries.
std::string sni_extension(std::initializer_list<std::pair<unsigned, std::string>> names) {
    std::string list;
    for (const auto& [type, name] : names)
        list += u8(type) + u16(name.size()) + name;
    return extension(0, u16(list.size()) + list);
}
std::string alpn_extension(std::initializer_list<std::string> protocols) {
    std::string list;
    for (const auto& protocol : protocols)
        list += u8(protocol.size()) + protocol;
    return extension(16, u16(list.size()) + list);
}
// A ClientHello record around `extensions` (all of them, concatenated).
std::string hello_record(const std::string& extensions, bool with_extensions = true) {
    std::string body = "\x03\x03" + std::string(32, 'r') + u8(0) + u16(2) + "\x13\x01" + u8(1) +
                       std::string(1, '\0');
    if (with_extensions)
        body += u16(extensions.size()) + extensions;
    const std::string handshake = "\x01" + u24(body.size()) + body;
    return "\x16\x03\x01" + u16(handshake.size()) + handshake;
}

std::string wire(std::initializer_list<std::string_view> protocols) {
    std::string out;
    for (auto protocol : protocols)
        out += u8(protocol.size()) + std::string(protocol);
    return out;
}

// What every result must be, whatever the bytes.
void check_invariants(const ClientHello& hello) {
    if (hello.status == Status::named) {
        CHECK(agent::proxy::valid_sni_host(hello.name));
    } else {
        CHECK(hello.name.empty());
    }
    if (hello.status == Status::incomplete)
        CHECK_FALSE(hello.acme_tls);
}

} // namespace

TEST_CASE("client_hello: OpenSSL's ClientHello gives the name it asks for, lower-case") {
    for (int version : {TLS1_2_VERSION, TLS1_3_VERSION}) {
        CAPTURE(version);
        const auto bytes = openssl_hello("WWW.Example.TEST", wire({"h2", "http/1.1"}), version);
        const auto hello = parse_client_hello(bytes);
        CHECK(hello.status == Status::named);
        CHECK(hello.name == "www.example.test");
        CHECK_FALSE(hello.acme_tls);
    }
}

TEST_CASE("client_hello: ALPN acme-tls/1 is noticed, among others or alone") {
    auto hello = parse_client_hello(openssl_hello("a.example.test", wire({"acme-tls/1"})));
    CHECK(hello.status == Status::named);
    CHECK(hello.name == "a.example.test");
    CHECK(hello.acme_tls);
    hello = parse_client_hello(openssl_hello("a.example.test", wire({"http/1.1", "acme-tls/1"})));
    CHECK(hello.acme_tls);
    // A protocol that only starts like it is another one.
    hello = parse_client_hello(openssl_hello("a.example.test", wire({"acme-tls/12", "acme-tls"})));
    CHECK_FALSE(hello.acme_tls);
    hello = parse_client_hello(openssl_hello("a.example.test"));
    CHECK_FALSE(hello.acme_tls);
}

TEST_CASE("client_hello: no SNI, or a name that is not a host, is no name") {
    auto hello = parse_client_hello(openssl_hello(nullptr, wire({"acme-tls/1"})));
    CHECK(hello.status == Status::no_name);
    CHECK(hello.name.empty());
    CHECK(hello.acme_tls); // still said: the challenge needs a name, and fails without
    for (const char* name :
         {"localhost", "127.0.0.1", "a..example.test", "-a.example.test", "a-.example.test",
          "a_b.example.test", "*.example.test", "example.test.",
          // special-use names: the agent never asks a certificate for them
          "hello.localhost", "printer.local", "db.internal", "x.invalid"}) {
        CAPTURE(name);
        hello = parse_client_hello(openssl_hello(name));
        CHECK(hello.status == Status::no_name);
        CHECK(hello.name.empty());
    }
    CHECK(parse_client_hello(openssl_hello("xn--bcher-kva.example")).name ==
          "xn--bcher-kva.example");
    CHECK(parse_client_hello(openssl_hello("10.0.0.example")).name == "10.0.0.example");
    CHECK(parse_client_hello(openssl_hello("localhost.example")).name == "localhost.example");
}

TEST_CASE("client_hello: a record not all there yet is incomplete, never a wrong answer") {
    const auto bytes = openssl_hello("www.example.test", wire({"http/1.1"}));
    const std::size_t record =
        5 + ((static_cast<unsigned char>(bytes[3]) << 8) | static_cast<unsigned char>(bytes[4]));
    REQUIRE(record <= bytes.size());
    for (std::size_t size = 0; size < record; ++size) {
        CAPTURE(size);
        const auto hello = parse_client_hello(std::string_view(bytes).substr(0, size));
        CHECK(hello.status == Status::incomplete);
        CHECK(hello.name.empty());
    }
    CHECK(parse_client_hello(std::string_view(bytes).substr(0, record)).name == "www.example.test");
    // What follows the first record is not looked at.
    CHECK(parse_client_hello(bytes.substr(0, record) + "\x17\x03\x03garbage").name ==
          "www.example.test");
}

TEST_CASE("client_hello: several extensions, the server_name entries and ALPN found among them") {
    const std::string others =
        extension(10, u16(4) + std::string("\x00\x1d\x00\x17", 4)) + // supported_groups
        extension(0xff01, u8(0)) +                                   // renegotiation_info
        extension(0x1234, std::string(300, 'x'));                    // unknown
    SUBCASE("SNI last, after ALPN") {
        const auto hello =
            parse_client_hello(hello_record(others + alpn_extension({"h2", "acme-tls/1"}) +
                                            sni_extension({{0, "App.Example.Test"}})));
        CHECK(hello.status == Status::named);
        CHECK(hello.name == "app.example.test");
        CHECK(hello.acme_tls);
    }
    SUBCASE("an entry of another name type is passed over") {
        const auto hello =
            parse_client_hello(hello_record(sni_extension({{7, "other"}, {0, "b.example.test"}})));
        CHECK(hello.name == "b.example.test");
    }
    SUBCASE("the first server_name extension counts") {
        const auto hello =
            parse_client_hello(hello_record(sni_extension({{0, "first.example.test"}}) +
                                            sni_extension({{0, "second.example.test"}})));
        CHECK(hello.name == "first.example.test");
    }
    SUBCASE("an empty name, an empty list") {
        CHECK(parse_client_hello(hello_record(sni_extension({{0, ""}}))).status == Status::no_name);
        CHECK(parse_client_hello(hello_record(sni_extension({}))).status == Status::no_name);
    }
    SUBCASE("a ClientHello without any extension") {
        CHECK(parse_client_hello(hello_record("", false)).status == Status::no_name);
        CHECK(parse_client_hello(hello_record("")).status == Status::no_name);
    }
    SUBCASE("a NUL in the name") {
        const auto hello = parse_client_hello(
            hello_record(sni_extension({{0, std::string("a.example\0.test", 15)}})));
        CHECK(hello.status == Status::no_name);
    }
}

TEST_CASE("client_hello: lengths that lie give no name and read nothing out of bounds") {
    const std::string sni = sni_extension({{0, "www.example.test"}});
    const std::string good = hello_record(sni);
    REQUIRE(parse_client_hello(good).name == "www.example.test");

    SUBCASE("not a TLS handshake record") {
        CHECK(parse_client_hello("GET / HTTP/1.1\r\nHost: x\r\n\r\n").status == Status::no_name);
        CHECK(parse_client_hello(std::string("\x80\x2e\x01\x00\x02", 5)).status ==
              Status::no_name); // SSLv2
        CHECK(parse_client_hello(std::string("\x17\x03\x03\x00\x01x", 6)).status ==
              Status::no_name); // application data
        CHECK(parse_client_hello(std::string("\x16\x02\x00\x00\x01x", 6)).status ==
              Status::no_name); // version 2
    }
    SUBCASE("a record length of 0 or over 2^14") {
        CHECK(parse_client_hello(std::string("\x16\x03\x01\x00\x00", 5)).status == Status::no_name);
        CHECK(parse_client_hello(std::string("\x16\x03\x01\x40\x01", 5) + std::string(20000, 'x'))
                  .status == Status::no_name);
        CHECK(parse_client_hello(std::string("\x16\x03\x01\xff\xff", 5)).status == Status::no_name);
    }
    SUBCASE("exactly 2^14 bytes is still waited for") {
        CHECK(parse_client_hello(std::string("\x16\x03\x01\x40\x00", 5) + std::string(100, 'x'))
                  .status == Status::incomplete);
    }
    SUBCASE("a handshake message longer than its record (fragmented): no name") {
        std::string bytes = good;
        bytes[6] = '\x7f'; // the handshake length's high byte
        CHECK(parse_client_hello(bytes).status == Status::no_name);
    }
    SUBCASE("not a ClientHello") {
        std::string bytes = good;
        bytes[5] = '\x02'; // ServerHello
        CHECK(parse_client_hello(bytes).status == Status::no_name);
    }
    SUBCASE("an extension list running past the hello") {
        std::string bytes = good;
        const auto at = bytes.size() - sni.size() - 2; // the extensions' length
        bytes[at] = '\x7f';
        CHECK(parse_client_hello(bytes).status == Status::no_name);
    }
    SUBCASE("an extension whose length runs past the list: nothing of it trusted") {
        const std::string alpn = alpn_extension({"acme-tls/1"});
        std::string bytes = hello_record(sni + alpn + u16(16) + u16(200) + "ab");
        const auto hello = parse_client_hello(bytes);
        CHECK(hello.status == Status::no_name);
        CHECK_FALSE(hello.acme_tls);
    }
    SUBCASE("a server_name list length that does not match its extension") {
        const std::string name = "www.example.test";
        const std::string list = u8(0) + u16(name.size()) + name;
        CHECK(parse_client_hello(hello_record(extension(0, u16(list.size() + 1) + list))).status ==
              Status::no_name);
        CHECK(parse_client_hello(hello_record(extension(0, u16(list.size() - 1) + list))).status ==
              Status::no_name);
        CHECK(
            parse_client_hello(hello_record(extension(0, u16(list.size()) + list + "x"))).status ==
            Status::no_name);
        // A name longer than its list.
        const std::string lying = u8(0) + u16(200) + name;
        CHECK(parse_client_hello(hello_record(extension(0, u16(lying.size()) + lying))).status ==
              Status::no_name);
    }
    SUBCASE("an ALPN protocol longer than its list") {
        const std::string list = u8(40) + "acme-tls/1";
        const auto hello =
            parse_client_hello(hello_record(sni + extension(16, u16(list.size()) + list)));
        CHECK(hello.name == "www.example.test");
        CHECK_FALSE(hello.acme_tls);
    }
    SUBCASE("a name of 254 bytes, a label of 64") {
        std::string long_name;
        while (long_name.size() < 250)
            long_name += "abcdefghi.";
        long_name += "test"; // 254
        CHECK(parse_client_hello(hello_record(sni_extension({{0, long_name}}))).status ==
              Status::no_name);
        CHECK(parse_client_hello(hello_record(sni_extension({{0, std::string(64, 'a') + ".test"}})))
                  .status == Status::no_name);
        CHECK(parse_client_hello(hello_record(sni_extension({{0, std::string(63, 'a') + ".test"}})))
                  .status == Status::named);
    }
}

TEST_CASE("client_hello: every byte of a real ClientHello changed, cut or repeated: no crash") {
    const auto bytes = openssl_hello("www.example.test", wire({"acme-tls/1", "http/1.1"}));
    for (std::size_t at = 0; at < bytes.size(); ++at) {
        for (unsigned value : {0x00u, 0x01u, 0x7fu, 0x80u, 0xffu}) {
            std::string changed = bytes;
            changed[at] = static_cast<char>(value);
            check_invariants(parse_client_hello(changed));
        }
        check_invariants(parse_client_hello(bytes.substr(0, at)));
        check_invariants(parse_client_hello(bytes.substr(at)));
    }
}

TEST_CASE("client_hello: server_name_of and alpn_offers on extension bodies") {
    using agent::proxy::alpn_offers;
    using agent::proxy::server_name_of;
    const std::string name = "Shop.Example.Test";
    const std::string body = u16(3 + name.size()) + u8(0) + u16(name.size()) + name;
    CHECK(server_name_of(body) == "shop.example.test");
    CHECK(server_name_of("") == "");
    CHECK(server_name_of(body.substr(0, body.size() - 1)) == "");
    CHECK(server_name_of(u16(0)) == "");

    const std::string offers = u16(14) + wire({"h2", "acme-tls/1"});
    CHECK(alpn_offers(offers, "acme-tls/1"));
    CHECK(alpn_offers(offers, "h2"));
    CHECK_FALSE(alpn_offers(offers, "http/1.1"));
    CHECK_FALSE(alpn_offers(offers.substr(0, offers.size() - 1), "acme-tls/1"));
    CHECK_FALSE(alpn_offers("", "acme-tls/1"));
}
