#include <common/run_frames.hpp>

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace common::run;

TEST_CASE("run frames: encoded frames decode back, whatever pieces they arrive in") {
    const std::string wire = encode_frame(Frame::stdout_data, "hello") + encode_resize(132, 43) +
                             encode_frame(Frame::stdin_eof) +
                             encode_frame(Frame::exit, R"({"status":7})");
    FrameReader reader;
    std::vector<Decoded> frames;
    for (char c : wire) { // a byte at a time
        reader.feed(std::string_view(&c, 1));
        while (auto frame = reader.next())
            frames.push_back(*frame);
    }
    REQUIRE(frames.size() == 4);
    CHECK(frames[0].type == Frame::stdout_data);
    CHECK(frames[0].payload == "hello");
    CHECK(frames[1].type == Frame::resize);
    auto size = decode_resize(frames[1].payload);
    REQUIRE(size);
    CHECK(size->cols == 132);
    CHECK(size->rows == 43);
    CHECK(frames[2].type == Frame::stdin_eof);
    CHECK(frames[2].payload.empty());
    CHECK(frames[3].payload == R"({"status":7})");
    CHECK(reader.buffered() == 0);
    CHECK(reader.error().empty());
}

TEST_CASE("run frames: an unknown type or an oversized length is an error, not a frame") {
    FrameReader unknown;
    unknown.feed(std::string("\x7f\0\0\0\0", 5));
    CHECK_FALSE(unknown.next());
    CHECK(unknown.error().find("unknown frame type 0x7f") != std::string::npos);

    FrameReader huge;
    huge.feed(std::string("\x11\x00\x20\x00\x01", 5)); // 2 MiB + 1
    CHECK_FALSE(huge.next());
    CHECK(huge.error().find("at most") != std::string::npos);

    CHECK_FALSE(decode_resize("abc"));
}

TEST_CASE("run frames: a large stream of frames keeps its order and drops what it has read") {
    FrameReader reader;
    std::string expected;
    std::string got;
    for (int i = 0; i < 2000; ++i) {
        std::string payload(100, static_cast<char>('a' + i % 26));
        expected += payload;
        reader.feed(encode_frame(Frame::stdin_data, payload));
        while (auto frame = reader.next())
            got += frame->payload;
    }
    CHECK(got == expected);
    CHECK(reader.buffered() == 0);
}
