// SPDX-License-Identifier: MIT
// The timeline of one response: its viseme cues, actions and emotions, released when the audio
// clock (ms of that response's audio the player has played) reaches their time. Sans-I/O and
// clock-free: the caller passes the clock, so a test can simulate it and a game uses its player's.
#pragma once

#include "NpcCoreApi.h"
#include "NpcProtocol.h"

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

namespace npc {

/// One thing due on the timeline.
struct TimelineItem {
  enum class Kind : std::uint8_t { Viseme, Action, Emotion };
  Kind kind = Kind::Viseme;
  double at_ms = 0.0;   // when it is due (a viseme: its start_ms; at_ms null: 0, due at once)
  VisemeCue viseme;     // Kind::Viseme
  Action action;        // Kind::Action
  Emotion emotion;      // Kind::Emotion
};

/// A playback.mark to send: how much of a response the player has heard.
struct PlaybackMark {
  std::string response_id;
  double played_ms = 0.0;
};

class NPC_CORE_API Timeline {
 public:
  explicit Timeline(std::string response_id = {}) : response_id_(std::move(response_id)) {}

  const std::string& ResponseId() const { return response_id_; }

  void AddVisemes(const std::vector<VisemeCue>& cues);
  void AddAction(const Action& action);
  void AddEmotion(const Emotion& emotion);

  /// Releases every item due at `clock_ms` (at_ms <= clock) not released yet, in time order (ties:
  /// arrival order). The clock may only go forward; a smaller value releases nothing.
  std::vector<TimelineItem> Advance(double clock_ms);

  /// The cue under the clock (for the mouth), none outside the audio.
  std::optional<Viseme> VisemeAt(double clock_ms) const;

  /// A periodic mark: one every `period_ms` of played audio (the protocol asks for a few a second).
  std::optional<PlaybackMark> MarkIfDue(double clock_ms, double period_ms = 250.0);

  /// Barge-in / stop: releases what is due at `clock_ms`, drops (skips) everything later, and
  /// returns the last mark to send. Items added afterwards are ignored.
  struct Stop {
    std::vector<TimelineItem> released;
    std::size_t skipped = 0;
    PlaybackMark mark;
  };
  Stop Interrupt(double clock_ms);

  /// Playback reached the end: releases everything left and returns the final mark.
  Stop Finish(double clock_ms);

  bool Stopped() const { return stopped_; }
  std::size_t Pending() const { return items_.size() - next_; }
  double Clock() const { return clock_ms_; }

 private:
  void Insert(TimelineItem item);

  std::string response_id_;
  std::vector<TimelineItem> items_;  // sorted by at_ms (stable); [0, next_) released
  std::vector<VisemeCue> cues_;      // every cue, for VisemeAt
  std::size_t next_ = 0;
  double clock_ms_ = 0.0;
  double last_mark_ms_ = 0.0;
  bool stopped_ = false;
};

}  // namespace npc
