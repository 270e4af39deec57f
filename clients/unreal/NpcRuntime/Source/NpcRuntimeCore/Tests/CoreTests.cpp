// SPDX-License-Identifier: MIT
// UnrealBuildTool compiles every .cpp under a module folder: this test-only file (POSIX sockets, main())
// compiles to nothing inside Unreal, where NPCRUNTIMECORE_API is defined.
#if !defined(NPCRUNTIMECORE_API)
// Test program of the npc_runtime protocol core (run by tests/test_client_unreal.py):
//
//   npc_core_tests unit <ovr_to_arkit.json>            unit tests; prints {"passed": N, "failed": 0, ...}
//   npc_core_tests replay <session.jsonl>              feeds a recorded session through Conversation
//   npc_core_tests live <ws_url> <scene.json> <text> <player_id> [<seed>]   a text turn against npc serve
//   npc_core_tests connect <ws_url>                    the handshake only; prints {"connected": ..., "status": ...}
// live and connect take --token=<player token> anywhere after the mode: sent as Authorization: Bearer (auth on)
//
// replay and live print one JSON summary line of what the core parsed, for the pytest test to assert on
// (which words and actions to expect depends on the server's model: the program itself expects none).
#include "MiniWebSocket.h"
#include "NpcConversation.h"
#include "NpcHandshake.h"
#include "NpcJson.h"
#include "NpcPcm.h"
#include "NpcProtocol.h"
#include "NpcTimeline.h"
#include "NpcVisemes.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <string>

using namespace npc;

namespace {

int g_passed = 0;
int g_failed = 0;

#define EXPECT(cond)                                                            \
  do {                                                                          \
    if (cond) {                                                                 \
      ++g_passed;                                                               \
    } else {                                                                    \
      ++g_failed;                                                               \
      std::fprintf(stderr, "FAILED %s:%d: %s\n", __FILE__, __LINE__, #cond);   \
    }                                                                           \
  } while (0)

bool ReadFile(const std::string& path, std::string& out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream ss;
  ss << in.rdbuf();
  out = ss.str();
  return true;
}

// ---------------------------------------------------------------------------------------------
// Unit tests

void TestJsonParse() {
  auto ok = [](const char* text) { return json::Parse(text).ok(); };
  EXPECT(ok("null") && ok(" true ") && ok("false") && ok("0") && ok("-0.5e-3") && ok("[]") && ok("{}"));
  EXPECT(json::Parse("12.5").value.as_number() == 12.5);
  EXPECT(json::Parse("-1E2").value.as_number() == -100.0);
  EXPECT(json::Parse("1e400").error == "number out of range");
  for (const char* bad : {"", "01", "1.", ".5", "-", "1e", "+1", "tru", "nul", "[1,]", "{\"a\":1,}", "{\"a\" 1}", "[1 2]",
                          "{a:1}", "\"abc", "\"\\x\"", "\"\\u12G4\"", "\"a\tb\"", "1 2", "[", "{\"a\":", "'a'", "NaN"}) {
    const json::ParseResult r = json::Parse(bad);
    if (r.ok()) std::fprintf(stderr, "accepted bad JSON: %s\n", bad);
    EXPECT(!r.ok() && !r.error.empty());
  }
  // escapes
  EXPECT(json::Parse(R"("a\"b\\c\/d\b\f\n\r\t")").value.as_string() == "a\"b\\c/d\b\f\n\r\t");
  // \u escapes: BMP, 2-byte, 3-byte, and a surrogate pair (U+1F35C steaming bowl)
  EXPECT(json::Parse(R"("\u0041\u00e9\u20AC")").value.as_string() == "A\xC3\xA9\xE2\x82\xAC");
  EXPECT(json::Parse(R"("\ud83c\udf5c")").value.as_string() == "\xF0\x9F\x8D\x9C");
  EXPECT(json::Parse(R"("\u2026")").value.as_string() == "\xE2\x80\xA6");
  EXPECT(!json::Parse(R"("\ud83c")").ok());         // lone high surrogate
  EXPECT(!json::Parse(R"("\ud83cx")").ok());
  EXPECT(!json::Parse(R"("\ud83c\u0041")").ok());   // high + non-low
  EXPECT(!json::Parse(R"("\udf5c")").ok());         // lone low surrogate
  // raw UTF-8 passes; invalid UTF-8 is an error
  EXPECT(json::Parse("\"caf\xC3\xA9 \xF0\x9F\x8D\x9C\"").value.as_string() == "caf\xC3\xA9 \xF0\x9F\x8D\x9C");
  EXPECT(!json::Parse("\"\xC3\"").ok());
  EXPECT(!json::Parse("\"\xC0\xAF\"").ok());        // overlong
  EXPECT(!json::Parse("\"\xED\xA0\x80\"").ok());    // encoded surrogate
  EXPECT(!json::Parse("\"\xFF\"").ok());
  // nesting, order, lookups
  const json::ParseResult nested = json::Parse(R"({"a":[1,{"b":[true,null,"x"]}],"c":{"d":-2.25},"a2":1})");
  EXPECT(nested.ok());
  const json::Value& v = nested.value;
  EXPECT(v.find("a") && v.find("a")->as_array().size() == 2);
  EXPECT(v.find("a")->as_array()[1].find("b")->as_array()[2].as_string() == "x");
  EXPECT(v.find("c")->find("d")->as_number() == -2.25);
  EXPECT(v.as_object()[2].first == "a2");
  EXPECT(v.find("missing") == nullptr && v.find("a")->find("x") == nullptr);
  EXPECT(json::Parse(R"({"k":1,"k":2})").value.find("k")->as_number() == 2);
  // depth limit: an error, not a stack overflow
  EXPECT(json::Parse(std::string(json::kMaxDepth, '[') + std::string(json::kMaxDepth, ']')).ok());
  const json::ParseResult deep = json::Parse(std::string(100000, '['));
  EXPECT(!deep.ok() && deep.error == "nesting too deep");
  const json::ParseResult at = json::Parse("[1, 2, x]");
  EXPECT(!at.ok() && at.offset == 7);
  // wrong-type accessors return fallbacks
  EXPECT(json::Parse("\"s\"").value.as_number(7.0) == 7.0 && json::Parse("3").value.as_string().empty());
}

void TestJsonWrite() {
  json::Value v;
  v.set("s", "quote\" backslash\\ nl\n ctrl\x01 caf\xC3\xA9");
  v.set("n", 1.5).set("i", 42).set("neg", -0.1).set("b", false).set("z", nullptr).set("big", 1e300);
  v.set("arr", json::Value(json::Array{1, "two", json::Array{}}));
  const std::string text = json::Dump(v);
  EXPECT(text.find(R"("s":"quote\" backslash\\ nl\n ctrl\u0001 café")") != std::string::npos);
  EXPECT(text.find(R"("i":42)") != std::string::npos && text.find(R"("n":1.5)") != std::string::npos);
  EXPECT(text.find(R"("neg":-0.1)") != std::string::npos);
  const json::ParseResult back = json::Parse(text);
  EXPECT(back.ok() && back.value == v);  // round trip
  EXPECT(json::Dump(json::Value(0.1 + 0.2)) == "0.30000000000000004");
  EXPECT(json::Parse(json::Dump(json::Value(0.1 + 0.2))).value.as_number() == 0.1 + 0.2);
  EXPECT(json::Dump(json::Value(std::nan(""))) == "null");
  v.set("i", 43);  // replaces, keeps order
  EXPECT(v.as_object()[2].second.as_number() == 43);
}

void TestProtocolParse() {
  // a full response.audio
  EventResult r = ParseServerEvent(
      R"({"response_id":"r1","speaker":"jin","type":"response.audio","seq":0,"start_ms":0.0,"samples":4,"sample_rate":22050,)"
      R"("visemes":[{"viseme":"sil","start_ms":0.0,"end_ms":0.05},{"viseme":"aa","start_ms":0.05,"end_ms":0.18}]})");
  EXPECT(r.ok());
  const auto* chunk = r.ok() ? std::get_if<AudioChunk>(&*r.event) : nullptr;
  EXPECT(chunk && chunk->samples == 4 && chunk->visemes.size() == 2 && chunk->visemes[1].viseme == Viseme::aa);
  // validation: each is a clear error, never a crash
  struct Bad { const char* text; const char* error; };
  for (const Bad& bad : {
           Bad{"{not json", "bad JSON at byte 1"},
           Bad{"[1]", "a server event must be a JSON object"},
           Bad{R"({"response_id":null})", "a server event needs a string 'type'"},
           Bad{R"({"type":"pong"})", "pong: missing field 'response_id'"},
           Bad{R"({"response_id":"r","type":"response.audio","seq":0,"start_ms":0,"visemes":[]})", "response.audio: missing field 'samples'"},
           Bad{R"({"response_id":"r","type":"response.audio","seq":0,"start_ms":0,"samples":"4","visemes":[]})", "response.audio: field 'samples' is not a number"},
           Bad{R"({"response_id":"r","type":"response.audio","seq":0.5,"start_ms":0,"samples":4,"visemes":[]})", "response.audio: field 'seq' is not an integer"},
           Bad{R"({"response_id":"r","type":"response.audio","seq":0,"start_ms":0,"samples":4,"visemes":[{"viseme":"zz","start_ms":0,"end_ms":1}]})", "response.audio.visemes[]: unknown viseme 'zz'"},
           Bad{R"({"response_id":"r","type":"response.action","index":0,"verb":"Dance!","text_offset":0,"at_ms":null})", "response.action: 'Dance!' is not a verb name"},
           Bad{R"({"response_id":"r","type":"response.action","index":0,"verb":"sit","args":{"seat":3},"text_offset":0})", "response.action: argument 'seat' is not a string"},
           Bad{R"({"response_id":"r","type":"response.action","index":0,"verb":"sit","args":["stool"],"text_offset":0})", "response.action: field 'args' is not an object"},
           Bad{R"({"response_id":"r","type":"response.action","index":0,"verb":"give","args":{"object":"cup"},"text_offset":0})", "response.action: give without an object and a target"},
           Bad{R"({"response_id":"r","type":"response.end","status":"completed","text":"","actions":[{"verb":"grab"}],"timings":{}})", "response.end.actions[]: grab without an object"},
           Bad{R"({"response_id":"r","type":"response.action","index":0,"verb":"give","object":"cup","text_offset":0})", "response.action: give without an object and a target"},
           Bad{R"({"response_id":"r","type":"response.end","status":"done","text":"","actions":[],"timings":{}})", "response.end: unknown status 'done'"},
           Bad{R"({"response_id":"r","type":"response.end","status":"completed","text":"","actions":[],"timings":{"end":"x"}})", "response.end: timing 'end' is not a number"},
           Bad{R"({"response_id":null,"type":"session.ready","session_id":"s","protocol":"2","character":{"id":"a","name":"A"},"actions":[]})", "session.ready: protocol version '2' is not 1"},
           Bad{R"({"response_id":null,"type":"error","message":"m"})", "error: missing field 'code'"},
       }) {
    EventResult e = ParseServerEvent(bad.text);
    if (e.ok() || e.error.rfind(bad.error, 0) != 0) std::fprintf(stderr, "for %s got error '%s'\n", bad.text, e.error.c_str());
    EXPECT(!e.ok() && e.error.rfind(bad.error, 0) == 0);
  }
  // unknown (newer) event types are surfaced, not errors
  EventResult unknown = ParseServerEvent(R"({"response_id":"r9","type":"response.gesture","name":"wave"})");
  EXPECT(unknown.ok() && EventTypeName(*unknown.event) == "response.gesture" && EventResponseId(*unknown.event) == "r9");
  // error events
  EventResult err = ParseServerEvent(
      R"({"response_id":null,"type":"error","code":"busy","message":"full","ref":"m1","retryable":true,"fatal":true})");
  const auto* e = err.ok() ? std::get_if<ErrorEvent>(&*err.event) : nullptr;
  EXPECT(e && e->code == "busy" && e->ref == "m1" && e->retryable && e->fatal);
  // extra fields are fine (forward compatible)
  EXPECT(ParseServerEvent(R"({"response_id":null,"type":"pong","ref":"p","new_field":[1]})").ok());
}

void TestBuilders() {
  SessionStartParams p;
  p.character = "jin";
  p.player_name = "Kai \"K\"";
  p.scene.name = "shop";
  p.scene.objects = {{"ramen_bowl", "", "a bowl"}};
  p.options.seed = 4;
  p.options.audio_in_sample_rate = 48000;
  const json::ParseResult start = json::Parse(MakeSessionStart(p, "s1"));
  EXPECT(start.ok());
  const json::Value& s = start.value;
  EXPECT(s.find("type")->as_string() == "session.start" && s.find("id")->as_string() == "s1");
  EXPECT(s.find("player")->find("name")->as_string() == "Kai \"K\"" && s.find("player")->find("id")->as_string() == "player");
  EXPECT(s.find("scene")->find("objects")->as_array()[0].find("description")->as_string() == "a bowl");
  EXPECT(s.find("scene")->find("locations")->as_array().empty());
  EXPECT(s.find("options")->find("seed")->as_number() == 4);
  EXPECT(s.find("options")->find("audio_in")->find("sample_rate")->as_number() == 48000);
  EXPECT(s.find("options")->find("max_tokens") == nullptr);
  EXPECT(MakeInputText("hi", "t1") == R"({"type":"input.text","id":"t1","text":"hi"})");
  EXPECT(MakeInputText("hi", "", "nova") == R"({"type":"input.text","text":"hi","to":"nova"})");
  EXPECT(MakePlaybackMark("r1", 1234.56) == R"({"type":"playback.mark","response_id":"r1","played_ms":1234.6})");
  EXPECT(MakePlaybackMark("r1", -5) == R"({"type":"playback.mark","response_id":"r1","played_ms":0})");
  EXPECT(MakeAudioCommit() == R"({"type":"input.audio.commit"})");
  EXPECT(MakeAudioClear("c") == R"({"type":"input.audio.clear","id":"c"})");
  EXPECT(MakeResponseCancel() == R"({"type":"response.cancel"})");
  EXPECT(MakeGameEvent("Smoke!", true) == R"({"type":"game.event","description":"Smoke!","react":true})");
  EXPECT(MakePing("p1") == R"({"type":"ping","id":"p1"})");
  EXPECT(MakeConverse("rain", 2) == R"({"type":"scene.converse","topic":"rain","turns":2})");
  EXPECT(json::Parse(MakeSceneUpdate(p.scene)).value.find("scene")->find("name")->as_string() == "shop");
  EXPECT(IsValidEntityId("sake_bottle") && !IsValidEntityId("Sake") && !IsValidEntityId("1a") && !IsValidEntityId(""));
}

void TestFrameDecoder() {
  FrameDecoder d;
  EXPECT(!d.OnBinary("\0\0", 2).ok());  // unannounced audio
  EXPECT(d.OnText(R"({"response_id":null,"type":"session.ready","session_id":"s","protocol":"1","character":{"id":"jin","name":"Jin"},)"
                  R"("actions":["give"],"audio":{"encoding":"pcm_s16le","sample_rate":22050,"channels":1},"mood":"neutral"})").ok());
  EXPECT(d.SessionSampleRate() == 22050);
  const char* announce = R"({"response_id":"r1","type":"response.audio","seq":0,"start_ms":0,"samples":2,"visemes":[]})";
  EXPECT(d.OnText(announce).ok() && d.AwaitingAudio());
  const unsigned char pcm[4] = {0x01, 0x00, 0xFF, 0xFF};  // 1, -1 little-endian
  FrameDecoder::Result a = d.OnBinary(pcm, 4);
  EXPECT(a.ok() && a.audio && a.audio->pcm.size() == 2 && a.audio->pcm[0] == 1 && a.audio->pcm[1] == -1);
  EXPECT(a.audio && a.audio->sample_rate == 22050 && a.audio->response_id == "r1");
  EXPECT(d.OnText(announce).ok());
  EXPECT(!d.OnBinary(pcm, 3).ok());  // wrong size
  EXPECT(d.OnText(announce).ok());
  FrameDecoder::Result skipped = d.OnText(R"({"response_id":null,"type":"pong","ref":null})");
  EXPECT(!skipped.ok() && skipped.event.has_value());  // missing binary is reported, the event still parsed
  EXPECT(!d.AwaitingAudio());
}

VisemeCue Cue(Viseme v, double a, double b) { return VisemeCue{v, a, b}; }

Action MakeAction(Verb verb, double at, const char* object, const char* target) {
  Action a;
  a.response_id = "r1";
  a.verb = verb;
  a.verb_name = VerbName(verb);
  a.at_ms = at;
  a.object = object;
  a.target = target;
  return a;
}

void TestTimeline() {
  Timeline t("r1");
  t.AddVisemes({Cue(Viseme::Sil, 0, 50), Cue(Viseme::aa, 50, 120), Cue(Viseme::PP, 120, 200)});
  t.AddAction(MakeAction(Verb::Give, 100, "cup", "player"));
  Emotion joy;
  joy.emotion = "joy";
  joy.at_ms = 0;
  t.AddEmotion(joy);
  t.AddVisemes({Cue(Viseme::oh, 200, 300)});
  std::vector<TimelineItem> d0 = t.Advance(0);
  EXPECT(d0.size() == 2 && d0[0].kind == TimelineItem::Kind::Viseme && d0[1].kind == TimelineItem::Kind::Emotion);
  EXPECT(t.VisemeAt(60) == Viseme::aa && t.VisemeAt(120) == Viseme::PP && !t.VisemeAt(300).has_value());
  std::vector<TimelineItem> d1 = t.Advance(110);
  EXPECT(d1.size() == 2 && d1[0].viseme.viseme == Viseme::aa && d1[1].kind == TimelineItem::Kind::Action);
  EXPECT(t.Advance(90).empty());  // the clock never goes back
  // a late arrival (its time passed) comes out on the next Advance, not lost
  t.AddAction(MakeAction(Verb::Move, 10, "", "door"));
  std::vector<TimelineItem> late = t.Advance(111);
  EXPECT(late.size() == 1 && late[0].action.verb == Verb::Move);
  // marks: one per period
  EXPECT(t.MarkIfDue(100, 250) == std::nullopt);
  auto m = t.MarkIfDue(260, 250);
  EXPECT(m && m->played_ms == 260 && m->response_id == "r1");
  // barge-in at 150 ms: PP (120) released, oh (200) skipped, last mark at 150
  Timeline b("r2");
  b.AddVisemes({Cue(Viseme::Sil, 0, 50), Cue(Viseme::aa, 50, 120), Cue(Viseme::PP, 120, 200), Cue(Viseme::oh, 200, 300)});
  b.AddAction(MakeAction(Verb::Grab, 250, "cup", ""));
  EXPECT(b.Advance(100).size() == 2);
  Timeline::Stop stop = b.Interrupt(150);
  EXPECT(stop.released.size() == 1 && stop.released[0].viseme.viseme == Viseme::PP);
  EXPECT(stop.skipped == 2 && stop.mark.played_ms == 150 && stop.mark.response_id == "r2");
  EXPECT(b.Stopped() && b.Advance(1000).empty());
  b.AddAction(MakeAction(Verb::Grab, 0, "cup", ""));  // after the stop: ignored
  EXPECT(b.Pending() == 0);
  // same time: arrival order kept
  Timeline o("r3");
  o.AddAction(MakeAction(Verb::Grab, 10, "a", ""));
  o.AddAction(MakeAction(Verb::Give, 10, "a", "p"));
  std::vector<TimelineItem> both = o.Advance(10);
  EXPECT(both.size() == 2 && both[0].action.verb == Verb::Grab && both[1].action.verb == Verb::Give);
}

std::string Spell(const ActionArgs& args) {
  std::string out;
  for (const auto& a : args) out += (out.empty() ? "" : ",") + a.first + "=" + a.second;
  return out;
}

// Verbs as data: any verb decodes into its name and args by name; the built-ins keep their typed form
// (also from a server that sends no args); scenes declare verbs; the timeline carries custom actions.
void TestVerbs() {
  auto action = [](const std::string& text) -> std::optional<Action> {
    EventResult r = ParseServerEvent(text);
    if (!r.ok()) std::fprintf(stderr, "verbs: %s: %s\n", text.c_str(), r.error.c_str());
    const auto* a = r.ok() ? std::get_if<Action>(&*r.event) : nullptr;
    if (!a) return std::nullopt;
    return *a;
  };
  const std::optional<Action> emote = action(
      R"({"response_id":"r1","speaker":"jin","type":"response.action","index":1,"verb":"emote","args":{"gesture":"bow"},"object":null,"target":null,"text_offset":4,"at_ms":250.5})");
  EXPECT(emote && emote->verb == Verb::Other && emote->verb_name == "emote" && emote->args.size() == 1 && emote->Arg("gesture") == "bow");
  EXPECT(emote && emote->object.empty() && emote->target.empty() && emote->index == 1 && emote->at_ms == 250.5 && emote->speaker == "jin");
  const std::optional<Action> sit = action(
      R"({"response_id":"r1","type":"response.action","index":0,"verb":"sit","args":{"seat":"stool"},"text_offset":0,"at_ms":100})");
  EXPECT(sit && sit->verb == Verb::Other && sit->verb_name == "sit" && sit->Arg("seat") == "stool" && sit->Arg("nothing").empty());
  const std::optional<Action> place = action(
      R"({"response_id":"r1","type":"response.action","index":0,"verb":"place","args":{"object":"cup","target":"counter","side":"left"},"text_offset":0,"at_ms":null})");
  EXPECT(place && place->object == "cup" && place->target == "counter" && Spell(place->args) == "object=cup,target=counter,side=left");
  const std::optional<Action> wave = action(R"({"response_id":"r1","type":"response.action","index":0,"verb":"wave","args":{},"text_offset":0})");
  EXPECT(wave && wave->verb_name == "wave" && wave->args.empty());
  // built-ins: typed as before, and args by name (from args, or from object/target of an older server)
  const std::optional<Action> give = action(
      R"({"response_id":"r1","type":"response.action","index":0,"verb":"give","args":{"object":"cup","target":"player"},"object":"cup","target":"player","text_offset":0,"at_ms":5})");
  EXPECT(give && give->verb == Verb::Give && give->verb_name == "give" && give->object == "cup" && give->target == "player");
  EXPECT(give && Spell(give->args) == "object=cup,target=player");
  const std::optional<Action> old_give = action(
      R"({"response_id":"r1","type":"response.action","index":0,"verb":"give","object":"cup","target":"player","text_offset":0,"at_ms":5})");
  EXPECT(old_give && old_give->verb == Verb::Give && Spell(old_give->args) == "object=cup,target=player");
  const std::optional<Action> old_move = action(
      R"({"response_id":"r1","type":"response.action","index":0,"verb":"move","object":null,"target":"door","text_offset":0,"at_ms":null})");
  EXPECT(old_move && old_move->verb == Verb::Move && old_move->target == "door" && Spell(old_move->args) == "target=door");
  const std::optional<Action> grab = action(R"({"response_id":"r1","type":"response.action","index":0,"verb":"grab","args":{"object":"menu"},"text_offset":0})");
  EXPECT(grab && grab->verb == Verb::Grab && grab->object == "menu" && grab->target.empty());
  EXPECT(std::string(VerbName(Verb::Other)).empty() && VerbFromName("sit") == Verb::Other && VerbFromName("give") == Verb::Give);
  EXPECT(IsValidVerbName("emote") && IsValidVerbName(std::string(32, 'a')) && !IsValidVerbName(std::string(33, 'a')) && !IsValidVerbName("Sit") &&
         !IsValidVerbName("_x") && !IsValidVerbName(""));

  // response.end: every action with its verb and args
  EventResult end = ParseServerEvent(
      R"({"response_id":"r1","type":"response.end","status":"completed","text":"Sure.","actions":[{"verb":"sit","args":{"seat":"stool"}},)"
      R"({"verb":"emote","args":{"gesture":"bow"},"object":null},{"verb":"give","args":{"object":"cup","target":"player"},"object":"cup","target":"player"},)"
      R"({"verb":"move","target":"door"}],"timings":{}})");
  const auto* e = end.ok() ? std::get_if<ResponseEnd>(&*end.event) : nullptr;
  EXPECT(e && e->actions.size() == 4);
  if (e && e->actions.size() == 4) {
    EXPECT(e->actions[0].verb == Verb::Other && e->actions[0].verb_name == "sit" && e->actions[0].Arg("seat") == "stool" && e->actions[0].object.empty());
    EXPECT(e->actions[1].verb_name == "emote" && Spell(e->actions[1].args) == "gesture=bow");
    EXPECT(e->actions[2].verb == Verb::Give && e->actions[2].object == "cup" && Spell(e->actions[2].args) == "object=cup,target=player");
    EXPECT(e->actions[3].verb == Verb::Move && e->actions[3].target == "door" && Spell(e->actions[3].args) == "target=door");
  }
  // session.ready lists the declared verbs
  EventResult ready = ParseServerEvent(
      R"({"response_id":null,"type":"session.ready","session_id":"s","protocol":"1","character":{"id":"jin","name":"Jin"},)"
      R"("actions":["move","grab","give","sit","emote"],"audio":null,"mood":"neutral"})");
  const auto* rd = ready.ok() ? std::get_if<SessionReady>(&*ready.event) : nullptr;
  EXPECT(rd && rd->actions.size() == 5 && rd->actions[3] == "sit");
  EXPECT(!ParseServerEvent(R"({"response_id":null,"type":"session.ready","session_id":"s","protocol":"1","character":{"id":"jin","name":"Jin"},"actions":[3]})").ok());

  // a custom action on the timeline, released on the clock like a built-in
  Timeline t("r1");
  t.AddAction(*sit);
  t.AddAction(MakeAction(Verb::Give, 100, "cup", "player"));
  std::vector<TimelineItem> due = t.Advance(100);
  EXPECT(due.size() == 2 && due[0].action.verb_name == "sit" && due[0].action.Arg("seat") == "stool" && due[1].action.verb_name == "give");

  // declaring verbs in the scene
  Scene scene;
  scene.objects = {{"stool", "stool", "a wooden stool"}};
  EXPECT(json::Parse(MakeSceneUpdate(scene)).value.find("scene")->find("verbs") == nullptr);  // none: no field
  scene.verbs = {VerbDef{"sit", "sits down on a seat", {VerbArg{"seat", "object", {}}}},
                 VerbDef{"emote", "makes a gesture", {VerbArg{"gesture", "", {"wave", "bow", "shrug"}}}}};
  EXPECT(CheckScene(scene).empty());
  EXPECT(json::Dump(SceneToJson(scene)) ==
         R"({"objects":[{"id":"stool","name":"stool","description":"a wooden stool"}],"locations":[],"characters":[],)"
         R"("verbs":[{"name":"sit","description":"sits down on a seat","args":[{"name":"seat","type":"object"}]},)"
         R"({"name":"emote","description":"makes a gesture","args":[{"name":"gesture","values":["wave","bow","shrug"]}]}]})");
  SessionStartParams p;
  p.character = "jin";
  p.scene = scene;
  EXPECT(json::Parse(MakeSessionStart(p)).value.find("scene")->find("verbs")->as_array().size() == 2);
  EXPECT(json::Parse(MakeSceneUpdate(scene)).value.find("scene")->find("verbs")->as_array().size() == 2);
  struct Refused { std::function<void(Scene&)> change; const char* fragment; };
  for (const Refused& r : std::vector<Refused>{
           {[](Scene& s) { s.verbs.push_back(VerbDef{"give", "gives", {}}); }, "built in"},
           {[](Scene& s) { s.verbs.push_back(VerbDef{"emotion", "feels", {}}); }, "built in"},
           {[](Scene& s) { s.verbs.push_back(VerbDef{"sit", "again", {}}); }, "declared twice"},
           {[](Scene& s) { s.verbs[0].name = "Sit"; }, "must match"},
           {[](Scene& s) { s.verbs[0].description.clear(); }, "description"},
           {[](Scene& s) { s.verbs[0].description = std::string(121, 'x'); }, "description"},
           {[](Scene& s) { for (int i = 0; i < 4; ++i) s.verbs[0].args.push_back(VerbArg{"a" + std::to_string(i), "any", {}}); }, "more than 4 arguments"},
           {[](Scene& s) { s.verbs[0].args[0].type = "thing"; }, "type 'thing'"},
           {[](Scene& s) { s.verbs[1].args[0].type = "object"; }, "either a type"},
           {[](Scene& s) { s.verbs[0].args[0].type.clear(); }, "either a type"},
           {[](Scene& s) { s.verbs[1].args[0].values[1] = "Bow"; }, "value 'Bow'"},
           {[](Scene& s) { s.verbs[1].args[0].values[1] = "wave"; }, "value 'wave' twice"},
           {[](Scene& s) { s.verbs[0].args.push_back(VerbArg{"seat", "location", {}}); }, "argument 'seat' twice"},
           {[](Scene& s) { for (int i = 0; i < 31; ++i) s.verbs.push_back(VerbDef{"v" + std::to_string(i), "does", {}}); }, "more than 32 verbs"},
           {[](Scene& s) { s.objects.push_back(Entity{"stool", "", ""}); }, "duplicate id 'stool'"},
       }) {
    Scene bad = scene;
    r.change(bad);
    const std::string problem = CheckScene(bad);
    if (problem.find(r.fragment) == std::string::npos) std::fprintf(stderr, "CheckScene: '%s' lacks '%s'\n", problem.c_str(), r.fragment);
    EXPECT(problem.find(r.fragment) != std::string::npos);
  }
}

void TestConversation() {
  Conversation c;
  auto text = [&](const std::string& s, double clock = 0.0) { return c.OnText(s, clock); };
  text(R"({"response_id":null,"type":"session.ready","session_id":"s","protocol":"1","character":{"id":"jin","name":"Jin"},)"
       R"("actions":["give"],"audio":{"encoding":"pcm_s16le","sample_rate":1000,"channels":1},"mood":"neutral"})");
  EXPECT(c.Ready() && c.Ready()->audio->sample_rate == 1000);
  text(R"({"response_id":"r1","speaker":"jin","type":"response.start","trigger":"text","ref":"t1"})");
  EXPECT(c.Generating() == "r1");
  text(R"({"response_id":"r1","speaker":"jin","type":"response.action","index":0,"verb":"give","object":"cup","target":"player","text_offset":5,"at_ms":300})");
  text(R"({"response_id":"r1","speaker":"jin","type":"response.audio","seq":0,"start_ms":0,"samples":500,"visemes":[{"viseme":"aa","start_ms":0,"end_ms":500}]})");
  std::vector<unsigned char> pcm(1000, 0);
  Conversation::Update a = c.OnBinary(pcm.data(), pcm.size());
  EXPECT(a.audio && a.audio->DurationMs() == 500.0 && !a.dropped);
  Conversation::Tick t1 = c.Advance("r1", 250);
  EXPECT(t1.due.size() == 1 && t1.mouth == Viseme::aa && t1.marks.size() == 1 && t1.marks[0].played_ms == 250);
  // barge-in while the action (300 ms) is not reached: skipped, audio stopped, last mark at 280
  Conversation::Update i = text(R"({"response_id":"r1","speaker":"jin","type":"response.interrupted","reason":"barge_in"})", 280);
  EXPECT(i.stop_audio == std::string("r1") && i.stop && i.stop->skipped == 1 && i.stop->mark.played_ms == 280);
  // late events of r1 are dropped; its response.end still parses
  EXPECT(text(R"({"response_id":"r1","speaker":"jin","type":"response.text.delta","text":"x"})").dropped);
  EXPECT(!text(R"({"response_id":"r1","speaker":"jin","type":"response.end","status":"interrupted","text":"","actions":[],"timings":{}})").dropped);
  // a text-only response: its action has no at_ms and is due at once
  text(R"({"response_id":"r2","speaker":"jin","type":"response.start","trigger":"text","ref":"t2"})");
  text(R"({"response_id":"r2","speaker":"jin","type":"response.action","index":0,"verb":"move","target":"door","text_offset":0,"at_ms":null})");
  text(R"({"response_id":"r2","speaker":"jin","type":"response.end","status":"completed","text":"Bye","actions":[{"verb":"move","target":"door"}],"timings":{"end":5}})");
  Conversation::Tick silent = c.AdvanceSilent();
  EXPECT(silent.due.size() == 1 && silent.due[0].action.target == "door");
  // an interrupt of a response that already finished still yields a mark
  std::optional<Timeline::Stop> gone = c.Interrupt("r0", 12);
  EXPECT(gone && gone->mark.response_id == "r0" && gone->mark.played_ms == 12);
}

void TestVisemes() {
  EXPECT(kVisemeCount == 15 && VisemeFromName("aa") == Viseme::aa && VisemeFromName("AA") == std::nullopt);
  for (std::size_t i = 0; i < kVisemeCount; ++i) EXPECT(VisemeFromName(VisemeName(static_cast<Viseme>(i))) == static_cast<Viseme>(i));
  EXPECT(ArkitWeights(Viseme::Sil).empty());
  EXPECT(CurveName("jawOpen", CurveNaming::LiveLink) == "JawOpen" && CurveName("jawOpen", CurveNaming::Arkit) == "jawOpen");
  VisemeSmoother s(30.0f, 60.0f);
  s.Update(Viseme::aa, 16.0f);
  const float first = s.Weight("jawOpen");
  EXPECT(first > 0.0f && first < 0.6f);  // smoothed: rises toward 0.6, does not jump
  for (int i = 0; i < 60; ++i) s.Update(Viseme::aa, 16.0f);
  EXPECT(std::fabs(s.Weight("jawOpen") - 0.6f) < 1e-3f && std::fabs(s.Weight("mouthLowerDownLeft") - 0.3f) < 1e-3f);
  EXPECT(s.Weight("mouthPucker") < 1e-3f && s.Weight("notACurve") == 0.0f);
  // frame-rate independent: 4 x 8 ms == 1 x 32 ms
  VisemeSmoother a, b;
  for (int i = 0; i < 4; ++i) a.Update(Viseme::oh, 8.0f);
  b.Update(Viseme::oh, 32.0f);
  EXPECT(std::fabs(a.Weight("mouthFunnel") - b.Weight("mouthFunnel")) < 1e-5f);
  s.Update(std::nullopt, 1000.0f);  // rest
  EXPECT(s.Weight("jawOpen") < 1e-3f);
  for (float w : s.Weights()) EXPECT(w >= 0.0f && w <= 1.0f);
}

void TestPcm() {
  const std::int16_t samples[3] = {0, 32767, -32768};
  const std::vector<std::uint8_t> bytes = pcm::ToBytes(samples, 3);
  EXPECT(bytes.size() == 6 && bytes[2] == 0xFF && bytes[3] == 0x7F && bytes[4] == 0x00 && bytes[5] == 0x80);
  const std::vector<std::int16_t> back = pcm::FromBytes(bytes.data() + 0, bytes.size());
  EXPECT(back.size() == 3 && back[1] == 32767 && back[2] == -32768);
  EXPECT(pcm::FromBytes(bytes.data(), 5).size() == 2);
  const float f[4] = {1.5f, -2.0f, 0.5f, 0.5f};
  const std::vector<std::int16_t> mono = pcm::FromFloat(f, 2, 2);  // stereo frames averaged
  EXPECT(mono.size() == 2 && mono[0] == -8192 && mono[1] == 16384);
  std::vector<std::int16_t> tone(48000);
  for (std::size_t i = 0; i < tone.size(); ++i) tone[i] = static_cast<std::int16_t>(1000.0 * std::sin(2 * M_PI * 440.0 * static_cast<double>(i) / 48000.0));
  const std::vector<std::int16_t> down = pcm::Resample(tone.data(), tone.size(), 48000, 16000);
  EXPECT(down.size() == 16000 && std::abs(down[10] - tone[30]) <= 1);
  EXPECT(pcm::DurationMs(22050, 22050) == 1000.0 && pcm::SamplesForMs(20, 16000) == 320);
}

bool TestArkitTableMatchesFile(const std::string& path, std::string& detail) {
  std::string text;
  if (!ReadFile(path, text)) {
    detail = "cannot read " + path;
    return false;
  }
  const json::ParseResult parsed = json::Parse(text);
  if (!parsed.ok() || !parsed.value.find("visemes")) {
    detail = "bad JSON in " + path + ": " + parsed.error;
    return false;
  }
  const json::Object& visemes = parsed.value.find("visemes")->as_object();
  if (visemes.size() != kVisemeCount) {
    detail = "the file has " + std::to_string(visemes.size()) + " visemes";
    return false;
  }
  for (const json::Member& row : visemes) {
    const std::optional<Viseme> v = VisemeFromName(row.first);
    if (!v) {
      detail = "unknown viseme in the file: " + row.first;
      return false;
    }
    const std::vector<CurveWeight>& table = ArkitWeights(*v);
    if (table.size() != row.second.as_object().size()) {
      detail = row.first + ": the table has " + std::to_string(table.size()) + " curves, the file " +
               std::to_string(row.second.as_object().size());
      return false;
    }
    for (const CurveWeight& cw : table) {
      const json::Value* w = row.second.find(cw.curve);
      if (!w || std::fabs(w->as_number(-1.0) - static_cast<double>(cw.weight)) > 1e-6) {
        detail = row.first + "." + cw.curve + " differs from the file";
        return false;
      }
    }
  }
  detail = std::to_string(visemes.size()) + " visemes, " + std::to_string(ArkitCurves().size()) + " curves";
  return true;
}

void TestHandshake() {
  EXPECT(IsValidAccessToken("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.sig-_"));
  EXPECT(!IsValidAccessToken(""));
  EXPECT(!IsValidAccessToken("two words"));
  EXPECT(!IsValidAccessToken("abc\r\nX-Evil: 1"));
  EXPECT(!IsValidAccessToken("caf\xc3\xa9"));
  EXPECT(!IsValidAccessToken(std::string(8193, 'a')));
  EXPECT(BearerAuthorization("t0k") == "Bearer t0k");

  auto r = ParseHandshakeResponse(
      "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: 99\r\n\r\n"
      R"({"response_id":null,"type":"error","code":"unauthorized","message":"the player token has expired","ref":null,"retryable":false,"fatal":true})"
      "\n");
  EXPECT(r && r->status == 401 && r->Unauthorized() && !r->retryable && r->retry_after_s == -1);
  EXPECT(r && r->code == "unauthorized" && r->message == "the player token has expired" && r->ErrorCode() == "unauthorized");
  EXPECT(r && r->Describe().find("HTTP 401 unauthorized: the player token has expired") != std::string::npos);
  r = ParseHandshakeResponse("HTTP/1.1 429 Too Many Requests\r\nretry-after:  5\r\n\r\n"
                             R"({"type":"error","code":"too_many_connections","message":"at most 8","retryable":true})");
  EXPECT(r && r->status == 429 && r->retryable && r->retry_after_s == 5 && r->code == "too_many_connections");
  r = ParseHandshakeResponse("HTTP/1.1 403 Forbidden\r\nContent-Length: 9\r\n\r\nnot json!");
  EXPECT(r && r->status == 403 && r->code.empty() && r->message == "Forbidden" && r->ErrorCode() == "forbidden");
  EXPECT(r && r->Describe() == "npc serve refused the connection: HTTP 403 forbidden: Forbidden");
  r = ParseHandshakeResponse("HTTP/1.1 500\r\n\r\n");
  EXPECT(r && r->status == 500 && r->message.empty() && r->ErrorCode() == "connect_refused");
  EXPECT(!ParseHandshakeResponse("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"));
  EXPECT(!ParseHandshakeResponse("SSH-2.0-OpenSSH_9.2\r\n"));
  EXPECT(!ParseHandshakeResponse("HTTP/1.1 abc\r\n\r\n"));
  EXPECT(!ParseHandshakeResponse("HTTP/1.1 4010 Nope\r\n\r\n"));
  EXPECT(!ParseHandshakeResponse(""));

  // connection-error texts of WebSocket libraries that hide the response (UE's libwebsockets)
  auto e = RefusalFromConnectionError("HS: ws upgrade unauthorized");
  EXPECT(e && e->status == 401 && e->ErrorCode() == "unauthorized" && e->message == "HS: ws upgrade unauthorized");
  e = RefusalFromConnectionError("HS: ws upgrade response not 101");
  EXPECT(e && e->status == 0 && e->ErrorCode() == "connect_refused");
  EXPECT(e && e->Describe().find("HTTP status unknown") != std::string::npos);
  e = RefusalFromConnectionError("The server returned status code '403' when status code '101' was expected.");
  EXPECT(e && e->status == 403);
  e = RefusalFromConnectionError("Connection failed (HTTP 429)");
  EXPECT(e && e->status == 429 && e->retryable);
  e = RefusalFromConnectionError("Unauthorized");
  EXPECT(e && e->status == 401);
  EXPECT(!RefusalFromConnectionError("connect failed"));
  EXPECT(!RefusalFromConnectionError("cannot connect to 127.0.0.1:401"));
  EXPECT(!RefusalFromConnectionError("cannot connect to 10.0.0.403"));
  EXPECT(!RefusalFromConnectionError("error 4010"));
  EXPECT(!RefusalFromConnectionError(""));
}

int RunUnit(const std::string& arkit_path) {
  TestJsonParse();
  TestJsonWrite();
  TestProtocolParse();
  TestBuilders();
  TestFrameDecoder();
  TestTimeline();
  TestVerbs();
  TestConversation();
  TestVisemes();
  TestPcm();
  TestHandshake();
  std::string detail;
  const bool table_ok = TestArkitTableMatchesFile(arkit_path, detail);
  EXPECT(table_ok);
  json::Value out;
  out.set("passed", g_passed).set("failed", g_failed).set("arkit_table_matches", table_ok).set("arkit_detail", detail);
  std::cout << json::Dump(out) << std::endl;
  return g_failed == 0 ? 0 : 1;
}

// ---------------------------------------------------------------------------------------------
// Session summary (replay and live): what the core parsed, as JSON

json::Value ArgsJson(const ActionArgs& args) {
  json::Value out = json::Value(json::Object{});
  for (const auto& a : args) out.set(a.first, a.second);
  return out;
}

class Summary {
 public:
  explicit Summary(Conversation& conv) : conv_(conv) {}

  void Take(const Conversation::Update& u) {
    if (!u.error.empty()) errors_.push(u.error);
    if (u.audio) {
      json::Value f;
      f.set("response_id", u.audio->response_id).set("seq", u.audio->seq).set("samples", static_cast<int>(u.audio->pcm.size()));
      f.set("start_ms", u.audio->start_ms).set("sample_rate", u.audio->sample_rate);
      int peak = 0;  // loudest sample: real speech, not silence (replays carry zeros)
      for (const std::int16_t v : u.audio->pcm) peak = std::max(peak, std::abs(static_cast<int>(v)));
      f.set("peak", peak);
      audio_.push(std::move(f));
      audio_ms_[u.audio->response_id] += u.audio->DurationMs();
      if (std::find(order_.begin(), order_.end(), u.audio->response_id) == order_.end()) order_.push_back(u.audio->response_id);
    }
    if (!u.event) return;
    const ServerEvent& ev = *u.event;
    const std::string type = EventTypeName(ev);
    counts_[type] += 1;
    types_.push(type);
    if (const auto* r = std::get_if<SessionReady>(&ev)) {
      ready_.set("session_id", r->session_id).set("protocol", r->protocol).set("character", r->character.id);
      json::Value verbs = json::Value(json::Array{});
      for (const auto& a : r->actions) verbs.push(a);
      ready_.set("actions", std::move(verbs));
      ready_.set("sample_rate", r->audio ? r->audio->sample_rate : 0).set("mood", r->mood);
      ready_.set("audio_in_rate", r->audio_in ? r->audio_in->sample_rate : 0);
    } else if (const auto* chunk = std::get_if<AudioChunk>(&ev)) {
      for (const VisemeCue& cue : chunk->visemes) {
        json::Value c;
        c.set("response_id", chunk->response_id).set("viseme", VisemeName(cue.viseme)).set("start_ms", cue.start_ms).set("end_ms", cue.end_ms);
        visemes_.push(std::move(c));
      }
      json::Value a;
      a.set("response_id", chunk->response_id).set("seq", chunk->seq).set("start_ms", chunk->start_ms).set("samples", chunk->samples);
      chunks_.push(std::move(a));
    } else if (const auto* act = std::get_if<Action>(&ev)) {
      json::Value a;
      a.set("response_id", act->response_id).set("index", act->index).set("verb", act->verb_name);
      a.set("typed", VerbName(act->verb)).set("args", ArgsJson(act->args));
      a.set("object", act->object.empty() ? json::Value() : json::Value(act->object));
      a.set("target", act->target.empty() ? json::Value() : json::Value(act->target));
      a.set("text_offset", act->text_offset).set("at_ms", act->at_ms ? json::Value(*act->at_ms) : json::Value());
      actions_.push(std::move(a));
    } else if (const auto* end = std::get_if<ResponseEnd>(&ev)) {
      json::Value e;
      e.set("response_id", end->response_id).set("status", EndStatusName(end->status)).set("text", end->text);
      e.set("audio_ms", end->audio_ms ? json::Value(*end->audio_ms) : json::Value());
      json::Value acts = json::Value(json::Array{});
      json::Value args = json::Value(json::Array{});
      for (const auto& a : end->actions) {
        acts.push(a.verb_name + " " + a.object + " " + a.target);
        args.push(ArgsJson(a.args));
      }
      e.set("actions", std::move(acts)).set("action_args", std::move(args));
      json::Value timings;
      for (const auto& t : end->timings) timings.set(t.first, t.second);
      e.set("timings", std::move(timings));
      e.set("heard_ms", end->heard_ms ? json::Value(*end->heard_ms) : json::Value());
      ends_.push(std::move(e));
    } else if (const auto* d = std::get_if<TextDelta>(&ev)) {
      text_[d->response_id] += d->text;
    } else if (const auto* tf = std::get_if<TranscriptFinal>(&ev)) {
      json::Value t;
      t.set("utterance_id", tf->utterance_id).set("text", tf->text).set("backchannel", tf->backchannel);
      transcripts_.push(std::move(t));
    } else if (const auto* st = std::get_if<SpeechStarted>(&ev)) {
      json::Value s;
      s.set("utterance_id", st->utterance_id).set("at_ms", st->at_ms);
      speech_.push(std::move(s));
    } else if (const auto* er = std::get_if<ErrorEvent>(&ev)) {
      json::Value e;
      e.set("code", er->code).set("message", er->message).set("ref", er->ref).set("retryable", er->retryable).set("fatal", er->fatal);
      server_errors_.push(std::move(e));
    } else if (const auto* p = std::get_if<Pong>(&ev)) {
      pongs_.push(p->ref);
    } else if (const auto* unk = std::get_if<UnknownEvent>(&ev)) {
      unknown_.push(unk->type);
    }
  }

  // Plays each response's audio on a simulated clock (10 ms steps), as a game's player would,
  // and records when each timeline item is released and which marks go out.
  void SimulatePlayback(const std::function<void(const PlaybackMark&)>& send_mark) {
    for (const std::string& rid : order_) {
      const double total = audio_ms_[rid];
      double last_at = -1.0;
      bool ordered = true;
      auto take = [&](const Conversation::Tick& t, double clock) {
        for (const TimelineItem& item : t.due) {
          if (item.at_ms < last_at - 1e-9) ordered = false;
          last_at = item.at_ms;
          if (item.kind == TimelineItem::Kind::Action) {
            json::Value f;
            f.set("response_id", item.action.response_id).set("verb", item.action.verb_name).set("object", item.action.object);
            f.set("target", item.action.target).set("args", ArgsJson(item.action.args)).set("at_ms", item.at_ms).set("released_at", clock);
            fired_.push(std::move(f));
          } else if (item.kind == TimelineItem::Kind::Viseme) {
            released_visemes_ += 1;
            if (item.at_ms > clock + 1e-9) early_ += 1;
          }
        }
        for (const PlaybackMark& m : t.marks) {
          json::Value mv;
          mv.set("response_id", m.response_id).set("played_ms", m.played_ms);
          marks_.push(std::move(mv));
          if (send_mark) send_mark(m);
        }
      };
      for (double clock = 0.0; clock < total; clock += 10.0) take(conv_.Advance(rid, clock), clock);
      take(conv_.FinishPlayback(rid, total), total);
      if (!ordered) errors_.push("timeline released items out of order for " + rid);
    }
    Conversation::Tick silent = conv_.AdvanceSilent();  // text-only responses
    for (const TimelineItem& item : silent.due) {
      if (item.kind != TimelineItem::Kind::Action) continue;
      json::Value f;
      f.set("response_id", item.action.response_id).set("verb", item.action.verb_name).set("object", item.action.object);
      f.set("target", item.action.target).set("args", ArgsJson(item.action.args)).set("at_ms", json::Value()).set("released_at", 0);
      fired_.push(std::move(f));
    }
  }

  json::Value ToJson() const {
    json::Value out;
    out.set("errors", errors_).set("ready", ready_);
    json::Value counts;
    for (const auto& c : counts_) counts.set(c.first, c.second);
    out.set("counts", std::move(counts)).set("types", types_).set("chunks", chunks_).set("audio_frames", audio_);
    out.set("visemes", visemes_).set("actions", actions_).set("fired", fired_).set("ends", ends_).set("marks", marks_);
    json::Value text = json::Value(json::Object{});
    for (const auto& t : text_) text.set(t.first, t.second);
    json::Value audio_ms = json::Value(json::Object{});
    for (const auto& a : audio_ms_) audio_ms.set(a.first, a.second);
    out.set("text", std::move(text)).set("audio_ms", std::move(audio_ms));
    out.set("transcripts", transcripts_).set("speech", speech_).set("server_errors", server_errors_).set("pongs", pongs_);
    out.set("unknown", unknown_).set("released_visemes", released_visemes_).set("released_early", early_);
    out.set("barge_in", barge_in_);
    return out;
  }

  void SetBargeIn(json::Value v) { barge_in_ = std::move(v); }
  const std::vector<std::string>& ResponsesWithAudio() const { return order_; }
  double AudioMs(const std::string& rid) { return audio_ms_[rid]; }
  void AddError(const std::string& e) { errors_.push(e); }

 private:
  Conversation& conv_;
  json::Value errors_ = json::Value(json::Array{});
  json::Value ready_ = json::Value(json::Object{});
  std::map<std::string, int> counts_;
  json::Value types_ = json::Value(json::Array{}), chunks_ = json::Value(json::Array{}), audio_ = json::Value(json::Array{});
  json::Value visemes_ = json::Value(json::Array{}), actions_ = json::Value(json::Array{}), fired_ = json::Value(json::Array{});
  json::Value ends_ = json::Value(json::Array{}), marks_ = json::Value(json::Array{}), transcripts_ = json::Value(json::Array{});
  json::Value speech_ = json::Value(json::Array{}), server_errors_ = json::Value(json::Array{}), pongs_ = json::Value(json::Array{});
  json::Value unknown_ = json::Value(json::Array{}), barge_in_;
  std::map<std::string, std::string> text_;
  std::map<std::string, double> audio_ms_;
  std::vector<std::string> order_;
  int released_visemes_ = 0, early_ = 0;
};

// Feeds recorded lines (server text events; {"binary": N} for an audio frame, whose bytes were not
// kept: N zero bytes stand in) into a conversation.
void Feed(Conversation& conv, Summary* summary, const std::vector<std::string>& lines, double interrupt_clock = 0.0) {
  for (const std::string& line : lines) {
    const json::ParseResult parsed = json::Parse(line);
    const json::Value* binary = parsed.ok() ? parsed.value.find("binary") : nullptr;
    Conversation::Update u;
    if (binary && binary->is_number()) {
      const std::vector<unsigned char> zeros(static_cast<std::size_t>(binary->as_number()), 0);
      u = conv.OnBinary(zeros.data(), zeros.size());
    } else {
      u = conv.OnText(line, interrupt_clock);
    }
    if (summary) summary->Take(u);
  }
}

int RunReplay(const std::string& path) {
  std::string text;
  if (!ReadFile(path, text)) {
    std::cerr << "cannot read " << path << "\n";
    return 2;
  }
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) lines.push_back(line);
  }
  Conversation conv;
  Summary summary(conv);
  Feed(conv, &summary, lines);
  summary.SimulatePlayback(nullptr);

  // Barge-in on the same session: replay it again and interrupt the first response with audio
  // half-way through its audio; what lies beyond must be skipped and the last mark be the stop point.
  if (!summary.ResponsesWithAudio().empty()) {
    const std::string rid = summary.ResponsesWithAudio().front();
    const double half = std::floor(summary.AudioMs(rid) / 2.0);
    Conversation again;
    Feed(again, nullptr, lines);
    std::size_t released = 0;
    for (double clock = 0.0; clock <= half; clock += 10.0) released += again.Advance(rid, clock).due.size();
    const std::optional<Timeline::Stop> stop = again.Interrupt(rid, half);
    json::Value b;
    b.set("response_id", rid).set("at_ms", half).set("released_before", static_cast<int>(released));
    b.set("released_at_stop", stop ? static_cast<int>(stop->released.size()) : -1);
    b.set("skipped", stop ? static_cast<int>(stop->skipped) : -1);
    b.set("mark_ms", stop ? json::Value(stop->mark.played_ms) : json::Value());
    b.set("mark_json", stop ? MakePlaybackMark(stop->mark.response_id, stop->mark.played_ms) : "");
    // after the stop nothing more comes out of that response
    b.set("released_after", static_cast<int>(again.Advance(rid, half + 100000.0).due.size()));
    summary.SetBargeIn(std::move(b));
  }
  std::cout << json::Dump(summary.ToJson()) << std::endl;
  return 0;
}

// ---------------------------------------------------------------------------------------------
// Live: a text turn against npc serve through the test's own WebSocket client

Scene SceneFromFile(const std::string& path, std::string& error) {
  Scene scene;
  std::string text;
  if (!ReadFile(path, text)) {
    error = "cannot read " + path;
    return scene;
  }
  const json::ParseResult parsed = json::Parse(text);
  if (!parsed.ok()) {
    error = parsed.error;
    return scene;
  }
  scene.name = parsed.value.find("name") ? parsed.value.find("name")->as_string() : "";
  auto list = [&](const char* key, std::vector<Entity>& out) {
    if (const json::Value* arr = parsed.value.find(key)) {
      for (const json::Value& e : arr->as_array()) {
        Entity ent;
        ent.id = e.find("id") ? e.find("id")->as_string() : "";
        ent.name = e.find("name") ? e.find("name")->as_string() : "";
        ent.description = e.find("description") ? e.find("description")->as_string() : "";
        out.push_back(ent);
      }
    }
  };
  list("objects", scene.objects);
  list("locations", scene.locations);
  list("characters", scene.characters);
  if (const json::Value* verbs = parsed.value.find("verbs")) {
    for (const json::Value& v : verbs->as_array()) {
      VerbDef def;
      def.name = v.find("name") ? v.find("name")->as_string() : "";
      def.description = v.find("description") ? v.find("description")->as_string() : "";
      if (const json::Value* args = v.find("args")) {
        for (const json::Value& a : args->as_array()) {
          VerbArg arg;
          arg.name = a.find("name") ? a.find("name")->as_string() : "";
          arg.type = a.find("type") ? a.find("type")->as_string() : "";
          if (const json::Value* values = a.find("values")) {
            for (const json::Value& w : values->as_array()) arg.values.push_back(w.as_string());
          }
          def.args.push_back(arg);
        }
      }
      scene.verbs.push_back(def);
    }
  }
  error = CheckScene(scene);
  return scene;
}

/// The handshake only (a server with auth on: a refusal must come back as an error with its status).
int RunConnect(const std::string& url, const std::string& token) {
  test::MiniWebSocket ws;
  std::string error;
  const auto started = std::chrono::steady_clock::now();
  const bool connected = ws.Connect(url, error, token);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started).count();
  json::Value out;
  out.set("connected", connected).set("error", error).set("ms", static_cast<double>(ms));
  if (const auto& r = ws.Refusal()) {
    out.set("status", r->status).set("code", r->code).set("error_code", r->ErrorCode()).set("message", r->message);
    out.set("retryable", r->retryable).set("unauthorized", r->Unauthorized());
  }
  ws.Close();
  std::cout << json::Dump(out) << std::endl;
  return 0;
}

int RunLive(const std::string& url, const std::string& scene_path, const std::string& prompt, const std::string& player_id,
            const std::string& seed, const std::string& token) {
  std::string error;
  SessionStartParams params;
  params.character = "jin";
  params.player_id = player_id;
  params.scene = SceneFromFile(scene_path, error);
  if (!seed.empty()) params.options.seed = std::stoll(seed);
  if (!error.empty()) {
    std::cerr << error << "\n";
    return 2;
  }
  test::MiniWebSocket ws;
  if (!ws.Connect(url, error, token)) {
    std::cerr << "connect: " << error << "\n";
    return 2;
  }
  Conversation conv;
  Summary summary(conv);
  std::vector<std::string> sent;
  auto send = [&](const std::string& text) {
    sent.push_back(text);
    if (!ws.SendText(text)) summary.AddError("send failed");
  };
  // Receives until `done(event)` holds; every frame goes through the core.
  auto pump = [&](const std::function<bool(const ServerEvent&)>& done) {
    while (true) {
      test::MiniWebSocket::Message m = ws.Receive(240000);
      Conversation::Update u;
      if (m.kind == test::MiniWebSocket::Message::Kind::Text) u = conv.OnText(m.data);
      else if (m.kind == test::MiniWebSocket::Message::Kind::Binary) u = conv.OnBinary(m.data.data(), m.data.size());
      else {
        summary.AddError("socket: " + m.data);
        return false;
      }
      summary.Take(u);
      if (u.event && done(*u.event)) return true;
    }
  };
  send(MakeSessionStart(params, "s1"));
  const bool ready = pump([](const ServerEvent& e) { return std::holds_alternative<SessionReady>(e) || std::holds_alternative<ErrorEvent>(e); });
  // a message the server does not know: an error event with our ref, the session goes on
  send(R"({"type":"no.such.message","id":"bad1"})");
  if (ready) pump([](const ServerEvent& e) { return std::holds_alternative<ErrorEvent>(e); });
  send(MakeInputText(prompt, "t1"));
  if (ready) pump([](const ServerEvent& e) { return std::holds_alternative<ResponseEnd>(e); });
  // The turn's audio is "played" on a simulated clock; the playback marks go to the server for real.
  summary.SimulatePlayback([&](const PlaybackMark& m) { send(MakePlaybackMark(m.response_id, m.played_ms)); });
  send(MakePing("p1"));
  if (ready) pump([](const ServerEvent& e) { return std::holds_alternative<Pong>(e); });
  ws.Close();
  json::Value out = summary.ToJson();
  json::Value sent_json = json::Value(json::Array{});
  for (const std::string& s : sent) sent_json.push(s);
  out.set("sent", std::move(sent_json));
  std::cout << json::Dump(out) << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args;
  std::string token;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind("--token=", 0) == 0) token = arg.substr(8);
    else args.push_back(arg);
  }
  const std::string mode = args.empty() ? "" : args[0];
  const std::size_t n = args.size();
  if (mode == "unit" && n == 2) return RunUnit(args[1]);
  if (mode == "replay" && n == 2) return RunReplay(args[1]);
  if (mode == "live" && (n == 5 || n == 6)) return RunLive(args[1], args[2], args[3], args[4], n == 6 ? args[5] : "", token);
  if (mode == "connect" && n == 2) return RunConnect(args[1], token);
  std::cerr << "usage: npc_core_tests unit ARKIT_JSON | replay SESSION.jsonl | live WS_URL SCENE.json TEXT PLAYER_ID [SEED]"
               " | connect WS_URL   (live, connect: [--token=PLAYER_TOKEN])\n";
  return 2;
}

#endif  // !defined(NPCRUNTIMECORE_API)
