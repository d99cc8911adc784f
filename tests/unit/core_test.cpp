// Core: frame codec, value model, durations, JSON limits.
#include <gtest/gtest.h>

#include "core/duration.hpp"
#include "core/frame.hpp"
#include "core/json.hpp"
#include "core/limits.hpp"
#include "sandflow/value.hpp"

using namespace sandflow;

TEST(Frame, RoundTripInPieces) {
    const std::string a = encode_frame(json::object{{"t", "x"}, {"n", 1}});
    const std::string b = encode_frame(json::object{{"t", "y"}, {"s", "é\n"}});
    const std::string all = a + b;
    FrameDecoder d;
    std::vector<json::object> got;
    for (char c : all) {  // one byte at a time: frames split anywhere
        d.feed(std::string_view(&c, 1));
        while (auto f = d.next()) {
            ASSERT_TRUE(*f);
            got.push_back(**f);
        }
    }
    ASSERT_EQ(got.size(), 2u);
    EXPECT_EQ(got[0].at("n").as_int64(), 1);
    EXPECT_EQ(got[1].at("s").as_string(), "é\n");
    EXPECT_EQ(d.buffered(), 0u);
}

TEST(Frame, OversizedLengthFailsBeforeAllocating) {
    FrameDecoder d(1024);
    d.feed(std::string("\x7f\xff\xff\xff", 4));
    auto f = d.next();
    ASSERT_TRUE(f.has_value());
    ASSERT_FALSE(*f);
    EXPECT_EQ(f->error().code, Errc::limit_exceeded);
    EXPECT_NE(f->error().message.find("frame size limit of 1024"), std::string::npos);
    EXPECT_EQ(d.buffered(), 4u);  // nothing was allocated for the claimed payload
}

TEST(Frame, MalformedPayloadsAreErrors) {
    for (std::string payload :
         {std::string("{nope"), std::string("[1,2]"), std::string("\xff\xfe")}) {
        FrameDecoder d;
        std::string frame(4, '\0');
        frame[3] = static_cast<char>(payload.size());
        d.feed(frame + payload);
        auto f = d.next();
        ASSERT_TRUE(f.has_value());
        EXPECT_FALSE(*f) << payload;
        // The decoder stays failed.
        auto again = d.next();
        ASSERT_TRUE(again.has_value());
        EXPECT_FALSE(*again);
    }
}

TEST(Json, DepthIsLimited) {
    std::string deep(limits::kMaxJsonDepth + 10, '[');
    deep += std::string(limits::kMaxJsonDepth + 10, ']');
    auto r = parse_json(deep, "test input");
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("test input"), std::string::npos);
    std::string ok(100, '[');
    ok += std::string(100, ']');
    EXPECT_TRUE(parse_json(ok, "x"));
}

TEST(Json, ErrorsSayWhere) {
    auto r = parse_json("{\"a\": 1,\n  \"b\": }", "PARAMS");
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("invalid JSON in PARAMS at line 2, column 8"),
              std::string::npos)
        << r.error().message;
    EXPECT_EQ(r.error().data.at("line"), 2);
    EXPECT_EQ(r.error().data.at("column"), 8);
    auto cut = parse_json("{\"a\"", "x");  // ends early: where it ended
    ASSERT_FALSE(cut);
    EXPECT_EQ(cut.error().data.at("column"), 5);
    auto extra = parse_json("{} x", "x");
    ASSERT_FALSE(extra);
    EXPECT_EQ(extra.error().data.at("column"), 4);
}

TEST(Json, Pretty) {
    auto v = parse_json(R"({"a":[1,{"b":null}],"c":{}})", "x");
    ASSERT_TRUE(v);
    EXPECT_EQ(to_pretty_json(*v),
              "{\n  \"a\": [\n    1,\n    {\n      \"b\": null\n    }\n  ],\n  \"c\": {}\n}");
}

TEST(Value, PlainJsonMapping) {
    EXPECT_EQ(Message::integer(42).to_json(), json::value(42));
    EXPECT_TRUE(Message::integer(42).to_json().is_int64());  // integers stay integers
    EXPECT_TRUE(Message::floating(2.0).to_json().is_double());
    EXPECT_EQ(Message::none().to_json(), json::value(nullptr));
    EXPECT_EQ(Message::some(json::value(3)).to_json(), json::value(3));
    EXPECT_EQ(Message::flow().to_json(), (json::object{{"$flow", true}}));
    EXPECT_EQ(Message::error("bad").to_json(), (json::object{{"$error", "bad"}}));
    EXPECT_EQ(Message::bytes({'h', 'i'}).to_json(), (json::object{{"$bytes", "aGk="}}));

    EXPECT_EQ(Message::from_json(nullptr)->kind(), MessageKind::optional);
    EXPECT_EQ(Message::from_json(json::value(7))->kind(), MessageKind::integer);
    EXPECT_EQ(Message::from_json(json::value(7.5))->kind(), MessageKind::floating);
    EXPECT_EQ(Message::from_json(json::value("s"))->kind(), MessageKind::string);
    EXPECT_EQ(Message::from_json(json::array{1})->kind(), MessageKind::array);
    EXPECT_EQ(Message::from_json(json::object{{"a", 1}})->kind(), MessageKind::object);
    // Two keys: an ordinary object, not bytes.
    EXPECT_EQ(Message::from_json(json::object{{"$bytes", "aGk="}, {"x", 1}})->kind(),
              MessageKind::object);
    auto b = Message::from_json(json::object{{"$bytes", "aGk="}});
    ASSERT_TRUE(b);
    EXPECT_EQ(std::get<Message::Bytes>(b->variant()), (Message::Bytes{'h', 'i'}));
    EXPECT_FALSE(Message::from_json(json::object{{"$bytes", "a*=="}}));
    EXPECT_FALSE(Message::from_json(json::object{{"$bytes", 5}}));
}

TEST(Value, Base64AllLengths) {
    for (std::size_t n = 0; n < 70; ++n) {
        Message::Bytes data(n);
        for (std::size_t i = 0; i < n; ++i) data[i] = static_cast<std::uint8_t>(i * 37 + 11);
        const auto text = base64_encode(data.data(), data.size());
        EXPECT_EQ(text.size() % 4, 0u);
        auto back = base64_decode(text);
        ASSERT_TRUE(back) << back.error();
        EXPECT_EQ(*back, data);
    }
    EXPECT_EQ(base64_encode(reinterpret_cast<const std::uint8_t*>("foobar"), 6), "Zm9vYmFy");
    EXPECT_FALSE(base64_decode("abc"));
    EXPECT_FALSE(base64_decode("ab=c"));
}

TEST(Duration, ParsesUnitsAndRejectsBareNumbers) {
    EXPECT_EQ(parse_duration("250ms")->count(), 250'000);
    EXPECT_EQ(parse_duration("5s")->count(), 5'000'000);
    EXPECT_EQ(parse_duration("1.5s")->count(), 1'500'000);
    EXPECT_EQ(parse_duration("2m")->count(), 120'000'000);
    EXPECT_EQ(parse_duration("100us")->count(), 100);
    for (const char* bad : {"5", "", "s", "5 s", "5x", "-1s", "0s", "1e400s"}) {
        auto r = parse_duration(bad);
        EXPECT_FALSE(r) << bad;
        if (!r) {
            EXPECT_NE(r.error().message.find("unit"), std::string::npos) << bad;
        }
    }
    EXPECT_EQ(format_duration(std::chrono::microseconds(5'000'000)), "5s");
    EXPECT_EQ(format_duration(std::chrono::microseconds(1'500)), "1500us");
}

TEST(Json, FloatsStayFloatsAndReadBack) {
    EXPECT_EQ(to_json_string(json::array{4.0, 1, 0.1, -2.5e-300, 1e300}),
              "[4.0,1,0.1,-2.5e-300,1e+300]");
    for (double d : {0.1, 1.0 / 3, 123456789.125, 5e-324}) {
        auto back = parse_json(to_json_string(json::value(d)), "x");
        ASSERT_TRUE(back);
        EXPECT_EQ(back->as_double(), d);
    }
    EXPECT_EQ(to_json_string(json::object{{"s", "a\"b\n"}, {"n", nullptr}}),
              R"({"s":"a\"b\n","n":null})");
}

TEST(Json, StringsEscapeLikeBoostAndReadBack) {
    const std::string tricky =
        std::string("q\"b\\s/\n\r\t\b\f") + '\x01' + '\x1f' + "é€😀" + '\0' + "end";
    const json::value v =
        json::object{{tricky, json::array{tricky, -9223372036854775807LL - 1,
                                          18446744073709551615ULL, true, nullptr}}};
    const std::string text = to_json_string(v);
    EXPECT_EQ(text, json::serialize(v));
    auto back = parse_json(text, "x");
    ASSERT_TRUE(back);
    EXPECT_EQ(*back, v);
}
