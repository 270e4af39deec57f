// SPDX-License-Identifier: MIT
// npc_runtime protocol v1 (docs/protocol.md): typed server events, the pairing of response.audio
// with its binary frame, and builders for the client messages. Sans-I/O: text and bytes in, typed
// values and text out; the caller owns the socket.
//
// Parsing checks what it reads: a known event with a missing or mistyped required field, or an
// unknown viseme/emotion/status, is a ParseError (never undefined behaviour). Verbs are data: an
// action's verb is any verb name (a built-in or one the scene declared) with its arguments by name. A well-formed
// event of a type this client does not know is surfaced as UnknownEvent, so a newer server can add
// events without breaking older games.
#pragma once

#include "NpcCoreApi.h"
#include "NpcJson.h"
#include "NpcVisemes.h"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace npc {

constexpr const char* kProtocolVersion = "1";

// ---------------------------------------------------------------------------------------------
// Server -> client events

struct AudioFormat {
  int sample_rate = 0;  // encoding pcm_s16le, mono (the only format of protocol v1)
};

struct CharacterInfo {
  std::string id;
  std::string name;
};

struct ListenSettings {
  int end_silence_ms = 0;
  int barge_in_ms = 0;
  bool partials = true;
};

struct SessionReady {
  std::string session_id;
  std::string protocol;
  CharacterInfo character;
  std::vector<std::string> actions;   // verbs allowed: built-ins and the ones the scene declared
  std::optional<AudioFormat> audio;   // none: text only
  std::optional<AudioFormat> audio_in;
  std::optional<ListenSettings> listen;
  std::string mood;
  std::vector<CharacterInfo> cast;
};

struct ResponseStart {
  std::string response_id;
  std::string speaker;
  std::string trigger;  // text | voice | game_event | converse
  std::string ref;
};

struct TextDelta {
  std::string response_id;
  std::string speaker;
  std::string text;
};

struct VisemeCue {
  Viseme viseme = Viseme::Sil;
  double start_ms = 0.0;
  double end_ms = 0.0;
};

/// response.audio: announces the binary frame that follows it.
struct AudioChunk {
  std::string response_id;
  std::string speaker;
  int seq = 0;
  double start_ms = 0.0;
  int samples = 0;
  int sample_rate = 0;  // 0: the session's rate (session.ready.audio)
  std::vector<VisemeCue> visemes;
};

/// The built-in verbs, typed; Other: a verb the scene declared (its name is Action::verb_name).
enum class Verb : std::uint8_t { Move, Grab, Give, Other };
/// "move", "grab", "give"; "" for Other.
NPC_CORE_API const char* VerbName(Verb verb);
/// The built-in verb of a name, or Verb::Other.
NPC_CORE_API Verb VerbFromName(std::string_view name);
/// A verb, argument or value name of the protocol: ^[a-z][a-z0-9_]{0,31}$.
NPC_CORE_API bool IsValidVerbName(std::string_view name);

/// An action's arguments by name, in the order the server sent them (give: object, target; sit: seat).
using ActionArgs = std::vector<std::pair<std::string, std::string>>;
/// The argument `name` of `args`, or "" when there is none.
NPC_CORE_API std::string_view ActionArg(const ActionArgs& args, std::string_view name);

/// response.action: the character performs a verb. verb_name is any verb (a built-in or one the scene
/// declared) and args holds every argument by name; verb, object and target are the built-ins' typed form.
struct Action {
  std::string response_id;
  std::string speaker;
  int index = 0;
  Verb verb = Verb::Move;  // the built-in, or Verb::Other for a declared verb
  std::string object;  // grab, give ("" otherwise): the argument named "object"
  std::string target;  // move: where; give: the receiving character ("" otherwise): the argument named "target"
  int text_offset = 0;
  std::optional<double> at_ms;  // none without audio: act at once
  std::string verb_name;  // the verb, any verb: "move", "give", "sit", ...
  ActionArgs args;        // every argument by name
  /// The argument `name`, or "".
  std::string_view Arg(std::string_view name) const { return ActionArg(args, name); }
};

struct Emotion {
  std::string response_id;
  std::string speaker;
  std::string emotion;  // neutral joy anger sadness fear surprise disgust
  int text_offset = 0;
  std::optional<double> at_ms;
};

/// One action of response.end.actions (same fields as Action).
struct ActionRecord {
  Verb verb = Verb::Move;
  std::string object;
  std::string target;
  std::string verb_name;
  ActionArgs args;
  std::string_view Arg(std::string_view name) const { return ActionArg(args, name); }
};

enum class EndStatus : std::uint8_t { Completed, Interrupted, Failed };
NPC_CORE_API const char* EndStatusName(EndStatus status);

struct ResponseEnd {
  std::string response_id;
  std::string speaker;
  EndStatus status = EndStatus::Completed;
  std::string text;
  std::vector<ActionRecord> actions;
  std::vector<std::pair<std::string, double>> timings;  // ms from the turn's start, server order
  bool truncated = false;
  std::optional<double> audio_ms;
  std::string error;
  std::optional<double> heard_ms;
  std::optional<std::string> heard_text;
  /// A timing by name (prompt_ready, first_token, first_audio, end, ...), if present.
  std::optional<double> Timing(std::string_view name) const;
};

struct ResponseInterrupted {
  std::string response_id;
  std::string speaker;
  std::string reason;  // barge_in
};

struct SpeechStarted {
  std::string utterance_id;
  double at_ms = 0.0;
};

struct SpeechStopped {
  std::string utterance_id;
  double at_ms = 0.0;
  double duration_ms = 0.0;
  bool discarded = false;
};

struct TranscriptPartial {
  std::string utterance_id;
  std::string text;
  std::string stable;
};

struct TranscriptFinal {
  std::string utterance_id;
  std::string text;
  bool backchannel = false;
  std::vector<std::pair<std::string, double>> timings;
};

struct SceneUpdated {
  int objects = 0, locations = 0, characters = 0;
};

struct GameEventAccepted {
  std::string ref;
  bool reacting = false;
};

struct ConverseEnd {
  std::string ref;
  int turns = 0;
  EndStatus status = EndStatus::Completed;
};

struct ErrorEvent {
  std::string code;
  std::string message;
  std::string ref;
  std::string response_id;  // set when a response failed
  bool retryable = false;
  bool fatal = false;  // the server closes the connection after it
};

struct Pong {
  std::string ref;
};

/// A well-formed event whose type this client does not know (a newer server): kept, not an error.
struct UnknownEvent {
  std::string type;
  std::string response_id;
  json::Value raw;
};

/// One binary frame of reply audio, paired with the response.audio that announced it.
struct AudioFrame {
  std::string response_id;
  std::string speaker;
  int seq = 0;
  double start_ms = 0.0;
  int sample_rate = 0;
  std::vector<std::int16_t> pcm;  // mono samples, host order
  double DurationMs() const { return sample_rate > 0 ? 1000.0 * static_cast<double>(pcm.size()) / sample_rate : 0.0; }
};

using ServerEvent = std::variant<SessionReady, ResponseStart, TextDelta, AudioChunk, Action, Emotion, ResponseEnd,
                                 ResponseInterrupted, SpeechStarted, SpeechStopped, TranscriptPartial, TranscriptFinal,
                                 SceneUpdated, GameEventAccepted, ConverseEnd, ErrorEvent, Pong, UnknownEvent>;

/// The wire `type` of a parsed event ("response.audio", ...; UnknownEvent: its own type).
NPC_CORE_API std::string EventTypeName(const ServerEvent& event);

/// The response id of an event, or "" for session-level events.
NPC_CORE_API const std::string& EventResponseId(const ServerEvent& event);

/// A server event, or why the text could not be read as one.
struct EventResult {
  std::optional<ServerEvent> event;
  std::string error;  // empty on success: "bad JSON at byte 3: ...", "response.audio: missing field 'samples'", ...
  bool ok() const { return event.has_value(); }
};

/// Parses one text frame from the server.
NPC_CORE_API EventResult ParseServerEvent(std::string_view text);

/// Parses an already-decoded JSON object as a server event.
NPC_CORE_API EventResult ParseServerEventValue(const json::Value& value);

/// Reads the server's frames in order and pairs each binary frame with the response.audio that
/// announced it (docs/protocol.md: "each chunk is a response.audio event, then its binary frame").
/// A binary frame with no announcement, one of the wrong size, or an event arriving where the
/// announced frame should be, is an error; after an error the decoder is ready for the next frame.
class NPC_CORE_API FrameDecoder {
 public:
  struct Result {
    std::optional<ServerEvent> event;  // from OnText
    std::optional<AudioFrame> audio;   // from OnBinary
    std::string error;                 // empty on success
    bool ok() const { return error.empty(); }
  };

  /// The session's reply rate (from session.ready.audio); OnText sets it when it sees session.ready.
  void SetSessionSampleRate(int rate) { session_rate_ = rate; }
  int SessionSampleRate() const { return session_rate_; }

  Result OnText(std::string_view text);
  Result OnBinary(const void* data, std::size_t size);

  /// True while a response.audio waits for its binary frame.
  bool AwaitingAudio() const { return pending_.has_value(); }

 private:
  std::optional<AudioChunk> pending_;
  int session_rate_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Client -> server messages (each returns the JSON text of one frame)

struct Entity {
  std::string id;  // ^[a-z][a-z0-9_]{0,47}$
  std::string name;
  std::string description;
};

/// One argument of a declared verb: a scene entity of a type ("object", "location", "character",
/// "any"), or one of a closed list of values (lowercase words). Exactly one of the two.
struct VerbArg {
  std::string name;  // ^[a-z][a-z0-9_]{0,31}$, unique in its verb
  std::string type;  // object | location | character | any; "" when values are given
  std::vector<std::string> values;
};

/// A verb the scene declares (scene.verbs): the character may perform it as [name arg1 ...], and
/// it arrives as an Action with that verb_name and its args by name. Not move/grab/give (built in).
struct VerbDef {
  std::string name;         // ^[a-z][a-z0-9_]{0,31}$
  std::string description;  // one line for the model, 1-120 chars: "sits down on a seat"
  std::vector<VerbArg> args;  // at most 4, in the order the tag names them
};

struct Scene {
  std::string name;
  std::vector<Entity> objects;
  std::vector<Entity> locations;
  std::vector<Entity> characters;
  std::vector<VerbDef> verbs;  // the game's own verbs (at most 32); sent only when not empty
};

struct SessionOptions {
  bool text_only = false;
  std::optional<int> max_tokens;
  std::optional<std::int64_t> seed;
  int audio_in_sample_rate = 16000;  // the microphone PCM16 rate this client sends
  std::optional<int> end_silence_ms;
  std::optional<int> barge_in_ms;
  bool partials = true;
  std::string brief;
};

struct SessionStartParams {
  std::string character;
  std::string player_id = "player";
  std::string player_name;
  Scene scene;
  SessionOptions options;
  std::vector<std::string> cast;
};

/// Valid entity / persona id for the protocol (lowercase words joined by '_', at most 48 chars).
NPC_CORE_API bool IsValidEntityId(std::string_view id);

/// What the server would refuse in a scene ("" when none): malformed or duplicate ids, more than 64
/// entities in a list; verbs malformed (name, description, arguments), declared twice, built in, or more than 32.
NPC_CORE_API std::string CheckScene(const Scene& scene);

NPC_CORE_API json::Value SceneToJson(const Scene& scene);
NPC_CORE_API std::string MakeSessionStart(const SessionStartParams& params, std::string_view id = {});
NPC_CORE_API std::string MakeInputText(std::string_view text, std::string_view id = {}, std::string_view to = {});
NPC_CORE_API std::string MakeAudioCommit(std::string_view id = {});
NPC_CORE_API std::string MakeAudioClear(std::string_view id = {});
/// played_ms is rounded to 0.1 ms (and clamped at 0).
NPC_CORE_API std::string MakePlaybackMark(std::string_view response_id, double played_ms, std::string_view id = {});
NPC_CORE_API std::string MakeResponseCancel(std::string_view response_id = {}, std::string_view id = {});
NPC_CORE_API std::string MakeGameEvent(std::string_view description, bool react, std::string_view id = {});
NPC_CORE_API std::string MakeSceneUpdate(const Scene& scene, std::string_view id = {});
NPC_CORE_API std::string MakeConverse(std::string_view topic, int turns, const std::vector<std::string>& characters = {},
                                      std::string_view id = {});
NPC_CORE_API std::string MakePing(std::string_view id = {});

}  // namespace npc
