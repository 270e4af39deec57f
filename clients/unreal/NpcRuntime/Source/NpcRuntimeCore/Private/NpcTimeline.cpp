// SPDX-License-Identifier: MIT
#include "NpcTimeline.h"

#include <algorithm>

namespace npc {

void Timeline::Insert(TimelineItem item) {
  if (stopped_) return;
  // After the last item with at_ms <= item's (stable), but never among the released ones:
  // an item that arrives late (its time already passed) is released by the next Advance.
  auto pos = std::upper_bound(items_.begin() + static_cast<std::ptrdiff_t>(next_), items_.end(), item.at_ms,
                              [](double at, const TimelineItem& it) { return at < it.at_ms; });
  items_.insert(pos, std::move(item));
}

void Timeline::AddVisemes(const std::vector<VisemeCue>& cues) {
  if (stopped_) return;
  for (const VisemeCue& cue : cues) {
    TimelineItem item;
    item.kind = TimelineItem::Kind::Viseme;
    item.at_ms = cue.start_ms;
    item.viseme = cue;
    cues_.push_back(cue);
    Insert(std::move(item));
  }
}

void Timeline::AddAction(const Action& action) {
  TimelineItem item;
  item.kind = TimelineItem::Kind::Action;
  item.at_ms = action.at_ms.value_or(0.0);
  item.action = action;
  Insert(std::move(item));
}

void Timeline::AddEmotion(const Emotion& emotion) {
  TimelineItem item;
  item.kind = TimelineItem::Kind::Emotion;
  item.at_ms = emotion.at_ms.value_or(0.0);
  item.emotion = emotion;
  Insert(std::move(item));
}

std::vector<TimelineItem> Timeline::Advance(double clock_ms) {
  std::vector<TimelineItem> due;
  if (stopped_) return due;
  clock_ms_ = std::max(clock_ms_, clock_ms);
  while (next_ < items_.size() && items_[next_].at_ms <= clock_ms_) due.push_back(items_[next_++]);
  return due;
}

std::optional<Viseme> Timeline::VisemeAt(double clock_ms) const {
  for (auto it = cues_.rbegin(); it != cues_.rend(); ++it) {  // the latest cue wins on a shared edge
    if (it->start_ms <= clock_ms && clock_ms < it->end_ms) return it->viseme;
  }
  return std::nullopt;
}

std::optional<PlaybackMark> Timeline::MarkIfDue(double clock_ms, double period_ms) {
  if (stopped_ || clock_ms < last_mark_ms_ + period_ms) return std::nullopt;
  last_mark_ms_ = clock_ms;
  return PlaybackMark{response_id_, clock_ms};
}

Timeline::Stop Timeline::Interrupt(double clock_ms) {
  Stop stop;
  stop.released = Advance(clock_ms);
  stop.skipped = stopped_ ? 0 : items_.size() - next_;
  stop.mark = PlaybackMark{response_id_, std::max(clock_ms_, clock_ms)};
  next_ = items_.size();
  stopped_ = true;
  last_mark_ms_ = stop.mark.played_ms;
  return stop;
}

Timeline::Stop Timeline::Finish(double clock_ms) {
  Stop stop;
  if (!stopped_) {
    clock_ms_ = std::max(clock_ms_, clock_ms);
    while (next_ < items_.size()) stop.released.push_back(items_[next_++]);
  }
  stop.mark = PlaybackMark{response_id_, std::max(clock_ms_, clock_ms)};
  stopped_ = true;
  return stop;
}

}  // namespace npc
