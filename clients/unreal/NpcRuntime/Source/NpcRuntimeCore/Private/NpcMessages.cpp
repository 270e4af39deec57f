// SPDX-License-Identifier: MIT
// Client -> server messages of protocol v1 (docs/protocol.md), as compact JSON text.
#include "NpcProtocol.h"

#include <cmath>
#include <set>

namespace npc {

namespace {

using json::Value;

// Client messages: an object with "type" first, then "id" when given.
Value Message(const char* type, std::string_view id) {
  Value msg;
  msg.set("type", type);
  if (!id.empty()) msg.set("id", std::string(id));
  return msg;
}

Value EntityList(const std::vector<Entity>& entities) {
  Value list = Value(json::Array{});
  for (const Entity& e : entities) {
    Value item;
    item.set("id", e.id);
    if (!e.name.empty()) item.set("name", e.name);
    if (!e.description.empty()) item.set("description", e.description);
    list.push(std::move(item));
  }
  return list;
}

Value VerbList(const std::vector<VerbDef>& verbs) {
  Value list = Value(json::Array{});
  for (const VerbDef& v : verbs) {
    Value verb;
    verb.set("name", v.name);
    verb.set("description", v.description);
    Value args = Value(json::Array{});
    for (const VerbArg& a : v.args) {
      Value arg;
      arg.set("name", a.name);
      if (a.type.empty()) {
        Value values = Value(json::Array{});
        for (const std::string& w : a.values) values.push(w);
        arg.set("values", std::move(values));
      } else {
        arg.set("type", a.type);
      }
      args.push(std::move(arg));
    }
    verb.set("args", std::move(args));
    list.push(std::move(verb));
  }
  return list;
}

std::string CheckEntities(const char* kind, const std::vector<Entity>& list, std::set<std::string>& seen) {
  if (list.size() > 64) return std::string("scene.") + kind + ": more than 64 entities";
  for (const Entity& e : list) {
    if (!IsValidEntityId(e.id)) return std::string("scene.") + kind + ": id '" + e.id + "' must match ^[a-z][a-z0-9_]{0,47}$";
    if (!seen.insert(e.id).second) return std::string("scene.") + kind + ": duplicate id '" + e.id + "'";
  }
  return {};
}

std::string CheckVerb(const VerbDef& v, std::set<std::string>& names) {
  const std::string where = "scene.verbs '" + v.name + "': ";
  if (!IsValidVerbName(v.name)) return where + "the name must match ^[a-z][a-z0-9_]{0,31}$";
  if (VerbFromName(v.name) != Verb::Other || v.name == "emotion") return where + "built in; declare only new verbs";
  if (!names.insert(v.name).second) return where + "declared twice";
  if (v.description.empty() || v.description.size() > 120) return where + "a description of 1 to 120 characters is required";
  if (v.args.size() > 4) return where + "more than 4 arguments";
  std::set<std::string> arg_names;
  for (const VerbArg& a : v.args) {
    if (!IsValidVerbName(a.name)) return where + "argument '" + a.name + "' must match ^[a-z][a-z0-9_]{0,31}$";
    if (!arg_names.insert(a.name).second) return where + "argument '" + a.name + "' twice";
    if (a.type.empty() == a.values.empty()) {
      return where + "argument '" + a.name + "' needs either a type (object, location, character, any) or values";
    }
    if (!a.type.empty() && a.type != "object" && a.type != "location" && a.type != "character" && a.type != "any") {
      return where + "argument '" + a.name + "' type '" + a.type + "' is not object, location, character or any";
    }
    if (a.values.size() > 32) return where + "argument '" + a.name + "' has more than 32 values";
    std::set<std::string> words;
    for (const std::string& w : a.values) {
      if (!IsValidVerbName(w)) return where + "value '" + w + "' must match ^[a-z][a-z0-9_]{0,31}$";
      if (!words.insert(w).second) return where + "value '" + w + "' twice";
    }
  }
  return {};
}

}  // namespace

std::string CheckScene(const Scene& scene) {
  std::set<std::string> seen;
  std::string problem = CheckEntities("objects", scene.objects, seen);
  if (problem.empty()) problem = CheckEntities("locations", scene.locations, seen);
  if (problem.empty()) problem = CheckEntities("characters", scene.characters, seen);
  if (!problem.empty()) return problem;
  if (scene.verbs.size() > 32) return "scene.verbs: more than 32 verbs";
  std::set<std::string> names;
  for (const VerbDef& v : scene.verbs) {
    problem = CheckVerb(v, names);
    if (!problem.empty()) return problem;
  }
  return {};
}

bool IsValidEntityId(std::string_view id) {
  if (id.empty() || id.size() > 48 || id[0] < 'a' || id[0] > 'z') return false;
  for (const char c : id) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
  }
  return true;
}

json::Value SceneToJson(const Scene& scene) {
  Value s;
  if (!scene.name.empty()) s.set("name", scene.name);
  s.set("objects", EntityList(scene.objects));
  s.set("locations", EntityList(scene.locations));
  s.set("characters", EntityList(scene.characters));
  if (!scene.verbs.empty()) s.set("verbs", VerbList(scene.verbs));
  return s;
}

std::string MakeSessionStart(const SessionStartParams& p, std::string_view id) {
  Value msg = Message("session.start", id);
  msg.set("character", p.character);
  if (!p.cast.empty()) {
    Value cast = Value(json::Array{});
    for (const std::string& c : p.cast) cast.push(c);
    msg.set("cast", std::move(cast));
  }
  Value player;
  player.set("id", p.player_id);
  if (!p.player_name.empty()) player.set("name", p.player_name);
  msg.set("player", std::move(player));
  msg.set("scene", SceneToJson(p.scene));
  Value options;
  options.set("text_only", p.options.text_only);
  if (p.options.max_tokens) options.set("max_tokens", *p.options.max_tokens);
  if (p.options.seed) options.set("seed", static_cast<std::int64_t>(*p.options.seed));
  Value audio_in;
  audio_in.set("encoding", "pcm_s16le");
  audio_in.set("sample_rate", p.options.audio_in_sample_rate);
  audio_in.set("channels", 1);
  options.set("audio_in", std::move(audio_in));
  Value listen;
  if (p.options.end_silence_ms) listen.set("end_silence_ms", *p.options.end_silence_ms);
  if (p.options.barge_in_ms) listen.set("barge_in_ms", *p.options.barge_in_ms);
  listen.set("partials", p.options.partials);
  options.set("listen", std::move(listen));
  if (!p.options.brief.empty()) options.set("brief", p.options.brief);
  msg.set("options", std::move(options));
  return json::Dump(msg);
}

std::string MakeInputText(std::string_view text, std::string_view id, std::string_view to) {
  Value msg = Message("input.text", id);
  msg.set("text", std::string(text));
  if (!to.empty()) msg.set("to", std::string(to));
  return json::Dump(msg);
}

std::string MakeAudioCommit(std::string_view id) { return json::Dump(Message("input.audio.commit", id)); }

std::string MakeAudioClear(std::string_view id) { return json::Dump(Message("input.audio.clear", id)); }

std::string MakePlaybackMark(std::string_view response_id, double played_ms, std::string_view id) {
  Value msg = Message("playback.mark", id);
  msg.set("response_id", std::string(response_id));
  const double ms = std::isfinite(played_ms) && played_ms > 0.0 ? std::round(played_ms * 10.0) / 10.0 : 0.0;
  msg.set("played_ms", ms);
  return json::Dump(msg);
}

std::string MakeResponseCancel(std::string_view response_id, std::string_view id) {
  Value msg = Message("response.cancel", id);
  if (!response_id.empty()) msg.set("response_id", std::string(response_id));
  return json::Dump(msg);
}

std::string MakeGameEvent(std::string_view description, bool react, std::string_view id) {
  Value msg = Message("game.event", id);
  msg.set("description", std::string(description));
  msg.set("react", react);
  return json::Dump(msg);
}

std::string MakeSceneUpdate(const Scene& scene, std::string_view id) {
  Value msg = Message("scene.update", id);
  msg.set("scene", SceneToJson(scene));
  return json::Dump(msg);
}

std::string MakeConverse(std::string_view topic, int turns, const std::vector<std::string>& characters, std::string_view id) {
  Value msg = Message("scene.converse", id);
  msg.set("topic", std::string(topic));
  msg.set("turns", turns);
  if (!characters.empty()) {
    Value list = Value(json::Array{});
    for (const std::string& c : characters) list.push(c);
    msg.set("characters", std::move(list));
  }
  return json::Dump(msg);
}

std::string MakePing(std::string_view id) { return json::Dump(Message("ping", id)); }

}  // namespace npc
