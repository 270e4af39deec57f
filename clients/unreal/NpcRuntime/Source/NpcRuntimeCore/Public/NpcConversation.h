// SPDX-License-Identifier: MIT
// One conversation's client-side state, engine-independent: feed it the server's frames and the
// player's audio clock; it says what to play, what is due (visemes, actions, emotions), which
// playback marks to send, and when to stop playing (barge-in). The Unreal component is a thin shell
// over this class; tests drive it with recorded and live sessions and a simulated clock.
//
// Not thread-safe: call it from one thread (the game thread).
#pragma once

#include "NpcCoreApi.h"
#include "NpcProtocol.h"
#include "NpcTimeline.h"

#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace npc {

class NPC_CORE_API Conversation {
 public:
  /// What one frame from the server means for the game.
  struct Update {
    std::optional<ServerEvent> event;   // the parsed event (also when dropped)
    std::optional<AudioFrame> audio;    // queue these samples on the player
    bool dropped = false;               // belongs to a response the client no longer plays: ignore it
    std::optional<std::string> stop_audio;  // barge-in: flush this response's audio from the player now
    std::optional<Timeline::Stop> stop;     // ... and its timeline's last mark (send it) and released items
    std::string error;                  // a protocol problem (bad JSON, unpaired audio, ...); the session goes on
  };

  /// `playback_ms`: the current response's audio clock, used if this frame interrupts it.
  Update OnText(std::string_view text, double playback_ms = 0.0);
  Update OnBinary(const void* data, std::size_t size);

  /// What became due now that the player has played `clock_ms` of `response_id`'s audio.
  /// Timelines of responses queued before it are finished first (their audio has been played).
  struct Tick {
    std::vector<TimelineItem> due;
    std::vector<PlaybackMark> marks;  // send these (periodic, and the final one of each finished response)
    std::optional<Viseme> mouth;      // the cue under the clock
  };
  Tick Advance(std::string_view response_id, double clock_ms, double mark_period_ms = 250.0);

  /// Releases what needs no clock: actions/emotions without at_ms (text-only sessions), and whole
  /// timelines of responses that ended without any audio. Call it every frame.
  Tick AdvanceSilent();

  /// The player finished `response_id`'s audio (its response.end has arrived and the queue drained).
  Tick FinishPlayback(std::string_view response_id, double clock_ms);

  /// Stop the response now (the game decides, e.g. the NPC is knocked out); returns the last mark.
  std::optional<Timeline::Stop> Interrupt(std::string_view response_id, double clock_ms);

  const std::optional<SessionReady>& Ready() const { return ready_; }
  const FrameDecoder& Decoder() const { return decoder_; }
  /// The response being generated (between response.start and response.end), or "".
  const std::string& Generating() const { return generating_; }
  /// Whether that response's response.end has arrived.
  bool Ended(std::string_view response_id) const;

 private:
  struct Entry {
    Timeline timeline;
    bool ended = false;
    bool any_audio = false;
  };
  Entry* Find(std::string_view response_id);
  bool IsCancelled(std::string_view response_id) const;

  FrameDecoder decoder_;
  std::optional<SessionReady> ready_;
  std::deque<Entry> responses_;             // in start order; removed once finished
  std::vector<std::string> cancelled_;      // interrupted ids (recent ones): their late events are dropped
  std::vector<TimelineItem> immediate_;     // due at once (no audio clock)
  std::string generating_;
};

}  // namespace npc
