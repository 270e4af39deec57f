// SPDX-License-Identifier: MIT
#include "NpcConversation.h"

#include <algorithm>

namespace npc {

namespace {
constexpr std::size_t kCancelledKept = 16;
}

Conversation::Entry* Conversation::Find(std::string_view response_id) {
  for (Entry& e : responses_) {
    if (e.timeline.ResponseId() == response_id) return &e;
  }
  return nullptr;
}

bool Conversation::IsCancelled(std::string_view response_id) const {
  return std::find(cancelled_.begin(), cancelled_.end(), response_id) != cancelled_.end();
}

bool Conversation::Ended(std::string_view response_id) const {
  for (const Entry& e : responses_) {
    if (e.timeline.ResponseId() == response_id) return e.ended;
  }
  return true;  // unknown or already finished
}

Conversation::Update Conversation::OnText(std::string_view text, double playback_ms) {
  Update u;
  FrameDecoder::Result r = decoder_.OnText(text);
  u.error = std::move(r.error);
  if (!r.event) return u;
  u.event = std::move(r.event);
  ServerEvent& ev = *u.event;
  const std::string& rid = EventResponseId(ev);

  if (const auto* ready = std::get_if<SessionReady>(&ev)) {
    ready_ = *ready;
    return u;
  }
  if (!rid.empty() && IsCancelled(rid)) {  // late events of an interrupted response
    u.dropped = !std::holds_alternative<ResponseEnd>(ev);
    if (std::holds_alternative<ResponseEnd>(ev) && generating_ == rid) generating_.clear();
    return u;
  }
  if (const auto* start = std::get_if<ResponseStart>(&ev)) {
    responses_.push_back(Entry{Timeline(start->response_id), false, false});
    generating_ = start->response_id;
    return u;
  }
  Entry* entry = rid.empty() ? nullptr : Find(rid);
  if (const auto* chunk = std::get_if<AudioChunk>(&ev)) {
    if (entry) {
      entry->timeline.AddVisemes(chunk->visemes);
      entry->any_audio = true;
    }
  } else if (const auto* action = std::get_if<Action>(&ev)) {
    TimelineItem item;
    item.kind = TimelineItem::Kind::Action;
    item.action = *action;
    if (!action->at_ms || !entry) immediate_.push_back(std::move(item));  // no audio clock: act at once
    else entry->timeline.AddAction(*action);
  } else if (const auto* emotion = std::get_if<Emotion>(&ev)) {
    TimelineItem item;
    item.kind = TimelineItem::Kind::Emotion;
    item.emotion = *emotion;
    if (!emotion->at_ms || !entry) immediate_.push_back(std::move(item));
    else entry->timeline.AddEmotion(*emotion);
  } else if (std::holds_alternative<ResponseEnd>(ev)) {
    if (entry) entry->ended = true;
    if (generating_ == rid) generating_.clear();
  } else if (std::holds_alternative<ResponseInterrupted>(ev)) {
    u.stop_audio = rid;
    u.stop = Interrupt(rid, playback_ms);
  }
  return u;
}

Conversation::Update Conversation::OnBinary(const void* data, std::size_t size) {
  Update u;
  FrameDecoder::Result r = decoder_.OnBinary(data, size);
  u.error = std::move(r.error);
  if (r.audio) {
    u.dropped = IsCancelled(r.audio->response_id);
    u.audio = std::move(r.audio);
  }
  return u;
}

Conversation::Tick Conversation::AdvanceSilent() {
  Tick t;
  t.due.swap(immediate_);
  // Responses that ended without audio (text only, failed, cancelled early) have no clock to wait for.
  while (!responses_.empty() && responses_.front().ended && !responses_.front().any_audio) {
    Timeline::Stop stop = responses_.front().timeline.Finish(0.0);
    for (auto& item : stop.released) t.due.push_back(std::move(item));
    responses_.pop_front();
  }
  return t;
}

Conversation::Tick Conversation::Advance(std::string_view response_id, double clock_ms, double mark_period_ms) {
  Tick t = AdvanceSilent();
  // Everything queued before this response has been played out.
  while (!responses_.empty() && responses_.front().timeline.ResponseId() != response_id && Find(response_id)) {
    Entry& front = responses_.front();
    Timeline::Stop stop = front.timeline.Finish(front.timeline.Clock());
    for (auto& item : stop.released) t.due.push_back(std::move(item));
    if (!front.timeline.ResponseId().empty()) t.marks.push_back(stop.mark);
    responses_.pop_front();
  }
  Entry* entry = Find(response_id);
  if (!entry) return t;
  for (auto& item : entry->timeline.Advance(clock_ms)) t.due.push_back(std::move(item));
  if (auto mark = entry->timeline.MarkIfDue(clock_ms, mark_period_ms)) t.marks.push_back(*mark);
  t.mouth = entry->timeline.VisemeAt(clock_ms);
  return t;
}

Conversation::Tick Conversation::FinishPlayback(std::string_view response_id, double clock_ms) {
  Tick t = Advance(response_id, clock_ms);
  t.mouth.reset();
  for (auto it = responses_.begin(); it != responses_.end(); ++it) {
    if (it->timeline.ResponseId() != response_id) continue;
    if (!it->ended) break;  // a gap in the stream, not the end: more audio may come
    Timeline::Stop stop = it->timeline.Finish(clock_ms);
    for (auto& item : stop.released) t.due.push_back(std::move(item));
    t.marks.push_back(stop.mark);
    responses_.erase(it);
    break;
  }
  return t;
}

std::optional<Timeline::Stop> Conversation::Interrupt(std::string_view response_id, double clock_ms) {
  if (response_id.empty()) return std::nullopt;
  if (!IsCancelled(response_id)) {
    cancelled_.emplace_back(response_id);
    if (cancelled_.size() > kCancelledKept) cancelled_.erase(cancelled_.begin());
  }
  for (auto it = responses_.begin(); it != responses_.end(); ++it) {
    if (it->timeline.ResponseId() != response_id) continue;
    Timeline::Stop stop = it->timeline.Interrupt(clock_ms);
    responses_.erase(it);
    return stop;
  }
  Timeline::Stop stop;  // already finished here, or never started: still tell the server where playback stopped
  stop.mark = PlaybackMark{std::string(response_id), clock_ms > 0.0 ? clock_ms : 0.0};
  return stop;
}

}  // namespace npc
