// SPDX-License-Identifier: MIT
#include "NpcProtocol.h"

#include "NpcPcm.h"

#include <cmath>

namespace npc {

namespace {

using json::Value;

// Reads the fields of one event object; the first problem becomes the error ("response.audio:
// missing field 'samples'"). Optional fields accept null or absence; required ones do not.
class Fields {
 public:
  Fields(const Value& obj, std::string type) : obj_(obj), type_(std::move(type)) {}

  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }
  void Fail(const std::string& what) {
    if (error_.empty()) error_ = type_ + ": " + what;
  }
  // Takes the first error of a nested reader (already prefixed with its own path).
  void Adopt(const Fields& inner) {
    if (error_.empty()) error_ = inner.error_;
  }

  std::string Str(const char* key, bool required = true) {
    const Value* v = obj_.find(key);
    if (!v || v->is_null()) {
      if (required) Fail(std::string("missing field '") + key + "'");
      return {};
    }
    if (!v->is_string()) Fail(std::string("field '") + key + "' is not a string");
    return v->as_string();
  }

  std::optional<double> OptNum(const char* key) {
    const Value* v = obj_.find(key);
    if (!v || v->is_null()) return std::nullopt;
    if (!v->is_number()) {
      Fail(std::string("field '") + key + "' is not a number");
      return std::nullopt;
    }
    return v->as_number();
  }

  double Num(const char* key) {
    const Value* v = obj_.find(key);
    if (!v || v->is_null()) {
      Fail(std::string("missing field '") + key + "'");
      return 0.0;
    }
    return OptNum(key).value_or(0.0);
  }

  int Int(const char* key, bool required = true, int fallback = 0) {
    const Value* v = obj_.find(key);
    if (!required && (!v || v->is_null())) return fallback;
    const double n = Num(key);
    if (!ok()) return fallback;
    if (n != std::floor(n) || n < -2147483648.0 || n > 2147483647.0) {
      Fail(std::string("field '") + key + "' is not an integer");
      return fallback;
    }
    return static_cast<int>(n);
  }

  bool Bool(const char* key, bool required, bool fallback = false) {
    const Value* v = obj_.find(key);
    if (!v || v->is_null()) {
      if (required) Fail(std::string("missing field '") + key + "'");
      return fallback;
    }
    if (!v->is_bool()) {
      Fail(std::string("field '") + key + "' is not a boolean");
      return fallback;
    }
    return v->as_bool();
  }

  // An array field (required: present and an array; optional: absent/null gives empty).
  const json::Array& Arr(const char* key, bool required = true) {
    static const json::Array kEmpty;
    const Value* v = obj_.find(key);
    if (!v || v->is_null()) {
      if (required) Fail(std::string("missing field '") + key + "'");
      return kEmpty;
    }
    if (!v->is_array()) {
      Fail(std::string("field '") + key + "' is not an array");
      return kEmpty;
    }
    return v->as_array();
  }

  // An object field; nullptr when absent or null (Fail when required).
  const Value* Obj(const char* key, bool required = true) {
    const Value* v = obj_.find(key);
    if (!v || v->is_null()) {
      if (required) Fail(std::string("missing field '") + key + "'");
      return nullptr;
    }
    if (!v->is_object()) {
      Fail(std::string("field '") + key + "' is not an object");
      return nullptr;
    }
    return v;
  }

  std::vector<std::pair<std::string, double>> Timings(const char* key, bool required) {
    std::vector<std::pair<std::string, double>> out;
    const Value* v = Obj(key, required);
    if (!v) return out;
    for (const auto& member : v->as_object()) {
      if (!member.second.is_number()) {
        Fail(std::string("timing '") + member.first + "' is not a number");
        break;
      }
      out.emplace_back(member.first, member.second.as_number());
    }
    return out;
  }

 private:
  const Value& obj_;
  std::string type_;
  std::string error_;
};

// An action object's verb and arguments (response.action, response.end.actions[]). Any verb name is
// accepted; args must be an object of strings. A server from before verbs were data sends no args: a
// built-in's come from its object/target. object/target are filled from the args of those names when
// the fields are absent. A built-in without its arguments is an error.
void ReadAction(Fields& f, Verb& verb, std::string& verb_name, ActionArgs& args, std::string& object,
                std::string& target) {
  verb_name = f.Str("verb");
  object = f.Str("object", false);
  target = f.Str("target", false);
  if (!f.ok()) return;
  if (!IsValidVerbName(verb_name)) {
    f.Fail("'" + verb_name + "' is not a verb name");
    return;
  }
  verb = VerbFromName(verb_name);
  args.clear();
  if (const Value* a = f.Obj("args", false)) {
    for (const auto& member : a->as_object()) {
      if (!member.second.is_string()) {
        f.Fail("argument '" + member.first + "' is not a string");
        return;
      }
      args.emplace_back(member.first, member.second.as_string());
    }
  } else if (!f.ok()) {
    return;
  } else {
    if (!object.empty() && verb != Verb::Move && verb != Verb::Other) args.emplace_back("object", object);
    if (!target.empty() && verb != Verb::Grab && verb != Verb::Other) args.emplace_back("target", target);
  }
  if (object.empty()) object = std::string(ActionArg(args, "object"));
  if (target.empty()) target = std::string(ActionArg(args, "target"));
  if (verb == Verb::Move && target.empty()) f.Fail("move without a target");
  if (verb == Verb::Grab && object.empty()) f.Fail("grab without an object");
  if (verb == Verb::Give && (object.empty() || target.empty())) f.Fail("give without an object and a target");
}

std::optional<EndStatus> StatusFromName(std::string_view name) {
  if (name == "completed") return EndStatus::Completed;
  if (name == "interrupted") return EndStatus::Interrupted;
  if (name == "failed") return EndStatus::Failed;
  return std::nullopt;
}

bool IsEmotion(std::string_view e) {
  for (const char* known : {"neutral", "joy", "anger", "sadness", "fear", "surprise", "disgust"}) {
    if (e == known) return true;
  }
  return false;
}

std::optional<AudioFormat> ReadFormat(Fields& f, const Value* v, const char* what) {
  if (!v) return std::nullopt;
  const Value* enc = v->find("encoding");
  const Value* rate = v->find("sample_rate");
  const Value* ch = v->find("channels");
  if (!enc || enc->as_string() != "pcm_s16le") f.Fail(std::string(what) + ".encoding is not pcm_s16le");
  if (!rate || !rate->is_number() || rate->as_number() < 1 || rate->as_number() > 384000 ||
      rate->as_number() != std::floor(rate->as_number())) {
    f.Fail(std::string(what) + ".sample_rate is not a valid rate");
    return std::nullopt;
  }
  if (!ch || ch->as_number(0) != 1) f.Fail(std::string(what) + ".channels is not 1");
  return AudioFormat{static_cast<int>(rate->as_number())};
}

CharacterInfo ReadCharacter(Fields& f, const Value& v) {
  const Value* id = v.find("id");
  const Value* name = v.find("name");
  if (!id || !id->is_string() || !name || !name->is_string()) f.Fail("character needs string 'id' and 'name'");
  return CharacterInfo{id ? id->as_string() : "", name ? name->as_string() : ""};
}

template <typename T>
EventResult Done(Fields& f, T&& event) {
  EventResult r;
  if (f.ok()) r.event = ServerEvent(std::forward<T>(event));
  else r.error = f.error();
  return r;
}

EventResult ParseTyped(const Value& obj, const std::string& type) {
  Fields f(obj, type);
  // Every server event has response_id (null for session-level ones): check it is there and typed.
  if (!obj.find("response_id")) f.Fail("missing field 'response_id'");
  const std::string rid = f.Str("response_id", false);

  if (type == "session.ready") {
    SessionReady e;
    e.session_id = f.Str("session_id");
    e.protocol = f.Str("protocol");
    if (f.ok() && e.protocol != kProtocolVersion) f.Fail("protocol version '" + e.protocol + "' is not " + kProtocolVersion);
    if (const Value* c = f.Obj("character")) e.character = ReadCharacter(f, *c);
    for (const Value& a : f.Arr("actions")) {
      if (!a.is_string() || !IsValidVerbName(a.as_string())) f.Fail("'actions' holds something that is not a verb name");
      e.actions.push_back(a.as_string());
    }
    e.audio = ReadFormat(f, f.Obj("audio", false), "audio");
    e.audio_in = ReadFormat(f, f.Obj("audio_in", false), "audio_in");
    if (const Value* l = f.Obj("listen", false)) {
      Fields lf(*l, type + ".listen");
      e.listen = ListenSettings{lf.Int("end_silence_ms"), lf.Int("barge_in_ms"), lf.Bool("partials", true)};
      if (!lf.ok()) f.Adopt(lf);
    }
    e.mood = f.Str("mood", false);
    for (const Value& c : f.Arr("cast", false)) {
      if (!c.is_object()) f.Fail("'cast' entry is not an object");
      else e.cast.push_back(ReadCharacter(f, c));
    }
    return Done(f, std::move(e));
  }
  if (type == "response.start") {
    ResponseStart e{f.Str("response_id"), f.Str("speaker", false), f.Str("trigger"), f.Str("ref", false)};
    if (f.ok() && e.trigger != "text" && e.trigger != "voice" && e.trigger != "game_event" && e.trigger != "converse") {
      f.Fail("unknown trigger '" + e.trigger + "'");
    }
    return Done(f, std::move(e));
  }
  if (type == "response.text.delta") {
    return Done(f, TextDelta{f.Str("response_id"), f.Str("speaker", false), f.Str("text")});
  }
  if (type == "response.audio") {
    AudioChunk e;
    e.response_id = f.Str("response_id");
    e.speaker = f.Str("speaker", false);
    e.seq = f.Int("seq");
    e.start_ms = f.Num("start_ms");
    e.samples = f.Int("samples");
    e.sample_rate = f.Int("sample_rate", false, 0);
    if (f.ok() && (e.samples < 0 || e.seq < 0 || e.sample_rate < 0)) f.Fail("negative seq, samples or sample_rate");
    for (const Value& cue : f.Arr("visemes")) {
      Fields cf(cue, type + ".visemes[]");
      const std::string name = cf.Str("viseme");
      VisemeCue c;
      c.start_ms = cf.Num("start_ms");
      c.end_ms = cf.Num("end_ms");
      const auto v = VisemeFromName(name);
      if (cf.ok() && !v) cf.Fail("unknown viseme '" + name + "'");
      if (cf.ok() && c.end_ms < c.start_ms) cf.Fail("cue ends before it starts");
      if (!cf.ok()) {
        f.Adopt(cf);
        break;
      }
      c.viseme = *v;
      e.visemes.push_back(c);
    }
    return Done(f, std::move(e));
  }
  if (type == "response.action") {
    Action e;
    e.response_id = f.Str("response_id");
    e.speaker = f.Str("speaker", false);
    e.index = f.Int("index");
    e.text_offset = f.Int("text_offset");
    e.at_ms = f.OptNum("at_ms");
    if (f.ok()) ReadAction(f, e.verb, e.verb_name, e.args, e.object, e.target);
    return Done(f, std::move(e));
  }
  if (type == "response.emotion") {
    Emotion e{f.Str("response_id"), f.Str("speaker", false), f.Str("emotion"), f.Int("text_offset"), f.OptNum("at_ms")};
    if (f.ok() && !IsEmotion(e.emotion)) f.Fail("unknown emotion '" + e.emotion + "'");
    return Done(f, std::move(e));
  }
  if (type == "response.end") {
    ResponseEnd e;
    e.response_id = f.Str("response_id");
    e.speaker = f.Str("speaker", false);
    const std::string status = f.Str("status");
    e.text = f.Str("text");
    for (const Value& a : f.Arr("actions")) {
      Fields af(a, type + ".actions[]");
      ActionRecord r;
      if (!a.is_object()) af.Fail("an action is not an object");
      else ReadAction(af, r.verb, r.verb_name, r.args, r.object, r.target);
      if (!af.ok()) {
        f.Adopt(af);
        break;
      }
      e.actions.push_back(std::move(r));
    }
    e.timings = f.Timings("timings", true);
    e.truncated = f.Bool("truncated", false);
    e.audio_ms = f.OptNum("audio_ms");
    e.error = f.Str("error", false);
    e.heard_ms = f.OptNum("heard_ms");
    if (const Value* h = obj.find("heard_text"); h && !h->is_null()) e.heard_text = f.Str("heard_text");
    if (f.ok()) {
      const auto s = StatusFromName(status);
      if (!s) f.Fail("unknown status '" + status + "'");
      else e.status = *s;
    }
    return Done(f, std::move(e));
  }
  if (type == "response.interrupted") {
    return Done(f, ResponseInterrupted{f.Str("response_id"), f.Str("speaker", false), f.Str("reason", false)});
  }
  if (type == "speech.started") {
    return Done(f, SpeechStarted{f.Str("utterance_id"), f.Num("at_ms")});
  }
  if (type == "speech.stopped") {
    return Done(f, SpeechStopped{f.Str("utterance_id"), f.Num("at_ms"), f.Num("duration_ms"), f.Bool("discarded", false)});
  }
  if (type == "transcript.partial") {
    return Done(f, TranscriptPartial{f.Str("utterance_id"), f.Str("text"), f.Str("stable")});
  }
  if (type == "transcript.final") {
    TranscriptFinal e{f.Str("utterance_id"), f.Str("text"), f.Bool("backchannel", false), {}};
    e.timings = f.Timings("timings", false);
    return Done(f, std::move(e));
  }
  if (type == "scene.updated") {
    return Done(f, SceneUpdated{f.Int("objects"), f.Int("locations"), f.Int("characters")});
  }
  if (type == "game.event.accepted") {
    return Done(f, GameEventAccepted{f.Str("ref", false), f.Bool("reacting", true)});
  }
  if (type == "scene.converse.end") {
    ConverseEnd e{f.Str("ref", false), f.Int("turns"), EndStatus::Completed};
    const std::string status = f.Str("status");
    if (f.ok()) {
      const auto s = StatusFromName(status);
      if (!s) f.Fail("unknown status '" + status + "'");
      else e.status = *s;
    }
    return Done(f, std::move(e));
  }
  if (type == "error") {
    ErrorEvent e;
    e.code = f.Str("code");
    e.message = f.Str("message");
    e.ref = f.Str("ref", false);
    e.response_id = rid;
    e.retryable = f.Bool("retryable", false);
    e.fatal = f.Bool("fatal", false);
    return Done(f, std::move(e));
  }
  if (type == "pong") {
    return Done(f, Pong{f.Str("ref", false)});
  }
  return Done(f, UnknownEvent{type, rid, obj});
}

struct TypeNameVisitor {
  std::string operator()(const SessionReady&) const { return "session.ready"; }
  std::string operator()(const ResponseStart&) const { return "response.start"; }
  std::string operator()(const TextDelta&) const { return "response.text.delta"; }
  std::string operator()(const AudioChunk&) const { return "response.audio"; }
  std::string operator()(const Action&) const { return "response.action"; }
  std::string operator()(const Emotion&) const { return "response.emotion"; }
  std::string operator()(const ResponseEnd&) const { return "response.end"; }
  std::string operator()(const ResponseInterrupted&) const { return "response.interrupted"; }
  std::string operator()(const SpeechStarted&) const { return "speech.started"; }
  std::string operator()(const SpeechStopped&) const { return "speech.stopped"; }
  std::string operator()(const TranscriptPartial&) const { return "transcript.partial"; }
  std::string operator()(const TranscriptFinal&) const { return "transcript.final"; }
  std::string operator()(const SceneUpdated&) const { return "scene.updated"; }
  std::string operator()(const GameEventAccepted&) const { return "game.event.accepted"; }
  std::string operator()(const ConverseEnd&) const { return "scene.converse.end"; }
  std::string operator()(const ErrorEvent&) const { return "error"; }
  std::string operator()(const Pong&) const { return "pong"; }
  std::string operator()(const UnknownEvent& e) const { return e.type; }
};

}  // namespace

const char* VerbName(Verb verb) {
  switch (verb) {
    case Verb::Move: return "move";
    case Verb::Grab: return "grab";
    case Verb::Give: return "give";
    case Verb::Other: return "";
  }
  return "";
}

Verb VerbFromName(std::string_view name) {
  if (name == "move") return Verb::Move;
  if (name == "grab") return Verb::Grab;
  if (name == "give") return Verb::Give;
  return Verb::Other;
}

bool IsValidVerbName(std::string_view name) {
  if (name.empty() || name.size() > 32 || name[0] < 'a' || name[0] > 'z') return false;
  for (const char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
  }
  return true;
}

std::string_view ActionArg(const ActionArgs& args, std::string_view name) {
  for (const auto& a : args) {
    if (a.first == name) return a.second;
  }
  return {};
}

const char* EndStatusName(EndStatus status) {
  switch (status) {
    case EndStatus::Completed: return "completed";
    case EndStatus::Interrupted: return "interrupted";
    case EndStatus::Failed: return "failed";
  }
  return "failed";
}

std::optional<double> ResponseEnd::Timing(std::string_view name) const {
  for (const auto& t : timings) {
    if (t.first == name) return t.second;
  }
  return std::nullopt;
}

std::string EventTypeName(const ServerEvent& event) { return std::visit(TypeNameVisitor{}, event); }

const std::string& EventResponseId(const ServerEvent& event) {
  static const std::string kNone;
  if (const auto* e = std::get_if<ResponseStart>(&event)) return e->response_id;
  if (const auto* e = std::get_if<TextDelta>(&event)) return e->response_id;
  if (const auto* e = std::get_if<AudioChunk>(&event)) return e->response_id;
  if (const auto* e = std::get_if<Action>(&event)) return e->response_id;
  if (const auto* e = std::get_if<Emotion>(&event)) return e->response_id;
  if (const auto* e = std::get_if<ResponseEnd>(&event)) return e->response_id;
  if (const auto* e = std::get_if<ResponseInterrupted>(&event)) return e->response_id;
  if (const auto* e = std::get_if<ErrorEvent>(&event)) return e->response_id;
  if (const auto* e = std::get_if<UnknownEvent>(&event)) return e->response_id;
  return kNone;
}

EventResult ParseServerEventValue(const json::Value& value) {
  EventResult r;
  if (!value.is_object()) {
    r.error = "a server event must be a JSON object";
    return r;
  }
  const Value* type = value.find("type");
  if (!type || !type->is_string() || type->as_string().empty()) {
    r.error = "a server event needs a string 'type'";
    return r;
  }
  return ParseTyped(value, type->as_string());
}

EventResult ParseServerEvent(std::string_view text) {
  json::ParseResult parsed = json::Parse(text);
  if (!parsed.ok()) {
    EventResult r;
    r.error = "bad JSON at byte " + std::to_string(parsed.offset) + ": " + parsed.error;
    return r;
  }
  return ParseServerEventValue(parsed.value);
}

// ---------------------------------------------------------------------------------------------
// FrameDecoder

FrameDecoder::Result FrameDecoder::OnText(std::string_view text) {
  Result r;
  if (pending_) {
    r.error = "expected the binary frame of response.audio seq " + std::to_string(pending_->seq) + " of " +
              pending_->response_id + ", got a text frame";
    pending_.reset();
    // Still parse the event: a well-behaved game shows the error and carries on.
  }
  EventResult parsed = ParseServerEvent(text);
  if (!parsed.ok()) {
    if (r.error.empty()) r.error = parsed.error;
    return r;
  }
  if (const auto* ready = std::get_if<SessionReady>(&*parsed.event)) {
    if (ready->audio) session_rate_ = ready->audio->sample_rate;
  }
  if (const auto* chunk = std::get_if<AudioChunk>(&*parsed.event)) pending_ = *chunk;
  r.event = std::move(parsed.event);
  return r;
}

FrameDecoder::Result FrameDecoder::OnBinary(const void* data, std::size_t size) {
  Result r;
  if (!pending_) {
    r.error = "binary frame of " + std::to_string(size) + " bytes with no response.audio before it";
    return r;
  }
  AudioChunk chunk = std::move(*pending_);
  pending_.reset();
  const std::size_t expected = static_cast<std::size_t>(chunk.samples) * 2;
  if (size != expected) {
    r.error = "response.audio seq " + std::to_string(chunk.seq) + " announced " + std::to_string(chunk.samples) +
              " samples (" + std::to_string(expected) + " bytes), the binary frame has " + std::to_string(size);
    return r;
  }
  AudioFrame frame;
  frame.response_id = std::move(chunk.response_id);
  frame.speaker = std::move(chunk.speaker);
  frame.seq = chunk.seq;
  frame.start_ms = chunk.start_ms;
  frame.sample_rate = chunk.sample_rate > 0 ? chunk.sample_rate : session_rate_;
  frame.pcm = pcm::FromBytes(data, size);
  if (frame.sample_rate <= 0) {
    r.error = "audio frame before session.ready announced the sample rate";
    return r;
  }
  r.audio = std::move(frame);
  return r;
}

}  // namespace npc
